"""Failures: refused and held-down servers, restarts, stalls, malformed replies.

Every fault test ends with the sync check: the next requests on the same
client object go out on a new connection and each gets its own reply."""

from __future__ import annotations

import builtins
import os
import time
import uuid

import pytest

import cmemcache
from cmemcache import StringClient
from conftest import free_port, restart_rounds, wait_until
from fakeserver import (
    FakeConnection,
    close,
    echo_reply,
    expect,
    reset,
    send,
    send_chunks,
    sleep,
    stall,
)

GET_K = rb"get k\r\n"
MiB = 1024 * 1024


def fake_client(fake, **kwargs) -> StringClient:
    kwargs.setdefault("timeout", 0.5)
    kwargs.setdefault("connect_timeout", 0.5)
    return StringClient([fake.address], **kwargs)


def probe_key() -> bytes:
    return b"probe-" + uuid.uuid4().hex.encode()


def assert_in_sync(client, fake, faulted=0, require_new=True, check_closed=True):
    """Requests after a fault get their own (self-identifying) replies; with
    ``require_new`` none of them goes out on connection ``faulted``, and that
    connection was closed by the client."""
    keys = []
    for _ in range(3):
        key = probe_key()
        keys.append(key)
        assert client.get(key) == key
        where = fake.connection_of(b"get " + key + b"\r\n")
        assert where, f"the fake server never saw {key!r}"
        if require_new and faulted is not None:
            assert faulted not in where, f"request after the fault went out on connection {faulted}"
    k1, k2 = probe_key(), probe_key()
    assert client.get_multi([k1, k2]) == {k1: k1, k2: k2}
    assert client.set(probe_key(), b"v") is True
    if require_new and check_closed and faulted is not None:
        assert fake.wait_peer_closed(faulted, 5.0), "the faulted connection was not closed"
        for key in keys:
            assert key not in fake.received(faulted)


# -- the exception types -----------------------------------------------------------------------


def test_exception_hierarchy():
    assert issubclass(cmemcache.Error, Exception)
    for name in (
        "ConnectionError",
        "TimeoutError",
        "ProtocolError",
        "ServerError",
        "ClientError",
        "InvalidKeyError",
        "ValueTooLargeError",
        "InvalidServerError",
    ):
        assert issubclass(getattr(cmemcache, name), cmemcache.Error), name
    assert issubclass(cmemcache.ConnectionError, builtins.ConnectionError)
    assert issubclass(cmemcache.TimeoutError, builtins.TimeoutError)
    assert issubclass(cmemcache.InvalidKeyError, ValueError)
    assert issubclass(cmemcache.ValueTooLargeError, ValueError)
    assert issubclass(cmemcache.InvalidServerError, ValueError)
    assert cmemcache.StringClient is StringClient


# -- refused, held down, DNS, connect timeout ----------------------------------------------------


def test_connection_refused_then_held_down_then_retried(fake_server):
    dead_retry = 1.0
    port = free_port()
    c = StringClient([f"127.0.0.1:{port}"], timeout=0.5, connect_timeout=0.5, dead_retry=dead_retry)
    with pytest.raises(cmemcache.ConnectionError) as info:
        c.get(b"k")
    failed_at = time.monotonic()
    assert isinstance(info.value, builtins.ConnectionError)
    assert isinstance(info.value, cmemcache.Error)

    # Something listens on the port now, but the server is held down: calls
    # fail without connecting.
    fake = fake_server(port=port)
    errors = []
    for call in (
        lambda: c.get(b"k"),
        lambda: c.set(b"k", b"v"),
        lambda: c.get_multi([b"a", b"b"]),
        lambda: c.delete(b"k"),
        lambda: c.incr(b"n"),
    ):
        with pytest.raises(cmemcache.ConnectionError) as info:
            call()
        errors.append(info.value)
    checked_at = time.monotonic()
    if checked_at - failed_at >= dead_retry * 0.9:
        pytest.skip("the machine was too slow to observe the hold-down window")
    assert fake.connection_count == 0
    assert fake.received() == b""

    # After dead_retry the server is tried again.
    time.sleep(max(0.0, failed_at + dead_retry + 0.2 - time.monotonic()))
    assert_in_sync(c, fake, faulted=None)
    assert fake.connection_count >= 1


