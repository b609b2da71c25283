"""The request timeout is a deadline whatever the server sends.

A scripted server streams replies that never end — at full speed, so that
input is always waiting, or slowly — for every reply kind that can be long:
a value, a multi-get, stats, and the error lines skipped up to a noreply
fence.  Each call ends by its deadline (a small constant over it), and the
memory a reply can take is bounded: a value by ``max_value_size``, a
multi-get by one value per requested key, a stats reply by 8 MiB per server.
"""

from __future__ import annotations

import functools
import json
import time

import pytest

import cmemcache
from cmemcache import StringClient
from conftest import run_python
from fakeserver import ScriptEnd

TIMEOUT = 0.5
#: what a deadline may be overrun by on a loaded two-core machine
SLACK = 0.6
#: how long a scripted stream runs at most (bounded, and far past any deadline)
STREAM_SECONDS = 8.0


def stream(conn, chunk: bytes, *, delay: float = 0.0, seconds: float = STREAM_SECONDS):
    """Send chunk again and again until the peer goes away or time is up."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        conn.send(chunk)
        if delay:
            conn.sleep(delay)
    raise ScriptEnd("stream over")


def counting_stats(conn, *, lines_per_chunk: int = 200, delay: float = 0.0):
    """Endless STAT lines, each with a name of its own."""
    conn.expect(rb"stats\r\n")
    more_stats(conn, lines_per_chunk=lines_per_chunk, delay=delay)


def more_stats(conn, *, lines_per_chunk: int = 200, delay: float = 0.0):
    end = time.monotonic() + STREAM_SECONDS
    n = 0
    while time.monotonic() < end:
        conn.send(b"".join(b"STAT name_%d %d\r\n" % (n + i, n + i) for i in range(lines_per_chunk)))
        n += lines_per_chunk
        if delay:
            conn.sleep(delay)
    raise ScriptEnd("stream over")


#: 50,000 STAT lines, sent again and again: faster than any client parses them
STATS_CHUNK = b"".join(b"STAT stat_%d %d\r\n" % (i, i) for i in range(50_000))


def stats_flood(conn):
    conn.expect(rb"stats\r\n")
    stream(conn, STATS_CHUNK)


@functools.cache
def distinct_stats() -> bytes:
    """300,000 STAT lines with names of their own (8 MB, more than the limit
    charges), made once."""
    return b"".join(b"STAT distinct_%d %d\r\n" % (i, i) for i in range(300_000))


def distinct_stats_flood(conn):
    conn.expect(rb"stats\r\n")
    conn.send(distinct_stats())
    more_stats(conn)


def timed(fn):
    start = time.monotonic()
    try:
        fn()
    except cmemcache.Error as e:
        return time.monotonic() - start, e
    raise AssertionError("the call returned instead of failing")


def assert_times_out(fn, *, not_before_the_deadline: bool = True) -> cmemcache.TimeoutError:
    """fn() raises cmemcache.TimeoutError within TIMEOUT + SLACK (and, with
    ``not_before_the_deadline``, not before 0.9 TIMEOUT); the exception."""
    took, err = timed(fn)
    assert isinstance(err, cmemcache.TimeoutError)
    if not_before_the_deadline:
        assert TIMEOUT * 0.9 <= took < TIMEOUT + SLACK
    else:
        assert took < TIMEOUT + SLACK
    return err


def test_a_value_that_never_completes(fake_server):
    def script(conn):
        conn.expect(rb"get k\r\n")
        conn.send(b"VALUE k 0 1000000\r\n")
        stream(conn, b"x" * 100, delay=0.002)

    server = fake_server(script)
    sc = StringClient([server.address], timeout=TIMEOUT)
    assert_times_out(lambda: sc.get(b"k"))


def test_a_huge_value_streamed_at_full_speed(fake_server):
    def script(conn):
        conn.expect(rb"get k\r\n")
        conn.send(b"VALUE k 0 1073741000\r\n")
        stream(conn, b"x" * (1 << 20))

    server = fake_server(script)
    sc = StringClient([server.address], timeout=TIMEOUT, max_value_size=1 << 30)
    assert_times_out(lambda: sc.get(b"k"), not_before_the_deadline=False)


def test_a_value_over_max_value_size_is_refused_before_it_is_read(fake_server):
    def script(conn):
        conn.expect(rb"get k\r\n")
        conn.send(b"VALUE k 0 2000000\r\n")
        stream(conn, b"x" * 65536)

    server = fake_server(script)
    sc = StringClient([server.address], timeout=TIMEOUT, max_value_size=1 << 20)
    took, err = timed(lambda: sc.get(b"k"))
    assert isinstance(err, cmemcache.ProtocolError)
    assert "max_value_size" in str(err)
    assert took < TIMEOUT


def test_stats_that_never_end_slowly(fake_server):
    server = fake_server(lambda conn: counting_stats(conn, lines_per_chunk=10, delay=0.005))
    sc = StringClient([server.address], timeout=TIMEOUT)
    err = assert_times_out(sc.get_stats)
    assert err.partial == []


def test_stats_flood_stops_at_the_deadline_or_the_size_limit(fake_server):
    server = fake_server(stats_flood)
    sc = StringClient([server.address], timeout=TIMEOUT)
    took, err = timed(sc.get_stats)
    assert took < TIMEOUT + SLACK
    if isinstance(err, cmemcache.ProtocolError):
        assert "8 MiB" in str(err)
    else:
        assert isinstance(err, cmemcache.TimeoutError)


def test_stats_flood_memory_is_bounded(fake_server):
    """In a process of its own: the peak RSS of a flood of distinct stats
    lines, with a long timeout so that only the size limit stops it."""
    distinct_stats()
    server = fake_server(distinct_stats_flood)
    child = run_python(
        """
        import json, resource, sys, time
        import cmemcache
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sc = cmemcache.StringClient([sys.argv[1]], timeout=6)
        start = time.monotonic()
        try:
            sc.get_stats()
            outcome = "returned"
        except cmemcache.Error as e:
            outcome = type(e).__name__ + ": " + str(e)
        took = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"outcome": outcome, "grew_kib": after - before, "took": took}))
        """,
        server.address,
    )
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout)
    assert result["outcome"].startswith("ProtocolError") and "8 MiB" in result["outcome"], result
    assert result["grew_kib"] < 64 * 1024, result


def test_multi_get_that_never_ends(fake_server):
    keys = [b"a", b"b", b"c"]

    def script(conn):
        conn.expect(rb"get a b c\r\n")
        conn.send(b"VALUE a 0 1\r\n1\r\n")
        conn.send(b"VALUE b 0 500000\r\n")
        stream(conn, b"y" * 64, delay=0.002)

    server = fake_server(script)
    sc = StringClient([server.address], timeout=TIMEOUT)
    err = assert_times_out(lambda: sc.get_multi(keys))
    assert err.partial == {b"a": b"1"}


def test_multi_get_flood_of_values_is_bounded_by_the_keys_asked(fake_server):
    def script(conn):
        conn.expect(rb"get a b\r\n")
        stream(conn, b"VALUE a 0 3\r\nabc\r\nVALUE b 0 3\r\nbcd\r\n" * 100)

    server = fake_server(script)
    sc = StringClient([server.address], timeout=TIMEOUT)
    took, err = timed(lambda: sc.get_multi([b"a", b"b"]))
    # two values were asked for; the third VALUE is not a reply to this request
    assert isinstance(err, cmemcache.ProtocolError)
    assert err.partial == {b"a": b"abc", b"b": b"bcd"}
    assert took < TIMEOUT


def test_multi_get_over_two_servers_each_streaming(fake_server):
    def script(conn):
        line = conn.read_line()
        key = line.split()[1]
        conn.send(b"VALUE %s 0 1000000000\r\n" % key)
        stream(conn, b"z" * 65536, delay=0.001)

    servers = [fake_server(script) for _ in range(2)]
    sc = StringClient([s.address for s in servers], timeout=TIMEOUT, max_value_size=1 << 30)
    keys = [b"k%d" % i for i in range(40)]
    assert_times_out(lambda: sc.get_multi(keys), not_before_the_deadline=False)


def test_error_lines_after_noreply_never_end(fake_server):
    def script(conn):
        conn.expect(rb"set k 0 0 1 noreply\r\nv\r\nmn\r\n")
        stream(conn, b"ERROR\r\n" * 500)

    server = fake_server(script)
    sc = StringClient([server.address], timeout=TIMEOUT, pool_size=1)
    assert sc.set(b"k", b"v", noreply=True) is True
    assert_times_out(lambda: sc.get(b"k"), not_before_the_deadline=False)


def test_error_lines_after_noreply_slowly(fake_server):
    def script(conn):
        conn.expect(rb"delete k noreply\r\nmn\r\n")
        stream(conn, b"CLIENT_ERROR bad\r\n", delay=0.003)

    server = fake_server(script)
    sc = StringClient([server.address], timeout=TIMEOUT, pool_size=1)
    assert sc.delete(b"k", noreply=True) is True
    assert_times_out(lambda: sc.get(b"k"))


def test_disconnect_all_drains_owed_fences_at_most_briefly(fake_server):
    def script(conn):
        conn.expect(rb"mn\r\n")
        stream(conn, b"SERVER_ERROR again\r\n" * 200)

    server = fake_server(script)
    sc = StringClient([server.address], timeout=5, pool_size=1)
    assert sc.set(b"k", b"v", noreply=True) is True
    start = time.monotonic()
    sc.disconnect_all()
    assert time.monotonic() - start < 0.1 + SLACK
    assert server.wait_peer_closed(0)


@pytest.mark.parametrize("command", ["set_multi", "delete_multi"])
def test_multi_store_replies_trickling_past_the_deadline(fake_server, command):
    keys = [b"m%d" % i for i in range(200)]
    reply = b"STORED\r\n" if command == "set_multi" else b"DELETED\r\n"

    def script(conn):
        conn.expect(rb"m199[^\n]*\n" + (rb"v\r\n" if command == "set_multi" else b""))
        conn.send_chunks(reply * len(keys), size=1, delay=0.002)

    server = fake_server(script)
    sc = StringClient([server.address], timeout=TIMEOUT)
    calls = {
        "set_multi": lambda: sc.set_multi({k: b"v" for k in keys}),
        "delete_multi": lambda: sc.delete_multi(keys),
    }
    err = assert_times_out(calls[command])
    if command == "set_multi":
        # the keys whose STORED had not arrived are reported not stored
        assert 0 < len(err.partial) < len(keys)
        assert err.partial == keys[len(keys) - len(err.partial):]
