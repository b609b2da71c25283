#!/usr/bin/env python3
"""Instructions per operation of the asyncio clients, measured with callgrind.

    python3 bench/aio_callgrind.py [--out DIR] [--clients x,y] [--cases get,set,get_multi]
                                   [--tasks 1,16] [--n1 2000] [--n2 8000] [--jobs 2]

The same method as bench/callgrind.py, for the clients of bench/aio_clients.py:
a driver runs N operations spread over T concurrent tasks on one event loop
(asyncio's own), twice under `valgrind --tool=callgrind`, with N1 and N2
operations, and the result is (Ir(N2) - Ir(N1)) / (N2 - N1): the user-space
instructions of the whole client process (interpreter, event loop, client,
libc) per operation, with start-up, connecting and seeding cancelled out.
memcached runs outside valgrind.  Instructions, unlike seconds, do not change
with what else the machine is doing, so this is the stable form of the CPU
per operation that bench/aio_bench.py reports.

Writes a table to stdout and OUT/aio_callgrind.md, the numbers to
OUT/aio_callgrind.json.
"""

import argparse
import asyncio
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import aio_clients  # noqa: E402  (the adapters)
import bench  # noqa: E402  (servers, machine description)
import callgrind  # noqa: E402  (running valgrind, reading its totals)

VALUE = b"0123456789"
KEY = b"acg:key"
MULTI_KEYS = [b"acg:gm:%d" % i for i in range(100)]
WARMUP = 200          # untimed operations before the counted ones, same for N1 and N2

# case -> (title, divisor of N: a get_multi does 100 keys)
CASES = {
    "get": ("get 10 B", 1),
    "set": ("set 10 B", 1),
    "get_multi": ("get_multi 100 keys (per call)", 10),
}
# the name of each case in bench/aio_bench.py (an adapter's `cases`)
AIO_BENCH_CASE = {"get": "get_hit", "set": "set_10", "get_multi": "get_multi_100"}
TASKS = (1, 16)


# --------------------------------------------------------------------------
# the driver (runs inside valgrind)


async def drive(adapter, case, n, tasks, port):
    await adapter.open(port, tasks)
    try:
        if case == "get_multi":
            for k in MULTI_KEYS:
                if not adapter.stored(await adapter.set(k, VALUE)):
                    return "set failed"
            op, args = adapter.get_multi, (MULTI_KEYS,)
        elif case == "get":
            if not adapter.stored(await adapter.set(KEY, VALUE)):
                return "set failed"
            op, args = adapter.get, (KEY,)
        else:
            op, args = adapter.set, (KEY, VALUE)

        async def run(count):
            left = [count]

            async def task():
                while left[0] > 0:
                    left[0] -= 1
                    await op(*args)

            await asyncio.gather(*[task() for _ in range(tasks)])

        await run(WARMUP)
        await run(n)
        r = await op(*args)
        if case == "get" and adapter.value(r) != VALUE:
            return "get returned %r" % (r,)
        if case == "set" and not adapter.stored(r):
            return "set did not store"
        if case == "get_multi":
            got = adapter.as_dict(MULTI_KEYS, r)
            if len(got) != 100 or any(got.get(k) != VALUE for k in MULTI_KEYS):
                return "get_multi returned %d keys" % len(got)
        return None
    finally:
        await adapter.close()


def driver(key, case, n, tasks, port):
    adapter = aio_clients.ADAPTER_BY_KEY[key]()
    return asyncio.run(drive(adapter, case, n, tasks, port))


# --------------------------------------------------------------------------
# the runner


