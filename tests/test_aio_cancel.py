"""cmemcache.aio under cancellation and failing servers: 256 tasks share the
asyncio clients, 20,000 calls in all over 2 memcached servers, each task
reading and writing keys of its own (text and meta commands) with values
that name their key and version (some of 200 KB, so that a cancellation lands in the middle of a
reply), while calls are cancelled at random (task.cancel() after a random
delay, asyncio.timeout and asyncio.wait_for with tiny timeouts, the
client's own timeout) and the servers are stopped (SIGSTOP, SIGCONT) and
killed and restarted on the same port meanwhile.

What must hold: no call ever reads a value another key or another request
was owed (zero crossed replies), every call returns or raises within its
timeout plus 2 s, nothing but timeouts, connection errors and
cancellations is raised, and after close() no connection, socket or task
is left.  The seed is printed (set AIO_TORTURE_SEED to run one again)."""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field

import pytest

import cmemcache
import cmemcache.aio
from conftest import free_port, wait_until
from test_aio_commands import LOOPS, open_sockets

pytestmark = pytest.mark.serial

TIMEOUT = 0.4           # the clients' request and connect timeouts
BOUND = TIMEOUT + 2.0   # every call ends within this
KEYS_PER_TASK = 4
PAD = random.Random(7).randbytes(256 * 1024 + 64)
ALLOWED = (cmemcache.TimeoutError, cmemcache.ConnectionError, TimeoutError,
           asyncio.CancelledError)


def value_for(key: bytes, version: int, size: int) -> bytes:
    """The value written under key at version: it names both, and its body
    is a slice of PAD only they determine."""
    head = b"%s|%d|%d|" % (key, version, size)
    start = (hash((key, version)) & 0xFFFF)
    return head + PAD[start:start + size]


@dataclass
class Run:
    seed: int
    remaining: int
    attempted: dict = field(default_factory=dict)   # key -> highest version written
    crossed: list = field(default_factory=list)     # reads a key was not owed
    unexpected: list = field(default_factory=list)  # exceptions of other kinds
    outcomes: dict = field(default_factory=dict)    # outcome kind -> count
    slowest: float = 0.0
    calls: int = 0
    max_conns: list = field(default_factory=lambda: [0, 0])

    def count(self, kind: str) -> None:
        self.outcomes[kind] = self.outcomes.get(kind, 0) + 1

    def check_value(self, key, got, what) -> None:
        """A read of key: a miss, or a value written under key."""
        if got is None:
            return
        if isinstance(got, dict):  # the Client's values
            ok = (got.get("key") == key and 1 <= got.get("version", 0) <= self.attempted.get(key, 0)
                  and got.get("pad") == PAD[:got.get("size", -1)])
        else:
            try:
                k, version, size, _ = got.split(b"|", 3)
                version, size = int(version), int(size)
            except ValueError:
                ok = False
            else:
                ok = (k == key and 1 <= version <= self.attempted.get(key, 0)
                      and got == value_for(key, version, size))
        if not ok:
            self.crossed.append((what, key, got[:80] if isinstance(got, bytes) else got))


def pick_size(rng) -> int:
    r = rng.random()
    if r < 0.03:
        return 200 * 1024
    if r < 0.12:
        return rng.randrange(20_000, 60_000)
    return rng.randrange(0, 2000)


async def call_with_chaos(rng, make):
    """Awaits make() in one of the ways a call ends early."""
    mode = rng.random()
    if mode < 0.40:
        return await make()
    if mode < 0.55:
        return await asyncio.wait_for(make(), rng.uniform(0, 0.005))
    if mode < 0.70:
        async with asyncio.timeout(rng.uniform(0, 0.005)):
            return await make()
    if mode < 0.85:
        task = asyncio.ensure_future(make())
        asyncio.get_running_loop().call_later(rng.uniform(0, 0.01), task.cancel)
        return await task
    # a cancellation once the reply has started to arrive (or soon after)
    task = asyncio.ensure_future(make())
    for _ in range(rng.randrange(1, 6)):
        await asyncio.sleep(0)
    task.cancel()
    return await task