def test_dead_retry_zero_disables_hold_down(fake_server):
    port = free_port()
    c = StringClient([f"127.0.0.1:{port}"], timeout=0.5, connect_timeout=0.5, dead_retry=0)
    with pytest.raises(cmemcache.ConnectionError):
        c.get(b"k")
    fake = fake_server(port=port)
    key = probe_key()
    assert c.get(key) == key
    assert fake.connection_count == 1


def test_name_resolution_failure():
    c = StringClient(["does-not-exist.invalid:11211"], timeout=1, connect_timeout=2)
    with pytest.raises((cmemcache.ConnectionError, cmemcache.TimeoutError)) as info:
        c.get(b"k")
    assert isinstance(info.value, cmemcache.Error)
    with pytest.raises((cmemcache.ConnectionError, cmemcache.TimeoutError)):
        c.set(b"k", b"v")


def test_connect_timeout(black_hole):
    c = StringClient([f"127.0.0.1:{black_hole.port}"], timeout=5, connect_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(cmemcache.TimeoutError) as info:
        c.get(b"k")
    # a hang detector, not a speed measurement
    assert time.monotonic() - started < 4.5
    assert isinstance(info.value, builtins.TimeoutError)
    # a failed connect holds the server down: the next call fails at once
    with pytest.raises(cmemcache.ConnectionError):
        c.get(b"k")


# -- several servers, one of them down ----------------------------------------------------------------


def keys_for(client, index, n, prefix=b"key"):
    out = []
    for i in range(10_000):
        key = prefix + b"-%d" % i
        if client.server_index(key) == index:
            out.append(key)
            if len(out) == n:
                return out
    raise AssertionError("not enough keys for the server")


def test_multi_key_calls_with_one_server_down(memcached_factory):
    live = memcached_factory()
    dead_addr = f"127.0.0.1:{free_port()}"
    c = StringClient([live.address, dead_addr], timeout=1, connect_timeout=1, dead_retry=30)
    live_keys = keys_for(c, 0, 5)
    dead_keys = keys_for(c, 1, 5)
    for k in live_keys:
        live.raw_set(k, b"v:" + k)

    with pytest.raises(cmemcache.ConnectionError) as info:
        c.get_multi(live_keys + dead_keys)
    assert info.value.partial == {k: b"v:" + k for k in live_keys}

    # the live server keeps working for single keys
    assert c.get(live_keys[0]) == b"v:" + live_keys[0]
    with pytest.raises(cmemcache.ConnectionError):
        c.get(dead_keys[0])

    with pytest.raises(cmemcache.ConnectionError) as info:
        c.set_multi({k: b"new:" + k for k in live_keys + dead_keys})
    assert isinstance(info.value.partial, list)
    assert not set(info.value.partial) & set(live_keys)
    for k in live_keys:
        assert live.raw_get(k) == (b"new:" + k, 0)

    with pytest.raises(cmemcache.ConnectionError) as info:
        c.delete_multi(live_keys + dead_keys)
    # "every key was deleted" cannot be true with a server down; the live
    # server's keys are gone all the same
    assert isinstance(info.value.partial, bool)
    for k in live_keys:
        assert live.raw_get(k) is None

    with pytest.raises(cmemcache.ConnectionError) as info:
        c.gets_multi(live_keys[:1] + dead_keys)
    assert info.value.partial == {}


# -- server restarts (SIGPIPE at its default) ----------------------------------------------------------

RESTART_CHILD = r"""
import json, signal, sys
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
import cmemcache
from cmemcache import StringClient

c = StringClient([sys.argv[1]], timeout=2, connect_timeout=2)
assert c.set(b"a", b"a-start") is True
print("ready", flush=True)

big = b"B" * (512 * 1024)
first_ops = [
    lambda r: c.get(b"a"),
    lambda r: c.set(b"big", big),
    lambda r: c.set_multi({b"m%d" % i: b"x" * 50000 for i in range(20)}, noreply=True),
    lambda r: c.get_multi([b"a", b"b"]),
    lambda r: c.incr(b"n"),
    lambda r: c.delete(b"zz", noreply=True),
]

for r, line in enumerate(sys.stdin):
    if line.strip() != "go":
        break
    failures = []
    def step(name, fn, expected=None, check=True):
        try:
            got = fn()
        except cmemcache.ConnectionError as exc:
            failures.append(name)
            return None
        if check and got != expected:
            raise SystemExit(f"round {r} {name}: expected {expected!r}, got {got!r}")
        return got
    step("first", lambda: first_ops[r % len(first_ops)](r), check=False)
    tag = b"a-%d" % r
    step("set a", lambda: c.set(b"a", tag), True)
    step("get a", lambda: c.get(b"a"), tag)
    step("set b", lambda: c.set(b"b", b"b-%d" % r), True)
    step("get_multi", lambda: c.get_multi([b"a", b"b", b"c"]), {b"a": tag, b"b": b"b-%d" % r})
    step("set big", lambda: c.set(b"big", big), True)
    step("get big", lambda: c.get(b"big"), big)
    step("delete b", lambda: c.delete(b"b"), True)
    step("get b", lambda: c.get(b"b"), None)
    step("version", lambda: c.version()[c.servers[0]][:3], "1.6")
    print(json.dumps({"round": r, "failures": failures}), flush=True)
print("done", flush=True)
"""


def test_server_restart_between_calls_sigpipe_default(memcached_factory, child_process):
    server = memcached_factory()
    child = child_process(RESTART_CHILD, server.address)
    restarts = [server.restart, lambda: (server.kill(), server.start()), server.restart,
                lambda: (server.kill(), server.start()), server.restart, server.restart]
    for result in restart_rounds(child, restarts):
        # at most one call fails, and only the first one after the restart
        assert result["failures"] in ([], ["first"]), result


def test_server_killed_between_calls_in_process(memcached_factory):
    server = memcached_factory()
    with StringClient([server.address], timeout=2, connect_timeout=2) as c:
        assert c.set(b"a", b"1") is True
        server.kill()
        server.start()
        failures = 0
        for i in range(5):
            try:
                assert c.set(b"a", b"v%d" % i) is True
            except cmemcache.ConnectionError:
                failures += 1
                assert i == 0, "only the first call may fail after a restart"
                continue
            assert c.get(b"a") == b"v%d" % i
        assert failures <= 1


# -- stalled real server: timeout, then no cross-talk ----------------------------------------------------


def test_sigstop_timeout_sigcont_no_crosstalk(memcached_factory):
    server = memcached_factory()
    probes = {b"probe-%02d" % i: b"value-%02d-" % i + os.urandom(6).hex().encode() for i in range(50)}
    for k, v in probes.items():
        server.raw_set(k, v)
    keys = list(probes)
    c = StringClient([server.address], timeout=0.3, connect_timeout=2)

    stalled_ops = [
        lambda k: c.get(k),
        lambda k: c.get_multi(keys),
        lambda k: c.gets(k),
        lambda k: c.set(k, probes[k]),
        lambda k: c.touch(k, 0),
        lambda k: c.version(),
    ]
    for cycle in range(20):
        key = keys[cycle % len(keys)]
        assert c.get(key) == probes[key]  # a pooled connection is now in place
        server.pause()
        try:
            with pytest.raises(cmemcache.TimeoutError) as info:
                stalled_ops[cycle % len(stalled_ops)](key)
            assert isinstance(info.value, builtins.TimeoutError)
        finally:
            server.resume()
        # the stalled request is answered now, on the old connection; every
        # later call must still get its own reply
        for j in range(5):
            k = keys[(cycle * 7 + j) % len(keys)]
            assert c.get(k) == probes[k], (cycle, k)
        assert c.get_multi(keys) == probes
        assert c.version()[c.servers[0]].startswith("1.6")
    for k, v in probes.items():
        assert c.get(k) == v


# -- timeouts against the fake server --------------------------------------------------------------------


def test_late_reply_goes_nowhere(fake_server):
    fake = fake_server([expect(GET_K), sleep(1.0), send(echo_reply(b"k") + b"END\r\n")])
    c = fake_client(fake, timeout=0.3)
    with pytest.raises(cmemcache.TimeoutError):
        c.get(b"k")
    assert_in_sync(c, fake)


def test_no_reply_at_all_times_out(fake_server):
    fake = fake_server([expect(GET_K), stall()])
    c = fake_client(fake, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(cmemcache.TimeoutError):
        c.get(b"k")
    assert time.monotonic() - started < 5  # hang detector only
    assert_in_sync(c, fake, check_closed=False)


def test_reply_dripped_within_timeout_succeeds(fake_server):
    reply = echo_reply(b"k") + b"END\r\n"
    fake = fake_server([expect(GET_K), send_chunks(reply, 1, 0.005)])
    c = fake_client(fake, timeout=3)
    assert c.get(b"k") == b"k"
    key = probe_key()
    assert c.get(key) == key


def test_reply_dripped_slower_than_timeout_is_a_timeout(fake_server):
    """Every byte arrives well within the timeout, the whole reply does not:
    the timeout is a deadline for the request, not per read."""
    value = b"v" * 40
    reply = b"VALUE k 0 %d\r\n%s\r\nEND\r\n" % (len(value), value)
    fake = fake_server([expect(GET_K), send_chunks(reply, 1, 0.05)])
    c = fake_client(fake, timeout=0.4)
    started = time.monotonic()
    with pytest.raises(cmemcache.TimeoutError):
        c.get(b"k")
    assert time.monotonic() - started < 3.0  # hang detector: the drip takes 3.4 s
    assert_in_sync(c, fake)


def test_timeout_while_sending_a_large_value(fake_server):
    fake = fake_server([expect(rb"set big "), stall()], rcvbuf=4096)
    c = fake_client(fake, timeout=0.5, max_value_size=16 * MiB)
    with pytest.raises(cmemcache.TimeoutError):
        c.set(b"big", b"x" * 8_000_000)
    assert_in_sync(c, fake, check_closed=False)


def test_error_reply_before_the_value_is_fully_sent(fake_server):
    def script(conn: FakeConnection):
        m = conn.expect(rb"set k 0 0 (\d+)[^\r\n]*\r\n")
        conn.send(b"SERVER_ERROR object too large for cache\r\n")
        conn.read_exact(int(m.group(1)) + 2)
        conn.echo()

    fake = fake_server(script)
    c = fake_client(fake, timeout=3, max_value_size=4 * MiB)
    with pytest.raises(cmemcache.ServerError) as info:
        c.set(b"k", b"x" * (2 * MiB))
    assert "object too large for cache" in str(info.value)
    assert_in_sync(c, fake, require_new=False)


# -- connection closed or reset ------------------------------------------------------------------------------

FULL_REPLY = b"VALUE k 0 5\r\nhello\r\nEND\r\n"


@pytest.mark.parametrize("cut", range(len(FULL_REPLY)))
def test_reply_truncated_by_close(fake_server, cut):
    fake = fake_server([expect(GET_K), send(FULL_REPLY[:cut]), close()])
    c = fake_client(fake)
    with pytest.raises(cmemcache.ConnectionError) as info:
        c.get(b"k")
    assert isinstance(info.value, builtins.ConnectionError)
    assert_in_sync(c, fake)


MULTI_REPLY = b"VALUE a 0 2\r\naa\r\nVALUE b 0 3\r\nbbb\r\nEND\r\n"


@pytest.mark.parametrize("cut", [0, 5, 15, 17, 18, 19, 30, 36, 37, len(MULTI_REPLY) - 1])
def test_multi_reply_truncated_by_close(fake_server, cut):
    fake = fake_server([expect(rb"get a b\r\n"), send(MULTI_REPLY[:cut]), close()])
    c = fake_client(fake)
    with pytest.raises(cmemcache.ConnectionError):
        c.get_multi([b"a", b"b"])
    assert_in_sync(c, fake)


def test_close_mid_value(fake_server):
    fake = fake_server([expect(GET_K), send(b"VALUE k 0 100\r\n" + b"x" * 50), close()])
    c = fake_client(fake)
    with pytest.raises(cmemcache.ConnectionError):
        c.get(b"k")
    assert_in_sync(c, fake)


@pytest.mark.parametrize("partial", [b"", b"VALUE k 0 5\r\nhel"])
def test_reset_mid_reply(fake_server, partial):
    fake = fake_server([expect(GET_K), send(partial), sleep(0.05), reset()])
    c = fake_client(fake)
    with pytest.raises(cmemcache.ConnectionError):
        c.get(b"k")
    assert_in_sync(c, fake)


def test_half_close_without_reply(fake_server):
    def script(conn: FakeConnection):
        conn.expect(GET_K)
        conn.shut_wr()
        conn.hold()

    fake = fake_server(script)
    c = fake_client(fake, timeout=5)
    started = time.monotonic()
    with pytest.raises(cmemcache.ConnectionError):
        c.get(b"k")
    assert time.monotonic() - started < 4  # EOF is reported, not waited out
    assert_in_sync(c, fake)


def test_close_before_a_store_reply(fake_server):
    fake = fake_server([expect(rb"set k 0 0 1\r\nv\r\n"), close()])
    c = fake_client(fake)
    with pytest.raises(cmemcache.ConnectionError):
        c.set(b"k", b"v")
    assert_in_sync(c, fake)


# -- malformed replies ---------------------------------------------------------------------------------------


def assert_reply_refused(fake_server, request, reply, call=lambda c: c.get(b"k"), **client_kwargs):
    """``call``, its ``request`` answered with ``reply``, raises
    ProtocolError, and the client stays in sync."""
    fake = fake_server([expect(request), send(reply)])
    c = fake_client(fake, **client_kwargs)
    with pytest.raises(cmemcache.ProtocolError):
        call(c)
    assert_in_sync(c, fake)


GARBAGE_TO_GET = [
    b"HELLO\r\n",
    b"\r\n",
    b"EnD\r\n",
    b"STORED\r\n",
    b"DELETED\r\n",
    b"VALUEk 0 1\r\nk\r\nEND\r\n",
    b"VALUE\r\n",
    b"VALUE k\r\n",
    b"VALUE k 0\r\n",
    b"42\r\n",
]


@pytest.mark.parametrize("reply", GARBAGE_TO_GET)
def test_garbage_reply_to_get(fake_server, reply):
    assert_reply_refused(fake_server, GET_K, reply)


@pytest.mark.parametrize(
    "reply", [b"HELLO\r\n", b"END\r\n", b"DELETED\r\n", b"VALUE k 0 1\r\nk\r\nEND\r\n", b"1\r\n"]
)
def test_garbage_reply_to_set(fake_server, reply):
    assert_reply_refused(fake_server, rb"set k 0 0 1\r\nv\r\n", reply, lambda c: c.set(b"k", b"v"))


@pytest.mark.parametrize(
    "command, reply",
    [
        ("delete", b"STORED\r\n"),
        ("touch", b"DELETED\r\n"),
        ("incr", b"12a\r\n"),
        ("incr", b"-1\r\n"),
        ("incr", b"+1\r\n"),
        ("incr", b"18446744073709551616\r\n"),
        ("incr", b"\r\n"),
        ("decr", b"STORED\r\n"),
        ("version", b"STORED\r\n"),
        ("cas", b"DELETED\r\n"),
    ],
)
def test_garbage_reply_to_other_commands(fake_server, command, reply):
    pattern = {
        "delete": rb"delete k\r\n",
        "touch": rb"touch k 10\r\n",
        "incr": rb"incr k 1\r\n",
        "decr": rb"decr k 1\r\n",
        "version": rb"version\r\n",
        "cas": rb"cas k 0 0 1 7\r\nv\r\n",
    }[command]
    call = {
        "delete": lambda c: c.delete(b"k"),
        "touch": lambda c: c.touch(b"k", 10),
        "incr": lambda c: c.incr(b"k", 1),
        "decr": lambda c: c.decr(b"k", 1),
        "version": lambda c: c.version(),
        "cas": lambda c: c.cas(b"k", b"v", 7),
    }[command]
    assert_reply_refused(fake_server, pattern, reply, call)


def test_largest_incr_reply_is_accepted(fake_server):
    fake = fake_server([expect(rb"incr k 1\r\n"), send(b"18446744073709551615\r\n")])
    c = fake_client(fake)
    assert c.incr(b"k", 1) == 2**64 - 1


BAD_COUNTS = [
    b"-1",
    b"1a",
    b"+5",
    b"0x10",
    b"",
    b"4294967296",
    b"4294967301",
    b"18446744073709551616",
    b"18446744073709551621",
    b"99999999999999999999999",
    b"2000000000",
]


@pytest.mark.parametrize("count", BAD_COUNTS)
def test_bad_byte_count(fake_server, count):
    assert_reply_refused(fake_server, GET_K, b"VALUE k 0 " + count + b"\r\nkkkkk\r\nEND\r\n")


def test_byte_count_over_max_value_size(fake_server):
    value = b"x" * 1001
    reply = b"VALUE k 0 1001\r\n" + value + b"\r\nEND\r\n"
    assert_reply_refused(fake_server, GET_K, reply, max_value_size=1000)


def test_byte_count_at_max_value_size(fake_server):
    value = b"y" * 1000
    fake = fake_server([expect(GET_K), send(b"VALUE k 0 1000\r\n" + value + b"\r\nEND\r\n")])
    c = fake_client(fake, max_value_size=1000)
    assert c.get(b"k") == value


@pytest.mark.parametrize("flags", [b"-1", b"4294967296", b"abc", b"1.5", b""])
def test_bad_flags_field(fake_server, flags):
    assert_reply_refused(fake_server, GET_K, b"VALUE k " + flags + b" 1\r\nk\r\nEND\r\n",
                         lambda c: c.get(b"k", with_flags=True))


@pytest.mark.parametrize(
    "header", [b"VALUE k 0 1 -1", b"VALUE k 0 1 18446744073709551616", b"VALUE k 0 1", b"VALUE k 0 1 12x"]
)
def test_bad_cas_field(fake_server, header):
    assert_reply_refused(fake_server, rb"gets k\r\n", header + b"\r\nk\r\nEND\r\n",
                         lambda c: c.gets(b"k"))


def test_largest_flags_and_cas_accepted(fake_server):
    fake = fake_server(
        [expect(rb"gets k\r\n"), send(b"VALUE k 4294967295 1 18446744073709551615\r\nk\r\nEND\r\n")]
    )
    c = fake_client(fake)
    assert c.gets(b"k", with_flags=True) == (b"k", 2**32 - 1, 2**64 - 1)


@pytest.mark.parametrize(
    "reply",
    [
        b"VALUE k 0 5\r\nhelloXXEND\r\n",
        b"VALUE k 0 5\r\nhello!\r\nEND\r\n",
        b"VALUE k 0 5\r\nhell\r\n\r\nEND\r\n",
        b"VALUE k 0 5\r\nhello\n\r\nEND\r\n",
        b"VALUE k 0 5\r\nhello\rEND\r\n",
        b"VALUE k 0 100000\r\n" + b"x" * 100000 + b"XYEND\r\n",
        b"VALUE k 0 100000\r\n" + b"x" * 100001 + b"\r\nEND\r\n",
    ],
    ids=["XX", "extra-byte", "short", "lf-cr", "cr-only", "large-XY", "large-extra"],
)
def test_data_terminator_mismatch(fake_server, reply):
    assert_reply_refused(fake_server, GET_K, reply)


@pytest.mark.parametrize(
    "request_keys, pattern, reply",
    [
        ([b"k"], GET_K, b"VALUE x 0 1\r\nx\r\nEND\r\n"),
        ([b"k"], GET_K, b"VALUE K 0 1\r\nx\r\nEND\r\n"),
        ([b"k"], GET_K, b"VALUE k 0 1\r\nx\r\nVALUE k 0 1\r\ny\r\nEND\r\n"),
        ([b"a", b"b"], rb"get a b\r\n", b"VALUE a 0 1\r\nx\r\nVALUE c 0 1\r\ny\r\nEND\r\n"),
        ([b"a", b"b"], rb"get a b\r\n", b"VALUE a 0 1\r\nx\r\nVALUE a 0 1\r\ny\r\nEND\r\n"),
    ],
)
def test_value_for_a_key_not_requested(fake_server, request_keys, pattern, reply):
    if len(request_keys) == 1:
        assert_reply_refused(fake_server, pattern, reply, lambda c: c.get(request_keys[0]))
    else:
        assert_reply_refused(fake_server, pattern, reply, lambda c: c.get_multi(request_keys))


def test_value_without_the_key_prefix_is_not_requested(fake_server):
    assert_reply_refused(fake_server, rb"get p:a\r\n", b"VALUE a 0 1\r\nx\r\nEND\r\n",
                         lambda c: c.get_multi([b"a"], key_prefix=b"p:"))


def test_unusual_but_legal_replies(fake_server):
    key250 = b"k" * 250
    replies = [
        (rb"get k\r\n", b"VALUE k 0 0\r\n\r\nEND\r\n", lambda c: c.get(b"k"), b""),
        (
            rb"get k\r\n",
            b"VALUE k 0 7\r\n\r\nEND\r\n\r\nEND\r\n",
            lambda c: c.get(b"k"),
            b"\r\nEND\r\n",
        ),
        (
            b"get " + key250 + b"\r\n",
            b"VALUE " + key250 + b" 0 1\r\nz\r\nEND\r\n",
            lambda c: c.get(key250),
            b"z",
        ),
        (rb"get k\r\n", b"END\r\n", lambda c: c.get(b"k"), None),
        (rb"get a b\r\n", b"VALUE b 0 1\r\n2\r\nEND\r\n", lambda c: c.get_multi([b"a", b"b"]), {b"b": b"2"}),
    ]
    steps = []
    for pattern, reply, _, _ in replies:
        steps += [expect(pattern), send(reply)]
    fake = fake_server(steps)
    c = fake_client(fake)
    for _, _, call, expected in replies:
        assert call(c) == expected
    assert fake.connection_count == 1


# -- error lines -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply, exc, text",
    [
        (b"SERVER_ERROR out of memory writing get response\r\n", cmemcache.ServerError, "out of memory"),
        (b"SERVER_ERROR out of memory\r\n", cmemcache.ServerError, "out of memory"),
        (b"CLIENT_ERROR bad\r\n", cmemcache.ClientError, "bad"),
        (b"CLIENT_ERROR bad command line format\r\n", cmemcache.ClientError, "bad command line format"),
        (b"ERROR\r\n", cmemcache.ClientError, ""),
        (b"ERROR unknown command\r\n", cmemcache.ClientError, "unknown command"),
    ],
)
def test_error_line_to_get(fake_server, reply, exc, text):
    fake = fake_server([expect(GET_K), send(reply)])
    c = fake_client(fake)
    with pytest.raises(exc) as info:
        c.get(b"k")
    assert text in str(info.value)
    assert_in_sync(c, fake)


@pytest.mark.parametrize(
    "reply, exc, text, require_new",
    [
        (b"SERVER_ERROR out of memory storing object\r\n", cmemcache.ServerError, "out of memory storing object", True),
        # memcached swallows the value and stays in sync: keeping the
        # connection is as good as opening a new one
        (b"SERVER_ERROR object too large for cache\r\n", cmemcache.ServerError, "object too large", False),
        (b"CLIENT_ERROR bad data chunk\r\n", cmemcache.ClientError, "bad data chunk", True),
        (b"ERROR\r\n", cmemcache.ClientError, "", True),
    ],
)
def test_error_line_to_set(fake_server, reply, exc, text, require_new):
    fake = fake_server([expect(rb"set k 0 0 1\r\nv\r\n"), send(reply)])
    c = fake_client(fake)
    with pytest.raises(exc) as info:
        c.set(b"k", b"v")
    assert text in str(info.value)
    assert_in_sync(c, fake, require_new=require_new)


@pytest.mark.parametrize(
    "tail, exc",
    [
        (b"SERVER_ERROR out of memory writing get response\r\n", cmemcache.ServerError),
        (b"CLIENT_ERROR bad command line format\r\n", cmemcache.ClientError),
        (b"ERROR\r\n", cmemcache.ClientError),
    ],
)
def test_error_line_in_the_middle_of_a_multi_get(fake_server, tail, exc):
    """An error line ends the reply: the client must not wait for END (it
    would time out instead)."""
    fake = fake_server([expect(rb"get a b\r\n"), send(b"VALUE a 0 1\r\na\r\n" + tail)])
    c = fake_client(fake, timeout=1)
    with pytest.raises(exc):
        c.get_multi([b"a", b"b"])
    assert_in_sync(c, fake)


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda c: c.delete(b"k"), rb"delete k\r\n"),
        (lambda c: c.incr(b"k", 1), rb"incr k 1\r\n"),
        (lambda c: c.touch(b"k", 5), rb"touch k 5\r\n"),
        (lambda c: c.flush_all(), rb"flush_all[^\r\n]*\r\n"),
        (lambda c: c.version(), rb"version\r\n"),
        (lambda c: c.get_stats(), rb"stats\r\n"),
        (lambda c: c.gat(b"k", 5), rb"gat 5 k\r\n"),
    ],
    ids=["delete", "incr", "touch", "flush_all", "version", "stats", "gat"],
)
def test_server_error_to_each_command(fake_server, call, pattern):
    fake = fake_server([expect(pattern), send(b"SERVER_ERROR out of memory\r\n")])
    c = fake_client(fake)
    with pytest.raises(cmemcache.ServerError) as info:
        call(c)
    assert "out of memory" in str(info.value)
    assert_in_sync(c, fake)


