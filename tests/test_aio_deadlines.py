"""cmemcache.aio: a call that waits for a connection (its server's connect
is under way, or every connection has max_inflight requests in flight)
still ends by its own deadline, whatever its server does meanwhile."""

from __future__ import annotations

import asyncio
import time

import pytest

import cmemcache
import cmemcache.aio

pytestmark = pytest.mark.serial


@pytest.fixture
def full_backlog(black_hole):
    """A loopback listener that never accepts, its backlog filled: a new
    connect to it gets no answer (its SYN is dropped) until it gives up."""
    return "127.0.0.1:%d" % black_hole.port


@pytest.mark.parametrize("cls", [cmemcache.aio.StringClient, cmemcache.aio.Client])
def test_a_call_waiting_for_a_connect_ends_by_its_deadline(full_backlog, cls):
    async def go():
        if cls is cmemcache.aio.Client:
            mc = cls([full_backlog], socket_timeout=0.3, connect_timeout=5, strict=True)
        else:
            mc = cls([full_backlog], timeout=0.3, connect_timeout=5)
        try:
            t = time.monotonic()
            with pytest.raises(cmemcache.TimeoutError):
                await mc.get(b"k")
            first = time.monotonic() - t
            # a second call while the same connect is still under way
            t = time.monotonic()
            with pytest.raises(cmemcache.TimeoutError):
                await mc.get_multi([b"a", b"b"])
            second = time.monotonic() - t
        finally:
            await mc.close()
        return first, second

    first, second = asyncio.run(go())
    # the deadline is 0.3 s; the connect would take 5 s
    assert 0.25 <= first < 2.0, first
    assert 0.25 <= second < 2.0, second


@pytest.fixture
def stopped(memcached):
    if not memcached.running():
        memcached.start()
    memcached.pause()
    try:
        yield memcached.address
    finally:
        memcached.resume()


def test_calls_waiting_for_room_end_by_their_deadline(stopped):
    """max_inflight=1 on one connection to a stopped server: the call in
    flight times out, and so does every call in line behind it, by its own
    deadline, not one timeout after another."""
    address = stopped

    async def go():
        mc = cmemcache.aio.StringClient([address], timeout=0.4, max_connections=1,
                                        max_inflight=1, connect_timeout=2)
        try:
            t = time.monotonic()
            results = await asyncio.gather(*(mc.get(b"k%d" % i) for i in range(5)),
                                           return_exceptions=True)
            took = time.monotonic() - t
        finally:
            await mc.close()
        return results, took

    results, took = asyncio.run(go())
    assert all(isinstance(r, cmemcache.TimeoutError) for r in results), results
    assert took < 2.5, took