async def work(run: Run, tid: int, rng, pace: float, keys: list, step) -> None:
    """Awaits step(op, key), a pause of up to pace before each, until the
    run's calls are spent, and counts how each call ended ("returned", or
    the kind of an allowed exception; any other is recorded) and how long
    the slowest took."""
    loop = asyncio.get_running_loop()
    while run.remaining > 0:
        run.remaining -= 1
        await asyncio.sleep(rng.uniform(0, pace))
        op = rng.random()
        key = rng.choice(keys)
        started = loop.time()
        try:
            await step(op, key)
            run.count("returned")
        except ALLOWED as e:
            run.count(f"{type(e).__module__}.{type(e).__name__}")
        except Exception as e:  # noqa: BLE001 - reported by the test
            run.unexpected.append((tid, repr(e)))
        finally:
            run.calls += 1
            run.slowest = max(run.slowest, loop.time() - started)


async def string_worker(run: Run, c, tid: int, pace: float) -> None:
    rng = random.Random(run.seed * 1000 + tid)
    keys = [b"t%03d:k%d" % (tid, i) for i in range(KEYS_PER_TASK)]

    async def step(op, key):
        if op < 0.35:
            got = await call_with_chaos(rng, lambda: c.get(key))
            run.check_value(key, got, "get")
        elif op < 0.60:
            version = run.attempted[key] = run.attempted.get(key, 0) + 1
            value = value_for(key, version, pick_size(rng))
            noreply = rng.random() < 0.2
            res = await call_with_chaos(rng, lambda: c.set(key, value, noreply=noreply))
            if res is not True:
                run.crossed.append(("set", key, res))
        elif op < 0.78:
            asked = rng.sample(keys, rng.randrange(1, KEYS_PER_TASK + 1))
            got = await call_with_chaos(rng, lambda: c.get_multi(asked))
            if not set(got) <= set(asked):
                run.crossed.append(("get_multi keys", asked, sorted(got)))
            for k, v in got.items():
                run.check_value(k, v, "get_multi")
        elif op < 0.87:
            batch = {}
            for k in rng.sample(keys, rng.randrange(1, KEYS_PER_TASK + 1)):
                version = run.attempted[k] = run.attempted.get(k, 0) + 1
                batch[k] = value_for(k, version, pick_size(rng))
            res = await call_with_chaos(rng, lambda: c.set_multi(batch))
            if res != []:
                run.crossed.append(("set_multi", sorted(batch), res))
        elif op < 0.90:
            r = await call_with_chaos(rng, lambda: c.meta_get(key))
            run.check_value(key, None if r is None else r.value, "meta_get")
        elif op < 0.93:
            version = run.attempted[key] = run.attempted.get(key, 0) + 1
            value = value_for(key, version, pick_size(rng))
            res = await call_with_chaos(rng, lambda: c.meta_set(key, value))
            if res is not True:
                run.crossed.append(("meta_set", key, res))
        else:
            res = await call_with_chaos(rng, lambda: c.delete(key))
            if res not in (True, False):
                run.crossed.append(("delete", key, res))

    await work(run, tid, rng, pace, keys, step)


async def client_worker(run: Run, mc, tid: int, pace: float) -> None:
    """The same through cmemcache.aio.Client (strict: failures raise)."""
    rng = random.Random(run.seed * 1000 + tid)
    keys = [f"c{tid:03d}:k{i}" for i in range(KEYS_PER_TASK)]

    def obj(key):
        version = run.attempted[key] = run.attempted.get(key, 0) + 1
        size = pick_size(rng)
        return {"key": key, "version": version, "size": size, "pad": PAD[:size]}

    async def step(op, key):
        if op < 0.4:
            run.check_value(key, await call_with_chaos(rng, lambda: mc.get(key)), "Client.get")
        elif op < 0.65:
            value = obj(key)
            res = await call_with_chaos(rng, lambda: mc.set(key, value))
            if res is not True:
                run.crossed.append(("Client.set", key, res))
        elif op < 0.85:
            got = await call_with_chaos(rng, lambda: mc.get_multi(keys))
            if not set(got) <= set(keys):
                run.crossed.append(("Client.get_multi keys", keys, sorted(got)))
            for k, v in got.items():
                run.check_value(k, v, "Client.get_multi")
        else:
            batch = {k: obj(k) for k in rng.sample(keys, 2)}
            res = await call_with_chaos(rng, lambda: mc.set_multi(batch))
            if res != []:
                run.crossed.append(("Client.set_multi", sorted(batch), res))

    await work(run, tid, rng, pace, keys, step)


