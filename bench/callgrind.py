#!/usr/bin/env python3
"""Instructions per operation in the client process, measured with callgrind.

    python3 bench/callgrind.py [--out DIR] [--clients x,y] [--cases get,set,get_multi]
                               [--n1 2000] [--n2 12000] [--jobs 2]

For every client and case a small driver runs twice under
`valgrind --tool=callgrind`, with N1 and then N2 operations; the result is

    (Ir(N2) - Ir(N1)) / (N2 - N1)

instructions executed per operation, so interpreter start-up, imports,
connecting and seeding cancel out. Ir is the total from the "totals:" (or
"summary:") line of the callgrind output file: user-space instructions of the
whole client process (Python interpreter, client library, libc), not the kernel
and not the memcached server, which runs outside valgrind.

Writes a table to stdout and OUT/callgrind.md, the numbers to OUT/callgrind.json.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench  # noqa: E402  (bench/bench.py: servers, client constructors, raw loop)

VALUE = b"0123456789"
MULTI_KEYS = ["cg:gm:%d" % i for i in range(100)]
WARMUP = 200          # untimed operations before the counted ones, same for N1 and N2

# case -> (title, divisor of N: get_multi calls do 100 keys each)
CASES = {
    "get": ("get 10 B", 1),
    "set": ("set 10 B", 1),
    "get_multi": ("get_multi 100 keys (per call)", 10),
    "meta_get": ("meta_get 10 B (mg)", 1),
}
#: the cases only some clients have: the meta protocol is StringClient's
ONLY = {"meta_get": {"stringclient"}}
RAW_CASES = {"get": ("get", 10, 1), "set": ("set", 10, 1), "get_multi": ("get_multi", 10, 100)}


# --------------------------------------------------------------------------
# the driver (runs inside valgrind)


def repeat(fn, arg, n):
    """fn(arg) WARMUP times, then n times (the counted ones)."""
    for _ in range(WARMUP):
        fn(arg)
    for _ in range(n):
        fn(arg)


def driver(client_key, case, n, port):
    spec = next(s for s in bench.CLIENT_SPECS if s.key == client_key)
    c = spec.make([port])
    key = "cg:key"
    if case == "get":
        if not c.set(key, VALUE):
            return "set failed"
        repeat(c.get, key, n)
        got = c.get(key)
        if got != VALUE:
            return "get returned %r" % (got,)
    elif case == "set":
        s = c.set
        for _ in range(WARMUP):
            s(key, VALUE)
        for _ in range(n):
            s(key, VALUE)
        if not s(key, VALUE) or c.get(key) != VALUE:
            return "set did not store"
    elif case == "meta_get":
        if not c.set(key, VALUE):
            return "set failed"
        repeat(c.meta_get, key, n)
        got = c.meta_get(key)
        if got is None or got.value != VALUE:
            return "meta_get returned %r" % (got,)
    elif case == "get_multi":
        for k in MULTI_KEYS:
            if not c.set(k, VALUE):
                return "set failed"
        repeat(c.get_multi, MULTI_KEYS, n)
        got = c.get_multi(MULTI_KEYS)
        if len(got) != 100 or any(got.get(k) != VALUE for k in MULTI_KEYS):
            return "get_multi returned %d keys" % len(got)
    else:
        return "unknown case %s" % case
    return None


# --------------------------------------------------------------------------
# the runner


def read_total_ir(path):
    totals = summary = None
    with open(path, "r", errors="replace") as f:
        for line in f:
            if line.startswith("totals:"):
                totals = int(line.split()[1])
            elif line.startswith("summary:"):
                summary = int(line.split()[1])
    total = totals if totals is not None else summary
    if total is None:
        raise RuntimeError("no totals/summary line in %s" % path)
    return total


def run_valgrind(cmd, outfile, timeout):
    vg = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + outfile,
          "--dump-line=no", "--dump-instr=no"]
    env = dict(os.environ, PYTHONHASHSEED="0")
    p = subprocess.run(vg + cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        tail = (p.stderr or "").strip().splitlines()[-5:]
        raise RuntimeError("exit %d: %s" % (p.returncode, " | ".join(tail)))
    return read_total_ir(outfile)


def measure(key, case, n1, n2, port, rawloop, workdir, timeout):
    div = CASES[case][1]
    n1c, n2c = max(1, n1 // div), max(2, n2 // div)
    irs = []
    for n in (n1c, n2c):
        out = os.path.join(workdir, "callgrind.%s.%s.%d.out" % (key, case, n))
        if key == bench.RAW:
            op, size, nkeys = RAW_CASES[case]
            cmd = [rawloop, bench.HOST, str(port), op, str(size), str(nkeys), str(n),
                   str(WARMUP)]
        else:
            cmd = [sys.executable, os.path.abspath(__file__), "--driver", key, case, str(n),
                   str(port)]
        irs.append(run_valgrind(cmd, out, timeout))
    per_op = (irs[1] - irs[0]) / (n2c - n1c)
    return {"status": "ok", "ir_per_op": per_op, "n1": n1c, "n2": n2c,
            "ir_n1": irs[0], "ir_n2": irs[1]}


def render(report, order):
    m = report["meta"]
    cols = [c for c in CASES if c in m["cases"]]
    lines = ["# cmemcache: instructions per operation (callgrind)", "",
             "- date: %s; %s, %s; Python %s; %s" % (m["date"], m["machine"], m["cpu"],
                                                    m["python"], m["valgrind"]),
             "- clients: %s; cmemcache source revision %s" % (
                 ", ".join("%s %s" % (bench.label_of(k), v) for k, v in m["clients"].items()),
                 m.get("cmemcache_revision")),
             "- Ir per operation = (Ir(N2) - Ir(N1)) / (N2 - N1), user space of the client "
             "process only; N1/N2 = %d/%d (get, set), %d/%d calls (get_multi)"
             % (m["n1"], m["n2"], m["n1"] // 10, m["n2"] // 10),
             "",
             "| client | %s | get_multi per key | get vs pylibmc |" % " | ".join(
                 CASES[c][0] for c in cols),
             "|---|%s---:|---:|" % ("---:|" * len(cols))]
    if "get_multi" not in cols:
        lines[-2] = lines[-2].replace(" get_multi per key |", "")
        lines[-1] = lines[-1][:-len("---:|")]
    ref = report["results"].get(bench.REFERENCE, {}).get("get", {}).get("ir_per_op")
    for key in order:
        res = report["results"].get(key, {})
        cells = []
        for c in cols:
            r = res.get(c, {})
            cells.append("{:,.0f}".format(r["ir_per_op"]) if r.get("status") == "ok"
                         else r.get("status", "—"))
        gm = res.get("get_multi", {})
        if "get_multi" in cols:
            cells.append("{:,.0f}".format(gm["ir_per_op"] / 100) if gm.get("status") == "ok"
                         else "—")
        g = res.get("get", {})
        cells.append("%.2f" % (g["ir_per_op"] / ref) if ref and g.get("status") == "ok" else "—")
        lines.append("| %s | %s |" % (bench.label_of(key), " | ".join(cells)))
    sc = report["results"].get("stringclient", {})
    mg, g = sc.get("meta_get", {}), sc.get("get", {})
    if mg.get("status") == "ok" and g.get("status") == "ok":
        lines += ["", "meta_get (`mg <key> v`) costs %.1f %% of get's instructions on "
                  "StringClient (%s vs %s); the other clients have no meta protocol."
                  % (100 * mg["ir_per_op"] / g["ir_per_op"],
                     "{:,.0f}".format(mg["ir_per_op"]), "{:,.0f}".format(g["ir_per_op"]))]
    notes = ["- %s / %s: %s" % (bench.label_of(k), c, r.get("detail", ""))
             for k, res in report["results"].items() for c, r in res.items()
             if r.get("status") != "ok"]
    if notes:
        lines += ["", "Not measured:", ""] + notes
    return "\n".join(lines) + "\n"


def add_run_arguments(ap, n2):
    """The options of a two-length callgrind run (also bench/aio_callgrind.py)."""
    ap.add_argument("--n1", type=int, default=2000, help="operations in the short run")
    ap.add_argument("--n2", type=int, default=n2, help="operations in the long run")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="valgrind runs in parallel")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per valgrind run")


def check_run_arguments(ap, args):
    if not (0 < args.n1 < args.n2 <= 10 ** 7) or args.n2 - args.n1 < 100:
        ap.error("need 0 < n1 < n2 <= 1e7 and n2 - n1 >= 100")
    if not 1 <= args.jobs <= 64:
        ap.error("--jobs must be 1..64")
    if not shutil.which("valgrind"):
        ap.error("valgrind not found")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=bench.DEFAULT_OUT)
    ap.add_argument("--clients", help="comma-separated (default: all available): %s,%s"
                    % (",".join(s.key for s in bench.CLIENT_SPECS), bench.RAW))
    ap.add_argument("--cases", help="comma-separated: %s" % ",".join(CASES))
    add_run_arguments(ap, n2=12000)
    args = ap.parse_args(argv)
    check_run_arguments(ap, args)
    bench.install_signal_handlers()

    cases = bench.parse_list(args.cases) or list(CASES)
    bad = [c for c in cases if c not in CASES]
    if bad:
        ap.error("unknown case(s): %s" % ", ".join(bad))
    all_keys = [s.key for s in bench.CLIENT_SPECS] + [bench.RAW]
    wanted = [bench.CLIENT_ALIASES.get(w.lower(), w.lower())
              for w in (bench.parse_list(args.clients) or all_keys)]
    bad = [w for w in wanted if w not in all_keys]
    if bad:
        ap.error("unknown client(s): %s" % ", ".join(bad))

    versions, skipped, order = {}, {}, []
    for spec in bench.CLIENT_SPECS:
        if spec.key not in wanted:
            continue
        ok, why = spec.available()
        if not ok:
            skipped[spec.key] = why
            print("skipping %s: %s" % (spec.label, why), file=sys.stderr)
            continue
        versions[spec.key] = spec.version()
        order.append(spec.key)
    rawloop = bench.build_rawloop() if bench.RAW in wanted else None
    if rawloop:
        order.append(bench.RAW)

    vg_version = subprocess.run(["valgrind", "--version"], capture_output=True,
                                text=True).stdout.strip()
    report = {"meta": {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(), "cpu": bench.cpu_model(),
        "python": platform.python_version(), "valgrind": vg_version,
        "memcached": bench.memcached_version(), "clients": versions,
        "cmemcache_revision": bench.repo_revision(),
        "skipped_clients": skipped, "n1": args.n1, "n2": args.n2, "warmup": WARMUP,
        "cases": cases,
    }, "results": {k: {} for k in order}}

    os.makedirs(args.out, exist_ok=True)
    t0 = time.monotonic()
    # one server per client so parallel runs do not share keys
    servers = {k: bench.Memcached().start() for k in order}
    try:
        with tempfile.TemporaryDirectory(prefix="cmemcache-callgrind-") as workdir:
            jobs = [(k, c) for k in order for c in cases if k in ONLY.get(c, {k})]
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                futs = {pool.submit(measure, k, c, args.n1, args.n2, servers[k].port,
                                    rawloop, workdir, args.timeout): (k, c) for k, c in jobs}
                for fut, (k, c) in futs.items():
                    try:
                        res = fut.result()
                    except Exception as e:
                        res = {"status": "error", "detail": "%s: %s" % (type(e).__name__, e)}
                    report["results"][k][c] = res
                    print("  %-16s %-10s %s" % (k, c, "%.0f Ir/op" % res["ir_per_op"]
                                                 if res["status"] == "ok" else res["detail"]),
                          file=sys.stderr, flush=True)
    finally:
        for s in servers.values():
            s.stop()
    report["meta"]["elapsed_seconds"] = round(time.monotonic() - t0, 1)

    md = render(report, order)
    print(md)
    with open(os.path.join(args.out, "callgrind.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "callgrind.json"), "w") as f:
        json.dump(report, f, indent=1)
    print("wrote %s (%.0f s)" % (os.path.join(args.out, "callgrind.md"),
                                 report["meta"]["elapsed_seconds"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--driver":
        err = driver(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        if err:
            print("driver: %s" % err, file=sys.stderr)
            sys.exit(3)
        sys.exit(0)
    sys.exit(main())
