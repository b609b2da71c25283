"""Threads, Ctrl-C, asynchronous exceptions from signal handlers, and fork."""

from __future__ import annotations

import json
import random
import signal
import threading
import time

import pytest

import cmemcache
from cmemcache import StringClient


# -- threads --------------------------------------------------------------------------------------


def test_threads_share_one_client(memcached_factory):
    server = memcached_factory()
    c = StringClient([server.address], timeout=5, connect_timeout=5)
    n_threads, n_ops = 8, 2000
    mismatches: list = []
    errors: list = []
    finals: dict = {}
    start = threading.Barrier(n_threads)

    def worker(t: int):
        rnd = random.Random(t)
        keys = [b"t%d-k%d" % (t, i) for i in range(20)]
        last = {}
        try:
            start.wait(10)
            for i in range(n_ops):
                key = keys[rnd.randrange(len(keys))]
                op = i % 4
                if op == 0 or key not in last:
                    value = b"%s=%d" % (key, i)
                    if c.set(key, value) is not True:
                        mismatches.append((t, i, "set not True"))
                    last[key] = value
                elif op == 1:
                    got = c.get(key)
                    if got != last[key]:
                        mismatches.append((t, i, key, last[key], got))
                elif op == 2:
                    sample = rnd.sample(keys, 5)
                    got = c.get_multi(sample)
                    want = {k: last[k] for k in sample if k in last}
                    if got != want:
                        mismatches.append((t, i, "get_multi", want, got))
                else:
                    got = c.gets(key)
                    if got is None or got[0] != last[key]:
                        mismatches.append((t, i, key, last[key], got))
            finals[t] = last
        except BaseException as exc:  # reported below
            errors.append((t, repr(exc)))

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not any(th.is_alive() for th in threads), "a worker thread hung"
    assert errors == []
    assert mismatches == []
    # every thread's last values, read back on an independent connection
    assert len(finals) == n_threads
    for last in finals.values():
        for key, value in last.items():
            assert server.raw_get(key) == (value, 0)
    c.close()


def test_set_servers_while_other_threads_are_mid_call(memcached_factory):
    """Client.get/set (in C) own the engine they run on: set_servers() from
    another thread replaces it (and may free it) while they wait for a reply."""
    server = memcached_factory()
    c = cmemcache.Client([server.address], socket_timeout=5, strict=True)
    n_threads, n_ops, n_switches = 4, 1500, 300
    errors: list = []
    mismatches: list = []
    switched = []
    done = threading.Event()

    def worker(t: int) -> None:
        try:
            for i in range(n_ops):
                key = f"sw{t}:{i % 7}"
                value = f"{t}:{i}" * (1 + i % 5)
                if c.set(key, value) is not True:
                    mismatches.append((t, i, "set"))
                got = c.get(key)
                if got != value:
                    mismatches.append((t, i, value, got))
        except BaseException as exc:  # reported below
            errors.append((t, repr(exc)))

    def switcher() -> None:
        for _ in range(n_switches):
            if done.is_set():
                break
            c.set_servers([server.address])
            switched.append(1)
            time.sleep(0.0005)

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(n_threads)]
    sw = threading.Thread(target=switcher, daemon=True)
    sw.start()
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    done.set()
    sw.join(60)
    assert not any(th.is_alive() for th in [*threads, sw]), "a thread hung"
    assert errors == []
    assert mismatches == []
    assert len(switched) >= 10
    assert c.get("sw0:0") is not None
    c.disconnect_all()


def test_threads_with_a_stalled_server_do_not_block_each_other(memcached_factory):
    """One thread waits on a stopped server; another server keeps answering
    other threads of the same client."""
    slow = memcached_factory()
    fast = memcached_factory()
    c = StringClient([slow.address, fast.address], timeout=1, connect_timeout=1)
    slow_key = next(b"s%d" % i for i in range(1000) if c.server_index(b"s%d" % i) == 0)
    fast_key = next(b"f%d" % i for i in range(1000) if c.server_index(b"f%d" % i) == 1)
    assert c.set(slow_key, b"slow") is True
    assert c.set(fast_key, b"fast") is True
    outcome = {}

    def blocked():
        try:
            outcome["slow"] = c.get(slow_key)
        except cmemcache.TimeoutError:
            outcome["slow"] = "timeout"

    slow.pause()
    try:
        th = threading.Thread(target=blocked, daemon=True)
        th.start()
        fast_results = [c.get(fast_key) for _ in range(50)]
        th.join(10)
    finally:
        slow.resume()
    assert not th.is_alive()
    assert outcome["slow"] == "timeout"
    assert fast_results == [b"fast"] * 50
    assert c.get(slow_key) == b"slow"


