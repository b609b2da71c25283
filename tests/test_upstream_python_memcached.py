"""python-memcached's own test suite, tests/test_memcache.py of its sdist on
PyPI (the installed version), run with ``memcache`` being cmemcache.

The file is taken from the sdist at test time (pip download, kept in
build/upstream/) and run in a child process against this module's
memcached: the one address it names, 127.0.0.1:11211, is replaced by that
server's (see upstream/run_python_memcached.py).  Every test must run and
pass except the two that patch ``_Host.send_cmd`` and ``_Host.readline``,
private methods of python-memcached's socket layer that cmemcache does not
have.

The other tests here compare what ``debug=True`` writes to stderr with
what python-memcached 1.62 writes for the same calls.
"""

from __future__ import annotations

import contextlib
import io
import sys

import memcache
import pytest

import cmemcache
from conftest import MemcachedServer, free_port
from upstream import harness, sdist

SUITE = "python_memcached_tests.test_memcache"
#: python-memcached 1.62's tests/test_memcache.py: 24 + 1 tests
LOADED = 25
#: the tests that patch python-memcached's private socket methods
EXCLUDED = {
    f"{SUITE}.TestMemcache.test_touch",
    f"{SUITE}.TestMemcache.test_touch_unexpected_reply",
}


@pytest.mark.hang_timeout(harness.CHILD_TIMEOUT + 60)
def test_python_memcached_suite(server):
    source = sdist.fetch("python-memcached", ("tests/test_memcache.py", "PSF.LICENSE"))
    args = ["--sdist", str(source), "--address", server.address]
    for test in sorted(EXCLUDED):
        args += ["--exclude", test]
    report = harness.run("run_python_memcached.py", *args)
    loaded = set(report["loaded"])
    assert len(loaded) == LOADED, sorted(loaded)
    assert EXCLUDED <= loaded
    problems = harness.not_passed(report)
    assert not problems, harness.explain(report, problems)
    assert set(report["tests"]) == loaded - EXCLUDED
    assert len(report["tests"]) == LOADED - len(EXCLUDED) == 23
    print(f"python-memcached's suite: {len(report['tests'])} of {len(report['tests'])} passed "
          f"({len(EXCLUDED)} left out: {', '.join(sorted(EXCLUDED))})")


# -- debug output, call by call against python-memcached ---------------------------------


@contextlib.contextmanager
def stderr_text():
    """The text written to sys.stderr in the block (as python-memcached's
    own tests capture it)."""
    saved, sys.stderr = sys.stderr, io.StringIO()
    out: list[str] = []
    try:
        yield out
    finally:
        out.append(sys.stderr.getvalue())
        sys.stderr = saved


def both(address, fn, flush=True, **kwargs):
    """``fn(client)`` on a python-memcached and a cmemcache client with
    ``debug=1`` (the server flushed before each, unless ``flush`` is
    false); the stderr of each."""
    texts = []
    for mod in (memcache, cmemcache):
        client = mod.Client([address], debug=1, **kwargs)
        if flush:
            client.flush_all()
        with stderr_text() as err:
            fn(client)
        client.disconnect_all()
        texts.append(err[0])
    return texts


#: calls, and the number of lines python-memcached writes for them
SCENARIOS = {
    "add of a present key": (lambda c: (c.set("k", 1), c.add("k", 2)), 1),
    "replace of a missing key": (lambda c: c.replace("k", 2), 1),
    "append and prepend to a missing key": (lambda c: (c.append("k", "x"), c.prepend("k", "x")), 2),
    "delete of a missing key": (lambda c: c.delete("k"), 1),
    "touch of a missing key": (lambda c: c.touch("k", 10), 1),
    "delete_multi, some missing": (lambda c: (c.set("a", 1), c.delete_multi(["a", "b", "c"])), 2),
    "delete_multi with a prefix": (
        lambda c: (c.set("p_a", 1), c.delete_multi(["a", "b"], key_prefix="p_")), 1),
    "value too large for the server": (lambda c: c.set("big", "a" * (1024 * 1024)), 1),
    "quiet calls": (
        lambda c: (c.set("k", 1), c.get("k"), c.get("missing"), c.incr("k"), c.incr("missing"),
                   c.get_multi(["k", "missing"]), c.set_multi({"a": 1}), c.delete("k"),
                   c.delete_multi(["a"]), c.add("new", 1), c.touch("new", 5), c.flush_all()), 0),
}


