"""The client process of bench/aio_bench.py: checks and times asyncio clients.

    python3 bench/aio_worker.py < job.json > result.json

One job is one event loop and one case, with a list of clients and of numbers
of tasks (and, per number of tasks, clients to leave out: those that failed in
an earlier job). The worker makes the event loop, then for each number of
tasks, each round and each client (the starting client rotating from round to
round): opens the client, checks its answers at that concurrency, warms it up,
times it, checks it again and closes it. Only
this process runs the clients; memcached runs outside it, so the CPU time
measured here (time.process_time, all threads of this process) is the client
side's alone; memcached's CPU time over the same run (all its threads, from
/proc/<pid>/task/*/schedstat, when the job names its pid) is reported beside
it. Prints one JSON object. See bench/README.md.
"""

import asyncio
import gc
import json
import math
import os
import random
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import aio_clients  # noqa: E402
from bench import Seeder  # noqa: E402

MAX_TASKS = 256
GET_KEYS = [b"aio:get:%d" % i for i in range(MAX_TASKS)]
GET_VALUES = [b"g%09d" % i for i in range(MAX_TASKS)]          # 10 bytes each
SET_KEYS = [b"aio:set:%d" % i for i in range(MAX_TASKS)]
SET_VALUES = [b"s%09d" % i for i in range(MAX_TASKS)]
MULTI_KEYS = [b"aio:gm:%d" % i for i in range(100)]
MULTI_VALUES = [b"m%09d" % i for i in range(100)]
MISS_KEY = b"aio:miss"
MIX_KEYS_N = 10000
MIX_KEYS = [b"aio:z:%d" % i for i in range(MIX_KEYS_N)]
MIX_ZIPF_S = 1.0
MIX_SEED = 20240601
MIX_LEN = 100000
STARVED_WINDOW = 0.120     # seconds: a task with no reply for this long is counted
#: seconds one client's round (open, checks, warm-up, timed run, close) may
#: take beyond its timed runs before it is called hung and cancelled, so one
#: client that never answers costs its own results, not the whole job's
STALL_SECONDS = 60.0


def mix_value(i):
    return b"%010d" % i * 10                                      # 100 bytes


MIX_VALUES = [mix_value(i) for i in range(MIX_KEYS_N)]
_MIX_SEQ = None


def mix_sequence():
    """(is_set, key, value) triples: 90 % get / 10 % set, keys drawn from a
    Zipf law (s = 1) over 10,000 keys with a fixed seed; every client and
    task walks the same sequence (task i from offset i * len / tasks)."""
    global _MIX_SEQ
    if _MIX_SEQ is None:
        rng = random.Random(MIX_SEED)
        cum, total = [], 0.0
        for rank in range(1, MIX_KEYS_N + 1):
            total += 1.0 / rank ** MIX_ZIPF_S
            cum.append(total)
        drawn = rng.choices(range(MIX_KEYS_N), cum_weights=cum, k=MIX_LEN)
        _MIX_SEQ = [(rng.random() < 0.10, MIX_KEYS[i], MIX_VALUES[i]) for i in drawn]
    return _MIX_SEQ


def seed_all(seeder):
    """Untimed: the server state every case reads (run by the parent)."""
    seeder.set_many(zip(GET_KEYS, GET_VALUES))
    seeder.set_many(zip(SET_KEYS, SET_VALUES))
    seeder.set_many(zip(MULTI_KEYS, MULTI_VALUES))
    seeder.set_many(zip(MIX_KEYS, MIX_VALUES))
    seeder.delete(MISS_KEY)


# --------------------------------------------------------------------------
# cases: op_factory(adapter, task index, tasks) -> zero-argument callable
# returning the awaitable of one operation


def _op_get(ad, i, n):
    g, key = ad.get, GET_KEYS[i]
    return lambda: g(key)


def _op_set(ad, i, n):
    s, key, value = ad.set, SET_KEYS[i], SET_VALUES[i]
    return lambda: s(key, value)


def _op_get_multi(ad, i, n):
    gm, keys = ad.get_multi, MULTI_KEYS
    return lambda: gm(keys)


