"""Fault injection at the depth of the reliability plan (§4.11), for the cases
that test_errors.py and test_concurrency.py do not reach:

* SIGSTOP -> timeout -> SIGCONT at random delays (and racing the deadline),
  each cycle followed by the full 50-key sync probe;
* a signal handler raising on random timer ticks during thousands of mixed
  get/set/get_multi/set_multi calls;
* KeyboardInterrupt at random points of a request against a server that
  drips its replies (subprocess, ~100 rounds);
* a server killed or restarted while a large value is being written, with
  SIGPIPE at its default (subprocess), and the compat ``Client`` across
  restarts;
* multi-key calls after a restart, with several idle pooled connections to
  the old server process;
* a timeout in the middle of a large write: the bytes the server got are a
  strict prefix of the request, nothing is appended after the partial data
  block, and the next request uses a new connection;
* error lines in the middle of multi-gets (trailing bytes, two servers,
  ``gets_multi``, compat ``Client``);
* error lines answering noreply commands before the ``mn`` fence, and the
  connection kept once the fence reply has arrived;
* bytes that arrive after a complete reply are never read as the reply to
  the next request;
* fork with live pooled connections, checked connection by connection on
  the fake server.

Values are self-describing everywhere (a value names its key), so a reply
read by the wrong request fails an assertion on the value itself.
"""

from __future__ import annotations

import builtins
import json
import os
import random
import signal
import threading
import time
import uuid

import cmemcache
import pytest
from cmemcache import Client, StringClient
from conftest import restart_rounds, run_python
from fakeserver import FakeConnection, echo_reply

MiB = 1024 * 1024


def probe_key() -> bytes:
    return b"probe-" + uuid.uuid4().hex.encode()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- the 50-key probe against real memcached ------------------------------------------------------


def store_probes(server, n: int = 50) -> dict[bytes, bytes]:
    """n keys with distinct values, stored on an independent connection."""
    probes = {
        b"probe-%02d" % i: b"value-%02d-" % i + os.urandom(8).hex().encode() for i in range(n)
    }
    for k, v in probes.items():
        server.raw_set(k, v)
    return probes


def check_probes(c, probes: dict[bytes, bytes], where: str = "") -> None:
    """Every get and one get_multi of all probe keys return their own values."""
    for k, v in probes.items():
        got = c.get(k)
        assert got == v, f"{where}: get({k!r}) returned {got!r}, expected {v!r}"
    got = c.get_multi(list(probes))
    assert got == probes, f"{where}: get_multi returned {got!r}"


# -- 1. SIGSTOP -> timeout -> SIGCONT ---------------------------------------------------------------


def stalled_calls(c, probes):
    """(name, call(key), check(result)) for calls made while the server is
    stopped; check() judges a call that completed after all (race mode)."""
    keys = list(probes)
    subset = keys[:10]

    def is_version(r):
        return next(iter(r.values())).startswith("1.6")

    return [
        ("get", lambda k: c.get(k), lambda k, r: r == probes[k]),
        ("get_multi", lambda k: c.get_multi(keys), lambda k, r: r == probes),
        ("gets", lambda k: c.gets(k), lambda k, r: r[0] == probes[k] and isinstance(r[1], int)),
        ("set", lambda k: c.set(k, probes[k]), lambda k, r: r is True),
        (
            "set_multi",
            lambda k: c.set_multi({s: probes[s] for s in subset}),
            lambda k, r: r == [],
        ),
        ("touch", lambda k: c.touch(k, 0), lambda k, r: r is True),
        ("delete", lambda k: c.delete(b"never-stored"), lambda k, r: r is False),
        ("incr", lambda k: c.incr(b"never-stored-counter"), lambda k, r: r is None),
        ("version", lambda k: c.version(), lambda k, r: is_version(r)),
        ("get_stats", lambda k: c.get_stats(), lambda k, r: len(r) == 1 and "pid" in r[0][1]),
    ]


@pytest.mark.hang_timeout(180)
def test_sigstop_timeout_then_sigcont_at_random_delays(memcached_factory):
    """50 cycles: a pooled connection, SIGSTOP, a call that times out, SIGCONT
    0-50 ms later (the server then answers the abandoned request on the old
    connection), then the full probe on the same client."""
    server = memcached_factory()
    probes = store_probes(server)
    keys = list(probes)
    rnd = random.Random(0x5EED)
    timeout = 0.2
    c = StringClient([server.address], timeout=timeout, connect_timeout=2)
    calls = stalled_calls(c, probes)
    check_probes(c, probes, "before")
    before = int(server.stats()["total_connections"])
    timeouts = 0
    for cycle in range(50):
        key = keys[rnd.randrange(len(keys))]
        name, call, _ = calls[cycle % len(calls)]
        assert c.get(key) == probes[key]  # a pooled connection is in place
        server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(cmemcache.TimeoutError) as info:
                call(key)
            elapsed = time.monotonic() - started
            assert isinstance(info.value, builtins.TimeoutError)
            assert elapsed < 5, (cycle, name, elapsed)  # hang guard only
            timeouts += 1
            time.sleep(rnd.uniform(0.0, 0.05))
        finally:
            server.resume()
        check_probes(c, probes, f"cycle {cycle} ({name})")
        assert c.version()[c.servers[0]].startswith("1.6")
    # every timeout closed its connection: the server saw a new one each time
    # (the two stats() calls open one connection each)
    after = int(server.stats()["total_connections"])
    assert after - before - 1 >= timeouts, (before, after, timeouts)