# -- noreply fence ---------------------------------------------------------------------------------------------


def test_stray_error_after_noreply_is_not_the_next_reply(fake_server):
    def script(conn: FakeConnection):
        conn.expect(rb"set a [^\r\n]*noreply\r\n1\r\n")
        conn.send(b"CLIENT_ERROR bad command line format\r\n")
        conn.echo()

    fake = fake_server(script)
    c = fake_client(fake)
    assert c.set(b"a", b"1", noreply=True) is True
    key = probe_key()
    assert c.get(key) == key
    assert_in_sync(c, fake, require_new=False)


def test_noreply_fence_false_sends_no_meta_command(fake_server):
    def script(conn: FakeConnection):
        # a server without the meta protocol
        while True:
            line = conn.read_line()
            if line.startswith(b"set "):
                conn.read_exact(int(line.split()[4]) + 2)
            elif line.startswith(b"get "):
                keys = line[4:-2].split(b" ")
                conn.send(b"".join(echo_reply(k) for k in keys) + b"END\r\n")
            else:
                conn.send(b"ERROR\r\n")

    fake = fake_server(script)
    c = fake_client(fake, noreply_fence=False)
    for i in range(5):
        assert c.set(b"k%d" % i, b"v", noreply=True) is True
    assert c.get(b"p") == b"p"
    assert c.get_multi([b"q", b"r"]) == {b"q": b"q", b"r": b"r"}
    received = fake.received()
    assert b"mn\r\n" not in received
    assert received.count(b"noreply") == 5