# -- Ctrl-C -----------------------------------------------------------------------------------------

INTERRUPT_CHILD = r"""
import json, sys, time
import cmemcache
from cmemcache import StringClient

c = StringClient([sys.argv[1]], timeout=10, connect_timeout=10)
keys = [b"probe-%d" % i for i in range(20)]
assert c.get(keys[0]) == b"value-0"
print("ready", flush=True)
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "block":
        key = keys[int(arg)]
        print("calling", flush=True)
        started = time.monotonic()
        try:
            got = c.get(key)
        except KeyboardInterrupt:
            result = {"interrupted": True}
        except BaseException as exc:
            result = {"interrupted": False, "raised": repr(exc)}
        else:
            result = {"interrupted": False, "got": repr(got)}
        result["elapsed"] = time.monotonic() - started
        try:
            print(json.dumps(result), flush=True)
        except KeyboardInterrupt:
            print(json.dumps(result), flush=True)
            raise
    elif cmd == "check":
        bad = [k.decode() for i, k in enumerate(keys) if c.get(k) != b"value-%d" % i]
        multi = c.get_multi(keys) == {k: b"value-%d" % i for i, k in enumerate(keys)}
        print(json.dumps({"bad": bad, "multi": multi}), flush=True)
    else:
        break
"""


def test_ctrl_c_interrupts_a_blocked_get(memcached_factory, child_process):
    server = memcached_factory()
    for i in range(20):
        server.raw_set(b"probe-%d" % i, b"value-%d" % i)
    child = child_process(INTERRUPT_CHILD, server.address)
    assert child.read_line() == "ready"
    for cycle in range(1, 6):
        server.pause()
        try:
            child.send(f"block {cycle}")
            assert child.read_line() == "calling"
            time.sleep(0.3)  # let the child block in the call
            child.proc.send_signal(signal.SIGINT)
            result = json.loads(child.read_line(timeout=20))
        finally:
            server.resume()
        assert result["interrupted"] is True, result
        # a hang detector with a generous bound: the timeout was 10 s
        assert result["elapsed"] < 5, result
        child.send("check")
        check = json.loads(child.read_line())
        assert check == {"bad": [], "multi": True}
    child.send("quit")
    assert child.finish() == 0, child.stderr


# -- asynchronous exceptions from a signal handler --------------------------------------------------


class SoftLimit(Exception):
    pass


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_exceptions_from_signal_handlers_never_cross_replies(memcached_factory):
    server = memcached_factory()
    c = StringClient([server.address], timeout=5, connect_timeout=5)
    keys = [b"async-%d" % i for i in range(30)]
    for k in keys:
        assert c.set(k, k + b":0") is True

    armed = False

    def handler(signum, frame):
        nonlocal armed
        if armed:
            armed = False
            raise SoftLimit()

    def belongs(key, value):
        return value is not None and value.startswith(key + b":")

    rnd = random.Random(1234)
    old = signal.signal(signal.SIGALRM, handler)
    interrupted = completed = 0
    crossed = []
    try:
        for i in range(3000):
            key = keys[rnd.randrange(len(keys))]
            op = i % 3
            try:
                armed = True
                signal.setitimer(signal.ITIMER_REAL, rnd.uniform(0.00002, 0.0008))
                if op == 0:
                    result = c.set(key, key + b":%d" % i)
                elif op == 1:
                    result = c.get(key)
                else:
                    result = c.get_multi(keys[:10])
                armed = False
            except SoftLimit:
                interrupted += 1
                continue
            finally:
                armed = False
                signal.setitimer(signal.ITIMER_REAL, 0)
            completed += 1
            if op == 0:
                if result is not True:
                    crossed.append((i, "set", result))
            elif op == 1:
                if not belongs(key, result):
                    crossed.append((i, key, result))
            else:
                if set(result) != set(keys[:10]) or not all(belongs(k, v) for k, v in result.items()):
                    crossed.append((i, "get_multi", result))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert crossed == []
    assert completed + interrupted == 3000
    assert completed > 0
    # the client is in sync afterwards
    for k in keys:
        assert belongs(k, c.get(k))
    got = c.get_multi(keys)
    assert set(got) == set(keys) and all(belongs(k, v) for k, v in got.items())


# -- fork ---------------------------------------------------------------------------------------------

