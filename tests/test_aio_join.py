"""cmemcache.aio: one-key gets queued behind one another on a connection go
out as one multi-key line ("get a b c"), and each still reads its own
value: against a real memcached through a recording relay (the bytes sent,
the values read, with duplicates, misses, cas, decoding, cancellation and
other commands in between), and against a scripted server for replies a
real one never sends."""

from __future__ import annotations

import asyncio
import pickle

import pytest

import cmemcache
import cmemcache.aio
from conftest import TcpRelay, made_by
from fakeserver import expect, send
from test_aio_commands import LOOPS


@pytest.fixture
def relay_factory():
    """``make(target_port) -> TcpRelay``; all are stopped after the test."""
    with made_by(TcpRelay, TcpRelay.stop) as make:
        yield make


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    """Runs a coroutine to its end on asyncio's default loop, then uvloop."""
    factory = LOOPS[request.param]

    def run(coro):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)
    return run


def sent_lines(relay: TcpRelay) -> list[bytes]:
    """The request lines the clients sent (no data blocks: gets only)."""
    return bytes(relay.sent).split(b"\r\n")[:-1]


def test_gets_asked_together_share_lines_and_each_reads_its_own(server, relay_factory, run):
    relay = relay_factory(server.port)
    keys = [b"j%d" % (i % 13) for i in range(300)]     # duplicates on every line
    stored = {b"j%d" % i: b"v%d" % i for i in range(0, 13, 2)}   # the odd ones miss

    async def main():
        async with cmemcache.aio.StringClient([relay.address], timeout=5,
                                              max_connections=1) as mc:
            assert await mc.set_multi(stored) == []
            relay.sent.clear()
            got = await asyncio.gather(*(mc.get(k) for k in keys))
            assert got == [stored.get(k) for k in keys]
            # and the connection is in sync for what follows
            assert await mc.get(b"j0") == b"v0"
            assert await mc.get_multi([b"j1", b"j2"]) == {b"j2": b"v2"}
    run(main())
    lines = sent_lines(relay)
    joined = lines[:-2]
    assert all(line.startswith(b"get ") for line in joined)
    assert [k for line in joined for k in line.split()[1:]] == keys   # in order
    assert len(joined) < len(keys) // 10
    # The first get goes out alone; the 63 queued behind it in the same loop
    # iteration share the next line.  Later lines depend on how the replies
    # arrive (a waiter let in while the line is still unwritten joins it),
    # but never hold more than max_inflight (64) keys.
    per_line = [len(line.split()) - 1 for line in joined]
    assert per_line[:2] in ([1, 63], [1, 64])
    assert max(per_line) <= 64
    assert lines[-2:] == [b"get j0", b"get j1 j2"]
    assert relay.counters()[0] == 1


def test_long_keys_keep_lines_under_2000_bytes(server, relay_factory, run):
    relay = relay_factory(server.port)
    keys = [b"%03d" % i + b"k" * 247 for i in range(40)]          # 250 bytes each

    async def main():
        async with cmemcache.aio.StringClient([relay.address], timeout=5,
                                              max_connections=1) as mc:
            await mc.set(keys[7], b"seven")
            relay.sent.clear()
            got = await asyncio.gather(*(mc.get(k) for k in keys))
            assert got == [b"seven" if i == 7 else None for i in range(40)]
    run(main())
    lines = sent_lines(relay)
    assert [k for line in lines for k in line.split()[1:]] == keys
    assert max(len(line) for line in lines) <= 2000
    assert max(len(line.split()) - 1 for line in lines) == 7    # 8 x 251 > 2000
    assert len(lines) == 1 + 39 // 7 + 1                        # alone, then 7 a line


def test_other_commands_between_gets_keep_their_place(server, relay_factory, run):
    relay = relay_factory(server.port)

    async def main():
        async with cmemcache.aio.StringClient([relay.address], timeout=5,
                                              max_connections=1) as mc:
            await mc.set(b"a", b"1")
            await mc.set(b"b", b"x")
            relay.sent.clear()
            got = await asyncio.gather(
                mc.get(b"a"), mc.get(b"b"),
                mc.set(b"a", b"2"),
                mc.get(b"a"), mc.get(b"a"),
                mc.gets(b"a"), mc.gets(b"b"),
                mc.get_multi([b"a", b"b"]),
                mc.delete(b"b"),
                mc.get(b"b"), mc.get(b"a"))
            cas_a, cas_b = got[5][1], got[6][1]
            assert got == [b"1", b"x", True, b"2", b"2", (b"2", cas_a), (b"x", cas_b),
                           {b"a": b"2", b"b": b"x"}, True, None, b"2"]
            assert cas_a != cas_b
            assert await mc.cas(b"a", b"3", cas_a) is True
            return cas_a
    cas_a = run(main())
    assert bytes(relay.sent) == (
        b"get a\r\nget b\r\n"           # the first written at once: b joins nothing
        b"set a 0 0 1\r\n2\r\n"
        b"get a a\r\n"
        b"gets a b\r\n"                  # another command: a line of its own
        b"get a b\r\n"                   # get_multi: not joined
        b"delete b\r\n"
        b"get b a\r\n"
        b"cas a 0 0 1 %d\r\n3\r\n" % cas_a)