# -- more server lifecycle ----------------------------------------------------------------------------------


def test_get_multi_with_one_stalled_server_returns_partial(memcached_factory):
    fast = memcached_factory()
    slow = memcached_factory()
    c = StringClient([fast.address, slow.address], timeout=0.5, connect_timeout=2)
    fast_keys = keys_for(c, 0, 5, prefix=b"fast")
    slow_keys = keys_for(c, 1, 5, prefix=b"slow")
    expected = {k: b"v:" + k for k in fast_keys + slow_keys}
    assert c.set_multi(expected) == []
    assert c.get_multi(list(expected)) == expected  # both connections pooled
    slow.pause()
    try:
        with pytest.raises(cmemcache.TimeoutError) as info:
            c.get_multi(fast_keys + slow_keys)
        assert info.value.partial == {k: b"v:" + k for k in fast_keys}
    finally:
        slow.resume()
    # the stalled server's late reply goes nowhere
    assert c.get_multi(fast_keys + slow_keys) == expected
    for k in slow_keys:
        assert c.get(k) == b"v:" + k


def test_idle_connection_closed_by_the_server(memcached_factory):
    """memcached drops idle connections (-o idle_timeout): the client finds
    out, and an incr is never applied twice."""
    server = memcached_factory(["-o", "idle_timeout=1"])
    c = StringClient([server.address], timeout=2, connect_timeout=2)
    assert c.set(b"n", b"5") is True
    assert c.get(b"n") == b"5"
    total = int(server.stats()["total_connections"])
    # bounded wait until the server has closed our idle connection
    assert wait_until(lambda: int(server.stats()["curr_connections"]) == 1, timeout=10, interval=0.2)
    assert int(server.stats()["total_connections"]) > total - 1
    try:
        result = c.incr(b"n", 1)
    except cmemcache.ConnectionError:
        result = None
    if result is None:
        assert c.get(b"n") == b"5"
    else:
        assert result == 6
        assert c.get(b"n") == b"6"
    assert c.set(b"after", b"a") is True
    assert c.get(b"after") == b"a"