async def chaos(servers, seed: int, end: asyncio.Event, log: list) -> None:
    """Stops and kills the servers at random until end is set.  It runs in
    the loop's own thread: a server started from a thread that ends is
    killed with it (conftest starts it with setpriv --pdeathsig KILL), and
    a start blocks the loop for the few ms memcached takes to listen."""
    rng = random.Random(seed)

    async def wait(seconds):
        try:
            async with asyncio.timeout(seconds):
                await end.wait()
        except TimeoutError:
            pass

    first = True
    while True:
        await wait(rng.uniform(0.1, 0.4))
        if end.is_set():
            return
        i = rng.randrange(len(servers))
        s = servers[i]
        pause = rng.random() < 0.6
        if first or pause:
            # the first is a pause longer than the clients' timeout, of a
            # server no kill has marked dead yet: whatever the seed, some
            # calls end by the client's own timeout
            s.pause()
            log.append(f"pause {i}")
            seconds = rng.uniform(0.05, 0.7)
            await wait(max(seconds, 2 * TIMEOUT) if first else seconds)
            first = False
            s.resume()
        else:
            s.kill()
            log.append(f"kill {i}")
            await wait(rng.uniform(0.0, 0.3))
            s.start()


def curr_connections(server) -> int:
    return int(server.stats()["curr_connections"]) - 1


async def torture(servers, seed: int, ntasks: int, ncalls: int, nclient_tasks: int,
                  seconds: float, fence: bool = True, max_inflight: int = 16):
    # each task waits a little between its calls, so that the run lasts
    # about that long whatever the machine: the servers' troubles fall
    # among the calls
    pace = 2 * seconds * ntasks / ncalls
    run = Run(seed=seed, remaining=ncalls)
    baseline_tasks = asyncio.all_tasks()
    sockets = open_sockets()
    spec = [s.address for s in servers]
    c = cmemcache.aio.StringClient(spec, timeout=TIMEOUT, connect_timeout=TIMEOUT,
                                   dead_retry=1, max_connections=2, max_inflight=max_inflight,
                                   max_value_size=1 << 20, noreply_fence=fence)
    mc = cmemcache.aio.Client(spec, socket_timeout=TIMEOUT, dead_retry=1, strict=True,
                              max_connections=2, max_inflight=max_inflight)
    log: list[str] = []
    done = asyncio.Event()

    async def watch():
        while not done.is_set():
            for i, n in enumerate(c.connections()):
                run.max_conns[i] = max(run.max_conns[i], n)
            await asyncio.sleep(0.02)

    watcher = asyncio.ensure_future(watch())
    chaotic = asyncio.ensure_future(chaos(servers, seed, done, log))
    started = time.monotonic()
    try:
        workers = [string_worker(run, c, t, pace) for t in range(ntasks - nclient_tasks)]
        workers += [client_worker(run, mc, t, pace) for t in range(nclient_tasks)]
        async with asyncio.timeout(120):
            await asyncio.gather(*workers)
    finally:
        elapsed = time.monotonic() - started
        done.set()
        await watcher
        await chaotic
        for s in servers:
            if not s.running():
                s.start()
            s.resume()

    # healthy again: every call of every task gets its own reply
    c.forget_dead()
    mc.forget_dead_hosts()
    for tid in range(ntasks - nclient_tasks):
        keys = [b"t%03d:k%d" % (tid, i) for i in range(KEYS_PER_TASK)]
        for k, v in (await c.get_multi(keys)).items():
            run.check_value(k, v, "final get_multi")
        for k in keys:
            version = run.attempted[k] = run.attempted.get(k, 0) + 1
            assert await c.set(k, value_for(k, version, 100)) is True
        assert await c.get_multi(keys) == {
            k: value_for(k, run.attempted[k], 100) for k in keys}
    for tid in range(nclient_tasks):
        keys = [f"c{tid:03d}:k{i}" for i in range(KEYS_PER_TASK)]
        for k, v in (await mc.get_multi(keys)).items():
            run.check_value(k, v, "final Client.get_multi")
        assert await mc.set(keys[0], "last") is True
        assert await mc.get(keys[0]) == "last"

    await c.close()
    await mc.close()
    await asyncio.sleep(0)
    left_tasks = asyncio.all_tasks() - baseline_tasks
    return run, log, elapsed, c.connections(), mc._sc.connections(), \
        open_sockets() - sockets, left_tasks