def test_cancelled_gets_on_a_line_leave_the_others_their_values(server, relay_factory, run):
    relay = relay_factory(server.port)
    keys = [b"c%d" % i for i in range(120)]
    stored = {k: b"value of " + k for k in keys[::2]}

    async def main():
        async with cmemcache.aio.StringClient([relay.address], timeout=5,
                                              max_connections=1) as mc:
            await mc.set_multi(stored)
            for round_ in range(5):
                relay.sent.clear()
                tasks = [asyncio.ensure_future(mc.get(k)) for k in keys]
                await asyncio.sleep(0)                 # every request is queued
                for t in tasks[round_::3]:
                    t.cancel()
                done = await asyncio.gather(*tasks, return_exceptions=True)
                for i, (k, d) in enumerate(zip(keys, done)):
                    if i % 3 == round_ % 3 and i >= round_:
                        assert isinstance(d, asyncio.CancelledError)
                    else:
                        assert d == stored.get(k), (k, d)
                assert max(len(line.split()) for line in sent_lines(relay)) > 2
            assert await mc.get_multi(keys) == stored
    run(main())
    assert relay.counters()[0] == 1                    # never out of sync


def test_client_values_decoded_on_joined_lines(server, run):
    values = {"s": "text", "i": 42, "b": b"raw", "p": {"a": [1, 2]}, "big": "z" * 5000}

    async def main():
        async with cmemcache.aio.Client([server.address], max_connections=1) as mc:
            for k, v in values.items():
                assert await mc.set(k, v)
            names = list(values) * 20 + ["missing"]
            got = await asyncio.gather(*(mc.get(k) for k in names))
            assert got == [values.get(k) for k in names]
    run(main())


def test_decoder_failing_on_one_value_fails_only_its_call(server, run):
    async def main():
        async with cmemcache.aio.StringClient([server.address], max_connections=1) as mc:
            await mc.set(b"good", pickle.dumps("fine"), flags=1024)
            await mc.set(b"bad", b"not a pickle", flags=1024)

            def decode(key, value, flags, default):
                assert flags == 1024
                return (key, pickle.loads(value))
            names = [b"good", b"bad", b"good", b"missing", b"bad", b"good"] * 10
            got = await asyncio.gather(*(mc.get_decoded(k, "dflt", decode) for k in names),
                                       return_exceptions=True)
            for k, g in zip(names, got):
                if k == b"bad":
                    assert isinstance(g, pickle.UnpicklingError), g
                else:
                    assert g == ((b"good", "fine") if k == b"good" else "dflt")
            assert await mc.get(b"good") == pickle.dumps("fine")
    run(main())


# ---- replies a real server never sends -------------------------------------


def _three_gets(address):
    async def main():
        async with cmemcache.aio.StringClient([address], timeout=2,
                                              max_connections=1) as mc:
            return await asyncio.gather(mc.get(b"a"), mc.get(b"b"), mc.get(b"c"),
                                        return_exceptions=True)
    return asyncio.run(main())


def test_a_value_for_no_key_on_the_line_fails_every_get_on_it(fake_server):
    fake = fake_server([expect(rb"^get a\r\nget b c\r\n"),
                        send(b"END\r\nVALUE x 0 1\r\nx\r\nEND\r\n")])
    a, b, c = _three_gets(fake.address)
    assert a is None
    assert isinstance(b, cmemcache.ProtocolError), b
    assert isinstance(c, cmemcache.ProtocolError), c


def test_values_out_of_order_on_a_line_fail_the_gets_left(fake_server):
    fake = fake_server([expect(rb"^get a\r\nget b c\r\n"),
                        send(b"END\r\nVALUE c 0 1\r\nC\r\nVALUE b 0 1\r\nB\r\nEND\r\n")])
    a, b, c = _three_gets(fake.address)
    assert a is None
    assert b is None                 # c's value came first: b missed
    # then "VALUE b" answers nothing still owed: the connection broke, and c
    # fails (nothing crossed)
    assert isinstance(c, cmemcache.ProtocolError), c


def test_an_error_line_inside_a_line_fails_the_gets_left(fake_server):
    fake = fake_server([expect(rb"^get a\r\nget b c\r\n"),
                        send(b"END\r\nVALUE b 0 1\r\nB\r\nSERVER_ERROR out of memory\r\n")])
    a, b, c = _three_gets(fake.address)
    assert (a, b) == (None, b"B")
    assert isinstance(c, cmemcache.ServerError), c


def test_a_line_with_no_end_times_out(fake_server):
    fake = fake_server([expect(rb"^get a\r\nget b c\r\n"),
                        send(b"END\r\nVALUE b 0 1\r\nB\r\nVALUE c 0 1\r\nC\r\n")], then="hold")
    a, b, c = _three_gets(fake.address)
    assert (a, b) == (None, b"B")
    assert isinstance(c, cmemcache.TimeoutError), c