def test_unix_socket_server_gone(memcached_factory, tmp_socket_dir):
    path = os.path.join(tmp_socket_dir, "mc.sock")
    server = memcached_factory(unix_path=path)
    c = StringClient([f"unix:{path}"], timeout=1, connect_timeout=1, dead_retry=0)
    assert c.set(b"k", b"v") is True
    server.stop()
    if os.path.exists(path):
        os.unlink(path)
    with pytest.raises(cmemcache.ConnectionError):
        c.get(b"k")
    with pytest.raises(cmemcache.ConnectionError):
        c.get(b"k")
    server.start()
    assert c.set(b"k", b"back") is True
    assert c.get(b"k") == b"back"


def test_server_killed_mid_reply_sequence(memcached_factory):
    """SIGKILL while requests are in flight on several connections: every
    call either fails with ConnectionError or returns its own value."""
    server = memcached_factory()
    c = StringClient([server.address], timeout=2, connect_timeout=2, dead_retry=0)
    values = {b"k%d" % i: b"v%d-" % i + os.urandom(4).hex().encode() for i in range(30)}
    for round_ in range(3):
        assert c.set_multi(values) == []
        server.kill()
        server.start()
        for k in values:
            server.raw_set(k, values[k])
        failures = 0
        for k, v in values.items():
            try:
                got = c.get(k)
            except cmemcache.ConnectionError:
                failures += 1
                continue
            assert got == v
        assert failures <= 1, (round_, failures)
        assert c.get_multi(list(values)) == values