def _op_mix(ad, i, n):
    seq = mix_sequence()
    length = len(seq)
    pos = [i * length // n]
    g, s = ad.get, ad.set

    def op():
        p = pos[0]
        pos[0] = p + 1 if p + 1 < length else 0
        is_set, key, value = seq[p]
        return s(key, value) if is_set else g(key)
    return op


CASES = {
    "get_hit": ("get hit, 10 B", _op_get),
    "set_10": ("set 10 B", _op_set),
    "get_multi_100": ("get_multi, 100 keys x 10 B (per call)", _op_get_multi),
    "mix": ("90/10 get/set, Zipf over 10,000 keys, 100 B", _op_mix),
}


# --------------------------------------------------------------------------
# answer checks


class Wrong(Exception):
    """A client's answer is not the expected one."""


def expect(cond, msg):
    if not cond:
        raise Wrong(msg)


def _short(v):
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


async def check_get(ad, tasks, seeder):
    got = ad.value(await ad.get(GET_KEYS[0]))
    expect(got == GET_VALUES[0], "get returned %s" % _short(got))
    got = ad.value(await ad.get(MISS_KEY))
    expect(got is None, "get of a missing key returned %s" % _short(got))
    # every task its own key and value, all in flight at once: a reply handed
    # to the wrong request shows as another task's value
    n = max(tasks, 2)
    rs = await asyncio.gather(*(ad.get(GET_KEYS[i % MAX_TASKS]) for i in range(n)))
    bad = [i for i, r in enumerate(rs) if ad.value(r) != GET_VALUES[i % MAX_TASKS]]
    expect(not bad, "%d concurrent gets: %d wrong, e.g. #%d -> %s"
           % (n, len(bad), bad[:1][0] if bad else 0, _short(ad.value(rs[bad[0]])) if bad else ""))
    return ["get", "get_miss", "get x%d concurrent" % n]


async def check_set(ad, tasks, seeder):
    n = max(tasks, 2)
    keys = [SET_KEYS[i % MAX_TASKS] + b":chk" for i in range(n)]
    values = [b"c%09d" % i for i in range(n)]
    seeder.delete_many(keys)
    rs = await asyncio.gather(*(ad.set(k, v) for k, v in zip(keys, values)))
    bad = [i for i, r in enumerate(rs) if not ad.stored(r)]
    expect(not bad, "%d concurrent sets: %d not stored, e.g. %r" % (n, len(bad), rs[bad[0]]
                                                                    if bad else None))
    held = seeder.get_multi(keys)
    bad = [k for k, v in zip(keys, values) if held.get(k) != v]
    expect(not bad, "after %d concurrent sets the server holds a wrong value for %d keys, "
           "e.g. %r -> %s" % (n, len(bad), bad[:1], _short(held.get(bad[0]) if bad else None)))
    return ["set", "set x%d concurrent (server holds each value)" % n]


async def check_get_multi(ad, tasks, seeder):
    want = dict(zip(MULTI_KEYS, MULTI_VALUES))
    got = ad.as_dict(MULTI_KEYS, await ad.get_multi(MULTI_KEYS))
    expect(got == want, "get_multi of 100 keys: %d keys, %d right"
           % (len(got), sum(got.get(k) == v for k, v in want.items())))
    keys = MULTI_KEYS[:3] + [MISS_KEY]
    got = ad.as_dict(keys, await ad.get_multi(keys))
    expect(got == {k: want[k] for k in keys[:3]}, "get_multi with a missing key returned %s"
           % _short(got))
    n = max(tasks, 2)
    # each concurrent call asks a different rotation of the keys
    asks = [MULTI_KEYS[i % 100:] + MULTI_KEYS[:i % 100] for i in range(n)]
    rs = await asyncio.gather(*(ad.get_multi(k) for k in asks))
    bad = [i for i, (k, r) in enumerate(zip(asks, rs)) if ad.as_dict(k, r) != want]
    expect(not bad, "%d concurrent get_multi: %d wrong" % (n, len(bad)))
    return ["get_multi 100", "get_multi with a miss", "get_multi x%d concurrent" % n]


async def check_mix(ad, tasks, seeder):
    names = await check_get(ad, tasks, seeder)
    n = max(tasks, 2)
    idx = [(i * 7919) % MIX_KEYS_N for i in range(n)]
    rs = await asyncio.gather(*(ad.get(MIX_KEYS[i]) for i in idx))
    bad = [i for i, r in zip(idx, rs) if ad.value(r) != MIX_VALUES[i]]
    expect(not bad, "%d concurrent gets of 100 B values: %d wrong" % (n, len(bad)))
    key, value = MIX_KEYS[idx[-1]], MIX_VALUES[idx[-1]]
    r = await ad.set(key, value)
    expect(ad.stored(r), "set of a 100 B value returned %r" % (r,))
    held = seeder.get(key)
    expect(held == value, "server holds %s after set" % _short(held))
    return names + ["get 100 B x%d concurrent" % n, "set 100 B"]


CHECKS = {"get_hit": check_get, "set_10": check_set, "get_multi_100": check_get_multi,
          "mix": check_mix}


# --------------------------------------------------------------------------
# the timed loop


SERVER_PID = None   # memcached's, from the job: its CPU time is read around each run


def server_cpu_ns():
    """memcached's CPU time so far in ns (all its threads), or None."""
    if SERVER_PID is None:
        return None
    total = 0
    base = "/proc/%d/task" % SERVER_PID
    try:
        for tid in os.listdir(base):
            try:
                with open(os.path.join(base, tid, "schedstat")) as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass          # a thread that ended meanwhile
    except OSError:
        return None
    return total


async def run_tasks(ad, case, tasks, duration):
    """Run `tasks` tasks of the case's operation for `duration` seconds.

    Every task waits for a common start, then loops until the stop flag is
    set, awaiting one operation at a time and recording each call's latency
    and the longest time it went without a reply (from the start to its
    first reply, between replies, and to its last reply, which may come
    after the stop). The stop is a timer armed by the last task to start, so
    every task does at least one operation: a timer armed at the start can
    fire before the tasks' first steps on a loop that runs due timers before
    ready callbacks (uvloop) when the process stalls. Returns the numbers of
    the run; the garbage collector is off meanwhile.
    """
    op_factory = CASES[case][1]
    loop = asyncio.get_running_loop()
    start = asyncio.Event()
    stop = [False]
    started = [0]
    timer = [None]
    t0 = [0.0]
    counts = [0] * tasks
    gaps = [0.0] * tasks
    lats = [None] * tasks

    async def one(i):
        op = op_factory(ad, i, tasks)
        await start.wait()
        pc = time.perf_counter
        last = t0[0]
        gap = 0.0
        n = 0
        lat = []
        add = lat.append
        started[0] += 1
        if started[0] == tasks:
            # the last task to start arms the stop (see above)
            timer[0] = loop.call_later(duration, stop.__setitem__, 0, True)
        while not stop[0]:
            t = pc()
            await op()
            t2 = pc()
            add(t2 - t)
            if t2 - last > gap:
                gap = t2 - last
            last = t2
            n += 1
        counts[i], gaps[i], lats[i] = n, gap, lat

    jobs = [loop.create_task(one(i)) for i in range(tasks)]
    await asyncio.sleep(0)          # every task is waiting on the start
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        srv0 = server_cpu_ns()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = time.process_time()
        t0[0] = time.perf_counter()
        start.set()
        try:
            await asyncio.gather(*jobs)
        except BaseException:
            # one task failed: the others stop after their current operation
            # (or are cancelled after 5 s), before the client is closed
            stop[0] = True
            _done, pending = await asyncio.wait(jobs, timeout=5.0)
            for job in pending:
                job.cancel()
            raise
        finally:
            if timer[0] is not None:
                timer[0].cancel()
            stop[0] = True
        t1 = time.perf_counter()
        cpu1 = time.process_time()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        srv1 = server_cpu_ns()
    finally:
        if was:
            gc.enable()
    total = sum(counts)
    if total == 0:
        raise RuntimeError("no operation completed")
    allv = sorted(x for lat in lats for x in lat)
    seconds = t1 - t0[0]
    return {
        "ops": total,
        "seconds": round(seconds, 6),
        "ops_per_sec": round(total / seconds, 1),
        "cpu_us_per_op": round(1e6 * (cpu1 - cpu0) / total, 3),
        "user_us_per_op": round(1e6 * (ru1.ru_utime - ru0.ru_utime) / total, 3),
        "sys_us_per_op": round(1e6 * (ru1.ru_stime - ru0.ru_stime) / total, 3),
        "server_us_per_op": (None if srv0 is None or srv1 is None
                             else round((srv1 - srv0) / 1e3 / total, 3)),
        "p50_us": round(1e6 * _quantile(allv, 0.50), 2),
        "p99_us": round(1e6 * _quantile(allv, 0.99), 2),
        "task_ops_min": min(counts),
        "task_ops_max": max(counts),
        "fairness": round(min(counts) / max(counts), 4),
        "starved_120ms": sum(1 for g in gaps if g > STARVED_WINDOW),
        "max_gap_ms": round(1e3 * max(gaps), 3),
        "duration": duration,
        # times the kernel took the CPU away from this process during the run
        # (for memcached on the same CPU, for the process's own threads, or
        # for other load on the machine)
        "involuntary_switches": ru1.ru_nivcsw - ru0.ru_nivcsw,
    }


def _quantile(sorted_values, q):
    """The q-quantile of sorted values (nearest rank)."""
    i = min(len(sorted_values), max(1, math.ceil(q * len(sorted_values)))) - 1
    return sorted_values[i]


# --------------------------------------------------------------------------
# one job


async def run_job(job, seeder, log):
    """Every number of tasks of the job in turn: its rounds of all clients."""
    out = {}
    for tasks in job["concurrency"]:
        out[str(tasks)] = await run_group(job, tasks, seeder, log)
    return out


async def run_group(job, tasks, seeder, log):
    case, rounds = job["case"], job["rounds"]
    duration, warmup = job["duration"], job["warmup"]
    pools = job.get("pools") or {}
    check = CHECKS[case]
    skip = set((job.get("skip") or {}).get(str(tasks), ()))
    adapters = [aio_clients.ADAPTER_BY_KEY[k](pool=pools.get(k)) for k in job["clients"]
                if k not in skip]
    out = {}
    for ad in adapters:
        out[ad.key] = {"status": "ok", "settings": ad.settings(tasks), "checks": [],
                       "runs": []}
    for r in range(rounds):
        k = (r + job.get("rotate", 0) + tasks) % len(adapters) if adapters else 0
        for ad in adapters[k:] + adapters[:k]:
            res = out[ad.key]
            if res["status"] != "ok":
                continue
            opened = False
            stage = "open"
            limit = STALL_SECONDS + 2 * job.get("max_duration", duration) + warmup
            try:
                async with asyncio.timeout(limit) as guard:
                    await ad.open(job["port"], tasks)
                    opened = True
                    stage = "check"
                    names = await check(ad, tasks, seeder)
                    if not res["checks"]:
                        res["checks"] = names
                    stage = "warm-up"
                    length = duration
                    if warmup > 0:
                        warm = await run_tasks(ad, case, tasks, warmup)
                        # long enough for every task to complete about
                        # min_task_ops operations (fairness and the 120 ms
                        # windows need a few per task), within max_duration
                        need = job.get("min_task_ops", 0) * tasks / warm["ops_per_sec"]
                        length = min(max(duration, need), job.get("max_duration", duration))
                    stage = "timed run"
                    run = await run_tasks(ad, case, tasks, length)
                    stage = "check after timing"
                    await check(ad, tasks, seeder)
                    res["runs"].append(run)
            except TimeoutError as e:
                if not guard.expired():    # the client's own timeout
                    res["status"] = "error"
                    res["detail"] = "%s: %s: %s" % (stage, type(e).__name__, e)
                    continue
                res["status"] = "hung"
                res["detail"] = "%s: no answer within %.0f s" % (stage, limit)
                log("  %s %s x%d: hung in %s; its tasks:" % (ad.key, case, tasks, stage))
                for t in asyncio.all_tasks():
                    if t is not asyncio.current_task():
                        t.print_stack(file=sys.stderr)
            except Wrong as e:
                res["status"], res["detail"] = "wrong", "%s: %s" % (stage, e)
            except Exception as e:
                # the client raised: an error, in a check too ("wrong" is
                # an answer that differs from what was stored)
                res["status"] = "error"
                res["detail"] = "%s: %s: %s" % (stage, type(e).__name__, e)
            finally:
                if opened:
                    try:
                        await ad.close()
                    except Exception as e:
                        log("%s: close: %s: %s" % (ad.key, type(e).__name__, e))
            if res["status"] != "ok":
                log("  %s %s x%d: %s" % (ad.key, case, tasks, res["detail"]))
    return out


def make_loop(name):
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    if name == "asyncio":
        return asyncio.new_event_loop()
    raise ValueError("unknown event loop %r" % name)


def main():
    global SERVER_PID
    job = json.load(sys.stdin)
    SERVER_PID = job.get("server_pid")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)
    seeder = Seeder(job["port"])
    if job["case"] == "mix":
        mix_sequence()
    # what exists now lives until the end: out of the collector's way, so the
    # collection before each timed run does not walk it every time
    gc.collect()
    gc.freeze()
    loop = make_loop(job["loop"])
    asyncio.set_event_loop(loop)
    try:
        groups = loop.run_until_complete(run_job(job, seeder, log))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
            seeder.close()
    json.dump({"loop": job["loop"], "loop_class": type(loop).__module__ + "." +
               type(loop).__name__, "case": job["case"], "concurrency": groups},
              sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