@pytest.mark.hang_timeout(240)
# the second run: uvloop, no noreply fences, fewer requests in flight per
# connection (more calls wait for room)
@pytest.mark.parametrize("loop, ncalls, seconds, fence, max_inflight",
                         [("asyncio", 20_000, 15, True, 16), ("uvloop", 8_000, 6, False, 4)])
def test_cancellations_and_failing_servers_never_cross_replies(memcached_factory, loop, ncalls,
                                                               seconds, fence, max_inflight):
    seed = int(os.environ.get("AIO_TORTURE_SEED") or random.SystemRandom().randrange(2**32))
    print(f"torture seed {seed} ({loop}): AIO_TORTURE_SEED={seed} reruns it")
    servers = [memcached_factory(port=free_port(), memory_mb=256) for _ in range(2)]
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        run, log, elapsed, conns, client_conns, sockets, left = runner.run(
            torture(servers, seed, ntasks=256, ncalls=ncalls, nclient_tasks=32,
                    seconds=seconds, fence=fence, max_inflight=max_inflight))
    where = f"seed {seed}, {loop}, chaos {log}, outcomes {run.outcomes}"
    print(f"{run.calls} calls in {elapsed:.1f} s; slowest {run.slowest:.2f} s; {where}")
    assert run.crossed == [], where
    assert run.unexpected == [], where
    assert run.calls == ncalls
    assert run.slowest < BOUND, where
    # the chaos happened, and calls ended in every way
    assert sum(e.startswith("pause") for e in log) >= 2, where
    assert sum(e.startswith("kill") for e in log) >= 1, where
    for kind in ("returned", "cmemcache.TimeoutError", "builtins.TimeoutError",
                 "asyncio.exceptions.CancelledError", "cmemcache.ConnectionError"):
        assert run.outcomes.get(kind, 0) > 0, (kind, where)
    # how many return depends on how long the seed keeps the servers down
    # (from a quarter to a half of the calls, seen): an eighth is a floor
    # no healthy run falls under
    assert run.outcomes["returned"] > ncalls // 8, where
    assert max(run.max_conns) <= 2 and min(run.max_conns) >= 1, run.max_conns
    # nothing left behind
    assert conns == (0, 0) and client_conns == (0, 0)
    assert sockets == 0
    assert left == set()
    for s in servers:
        assert wait_until(lambda: curr_connections(s) == 0), s.address


def test_the_checks_catch_what_they_are_for():
    """The torture's checks fail on a value of another key, of a version
    not written yet, cut short, or changed."""
    run = Run(seed=1, remaining=0, attempted={b"t001:k0": 3, b"t001:k1": 1, "c001:k0": 2})
    good = value_for(b"t001:k0", 2, 1000)
    for got in (None, good, value_for(b"t001:k0", 3, 0)):
        run.check_value(b"t001:k0", got, "good")
    run.check_value("c001:k0", {"key": "c001:k0", "version": 2, "size": 5, "pad": PAD[:5]}, "good")
    assert run.crossed == []
    bad = [
        (b"t001:k0", value_for(b"t001:k1", 1, 10)),      # another key's
        (b"t001:k0", value_for(b"t001:k0", 4, 10)),      # a version never written
        (b"t001:k0", good[:-1]),                         # cut short
        (b"t001:k0", good[:-1] + b"x"),                  # changed
        (b"t001:k0", b"STORED"),
        (b"t001:k2", value_for(b"t001:k2", 1, 10)),      # a key never written
        ("c001:k0", {"key": "c001:k1", "version": 1, "size": 0, "pad": b""}),
        ("c001:k0", {"key": "c001:k0", "version": 1, "size": 5, "pad": PAD[1:6]}),
    ]
    for key, got in bad:
        run.check_value(key, got, "bad")
    assert len(run.crossed) == len(bad)