def measure(key, case, tasks, n1, n2, port, workdir, timeout):
    div = CASES[case][1]
    counts = (max(1, n1 // div), max(2, n2 // div))
    irs = []
    for n in counts:
        out = os.path.join(workdir, "callgrind.%s.%s.%d.%d.out" % (key, case, tasks, n))
        cmd = [sys.executable, os.path.abspath(__file__), "--driver", key, case, str(n),
               str(tasks), str(port)]
        irs.append(callgrind.run_valgrind(cmd, out, timeout))
    return {"status": "ok", "ir_per_op": (irs[1] - irs[0]) / (counts[1] - counts[0]),
            "n1": counts[0], "n2": counts[1], "ir_n1": irs[0], "ir_n2": irs[1]}


def render(report, order):
    m = report["meta"]
    cols = [(c, t) for c in CASES if c in m["cases"] for t in m["tasks"]]
    lines = ["# cmemcache.aio: instructions per operation (callgrind)", "",
             "- date: %s; %s, %s; Python %s (asyncio's own loop); %s" % (
                 m["date"], m["machine"], m["cpu"], m["python"], m["valgrind"]),
             "- clients: %s; cmemcache source revision %s" % (
                 ", ".join("%s %s" % (aio_clients.ADAPTER_BY_KEY[k].label, v)
                           for k, v in m["clients"].items()), m.get("cmemcache_revision")),
             "- Ir per operation = (Ir(N2) - Ir(N1)) / (N2 - N1), user space of the client "
             "process only; N1/N2 = %d/%d (get, set), %d/%d calls (get_multi); "
             "x1, x16: concurrent tasks" % (m["n1"], m["n2"], m["n1"] // 10, m["n2"] // 10),
             "",
             "| client | %s |" % " | ".join("%s x%d" % (CASES[c][0], t) for c, t in cols),
             "|---|%s" % ("---:|" * len(cols))]
    for key in order:
        res = report["results"].get(key, {})
        cells = []
        for c, t in cols:
            r = res.get("%s x%d" % (c, t), {})
            cells.append("{:,.0f}".format(r["ir_per_op"]) if r.get("status") == "ok"
                         else r.get("status", "—"))
        lines.append("| %s | %s |" % (aio_clients.ADAPTER_BY_KEY[key].label, " | ".join(cells)))
    notes = ["- %s / %s: %s" % (aio_clients.ADAPTER_BY_KEY[k].label, c, r.get("detail", ""))
             for k, res in report["results"].items() for c, r in res.items()
             if r.get("status") not in ("ok", "—")]
    if m["skipped_clients"]:
        notes += ["- %s: not measured (%s)" % (aio_clients.ADAPTER_BY_KEY[k].label, why)
                  for k, why in m["skipped_clients"].items()]
    if notes:
        lines += ["", "Not measured:", ""] + notes
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=bench.DEFAULT_OUT)
    ap.add_argument("--clients", help="comma-separated (default: all available): %s"
                    % ",".join(a.key for a in aio_clients.ADAPTERS))
    ap.add_argument("--cases", help="comma-separated: %s" % ",".join(CASES))
    ap.add_argument("--tasks", help="comma-separated numbers of tasks (default 1,16)")
    callgrind.add_run_arguments(ap, n2=8000)
    args = ap.parse_args(argv)
    callgrind.check_run_arguments(ap, args)
    cases = bench.parse_list(args.cases) or list(CASES)
    bad = [c for c in cases if c not in CASES]
    if bad:
        ap.error("unknown case(s): %s" % ", ".join(bad))
    try:
        tasks = [int(t) for t in bench.parse_list(args.tasks)] if args.tasks else list(TASKS)
    except ValueError:
        ap.error("--tasks takes numbers")
    if not tasks or any(not 1 <= t <= 1024 for t in tasks):
        ap.error("--tasks must be 1..1024")
    keys = [a.key for a in aio_clients.ADAPTERS]
    wanted = bench.parse_list(args.clients) or keys
    bad = [w for w in wanted if w not in keys]
    if bad:
        ap.error("unknown client(s): %s" % ", ".join(bad))
    bench.install_signal_handlers()

    versions, skipped, order = {}, {}, []
    for cls in aio_clients.ADAPTERS:
        if cls.key not in wanted:
            continue
        a = cls()
        ok, why = a.available()
        if not ok:
            skipped[cls.key] = why
            print("skipping %s: %s" % (cls.label, why), file=sys.stderr)
            continue
        versions[cls.key] = a.version()
        order.append(cls.key)

    vg_version = subprocess.run(["valgrind", "--version"], capture_output=True,
                                text=True).stdout.strip()
    report = {"meta": {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(), "cpu": bench.cpu_model(),
        "python": platform.python_version(), "valgrind": vg_version,
        "memcached": bench.memcached_version(), "clients": versions,
        "cmemcache_revision": bench.repo_revision(), "skipped_clients": skipped,
        "n1": args.n1, "n2": args.n2, "warmup": WARMUP, "cases": cases, "tasks": tasks,
    }, "results": {k: {} for k in order}}

    os.makedirs(args.out, exist_ok=True)
    t0 = time.monotonic()
    servers = {k: bench.Memcached().start() for k in order}  # one per client
    try:
        with tempfile.TemporaryDirectory(prefix="cmemcache-aio-callgrind-") as workdir:
            jobs = []
            for k in order:
                for c in cases:
                    for t in tasks:
                        takes = aio_clients.ADAPTER_BY_KEY[k].cases
                        if takes is not None and AIO_BENCH_CASE[c] not in takes:
                            report["results"][k]["%s x%d" % (c, t)] = {"status": "—"}
                            continue
                        jobs.append((k, c, t))
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                futs = {pool.submit(measure, k, c, t, args.n1, args.n2, servers[k].port,
                                    workdir, args.timeout): (k, c, t) for k, c, t in jobs}
                for fut, (k, c, t) in futs.items():
                    try:
                        res = fut.result()
                    except Exception as e:
                        res = {"status": "error", "detail": "%s: %s" % (type(e).__name__, e)}
                    report["results"][k]["%s x%d" % (c, t)] = res
                    print("  %-18s %-10s x%-3d %s" % (
                        k, c, t, "%.0f Ir/op" % res["ir_per_op"] if res["status"] == "ok"
                        else res["detail"]), file=sys.stderr, flush=True)
    finally:
        for s in servers.values():
            s.stop()
    report["meta"]["seconds"] = round(time.monotonic() - t0, 1)
    text = render(report, order)
    with open(os.path.join(args.out, "aio_callgrind.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "aio_callgrind.json"), "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
    print(text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--driver":
        k, c, n, t, p = sys.argv[2:7]
        problem = driver(k, c, int(n), int(t), int(p))
        if problem:
            print(problem, file=sys.stderr)
            sys.exit(3)
        sys.exit(0)
    sys.exit(main())