FORK_CHILD = r"""
import json, os, sys
import cmemcache
from cmemcache import StringClient

c = StringClient([sys.argv[1]], timeout=5, connect_timeout=5)
assert c.set(b"before-fork", b"parent") is True
assert c.get(b"before-fork") == b"parent"

def work(tag, n=500):
    bad = []
    for i in range(n):
        key = b"%s-%d" % (tag, i % 25)
        value = b"%s=%d" % (key, i)
        if c.set(key, value) is not True:
            bad.append(("set", i))
        got = c.get(key)
        if got != value:
            bad.append((i, key.decode(), repr(got)))
        if i % 50 == 0:
            want = {b"%s-%d" % (tag, j) for j in range(min(i + 1, 25))}
            got_multi = c.get_multi(sorted(want))
            if set(got_multi) != want or not all(v.startswith(k + b"=") for k, v in got_multi.items()):
                bad.append((i, "get_multi"))
    return bad

results = {}
for round_, exit_kind in enumerate(["normal", "_exit"]):
    pid = os.fork()
    if pid == 0:
        try:
            bad = work(b"child%d" % round_)
            ok = not bad and c.get(b"before-fork") == b"parent"
        except BaseException:
            ok = False
        if exit_kind == "_exit":
            os._exit(0 if ok else 1)
        sys.exit(0 if ok else 1)
    bad = work(b"parent%d" % round_)
    _, status = os.waitpid(pid, 0)
    results[exit_kind] = {
        "child_status": status,
        "parent_bad": bad[:5],
        "after": c.get(b"before-fork").decode(),
        "child_key": (c.get(b"child%d-3" % round_) or b"").decode(),
    }
print(json.dumps(results))
"""


def test_fork_parent_and_child_both_work(memcached_factory):
    from conftest import run_python

    server = memcached_factory()
    proc = run_python(FORK_CHILD, server.address, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for kind in ("normal", "_exit"):
        r = results[kind]
        assert r["child_status"] == 0, (kind, r)
        assert r["parent_bad"] == [], (kind, r)
        assert r["after"] == "parent", (kind, r)
        assert r["child_key"].startswith("child"), (kind, r)


FORK_WHILE_BLOCKED_CHILD = r"""
import json, os, sys, threading, time
import cmemcache
from cmemcache import StringClient

slow_addr, fast_addr = sys.argv[1], sys.argv[2]
c = StringClient([slow_addr, fast_addr], timeout=3, connect_timeout=3)
slow_key = next(b"s%d" % i for i in range(1000) if c.server_index(b"s%d" % i) == 0)
fast_key = next(b"f%d" % i for i in range(1000) if c.server_index(b"f%d" % i) == 1)
assert c.set(slow_key, b"slow") is True
assert c.set(fast_key, b"fast") is True
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"   # the slow server is stopped now

outcome = {}
def blocked():
    try:
        outcome["thread"] = repr(c.get(slow_key))
    except cmemcache.TimeoutError:
        outcome["thread"] = "timeout"
th = threading.Thread(target=blocked)
th.start()
time.sleep(0.3)   # the thread is inside get() now
pid = os.fork()
if pid == 0:
    code = 1
    try:
        ok = all(c.get(fast_key) == b"fast" for _ in range(20))
        key = b"child-" + fast_key
        ok = ok and c.set(key, b"from child") is True and c.get(key) == b"from child"
        code = 0 if ok else 1
    finally:
        os._exit(code)
deadline = time.monotonic() + 20
status = None
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.01)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    status = "hung"
th.join(10)
print(json.dumps({"child": status, "thread": outcome.get("thread")}), flush=True)
assert sys.stdin.readline().strip() == "resumed"
print(json.dumps({"slow": repr(c.get(slow_key)), "fast": repr(c.get(fast_key)),
                  "child_key": repr(c.get(b"child-" + fast_key))}), flush=True)
"""


def test_fork_while_another_thread_is_mid_request(memcached_factory, child_process):
    slow = memcached_factory()
    fast = memcached_factory()
    child = child_process(FORK_WHILE_BLOCKED_CHILD, slow.address, fast.address)
    assert child.read_line() == "ready"
    slow.pause()
    try:
        child.send("go")
        result = json.loads(child.read_line(timeout=40))
    finally:
        slow.resume()
    assert result == {"child": 0, "thread": "timeout"}
    child.send("resumed")
    after = json.loads(child.read_line())
    assert after == {"slow": repr(b"slow"), "fast": repr(b"fast"), "child_key": repr(b"from child")}
    assert child.finish() == 0, child.stderr