@pytest.mark.hang_timeout(180)
def test_sigcont_racing_the_deadline(memcached_factory):
    """SIGCONT lands just before or just after the deadline: each call either
    completes with its own correct result or raises TimeoutError, and the
    probe passes after every cycle."""
    server = memcached_factory()
    probes = store_probes(server)
    keys = list(probes)
    rnd = random.Random(0xC0117)
    timeout = 0.2
    c = StringClient([server.address], timeout=timeout, connect_timeout=2)
    calls = stalled_calls(c, probes)
    outcomes = {"completed": 0, "timeout": 0}
    for cycle in range(40):
        key = keys[rnd.randrange(len(keys))]
        name, call, check = calls[cycle % len(calls)]
        assert c.get(key) == probes[key]
        server.pause()
        timer = threading.Timer(timeout * rnd.uniform(0.6, 1.3), server.resume)
        timer.start()
        try:
            try:
                result = call(key)
            except cmemcache.TimeoutError:
                outcomes["timeout"] += 1
            else:
                outcomes["completed"] += 1
                assert check(key, result), (cycle, name, key, result)
        finally:
            timer.join(5)
            server.resume()
        check_probes(c, probes, f"cycle {cycle} ({name})")
    assert sum(outcomes.values()) == 40


@pytest.mark.hang_timeout(120)
def test_sigstop_timeout_sigcont_compat_client(memcached_factory):
    """The python-memcached compatible Client: a stalled call returns the
    neutral value, and later calls return their own values."""
    server = memcached_factory()
    probes = store_probes(server)
    keys = list(probes)
    rnd = random.Random(7)
    c = Client([server.address], socket_timeout=0.2, dead_retry=0)
    neutral_calls = [
        ("get", lambda k: c.get(k), None),
        ("get_multi", lambda k: c.get_multi(keys), {}),
        ("set", lambda k: c.set(k, probes[k]), 0),
        ("delete", lambda k: c.delete(k + b"-absent"), 0),
        ("incr", lambda k: c.incr(b"absent-counter"), None),
    ]
    for cycle in range(15):
        key = keys[rnd.randrange(len(keys))]
        name, call, neutral = neutral_calls[cycle % len(neutral_calls)]
        assert c.get(key) == probes[key]
        server.pause()
        try:
            assert call(key) == neutral, (cycle, name)
            time.sleep(rnd.uniform(0.0, 0.05))
        finally:
            server.resume()
        check_probes(c, probes, f"cycle {cycle} ({name})")
    assert c.error_counts["TimeoutError"] == 15


# -- 2. a signal handler that raises on random timer ticks -------------------------------------------


class SoftTimeLimit(Exception):
    """What Celery's soft time limit raises from a signal handler."""


def _mixed_ops_under_raising_ticks(c, n_ops: int, seed: int, *, wide: bool):
    """Runs n_ops mixed calls while SIGALRM ticks every 300 us and its handler
    raises SoftTimeLimit on ~15 % of the ticks that land inside a call.
    Returns (completed, interrupted, crossed, ticks)."""
    keys = [b"async-%03d" % i for i in range(40)]
    written: dict[bytes, set[bytes]] = {k: {k + b":init"} for k in keys}
    for k in keys:
        assert c.set(k, k + b":init") is True
    rnd = random.Random(seed)
    tick_rnd = random.Random(seed + 1)
    state = {"armed": False, "raised": 0, "ticks": 0}

    def handler(signum, frame):
        state["ticks"] += 1
        if state["armed"] and tick_rnd.random() < 0.15:
            state["armed"] = False  # at most one exception per call
            state["raised"] += 1
            raise SoftTimeLimit()

    def value_for(key: bytes, i: int) -> bytes:
        # mostly small; sometimes big enough to need several send/recv calls
        size = rnd.choice([0, 0, 0, 10, 100, 2000, 70_000, 300_000]) if wide else rnd.choice([0, 10, 100])
        return b"%s:%d:" % (key, i) + b"p" * size

    def belongs(key, value):
        return value in written[key]

    crossed: list = []
    completed = interrupted = 0
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.0003, 0.0003)
    try:
        for i in range(n_ops):
            kind = i % 4
            key = keys[rnd.randrange(len(keys))]
            sample = rnd.sample(keys, 6)
            if kind == 0:
                value = value_for(key, i)
                written[key].add(value)
            elif kind == 3:
                mapping = {k: value_for(k, i) for k in sample}
                for k, v in mapping.items():
                    written[k].add(v)
            result = None
            try:
                try:
                    state["armed"] = True
                    if kind == 0:
                        result = c.set(key, value)
                    elif kind == 1:
                        result = c.get(key)
                    elif kind == 2:
                        result = c.get_multi(sample)
                    else:
                        result = c.set_multi(mapping)
                finally:
                    state["armed"] = False
            except SoftTimeLimit:
                interrupted += 1
                continue
            completed += 1
            if kind == 0 and result is not True:
                crossed.append((i, "set", key, result))
            elif kind == 1 and not belongs(key, result):
                crossed.append((i, "get", key, result[:60] if result else result))
            elif kind == 2 and (
                set(result) != set(sample) or not all(belongs(k, v) for k, v in result.items())
            ):
                crossed.append((i, "get_multi", sample, {k: v[:40] for k, v in result.items()}))
            elif kind == 3 and result != []:
                crossed.append((i, "set_multi", result))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    # in sync afterwards: every key holds one of its own values
    for k in keys:
        got = c.get(k)
        if not belongs(k, got):
            crossed.append(("after", k, got[:60] if got else got))
    got = c.get_multi(keys)
    if set(got) != set(keys) or not all(belongs(k, v) for k, v in got.items()):
        crossed.append(("after", "get_multi"))
    return completed, interrupted, crossed, state["ticks"]


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
@pytest.mark.hang_timeout(120)
def test_raising_signal_handler_during_mixed_calls(memcached_factory):
    server = memcached_factory()
    c = StringClient([server.address], timeout=5, connect_timeout=5, pool_size=4)
    fds_before = open_fds()
    completed, interrupted, crossed, ticks = _mixed_ops_under_raising_ticks(c, 5000, 1, wide=True)
    assert crossed == []
    assert completed + interrupted == 5000
    assert interrupted >= 20, (interrupted, ticks)  # the fault really was injected
    assert completed >= 1000
    # connections abandoned by an exception were closed, not leaked
    assert open_fds() - fds_before <= 4
    c.close()


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
@pytest.mark.hang_timeout(120)
def test_raising_signal_handler_during_mixed_calls_compat_client(memcached_factory):
    server = memcached_factory()
    c = Client([server.address], socket_timeout=5, pool_size=4)
    completed, interrupted, crossed, ticks = _mixed_ops_under_raising_ticks(c, 3000, 2, wide=True)
    assert crossed == []
    assert completed + interrupted == 3000
    assert interrupted >= 10, (interrupted, ticks)
    assert sum(c.error_counts.values()) == 0, c.error_counts


