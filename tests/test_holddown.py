"""Request timeouts in a row hold a server down like a refused connect."""

import time

import pytest

import cmemcache
from cmemcache import StringClient


def test_timeouts_in_a_row_hold_a_stalled_server_down(memcached_factory):
    server = memcached_factory()
    sc = StringClient([server.address], timeout=0.2, dead_retry=0.6, timeout_limit=2)
    assert sc.set(b"k", b"v") is True
    server.pause()
    try:
        for _ in range(2):
            with pytest.raises(cmemcache.TimeoutError):
                sc.get(b"k")
        assert sc.dead_servers() == [0]
        # held down: refused at once, no new request waits for the timeout
        with pytest.raises(cmemcache.ConnectionError, match="marked dead"):
            sc.get(b"k")
    finally:
        server.resume()
    deadline = time.monotonic() + 5
    while sc.dead_servers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sc.dead_servers() == []
    assert sc.get(b"k") == b"v"


def test_a_success_between_timeouts_resets_the_count(memcached_factory):
    server = memcached_factory()
    sc = StringClient([server.address], timeout=0.2, dead_retry=30, timeout_limit=2)
    assert sc.set(b"k", b"v") is True
    for _ in range(3):
        server.pause()
        try:
            with pytest.raises(cmemcache.TimeoutError):
                sc.get(b"k")
        finally:
            server.resume()
        assert sc.get(b"k") == b"v"
    assert sc.dead_servers() == []


def test_timeout_limit_zero_never_holds_down(memcached_factory):
    server = memcached_factory()
    sc = StringClient([server.address], timeout=0.2, dead_retry=30, timeout_limit=0)
    server.pause()
    try:
        for _ in range(3):
            with pytest.raises(cmemcache.TimeoutError):
                sc.get(b"k")
        assert sc.dead_servers() == []
    finally:
        server.resume()
    assert sc.get(b"k") is None


def test_get_multi_with_one_stalled_server_stops_waiting_for_it(memcached_factory):
    servers = [memcached_factory() for _ in range(3)]
    sc = StringClient([s.address for s in servers], timeout=0.3, dead_retry=30, timeout_limit=3)
    keys = [b"key%d" % i for i in range(60)]
    assert sc.set_multi({k: k for k in keys}) == []
    stalled = 1
    live = {k: k for k in keys if sc.server_index(k) != stalled}
    servers[stalled].pause()
    try:
        for _ in range(3):
            with pytest.raises(cmemcache.TimeoutError) as e:
                sc.get_multi(keys)
            assert e.value.partial == live
        assert sc.dead_servers() == [stalled]
        # held down: the stalled server is not asked (and not waited for)
        with pytest.raises(cmemcache.ConnectionError, match="marked dead") as e:
            sc.get_multi(keys)
        assert e.value.partial == live
    finally:
        servers[stalled].resume()