def _store_raw(address, key: bytes, flags: int, data: bytes) -> None:
    host, port = address.split(":")
    import socket

    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"set %s %d 0 %d\r\n%s\r\n" % (key, flags, len(data), data))
        assert s.recv(64) == b"STORED\r\n"


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_debug_output_as_python_memcached(server, name):
    fn, lines = SCENARIOS[name]
    theirs, ours = both(server.address, fn)
    assert theirs.count("\n") == lines
    assert ours == theirs


def test_debug_delete_multi_is_one_call_in_stats(server):
    stats = []
    for mod in (memcache, cmemcache):
        c = mod.Client([server.address], debug=1)
        with stderr_text():
            c.delete_multi(["a", "b", "c"])
        stats.append(dict(c.stats))
    assert stats[0] == stats[1] == {"delete_multi": 1}


def test_debug_output_cas(server):
    def fn(c):
        c.set("k", 1)
        c.gets("k")
        c.set("k", 2)
        c.cas("k", 3)  # EXISTS
        c.gets("k")
        c.delete("k")
        c.cas("k", 4)  # NOT_FOUND

    theirs, ours = both(server.address, fn, cache_cas=True)
    assert theirs.count("got unexpected response") == 2
    assert ours == theirs


def test_debug_output_undecodable_pickle(server):
    def fn(c):
        _store_raw(server.address, b"bad", 1, b"\x80\x05garbage")
        assert c.get("bad") is None

    theirs, ours = both(server.address, fn)
    assert theirs.startswith("MemCached: Pickle error: ")
    assert ours == theirs


def test_debug_output_unknown_flags(server):
    """python-memcached writes the line, then raises ValueError (cmemcache
    answers a miss)."""

    def fn(c):
        _store_raw(server.address, b"odd", 0x40, b"x")
        try:
            assert c.get("odd") is None
        except ValueError:
            assert c.__class__ is memcache.Client

    theirs, ours = both(server.address, fn)
    assert theirs == "MemCached: unknown flags on get: 40\n\n"
    assert ours == theirs


def test_debug_output_server_refusing_connections():
    address = f"127.0.0.1:{free_port()}"
    theirs, ours = both(address, lambda c: c.get("k"), flush=False)
    assert theirs == (f"MemCached: MemCache: inet:{address}: connect: [Errno 111] Connection refused."
                      "  Marking dead.\n")
    assert ours == theirs


def test_debug_output_mark_dead(server):
    """A server marked dead by hand is skipped silently for dead_retry."""

    def fn(c):
        c.servers[0].mark_dead("test")
        assert c.set("k", 1) == 0
        assert c.get("k") is None
        assert c.delete("k") == 0
        assert c.set_multi({"a": 1}) == ["a"]

    theirs, ours = both(server.address, fn)
    assert theirs == f"MemCached: MemCache: inet:{server.address}: test.  Marking dead.\n"
    assert ours == theirs


def test_debug_output_timeout(memcached_factory):
    stalled = memcached_factory()
    stalled.pause()
    theirs, ours = both(stalled.address, lambda c: c.get("k"), flush=False, socket_timeout=0.2)
    assert theirs == f"MemCached: MemCache: inet:{stalled.address}: timed out.  Marking dead.\n"
    assert ours == theirs


def test_no_output_without_debug(server, capfd):
    port = free_port()
    for address in (server.address, f"127.0.0.1:{port}"):
        c = cmemcache.Client([address])
        for fn, _ in SCENARIOS.values():
            fn(c)
        c.servers[0].mark_dead("test")
        c.get("k")
        c.delete_multi(["a", "b"])
        c.disconnect_all()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


# -- client.servers ----------------------------------------------------------------------


def test_host_state_from_the_engine(server):
    import time

    c = cmemcache.Client([server.address, (f"127.0.0.1:{free_port()}", 2)], dead_retry=30)
    live, other = c.servers
    assert (live.address, live.ip, live.port, live.weight) == (("127.0.0.1", server.port), "127.0.0.1",
                                                                server.port, 1)
    assert other.weight == 2 and len(c.buckets) == 3
    assert live.deaduntil == 0 and other.deaduntil == 0
    before = time.time()
    live.mark_dead("by hand")
    after = time.time()
    assert before + 29 < live.deaduntil < after + 31
    assert c._sc.hold_downs()[0] > 29 and c._sc.hold_downs()[1] == 0.0
    assert str(live) == f"inet:{server.address} (dead until {int(live.deaduntil)})"
    assert c.get("k") is None  # held down: not even tried
    c.forget_dead_hosts()
    assert live.deaduntil == 0 and str(live) == f"inet:{server.address}"
    assert c.set("k", 1) is True and c.get("k") == 1