# -- 3. KeyboardInterrupt at random points, server dripping its replies ---------------------------


def drip_value(key: bytes) -> bytes:
    """The value the dripping server holds for any key (self-describing)."""
    unit = key + b"|"
    return (unit * (1 + 120 // len(unit)))[:120]


class DripServer:
    """Script for FakeServer(every=True): answers like memcached, but drips
    every reply in small pieces (1-12 bytes, 1 ms apart) and reads large data
    blocks slowly, so an interrupt can land anywhere in a request.  Keys
    starting with ``probe-`` are answered at once.  Anything that is not a
    well-formed request (such as a command appended to a partial data
    block) is recorded in ``violations``."""

    def __init__(self):
        self.violations: list = []
        self.stores: list = []
        self._lock = threading.Lock()

    def _violation(self, conn, what):
        with self._lock:
            self.violations.append((conn.index, what))

    @staticmethod
    def _drip(conn: FakeConnection, data: bytes, rnd: random.Random) -> None:
        i = 0
        while i < len(data):
            n = rnd.randint(1, 12)
            conn.send(data[i : i + n])
            i += n
            conn.sleep(0.001)

    def __call__(self, conn: FakeConnection) -> None:
        rnd = random.Random(conn.index)
        while True:
            line = conn.read_line(timeout=60)
            if not line.endswith(b"\r\n"):
                self._violation(conn, line[:80])
                return
            parts = line[:-2].split(b" ")
            cmd, args = parts[0], parts[1:]
            if cmd == b"get" and args:
                reply = b"".join(
                    b"VALUE %s 0 %d\r\n%s\r\n" % (k, len(drip_value(k)), drip_value(k)) for k in args
                ) + b"END\r\n"
                if all(k.startswith(b"probe-") for k in args):
                    conn.send(reply)
                else:
                    self._drip(conn, reply, rnd)
            elif cmd == b"set" and len(args) in (4, 5):
                try:
                    n = int(args[3])
                except ValueError:
                    self._violation(conn, line[:80])
                    return
                got = 0
                chunks = []
                while got < n + 2:  # slowly, in 16 KiB pieces
                    piece = conn.read_exact(min(16384, n + 2 - got), timeout=60)
                    chunks.append(piece)
                    got += len(piece)
                    if n > 65536:
                        conn.sleep(0.001)
                data = b"".join(chunks)
                # values are b"<key>=" + filler: a shifted block shows here
                if data[-2:] != b"\r\n" or not data.startswith(args[0] + b"="):
                    self._violation(conn, (line[:80], data[:40], data[-40:]))
                    return
                with self._lock:
                    self.stores.append(args[0])
                if len(args) == 4:
                    self._drip(conn, b"STORED\r\n", rnd)
            elif cmd == b"mn" and not args:
                conn.send(b"MN\r\n")
            elif cmd == b"version" and not args:
                conn.send(b"VERSION 1.6.18-drip\r\n")
            else:
                self._violation(conn, line[:80])
                return


INTERRUPT_CHILD = r"""
import json, random, signal, sys, threading, time
import cmemcache

addr, kind, rounds, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(seed)

def drip_value(key):
    unit = key + b"|"
    return (unit * (1 + 120 // len(unit)))[:120]

if kind == "string":
    c = cmemcache.StringClient([addr], timeout=10, connect_timeout=10, max_value_size=4 << 20)
else:
    c = cmemcache.Client([addr], socket_timeout=10, dead_retry=0, strict=True)

main = threading.main_thread().ident
state = {"armed": False, "late": 0}

def on_sigint(signum, frame):
    if state["armed"]:
        state["armed"] = False
        raise KeyboardInterrupt
    state["late"] += 1

signal.signal(signal.SIGINT, on_sigint)

def op_get(r):
    k = b"g-%d" % r
    return c.get(k), drip_value(k)

def op_get_multi(r):
    ks = [b"m-%d-%d" % (r, i) for i in range(4)]
    return c.get_multi(ks), {k: drip_value(k) for k in ks}

def op_set_small(r):
    k = b"s-%d" % r
    return c.set(k, k + b"=" + b"s" * 100), True

def op_set_large(r):
    k = b"l-%d" % r
    return c.set(k, k + b"=" + b"L" * (512 * 1024)), True

def op_set_multi(r):
    m = {b"sm-%d-%d" % (r, i): b"sm-%d-%d=" % (r, i) + b"M" * 65536 for i in range(3)}
    return c.set_multi(m), []

ops = [op_get, op_get_multi, op_set_small, op_set_large, op_set_multi]
bad = []
interrupted = completed = 0
by_op = {}
for r in range(rounds):
    op = ops[r % len(ops)]
    delay = rnd.uniform(0.0, 0.12)
    timer = threading.Timer(delay, signal.pthread_kill, (main, signal.SIGINT))
    outcome = None
    try:
        try:
            state["armed"] = True
            timer.start()
            outcome = op(r)
        finally:
            state["armed"] = False
    except KeyboardInterrupt:
        interrupted += 1
        by_op[op.__name__] = by_op.get(op.__name__, 0) + 1
    except Exception as exc:
        bad.append((r, op.__name__, "raised " + repr(exc)))
        completed += 1
    timer.cancel()
    timer.join()
    if outcome is not None:
        completed += 1
        got, want = outcome
        if got != want:
            bad.append((r, op.__name__, repr(got)[:120]))
    # the probe, on the same client object
    try:
        p = b"probe-%d-a" % r
        got = c.get(p)
        if got != drip_value(p):
            bad.append((r, "probe get", repr(got)[:120]))
        ps = [b"probe-%d-%d" % (r, i) for i in range(3)]
        got = c.get_multi(ps)
        if got != {k: drip_value(k) for k in ps}:
            bad.append((r, "probe get_multi", repr(got)[:200]))
    except Exception as exc:
        bad.append((r, "probe raised", repr(exc)))
print(json.dumps({"bad": bad[:20], "interrupted": interrupted, "completed": completed,
                  "late": state["late"], "by_op": by_op}), flush=True)
"""


@pytest.mark.parametrize("kind", ["string", "client"])
@pytest.mark.hang_timeout(240)
def test_keyboard_interrupt_at_random_points(fake_server, kind):
    drip = DripServer()
    fake = fake_server(drip, every=True)
    rounds = 100
    proc = run_python(INTERRUPT_CHILD, fake.address, kind, str(rounds), "4242", timeout=200)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["bad"] == [], result
    assert result["interrupted"] + result["completed"] == rounds, result
    # the interrupts really landed inside requests, in several kinds of them
    assert result["interrupted"] >= 25, result
    assert len(result["by_op"]) >= 3, result
    # the server never saw a command inside a data block or a torn request
    assert drip.violations == [], drip.violations[:5]
    assert all(conn.error is None for conn in fake.connections)


# -- 4. restart with SIGPIPE at its default ----------------------------------------------------------

RESTART_COMPAT_CHILD = r"""
import json, signal, sys
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
import cmemcache

c = cmemcache.Client([sys.argv[1]], socket_timeout=2, dead_retry=0)
assert c.set("a", "start") is True
print("ready", flush=True)

big = "B" * (600 * 1024)
first_ops = [
    lambda: c.get("a"),
    lambda: c.set("big", big),
    lambda: c.set_multi({"m%d" % i: "x" * 50000 for i in range(10)}),
    lambda: c.get_multi(["a", "b"]),
    lambda: c.incr("n"),
    lambda: c.delete("zz"),
    lambda: c.set("a", "noreply", noreply=True),
]
for r, line in enumerate(sys.stdin):
    if line.strip() != "go":
        break
    wrong = []
    def step(name, fn, expected):
        got = fn()
        if got != expected:
            wrong.append([name, repr(got)[:80]])
    first_ops[r % len(first_ops)]()
    tag = "a-%d" % r
    step("set a", lambda: c.set("a", tag), True)
    step("get a", lambda: c.get("a"), tag)
    step("set b", lambda: c.set("b", r), True)
    step("get_multi", lambda: c.get_multi(["a", "b", "c"]), {"a": tag, "b": r})
    step("set big", lambda: c.set("big", big), True)
    step("get big", lambda: c.get("big"), big)
    step("incr", lambda: c.incr("b", 10), r + 10)
    step("delete b", lambda: c.delete("b"), 1)
    step("get b", lambda: c.get("b"), None)
    print(json.dumps({"round": r, "wrong": wrong, "errors": dict(c.error_counts)}), flush=True)
print("done", flush=True)
"""


@pytest.mark.hang_timeout(120)
def test_restart_between_calls_compat_client_sigpipe_default(memcached_factory, child_process):
    """The compat Client across memcached restarts (SIGTERM and SIGKILL),
    with SIGPIPE at its default: the process lives, the first call after a
    restart may return its neutral value, every later one is correct."""
    server = memcached_factory(["-I", "2m"])
    child = child_process(RESTART_COMPAT_CHILD, server.address)
    restarts = [server.restart, lambda: (server.kill(), server.start())] * 4
    for result in restart_rounds(child, restarts):
        assert result["wrong"] == [], result


WRITER_CHILD = r"""
import json, signal, sys, threading
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
import cmemcache

addr, kind, max_iterations = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "string":
    c = cmemcache.StringClient([addr], timeout=2, connect_timeout=2, dead_retry=0,
                               max_value_size=8 << 20)
else:
    c = cmemcache.Client([addr], socket_timeout=2, dead_retry=0,
                         server_max_value_length=8 << 20)

stop, final = threading.Event(), threading.Event()
def control():
    for line in sys.stdin:
        {"stop": stop, "final": final}.get(line.strip(), threading.Event()).set()
    stop.set(); final.set()
threading.Thread(target=control, daemon=True).start()

def value(i):
    head = b"big=%d:" % i
    return head + b"W" * (2 * 1024 * 1024 - len(head))

written = set()
failures = {"set": 0, "get": 0, "set_multi": 0}
wrong = []
print("writing", flush=True)
i = 0
while i < max_iterations and not stop.is_set():
    v = value(i)
    written.add(v)
    try:
        if i % 5 == 4:
            r = c.set_multi({b"big": v, b"big2": b"big2=" + v[4:]})
            if r != []:
                failures["set_multi"] += 1
        else:
            r = c.set(b"big", v)
            if r is not True:
                failures["set"] += 1
    except cmemcache.Error:
        failures["set"] += 1
    try:
        got = c.get(b"big")
    except cmemcache.Error:
        failures["get"] += 1
        got = None
    if got is not None and got not in written:
        wrong.append((i, got[:20].decode(), len(got)))
    i += 1
print(json.dumps({"iterations": i, "failures": failures, "wrong": wrong[:10]}), flush=True)
final.wait(60)
# the server is up again: exact round trips on the same client
v = value(10**6)
ok = c.set(b"big", v) is True and c.get(b"big") == v
ok = ok and c.get_multi([b"big"]) == {b"big": v}
print(json.dumps({"final": ok}), flush=True)
"""


@pytest.mark.parametrize("kind", ["string", "client"])
@pytest.mark.hang_timeout(180)
def test_server_killed_while_writing_large_values_sigpipe_default(memcached_factory, child_process, kind):
    """SIGKILL/SIGTERM memcached while the client streams 2 MiB values (the
    write then fails with EPIPE/ECONNRESET): no SIGPIPE death, no value read
    under the wrong key, and the client works once the server is back."""
    server = memcached_factory(["-I", "4m"], memory_mb=128)
    child = child_process(WRITER_CHILD, server.address, kind, "3000")
    assert child.read_line() == "writing"
    rnd = random.Random(99)
    time.sleep(0.2)
    for n in range(4):
        time.sleep(rnd.uniform(0.1, 0.4))
        if n % 2 == 0:
            server.kill()
        else:
            server.stop()
        time.sleep(rnd.uniform(0.0, 0.1))
        server.start()
    time.sleep(0.3)
    child.send("stop")
    result = child.read_json(timeout=60)
    child.send("final")
    final = child.read_json(timeout=60)
    rc = child.finish()
    assert rc == 0, f"child exited with {rc} (SIGPIPE is {-signal.SIGPIPE}); stderr: {child.stderr}"
    assert result["wrong"] == [], result
    assert result["iterations"] >= 20, result
    # the kills interrupted some calls (else the test tested nothing)
    assert sum(result["failures"].values()) >= 1, result
    assert final == {"final": True}


def _fill_pool(server, c, n: int) -> None:
    """Leaves n idle connections in c's pool: n threads call get() at once
    while the server is stopped, so each opens its own connection."""
    server.pause()
    threads = [threading.Thread(target=c.get, args=(b"fill",), daemon=True) for _ in range(n)]
    try:
        for th in threads:
            th.start()
        time.sleep(0.2)
    finally:
        server.resume()
    for th in threads:
        th.join(10)


MULTI_CALLS = {
    "get_multi": (lambda c: c.get_multi([b"a", b"b"]), {b"a": b"1", b"b": b"2"}),
    "gets_multi": (lambda c: {k: v[0] for k, v in c.gets_multi([b"a", b"b"]).items()}, {b"a": b"1", b"b": b"2"}),
    "set_multi": (lambda c: c.set_multi({b"a": b"1", b"b": b"2"}), []),
    "delete_multi": (lambda c: c.delete_multi([b"a", b"b"]), True),
}


@pytest.mark.parametrize("name", list(MULTI_CALLS))
def test_multi_key_calls_after_a_restart_with_idle_pooled_connections(memcached_factory, name):
    """Four idle pooled connections, then memcached restarts.  Well after it
    is back, every call must succeed: the idle connections are closed by the
    server (EOF is readable on them), nothing was sent on them, so a stale
    one can be replaced before sending (reliability.md R2), as single-key
    calls already do."""
    call, expected = MULTI_CALLS[name]
    server = memcached_factory()
    c = StringClient([server.address], timeout=1, connect_timeout=1, dead_retry=0)
    before = int(server.stats()["total_connections"])
    _fill_pool(server, c, 4)
    assert int(server.stats()["total_connections"]) - before >= 4
    server.restart()
    time.sleep(0.2)  # the FIN of every old connection has arrived
    outcomes = []
    for _ in range(5):
        server.raw_set(b"a", b"1")
        server.raw_set(b"b", b"2")
        try:
            outcomes.append(call(c))
        except cmemcache.Error as exc:
            outcomes.append(f"{type(exc).__name__}: {exc}")
    assert outcomes == [expected] * 5


def test_compat_get_multi_after_a_restart_with_idle_pooled_connections(memcached_factory):
    server = memcached_factory()
    c = Client([server.address], socket_timeout=1, dead_retry=0)
    _fill_pool(server, c, 4)
    server.restart()
    time.sleep(0.2)
    server.raw_set(b"a", b"1")
    got = [c.get_multi(["a"]) for _ in range(5)]
    assert got == [{"a": b"1"}] * 5, (got, dict(c.error_counts))


# -- 5. timeout in the middle of a large write ----------------------------------------------------


def stop_reading_then_record(pause: float):
    """Script: read the first request line, stop reading for ``pause`` s (the
    client times out meanwhile), then read and record everything until the
    client's FIN, never answering."""

    def script(conn: FakeConnection):
        conn.expect(rb"^(set|cas|append|add) ")
        conn.sleep(pause)
        conn.hold()

    return script


def big_value(tag: bytes, size: int) -> bytes:
    """A value whose every 16-byte block names its offset: any shift or cut
    shows up in a byte-for-byte comparison."""
    blocks = (b"%s%012d|" % (tag[:3].ljust(3, b"_"), i * 16) for i in range(size // 16))
    return b"".join(blocks)


LARGE_WRITES = {
    "set": (
        lambda c, v: c.set(b"big", v),
        lambda v: b"set big 0 0 %d\r\n" % len(v) + v + b"\r\n",
    ),
    "set-noreply": (
        lambda c, v: c.set(b"big", v, noreply=True),
        lambda v: b"set big 0 0 %d noreply\r\n" % len(v) + v + b"\r\nmn\r\n",
    ),
    "cas": (
        lambda c, v: c.cas(b"big", v, 77),
        lambda v: b"cas big 0 0 %d 77\r\n" % len(v) + v + b"\r\n",
    ),
    "append": (
        lambda c, v: c.append(b"big", v),
        lambda v: b"append big 0 0 %d\r\n" % len(v) + v + b"\r\n",
    ),
    "set_multi": (
        lambda c, v: c.set_multi({b"b1": v[: len(v) // 2], b"b2": v[len(v) // 2 :]}),
        lambda v: b"set b1 0 0 %d\r\n%s\r\nset b2 0 0 %d\r\n%s\r\n"
        % (len(v) // 2, v[: len(v) // 2], len(v) - len(v) // 2, v[len(v) // 2 :]),
    ),
}


@pytest.mark.parametrize("command", list(LARGE_WRITES))
@pytest.mark.hang_timeout(60)
def test_timeout_mid_write_appends_nothing_after_the_partial_block(fake_server, command):
    call, wire = LARGE_WRITES[command]
    value = big_value(command.encode(), 8 * MiB)
    fake = fake_server(stop_reading_then_record(2.5), rcvbuf=4096)
    c = StringClient([fake.address], timeout=1.0, connect_timeout=2, max_value_size=16 * MiB)
    started = time.monotonic()
    with pytest.raises(cmemcache.TimeoutError):
        call(c, value)
    assert time.monotonic() - started < 5  # hang guard only: the server stalls for 2.5 s
    # the next request goes out on a new connection and gets its own reply
    key = probe_key()
    assert c.get(key) == key
    assert fake.connection_of(b"get " + key + b"\r\n") == [1]
    assert c.get_multi([b"x1", b"x2"]) == {b"x1": b"x1", b"x2": b"x2"}
    # the first connection was closed by the client; once the server has read
    # everything it was sent, that is a strict prefix of the one request
    assert fake.wait_peer_closed(0, 10), "the timed-out connection was not closed"
    assert fake.connections[0].finished.wait(10)
    got = fake.received(0)
    expected = wire(value)
    assert len(got) < len(expected), "the whole request went out although the server stopped reading"
    assert got == expected[: len(got)], _first_difference(got, expected)


def _first_difference(got: bytes, expected: bytes) -> str:
    for i, (a, b) in enumerate(zip(got, expected)):
        if a != b:
            return f"bytes differ at {i}: got {got[i:i+40]!r}, expected {expected[i:i+40]!r}"
    return f"lengths {len(got)} / {len(expected)}"


def test_timeout_mid_write_compat_client(fake_server):
    value = big_value(b"cpt", 8 * MiB)
    fake = fake_server(stop_reading_then_record(2.5), rcvbuf=4096)
    c = Client([fake.address], socket_timeout=1.0, server_max_value_length=16 * MiB)
    assert c.set("big", value) == 0
    assert c.error_counts["TimeoutError"] == 1
    assert c.get("p1") == b"p1"
    assert fake.connection_of(b"get p1\r\n") == [1]
    assert fake.wait_peer_closed(0, 10)
    assert fake.connections[0].finished.wait(10)
    got = fake.received(0)
    expected = b"set big 0 0 %d\r\n" % len(value) + value + b"\r\n"
    assert len(got) < len(expected)
    assert got == expected[: len(got)], _first_difference(got, expected)


# -- 6. error lines in the middle of multi-gets ----------------------------------------------------

OOM_MID = b"VALUE a 0 1\r\n1\r\nSERVER_ERROR out of memory writing get response\r\n"


def _scripted(steps_fn):
    def script(conn: FakeConnection):
        steps_fn(conn)
        conn.echo()

    return script


@pytest.mark.parametrize(
    "trailer",
    [b"", b"END\r\n", b"VALUE b 0 1\r\nb\r\nEND\r\n", b"VALUE p 0 1\r\nX\r\nEND\r\n"],
    ids=["nothing", "END", "more-values", "value-for-a-later-key"],
)
def test_error_line_mid_multi_get_returns_at_once(fake_server, trailer):
    """The error line ends the reply: the call raises at once (not after the
    5 s timeout), and whatever the server sends after it never reaches a
    later request."""

    def steps(conn):
        conn.expect(rb"get a b\r\n")
        conn.send(OOM_MID)
        if trailer:
            conn.sleep(0.05)
            conn.send(trailer)

    fake = fake_server(_scripted(steps))
    c = StringClient([fake.address], timeout=5, connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(cmemcache.ServerError) as info:
        c.get_multi([b"a", b"b"])
    assert time.monotonic() - started < 2.5, "waited for END after the error line"
    assert "out of memory writing get response" in str(info.value)
    time.sleep(0.1)  # the trailer, if any, has arrived by now
    assert c.get(b"p") == b"p"
    assert c.get_multi([b"a", b"b"]) == {b"a": b"a", b"b": b"b"}
    assert c.set(b"k", b"v") is True
    assert fake.wait_peer_closed(0, 5)
    assert b"get p\r\n" not in fake.received(0)


def test_error_line_mid_gets_multi(fake_server):
    def steps(conn):
        conn.expect(rb"gets a b\r\n")
        conn.send(b"VALUE a 0 1 5\r\n1\r\nSERVER_ERROR out of memory writing get response\r\n")

    fake = fake_server(_scripted(steps))
    c = StringClient([fake.address], timeout=5, connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(cmemcache.ServerError):
        c.gets_multi([b"a", b"b"])
    assert time.monotonic() - started < 2.5
    assert c.gets_multi([b"c", b"d"]) == {b"c": (b"c", 1), b"d": (b"d", 1)}


def test_error_line_mid_multi_get_on_one_of_two_servers(fake_server):
    def steps(conn):
        m = conn.expect(rb"get ([^\r\n]+)\r\n")
        keys = m.group(1).split(b" ")
        conn.send(b"VALUE %s 0 %d\r\n%s\r\n" % (keys[0], len(keys[0]), keys[0]))
        conn.send(b"SERVER_ERROR out of memory writing get response\r\n")

    bad = fake_server(_scripted(steps))
    good = fake_server()
    c = StringClient([bad.address, good.address], timeout=5, connect_timeout=2)
    bad_keys = [k for k in (b"k%d" % i for i in range(200)) if c.server_index(k) == 0][:3]
    good_keys = [k for k in (b"k%d" % i for i in range(200)) if c.server_index(k) == 1][:3]
    started = time.monotonic()
    with pytest.raises(cmemcache.ServerError) as info:
        c.get_multi(bad_keys + good_keys)
    assert time.monotonic() - started < 2.5
    # partial: every value of the server that answered, and at most the items
    # the failed server sent before its error line, each under its own key
    partial = info.value.partial
    assert all(partial[k] == k for k in good_keys), partial
    assert all(v == k and k in bad_keys[:1] for k, v in partial.items() if k not in good_keys), partial
    assert c.get_multi(bad_keys + good_keys) == {k: k for k in bad_keys + good_keys}
    for k in bad_keys + good_keys:
        assert c.get(k) == k


def test_error_line_mid_multi_get_compat_client(fake_server):
    fake = fake_server(_scripted(lambda conn: (conn.expect(rb"get a b\r\n"), conn.send(OOM_MID))))
    c = Client([fake.address], socket_timeout=5)
    started = time.monotonic()
    # {} or the item read before the error line, under its own key
    assert c.get_multi(["a", "b"]) in ({}, {"a": b"1"})
    assert time.monotonic() - started < 2.5
    assert c.error_counts["ServerError"] == 1
    assert c.get_multi(["a", "b"]) == {"a": b"a", "b": b"b"}
    assert c.get("zz") == b"zz"


# -- 7. an error line answering a noreply command -------------------------------------------------


def noreply_error_script(pattern: bytes, errors: bytes, *, split: bool = False, delay: float = 0.0):
    """Reads the noreply request(s) up to the ``mn`` fence, answers them with
    ``errors`` then ``MN``, then runs echo mode."""

    def script(conn: FakeConnection):
        conn.expect(pattern + rb"mn\r\n")
        if delay:
            conn.sleep(delay)
        if split:
            for i in range(0, len(errors), 3):
                conn.send(errors[i : i + 3])
                conn.sleep(0.002)
        else:
            conn.send(errors)
        conn.send(b"MN\r\n")
        conn.echo()

    return script


NOREPLY_CASES = {
    "set": (
        rb"set a 0 0 1 noreply\r\n1\r\n",
        b"CLIENT_ERROR bad data chunk\r\n",
        lambda c: c.set(b"a", b"1", noreply=True),
    ),
    "set-two-lines": (
        rb"set a 0 0 1 noreply\r\n1\r\n",
        b"CLIENT_ERROR bad data chunk\r\nERROR\r\n",
        lambda c: c.set(b"a", b"1", noreply=True),
    ),
    "set_multi": (
        rb"set m1 0 0 2 noreply\r\nv1\r\nset m2 0 0 2 noreply\r\nv2\r\n",
        b"SERVER_ERROR out of memory storing object\r\nCLIENT_ERROR bad data chunk\r\n",
        lambda c: c.set_multi({b"m1": b"v1", b"m2": b"v2"}, noreply=True),
    ),
    "delete": (
        rb"delete d noreply\r\n",
        b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
        lambda c: c.delete(b"d", noreply=True),
    ),
    "incr": (
        rb"incr n 1 noreply\r\n",
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        lambda c: c.incr(b"n", 1, noreply=True),
    ),
}


@pytest.mark.parametrize("case", list(NOREPLY_CASES))
@pytest.mark.parametrize("delivery", ["whole", "split", "late"])
def test_noreply_error_line_then_fence(fake_server, case, delivery):
    pattern, errors, call = NOREPLY_CASES[case]
    fake = fake_server(
        noreply_error_script(pattern, errors, split=delivery == "split", delay=0.1 if delivery == "late" else 0.0)
    )
    c = StringClient([fake.address], timeout=2, connect_timeout=2)
    result = call(c)
    assert result in (True, [], None), result  # noreply: nothing to report
    # the next calls get their own replies, whatever the connection
    key = probe_key()
    assert c.get(key) == key
    assert c.get_multi([b"x", key]) == {b"x": b"x", key: key}
    assert c.set(b"after", b"v") is True
    assert c.gets(b"g") == (b"g", 1)
    assert all(conn.error is None for conn in fake.connections)


def test_noreply_error_line_then_fence_many_in_a_row(fake_server):
    """Twenty noreply stores, every other one answered with an error line;
    each fence is matched, and the gets in between get their own values."""

    def script(conn: FakeConnection):
        for i in range(20):
            conn.expect(rb"set n%d 0 0 \d+ noreply\r\n[^\r\n]*\r\nmn\r\n" % i)
            if i % 2:
                conn.send(b"CLIENT_ERROR bad data chunk\r\n")
            conn.send(b"MN\r\n")
            m = conn.expect(rb"get ([^\r\n ]+)\r\n")
            conn.send(echo_reply(m.group(1)) + b"END\r\n")
        conn.echo()

    fake = fake_server(script)
    c = StringClient([fake.address], timeout=10, connect_timeout=10)
    for i in range(20):
        assert c.set(b"n%d" % i, b"v%d" % i, noreply=True) is True
        key = b"q%d" % i
        assert c.get(key) == key
    assert c.get(b"end") == b"end"
    assert all(conn.error is None for conn in fake.connections)


def test_connection_is_kept_after_its_fence_reply_arrived(memcached_factory):
    """A noreply store ends with the mn fence; when the next request comes
    after the MN has arrived, that unread MN is the reply the connection
    is waiting for, not stray bytes: the connection is in sync and is
    reused, instead of a new connection per noreply call."""
    server = memcached_factory()
    c = StringClient([server.address], timeout=2, connect_timeout=2)
    assert c.get(b"warm") is None
    before = int(server.stats()["total_connections"])
    for i in range(10):
        assert c.set(b"k%d" % i, b"v%d" % i, noreply=True) is True
        time.sleep(0.05)  # the MN is in the client's socket buffer now
        assert c.get(b"k%d" % i) == b"v%d" % i
    opened = int(server.stats()["total_connections"]) - before - 1  # minus the stats connection
    assert opened == 0, f"{opened} new connections for 10 noreply stores"


def test_connection_is_kept_after_an_error_line_and_its_fence_arrived(fake_server):
    pattern, errors, call = NOREPLY_CASES["set"]
    fake = fake_server(noreply_error_script(pattern, errors))
    c = StringClient([fake.address], timeout=2, connect_timeout=2)
    assert call(c) is True
    time.sleep(0.1)  # the error line and the MN have arrived
    assert c.get(b"p") == b"p"
    assert fake.connection_count == 1


def test_noreply_error_line_compat_client(fake_server):
    pattern, errors, _ = NOREPLY_CASES["set"]
    fake = fake_server(noreply_error_script(pattern, errors))
    c = Client([fake.address], socket_timeout=2)
    assert c.set("a", b"1", noreply=True) is True
    assert c.get("p") == b"p"
    assert c.get_multi(["p", "q"]) == {"p": b"p", "q": b"q"}


# -- 8. bytes that arrive after a complete reply ----------------------------------------------------


def test_bytes_after_a_complete_reply_are_not_the_next_reply(fake_server):
    """A reply is complete (END), then the server sends more bytes (a buggy
    server or proxy).  They arrive long before the next request is sent; the
    next request must not take them as its reply (reliability.md R2: an idle
    pooled connection with unread bytes is out of sync)."""

    def script(conn: FakeConnection):
        conn.expect(rb"get a\r\n")
        conn.send(b"END\r\n")
        conn.sleep(0.05)
        conn.send(b"VALUE b 0 1\r\nX\r\nEND\r\n")
        conn.echo()

    fake = fake_server(script)
    c = StringClient([fake.address], timeout=2, connect_timeout=2)
    assert c.get(b"a") is None
    time.sleep(0.3)  # the stray bytes are in the client's socket buffer now
    assert c.get(b"b") == b"b", "the next get read bytes that arrived before it was sent"
    assert c.get(b"c") == b"c"


def test_error_line_for_noreply_without_fence_is_not_the_next_reply(fake_server):
    """noreply_fence=False (documented for servers and proxies without the
    meta protocol): the server answers a noreply store with an error line.
    The line is in the client's socket buffer before the next request is
    sent, so the client can see that the idle connection is out of sync."""

    def script(conn: FakeConnection):
        conn.expect(rb"set a 0 0 1 noreply\r\n1\r\n")
        conn.send(b"CLIENT_ERROR bad data chunk\r\n")
        conn.echo()

    fake = fake_server(script)
    c = StringClient([fake.address], timeout=2, connect_timeout=2, noreply_fence=False)
    assert c.set(b"a", b"1", noreply=True) is True
    time.sleep(0.3)
    assert c.get(b"p") == b"p"
    assert c.get(b"q") == b"q"


# -- 9. fork with live pooled connections -----------------------------------------------------------

FORK_LIVE_CHILD = r"""
import gc, json, os, sys
import cmemcache

addr, kind, exit_kind = sys.argv[1], sys.argv[2], sys.argv[3]
if kind == "string":
    c = cmemcache.StringClient([addr], timeout=5, connect_timeout=5)
    get, get_multi, setv = c.get, c.get_multi, c.set
else:
    c = cmemcache.Client([addr], socket_timeout=5)
    get, get_multi, setv = c.get, c.get_multi, c.set

# a live pooled connection before the fork
assert get(b"parent-before") == b"parent-before"

def work(tag, n=300):
    bad = []
    for i in range(n):
        key = b"%s-%d" % (tag, i)
        got = get(key)
        if got != key:
            bad.append((i, repr(got)))
        if setv(key, b"v") is not True:
            bad.append((i, "set"))
        if i % 25 == 0:
            ks = [b"%s-m%d-%d" % (tag, i, j) for j in range(4)]
            got = get_multi(ks)
            if got != {k: k for k in ks}:
                bad.append((i, "multi", repr(got)[:100]))
    return bad

r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    code = 1
    try:
        bad = work(b"child")
        code = 0 if not bad else 1
        os.write(w, json.dumps(bad[:5]).encode())
    finally:
        os.close(w)
        if exit_kind == "close":
            c.close()
            del c
            gc.collect()
            sys.exit(code)
        elif exit_kind == "normal":
            sys.exit(code)       # finalisers run, the client is deallocated
        else:
            os._exit(code)
os.close(w)
parent_bad = work(b"parent")
child_report = b""
while True:
    chunk = os.read(r, 65536)
    if not chunk:
        break
    child_report += chunk
_, status = os.waitpid(pid, 0)
# the parent's pooled connection still works after the child is gone
after = [get(b"parent-after-%d" % i) == b"parent-after-%d" % i for i in range(20)]
print(json.dumps({"status": status, "parent_bad": parent_bad[:5],
                  "child_bad": json.loads(child_report or b"null"), "after": all(after)}), flush=True)
"""


@pytest.mark.parametrize("exit_kind", ["_exit", "normal", "close"])
@pytest.mark.parametrize("kind", ["string", "client"])
@pytest.mark.hang_timeout(90)
def test_fork_with_a_live_connection(fake_server, kind, exit_kind):
    """Parent and child both run requests right after fork(); the fake server
    shows which connection each request used: the child never writes on
    the parent's connection, never closes it (no quit, no shutdown), and
    the parent keeps using it after the child exits."""
    fake = fake_server()
    proc = run_python(FORK_LIVE_CHILD, fake.address, kind, exit_kind, timeout=80)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"status": 0, "parent_bad": [], "child_bad": [], "after": True}, result
    conns = fake.connections
    first = conns[0].received
    assert first.startswith(b"get parent-before\r\n")
    # connection 0 is the parent's: no request of the child ever went out on it
    assert b"child-" not in first
    assert b"quit" not in first
    assert b"get parent-after-19\r\n" in first
    child_conns = [conn.index for conn in conns if b"child-" in conn.received]
    parent_conns = [conn.index for conn in conns if b"parent-" in conn.received]
    assert child_conns and 0 not in child_conns
    assert not set(child_conns) & set(parent_conns), (child_conns, parent_conns)
    # the parent's requests after the fork stayed on connection 0 (it was not
    # closed under it by the child): every parent request is there
    assert parent_conns == [0], parent_conns
    assert all(conn.error is None for conn in conns)
