"""get_or_set() and invalidate() on memcached's meta leases, blocking and
asyncio, against real memcached: one producer run per miss across threads,
processes and tasks, stale values served while one caller refreshes, early
recache, a dead winner taken over after its lease, bounded waits, failures
and bad arguments."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import cmemcache
import cmemcache.aio
from cmemcache import _lease


@pytest.fixture
def client(server):
    c = cmemcache.Client([server.address], strict=True, socket_timeout=5)
    yield c
    c.disconnect_all()


def slow(value, runs: list, seconds: float = 0.2):
    def producer():
        runs.append(time.monotonic())
        time.sleep(seconds)
        return value
    return producer


# -- one process -----------------------------------------------------------------------------


def test_miss_then_hit(client, server):
    runs: list = []
    assert client.get_or_set("k", slow({"a": 1}, runs), 100) == {"a": 1}
    assert client.get_or_set("k", slow({"a": 2}, runs), 100) == {"a": 1}
    assert len(runs) == 1
    # stored with python-memcached's flags and the TTL: any get reads it
    assert client.get("k") == {"a": 1}
    assert server.raw_get(b"k")[1] == 1  # pickled
    assert 99 <= server.raw_ttl(b"k") <= 100
    assert client.get_or_set("s", lambda: "text") == "text"
    assert server.raw_get(b"s") == (b"text", 16) and server.raw_ttl(b"s") == -1


def test_32_threads_one_producer_run(client):
    runs: list = []
    out: list = []
    threads = [threading.Thread(target=lambda: out.append(client.get_or_set("k", slow("v", runs))))
               for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(runs) == 1 and out == ["v"] * 32


def test_producer_that_raises_leaves_no_lease(client, server):
    def bad():
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        client.get_or_set("k", bad, lock_ttl=60)
    # the empty item is gone: the next caller wins at once
    assert server.raw_get(b"k") is None
    start = time.monotonic()
    assert client.get_or_set("k", lambda: 5) == 5
    assert time.monotonic() - start < 5


def test_a_lease_nobody_fills_is_waited_for_a_bounded_time(client, server):
    sc = cmemcache.StringClient([server.address])
    assert sc.meta_get("k", vivify=60).win  # a winner that never stores
    runs: list = []
    start = time.monotonic()
    assert client.get_or_set("k", slow("mine", runs, 0), wait=0.3) == "mine"
    took = time.monotonic() - start
    assert 0.3 <= took < 5 and len(runs) == 1
    assert client.error_counts["LeaseWait"] == 1
    assert server.raw_get(b"k") == (b"", 0)  # not stored over the lease
    sc.close()


def test_a_lease_that_ends_is_taken_over(client, server):
    sc = cmemcache.StringClient([server.address])
    assert sc.meta_get("k", vivify=1).win  # a winner that dies: its lease ends
    runs: list = []
    # (memcached's clock ticks in seconds: the lease ends within 2 s)
    assert client.get_or_set("k", slow("taken", runs, 0), lock_ttl=1, wait=10) == "taken"
    assert len(runs) == 1 and client.get("k") == "taken"
    assert client.error_counts["LeaseWait"] == 0
    sc.close()


def while_one_refreshes(client, fresh, **kwargs):
    """A thread wins the key and holds its refresh open; meanwhile five
    get_or_set calls of this thread run.  Returns (their values, what the
    winner got, the producer's runs)."""
    runs: list = []
    seen: list = []
    started, release = threading.Event(), threading.Event()

    def producer():
        runs.append(1)
        started.set()
        release.wait(10)
        return fresh

    winner = threading.Thread(
        target=lambda: seen.append(client.get_or_set("k", producer, 100, **kwargs)))
    winner.start()
    assert started.wait(10)
    meanwhile = [client.get_or_set("k", producer, 100, **kwargs) for _ in range(5)]
    release.set()
    winner.join(10)
    return meanwhile, seen, runs


def test_invalidate_serves_stale_while_one_refreshes(client, server):
    assert client.set("k", "v1") is True
    assert client.invalidate("k") is True
    assert client.invalidate("absent") is False
    assert client.get("k") == "v1"  # a plain get still reads it
    meanwhile, seen, runs = while_one_refreshes(client, "v2")
    # while the winner refreshes, every other caller gets the stale value
    assert meanwhile == ["v1"] * 5
    assert seen == ["v2"] and len(runs) == 1
    assert client.get_or_set("k", lambda: "v3") == "v2"
    assert client._sc.meta_get("k").stale is False


def test_stale_ttl_bounds_a_refresh_that_never_lands(client, server):
    assert client.set("k", "v1", time=1000) is True
    assert client.invalidate("k", stale_ttl=500) is True
    ttl_seen: list = []

    def producer():
        ttl_seen.append(server.raw_ttl(b"k"))
        raise RuntimeError("died")

    with pytest.raises(RuntimeError):
        client.get_or_set("k", producer, stale_ttl=20)
    # the stale value is kept, for stale_ttl seconds at most
    assert 19 <= ttl_seen[0] <= 20
    assert client.get("k") == "v1"


def test_recache_ttl_refreshes_early(client, server):
    assert client.set("k", "old", time=100) is True
    # the TTL (100) is under recache_ttl: one caller refreshes, the others
    # are served the current value meanwhile
    meanwhile, seen, runs = while_one_refreshes(client, "new", recache_ttl=200)
    assert meanwhile == ["old"] * 5
    assert seen == ["new"] and len(runs) == 1
    # the new value's TTL is above 50: no early recache
    assert client.get_or_set("k", lambda: "again", 100, recache_ttl=50) == "new"


def test_a_newer_write_is_not_overwritten(client, server):
    def producer():
        client.set("k", "written meanwhile")
        return "computed"

    assert client.get_or_set("k", producer) == "computed"
    assert client.get("k") == "written meanwhile"


def test_server_down(server):
    port = server.port
    server.stop()
    loose = cmemcache.Client([f"127.0.0.1:{port}"], socket_timeout=1)
    assert loose.get_or_set("k", lambda: 7) == 7  # computed, nothing cached
    assert loose.error_counts["ConnectionError"] == 1
    strict = cmemcache.Client([f"127.0.0.1:{port}"], socket_timeout=1, strict=True)
    with pytest.raises(cmemcache.ConnectionError):
        strict.get_or_set("k", lambda: 7)
    server.start()


@pytest.mark.parametrize("kwargs, error", [
    (dict(producer=5), TypeError),
    (dict(ttl=-1), ValueError), (dict(ttl=1.5), ValueError), (dict(ttl=True), ValueError),
    (dict(ttl=2**31), ValueError),
    (dict(lock_ttl=0), ValueError), (dict(lock_ttl=None), ValueError),
    (dict(stale_ttl=0), ValueError), (dict(recache_ttl=-5), ValueError),
    (dict(wait=-1), ValueError), (dict(wait=float("inf")), ValueError),
    (dict(wait=float("nan")), ValueError), (dict(wait="1"), ValueError),
])
def test_bad_arguments_send_nothing(client, server, kwargs, error):
    args = dict(producer=lambda: 1)
    args.update(kwargs)
    producer = args.pop("producer")
    sent = {k: server.stats()[k] for k in ("cmd_get", "cmd_set", "delete_misses", "delete_hits")}
    with pytest.raises(error):
        client.get_or_set("k", producer, **args)
    with pytest.raises(cmemcache.Client.MemcachedKeyCharacterError):
        client.get_or_set("bad key", lambda: 1)
    with pytest.raises(ValueError):
        client.invalidate("k", stale_ttl=0)
    assert {k: server.stats()[k] for k in sent} == sent


def test_plan_steps_are_callables():
    """The two steps of its own a plan yields are callables the drivers
    call (the producer and the sleep), not engine method names."""
    plan = _lease.plan_get_or_set(_FakePolicy(), "k", lambda: 1, 0, 30, None, None, 5.0,
                                  time.sleep)
    name, args, kwargs = next(plan)
    assert name == "meta_get" and kwargs["vivify"] == 30
    from cmemcache import MetaResult
    placeholder = MetaResult((b"", 0, 9, None, None, None, None, False, False, True))
    step = plan.send(placeholder)
    assert step[0] is time.sleep and 0 < step[1][0] <= _lease.MAX_POLL


class _FakePolicy:
    error_counts: dict = {}

    def _prepare_key(self, key):
        return key


# -- many processes --------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import json, sys, threading, time
    import cmemcache
    address, key, threads, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    lock_ttl = int(sys.argv[5])
    c = cmemcache.Client([address], strict=True, socket_timeout=10)
    runs, results = [], []
    lock = threading.Lock()

    def producer():
        with lock:
            runs.append(time.monotonic())
        if mode == "hang":
            print("producing", flush=True)
            time.sleep(120)
        time.sleep(1.0 if mode == "refresh" else 0.2)
        return "v2" if mode == "refresh" else "v1"

    barrier = threading.Barrier(threads)

    def worker():
        barrier.wait()
        end = time.monotonic() + 10
        while True:
            v = c.get_or_set(key, producer, lock_ttl=lock_ttl, wait=60)  # not under test here
            with lock:
                results.append((time.monotonic(), v, (runs or [None])[-1]))
            # refresh: read on until the new value is seen (bounded)
            if mode != "refresh" or v == "v2" or time.monotonic() > end:
                return

    print("ready", flush=True)
    assert sys.stdin.readline() == "go\\n"
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    print(json.dumps({"runs": runs, "results": results}), flush=True)
""")


def start_children(server, key: str, n: int, threads: int, mode: str, lock_ttl: int = 30) -> list:
    """n processes of threads threads each, ready to call get_or_set on key
    once they read "go" (the producer's lease lock_ttl seconds)."""
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, server.address, key, str(threads),
                               mode, str(lock_ttl)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(n)]
    for p in procs:
        assert p.stdout.readline() == "ready\n"
    return procs


def finish(procs) -> list:
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


@pytest.mark.serial
@pytest.mark.hang_timeout(240)
def test_stampede_16_processes_32_threads(server):
    procs = start_children(server, "hot", 16, 32, "fill")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    out = finish(procs)
    assert sum(len(o["runs"]) for o in out) == 1
    values = [v for o in out for _, v, _ in o["results"]]
    assert len(values) == 512 and set(values) == {"v1"}

    # invalidated: every caller gets the stale value until the one refresh lands
    c = cmemcache.Client([server.address], strict=True)
    assert c.invalidate("hot") is True
    procs = start_children(server, "hot", 16, 32, "refresh")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    out = finish(procs)
    runs = [r for o in out for r in o["runs"]]
    assert len(runs) == 1
    produced_by = runs[0] + 1.0  # the producer sleeps 1 s before it returns
    results = [(t, v) for o in out for t, v, _ in o["results"]]
    assert {v for _, v in results} == {"v1", "v2"}
    assert sum(1 for _, v in results if v == "v1") >= 16  # served stale meanwhile
    # v2 only after the producer returned (and its value was stored)
    assert all(t >= produced_by for t, v in results if v == "v2")
    assert c.get("hot") == "v2"


@pytest.mark.serial
@pytest.mark.hang_timeout(240)
def test_a_killed_winner_is_taken_over_after_its_lease(server):
    (winner,) = start_children(server, "k", 1, 1, "hang", lock_ttl=2)
    winner.stdin.write("go\n")
    winner.stdin.flush()
    assert winner.stdout.readline() == "producing\n"
    others = start_children(server, "k", 4, 8, "fill", lock_ttl=2)
    for p in others:
        p.stdin.write("go\n")
        p.stdin.flush()
    time.sleep(0.3)
    winner.send_signal(signal.SIGKILL)
    winner.wait(10)
    out = finish(others)
    # one of the others won when the dead winner's 2 s lease ended
    assert sum(len(o["runs"]) for o in out) == 1
    values = [v for o in out for _, v, _ in o["results"]]
    assert values == ["v1"] * 32


# -- asyncio ---------------------------------------------------------------------------------


def test_aio_256_tasks_one_producer_run(server):
    async def main():
        async with cmemcache.aio.Client([server.address], strict=True, socket_timeout=5) as c:
            runs: list = []

            async def producer():
                runs.append(1)
                await asyncio.sleep(0.2)
                return {"v": 1}

            out = await asyncio.gather(*[c.get_or_set("k", producer, 60) for _ in range(256)])
            assert out == [{"v": 1}] * 256 and len(runs) == 1
            # a plain function as producer, and the blocking client reads the value
            assert await c.get_or_set("p", lambda: "plain") == "plain"
            assert cmemcache.Client([server.address]).get("k") == {"v": 1}

            # invalidated: the tasks get the stale value while one refreshes
            assert await c.invalidate("k") is True

            async def refresh():
                runs.append(2)
                await asyncio.sleep(0.2)
                return {"v": 2}

            out = await asyncio.gather(*[c.get_or_set("k", refresh) for _ in range(256)])
            assert sorted(map(str, out)).count("{'v': 2}") == 1 and runs == [1, 2]
            assert await c.get("k") == {"v": 2}

    asyncio.run(main())


def test_aio_cancelled_winner_leaves_no_lease(server):
    async def main():
        async with cmemcache.aio.Client([server.address], strict=True) as c:
            async def forever():
                await asyncio.sleep(60)

            task = asyncio.create_task(c.get_or_set("k", forever))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # the empty item went with the cancelled winner
            assert await c.get_or_set("k", lambda: "next") == "next"

    asyncio.run(main())
