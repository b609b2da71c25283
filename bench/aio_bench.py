#!/usr/bin/env python3
"""asyncio benchmark: memcached clients driven by many concurrent tasks.

    python3 bench/aio_bench.py [--quick] [--out DIR] [--cases a,b] [--clients x,y]
                               [--loops asyncio,uvloop] [--concurrency 1,16,256]
                               [--rounds N] [--duration S] [--pin same|split|none]

Starts its own memcached on a free loopback port, then for every event loop,
case and number of tasks runs a client process (bench/aio_worker.py) that
checks every client's answers at that concurrency and times the clients in
interleaved rounds. Reports per client the median ops/s, p50/p99 latency per
call, CPU time per operation of the client process, and fairness among the
tasks (least-served / most-served task, tasks that went 120 ms without a reply).

Writes a Markdown table to stdout and OUT/aio.md, the numbers to OUT/aio.json
and plots to OUT/aio_*.png. See bench/README.md.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import aio_clients  # noqa: E402
import aio_worker  # noqa: E402
from bench import (Memcached, Seeder, _loadavg, cpu_model, cpu_placement,  # noqa: E402
                   install_signal_handlers, memcached_version, parse_list, repo_revision,
                   stop_all_servers)

DEFAULT_OUT = os.path.join(HERE, "results")
WORKER = os.path.join(HERE, "aio_worker.py")
LOOPS = ("asyncio", "uvloop")
CONCURRENCY = (1, 16, 256)
CASE_NAMES = tuple(aio_worker.CASES)
NOISY = 0.25        # ops/s spread above which a cell is marked
MIN_TASK_OPS = 10   # a timed run is made longer (up to 4 x --duration) to give every
                    # task about this many operations
FIELDS = ("ops_per_sec", "p50_us", "p99_us", "cpu_us_per_op", "user_us_per_op",
          "sys_us_per_op", "server_us_per_op", "fairness", "starved_120ms", "max_gap_ms", "duration",
          "involuntary_switches")
CLIENT_ALIASES = {
    "aio": "aio-stringclient", "cmemcache.aio.stringclient": "aio-stringclient",
    "cmemcache.aio.client": "aio-client", "stringclient": "stringclient-thread",
    "client": "client-thread", "emcache-batch": "emcache-autobatch",
}


def label_of(key):
    a = aio_clients.ADAPTER_BY_KEY.get(key)
    return a.label if a else key


# --------------------------------------------------------------------------
# running the client processes


def run_worker(job, timeout):
    """One client process for one (loop, case) job; its JSON result. The process
    is killed if it outlives `timeout` or this one is interrupted."""
    proc = subprocess.run([sys.executable, WORKER], input=json.dumps(job), text=True,
                          stdout=subprocess.PIPE, stderr=None, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError("client process exited with status %d" % proc.returncode)
    return json.loads(proc.stdout)


def summarize(res):
    """Medians over the timed runs of one client (in place)."""
    runs = res.get("runs") or []
    if res.get("status") == "ok" and not runs:
        res["status"], res["detail"] = "error", "no timed run"
    if res.get("status") != "ok":
        return res
    for f in FIELDS:
        vals = [r.get(f) for r in runs]
        res[f] = None if None in vals else statistics.median(vals)
    res["max_gap_ms_worst"] = max(r["max_gap_ms"] for r in runs)
    res["cpu_us_per_op_min"] = min(r["cpu_us_per_op"] for r in runs)
    res["starved_120ms_worst"] = max(r["starved_120ms"] for r in runs)
    s = [r["ops_per_sec"] for r in runs]
    res["samples"] = [round(x, 1) for x in s]
    res["spread"] = (max(s) - min(s)) / res["ops_per_sec"] if len(s) > 1 else 0.0
    return res


def run_all(args, adapters, loops, cases, concs, port, log, server_pid=None):
    """The rounds in passes over every (case, loop), one client process each:
    with one round per pass (the full mode) the rounds of a client are minutes
    apart, so a burst of other load on the machine spoils one of them, not all."""
    results = {}
    merged = {}         # (loop, case, tasks, key) -> the client's result so far
    passes = args.passes
    per_pass = [args.rounds // passes + (1 if i < args.rounds % passes else 0)
                for i in range(passes)]
    rotate = 0
    for pno, rounds in enumerate(per_pass):
        for case in cases:
            for loop in loops:
                keys = [a.key for a in adapters if a.cases is None or case in a.cases]
                if not keys or not rounds:
                    continue
                skip = {str(n): [k for k in keys if merged.get((loop, case, n, k), {}).get(
                    "status", "ok") != "ok"] for n in concs}
                job = {"port": port, "server_pid": server_pid, "loop": loop, "case": case, "concurrency": concs,
                       "clients": keys, "skip": skip, "rounds": rounds,
                       "duration": args.duration, "warmup": args.warmup, "pools": args.pools,
                       "rotate": rotate, "min_task_ops": MIN_TASK_OPS,
                       "max_duration": args.max_duration}
                rotate += 1
                budget = 120 + len(concs) * len(keys) * rounds * (
                    args.max_duration + args.warmup + 10)
                t = time.monotonic()
                try:
                    out = run_worker(job, budget)
                    groups = out["concurrency"]
                    loop_class = out.get("loop_class")
                except Exception as e:
                    groups = {str(n): {k: {"status": "error", "detail": "%s: %s" % (
                        type(e).__name__, e)} for k in keys if k not in skip[str(n)]}
                        for n in concs}
                    loop_class = None
                block = results.setdefault(loop, {"loop_class": loop_class, "cases": {}})
                if loop_class:
                    block["loop_class"] = loop_class
                for n in concs:
                    for k, res in (groups.get(str(n)) or {}).items():
                        prev = merged.get((loop, case, n, k))
                        if prev is None:
                            merged[(loop, case, n, k)] = res
                        elif prev["status"] == "ok":
                            prev["runs"].extend(res.get("runs") or [])
                            prev["checks"] = prev.get("checks") or res.get("checks")
                            if res["status"] != "ok":
                                prev["status"], prev["detail"] = res["status"], res.get("detail")
                log("  pass %d/%d  %-8s %-14s (%.1f s)" % (pno + 1, passes, loop, case,
                                                          time.monotonic() - t))
    for (loop, case, n, k), res in merged.items():
        summarize(res)
    for loop in loops:
        if loop not in results:
            continue
        for case in cases:
            keys = [a.key for a in adapters if a.cases is None or case in a.cases]
            if not keys:
                continue
            cblock = results[loop]["cases"].setdefault(
                case, {"title": aio_worker.CASES[case][0], "concurrency": {}})
            for n in concs:
                clients = {k: merged.get((loop, case, n, k)) or {
                    "status": "error", "detail": "no result"} for k in keys}
                cblock["concurrency"][str(n)] = {"clients": clients}
                log("  %-8s %-14s x%-4d %s" % (loop, case, n, "  ".join(
                    "%s=%s" % (k, _fmt_short(v)) for k, v in clients.items())))
    return results


def _fmt_short(res):
    if res.get("status") == "ok":
        return "%.0f/s %.1fus" % (res["ops_per_sec"], res["cpu_us_per_op"])
    return res.get("status", "?")


# --------------------------------------------------------------------------
# targets for cmemcache.aio


AIO_KEYS = ("aio-stringclient", "aio-client")


def _get(results, loop, case, tasks, key):
    try:
        res = results[loop]["cases"][case]["concurrency"][str(tasks)]["clients"][key]
    except KeyError:
        return None
    return res if res.get("status") == "ok" else None


def targets(results):
    """The figures cmemcache.aio is to reach, from the peers' numbers; and
    cmemcache.aio's own where it ran. A list of rows."""
    rows = []

    def best(loop, case, tasks, keys, field, lowest):
        cands = [(_get(results, loop, case, tasks, k), k) for k in keys]
        cands = [(r[field], k) for r, k in cands if r]
        if not cands:
            return None, None
        return (min if lowest else max)(cands)

    def aio_values(loop, case, tasks, field):
        return {k: (_get(results, loop, case, tasks, k) or {}).get(field) for k in AIO_KEYS}

    for loop in results:
        for case in CASE_NAMES:
            v, k = best(loop, case, 16, aio_clients.PURE_PYTHON, "cpu_us_per_op", True)
            if v is not None:
                rows.append({"loop": loop, "case": case, "tasks": 16, "what": "CPU µs/op",
                             "rule": "≤ 1/3 of the best pure-Python client", "baseline": k,
                             "baseline_value": v, "threshold": v / 3, "lower_is_better": True,
                             "aio": aio_values(loop, case, 16, "cpu_us_per_op")})
        for case in ("get_hit", "set_10"):
            v, k = best(loop, case, 256, aio_clients.PURE_PYTHON, "ops_per_sec", False)
            if v is not None:
                rows.append({"loop": loop, "case": case, "tasks": 256, "what": "ops/s",
                             "rule": "≥ 4x the best pure-Python client", "baseline": k,
                             "baseline_value": v, "threshold": 4 * v, "lower_is_better": False,
                             "aio": aio_values(loop, case, 256, "ops_per_sec")})
        for tasks in (16, 256):
            r = _get(results, loop, "get_multi_100", tasks, "stringclient-thread")
            if r:
                rows.append({"loop": loop, "case": "get_multi_100", "tasks": tasks,
                             "what": "ops/s", "rule": "≥ 4x StringClient through to_thread",
                             "baseline": "stringclient-thread",
                             "baseline_value": r["ops_per_sec"],
                             "threshold": 4 * r["ops_per_sec"], "lower_is_better": False,
                             "aio": aio_values(loop, "get_multi_100", tasks, "ops_per_sec")})
        for case in CASE_NAMES:
            if _get(results, loop, case, 256, "stringclient-thread") is None and not any(
                    _get(results, loop, case, 256, k) for k in AIO_KEYS):
                continue
            rows.append({"loop": loop, "case": case, "tasks": 256, "what": "fairness",
                         "rule": "≥ 0.5", "baseline": None, "baseline_value": None,
                         "threshold": 0.5, "lower_is_better": False,
                         "aio": aio_values(loop, case, 256, "fairness")})
    for row in rows:
        # memcached's own CPU time per operation while cmemcache.aio ran caps
        # what any client gets from it: one CPU's worth of it, at most
        srv = [(_get(results, row["loop"], row["case"], row["tasks"], k) or {}).get(
            "server_us_per_op") for k in AIO_KEYS]
        srv = [v for v in srv if v]
        row["server_bound"] = (1e6 / min(srv)) if row["what"] == "ops/s" and srv else None
        met = {}
        for k, v in row["aio"].items():
            if v is not None:
                met[k] = v <= row["threshold"] if row["lower_is_better"] else v >= row["threshold"]
        row["met"] = met
    return rows


# --------------------------------------------------------------------------
# report


def _fmt_num(v, field):
    if v is None:
        return "—"
    if field == "ops_per_sec":
        return "{:,.0f}".format(v)
    if field == "fairness":
        return "%.2f" % v
    if field in ("starved_120ms",):
        return "%g" % v
    if field == "max_gap_ms":
        return "%.1f" % v
    if v >= 100:
        return "%.0f" % v
    return "%.1f" % v


def _cell(res, field):
    if not res:
        return "—"
    if res.get("status") != "ok":
        return res.get("status", "?")
    mark = " †" if field == "ops_per_sec" and res.get("spread", 0) > NOISY else ""
    return _fmt_num(res[field], field) + mark


def _fmt_threshold(row):
    if row["what"] == "ops/s":
        return "{:,.0f}".format(row["threshold"])
    return "%.2f" % row["threshold"]


def render_markdown(report, order):
    m = report["meta"]
    lines = ["# cmemcache asyncio benchmark", "",
             "- date: %s" % m["date"],
             "- machine: %s, %s, %s CPUs" % (m["machine"], m["cpu"], m["cpus"]),
             "- Python %s; %s; event loops: %s" % (m["python"], m["memcached"], ", ".join(
                 "%s (%s)" % (k, v) for k, v in m["loops"].items())),
             "- clients: %s" % ", ".join("%s %s" % (label_of(k), v)
                                         for k, v in m["clients"].items()),
             "- cmemcache source revision: %s" % m.get("cmemcache_revision"),
             "- load average at start / end: %s / %s" % (
                 " ".join(m.get("loadavg_start") or ["?"]),
                 " ".join(m.get("loadavg_end") or ["?"])),
             "- %d rounds of %.2f s per client, case, loop and number of tasks; medians; "
             "mode: %s; CPU placement: %s (client process CPUs %s, memcached CPUs %s)"
             % (m["rounds"], m["duration"], m["mode"], m["pin"], m["client_cpus"],
                m["server_cpus"]),
             ""]
    if m.get("skipped_clients"):
        lines += ["Not measured: " + "; ".join("%s (%s)" % (label_of(k), v) for k, v in
                                               m["skipped_clients"].items()), ""]
    lines += ["CPU µs/op is the client process's CPU time (all its threads, user + system) "
              "per operation; memcached runs in another process. Fairness is the least-served "
              "task's completed operations over the most-served task's; \"starved\" counts the "
              "tasks that went more than 120 ms without a reply. A timed run lasts --duration, "
              "or longer (up to 4x) where that gives every task about %d operations (run s)."
              % m.get("min_task_ops", MIN_TASK_OPS), ""]

    results = report["results"]
    rows = report.get("targets") or []
    if rows:
        aio_cols = [k for k in AIO_KEYS if any(k in r["aio"] and r["aio"][k] is not None
                                               for r in rows)]
        lines += ["## Targets for cmemcache.aio", "",
                  "| loop | case | tasks | figure | rule | baseline | threshold | %s "
                  "| memcached's bound |"
                  % " | ".join(label_of(k) for k in aio_cols or AIO_KEYS),
                  "|---|---|---:|---|---|---|---:|%s|---:|" % "|".join(
                      "---:" for _ in (aio_cols or AIO_KEYS))]
        for r in rows:
            base = "—" if r["baseline"] is None else "%s %s" % (
                label_of(r["baseline"]), _fmt_num(r["baseline_value"],
                                                  "ops_per_sec" if r["what"] == "ops/s"
                                                  else "cpu_us_per_op"))
            cells = []
            for k in aio_cols or AIO_KEYS:
                v = r["aio"].get(k)
                if v is None:
                    cells.append("not run")
                else:
                    f = {"ops/s": "ops_per_sec", "fairness": "fairness"}.get(
                        r["what"], "cpu_us_per_op")
                    cells.append("%s %s" % (_fmt_num(v, f), "✓" if r["met"].get(k) else "✗"))
            bound = r.get("server_bound")
            lines.append("| %s | `%s` | %d | %s | %s | %s | %s | %s | %s |" % (
                r["loop"], r["case"], r["tasks"], r["what"], r["rule"], base,
                _fmt_threshold(r), " | ".join(cells),
                "—" if bound is None else "{:,.0f}".format(bound)))
        lines += ["", "memcached's bound: the ops/s at which memcached itself would use a "
                  "whole CPU, from its CPU time per operation (all its threads) while "
                  "cmemcache.aio ran; no client gets more from one memcached on one CPU "
                  "(it shares that CPU with the client under --pin same).", ""]

    # overview: ops/s and CPU per op, every client x case, per loop
    for loop, block in results.items():
        cases = [c for c in CASE_NAMES if c in block["cases"]]
        concs = sorted({int(t) for c in cases for t in block["cases"][c]["concurrency"]})
        lines += ["## %s loop" % loop, ""]
        for field, title in (("ops_per_sec", "ops/s (median; † = rounds spread over more "
                                             "than %d %% of the median)" % round(100 * NOISY)),
                             ("cpu_us_per_op", "CPU µs per operation in the client process "
                                               "(median; lower is better)")):
            head = ["%s x%d" % (c, t) for c in cases for t in concs]
            lines += ["**%s**" % title, "",
                      "| client | %s |" % " | ".join(head),
                      "|---|%s|" % "|".join("---:" for _ in head)]
            for key in order:
                cells = []
                present = False
                for c in cases:
                    for t in concs:
                        res = block["cases"][c]["concurrency"].get(str(t), {}).get(
                            "clients", {}).get(key)
                        present = present or res is not None
                        cells.append(_cell(res, field))
                if present:
                    lines.append("| %s | %s |" % (label_of(key), " | ".join(cells)))
            lines += [""]
        for c in cases:
            cb = block["cases"][c]
            lines += ["### %s (`%s`), %s loop" % (cb["title"], c, loop), "",
                      "| client | tasks | ops/s | p50 µs | p99 µs | CPU µs/op | user / sys µs "
                      "| memcached µs/op | fairness | starved | max gap ms | run s |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            notes = []
            for key in order:
                for t in concs:
                    res = cb["concurrency"].get(str(t), {}).get("clients", {}).get(key)
                    if res is None:
                        continue
                    if res.get("status") != "ok":
                        lines.append("| %s | %d | %s | | | | | | | | | |" % (
                            label_of(key), t, res.get("status")))
                        notes.append("- %s x%d: %s — %s" % (label_of(key), t, res.get("status"),
                                                            res.get("detail", "")))
                        continue
                    lines.append("| %s | %d | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s "
                                 "| %.2f |" % (
                                     label_of(key), t, _cell(res, "ops_per_sec"),
                                     _cell(res, "p50_us"), _cell(res, "p99_us"),
                                     _cell(res, "cpu_us_per_op"),
                                     _fmt_num(res["user_us_per_op"], "u"),
                                     _fmt_num(res["sys_us_per_op"], "u"),
                                     _cell(res, "server_us_per_op"),
                                     _cell(res, "fairness") if t > 1 else "—",
                                     _cell(res, "starved_120ms") if t > 1 else "—",
                                     _cell(res, "max_gap_ms"), res["duration"]))
            lines += [""]
            if notes:
                lines += ["Not timed:", ""] + notes + [""]
    settings = report["meta"].get("client_settings") or {}
    if settings:
        lines += ["## Client settings", "", "| client | kind | 1 task | 16 tasks | 256 tasks |",
                  "|---|---|---|---|---|"]
        for key in order:
            s = settings.get(key)
            if s:
                lines.append("| %s | %s | %s |" % (label_of(key), s["kind"], " | ".join(
                    _fmt_settings(s["by_tasks"].get(str(t))) for t in (1, 16, 256))))
        lines += [""]
    for p in report.get("plots", []):
        lines += ["![%s](%s)" % (p, p), ""]
    return "\n".join(lines) + "\n"


def _fmt_settings(s):
    if s is None:
        return "—"
    if not s:
        return "defaults"
    return ", ".join("%s=%s" % kv for kv in s.items())


def _compact(v, _pos=None):
    if v >= 1e6:
        return "%gM" % (v / 1e6)
    if v >= 1e3:
        return "%gk" % (v / 1e3)
    return "%g" % v


def plot(report, out_dir, order):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    results = report["results"]
    loops = list(results)
    paths = []
    specs = (("aio_throughput.png", "ops_per_sec", "ops/s", True,
              "throughput vs concurrent tasks"),
             ("aio_cpu.png", "cpu_us_per_op", "CPU µs/op (client process)", True,
              "client CPU time per operation vs concurrent tasks"),
             ("aio_latency.png", "p99_us", "p99 latency per call (µs)", True,
              "p99 latency per call vs concurrent tasks"))
    markers = "osD^v<>*"
    for fname, field, ylab, logy, title in specs:
        fig, axes = plt.subplots(len(loops), len(CASE_NAMES), squeeze=False,
                                 figsize=(4.2 * len(CASE_NAMES), 3.6 * len(loops)))
        for row, loop in enumerate(loops):
            for col, case in enumerate(CASE_NAMES):
                ax = axes[row][col]
                cb = results[loop]["cases"].get(case)
                if not cb:
                    ax.set_visible(False)
                    continue
                for i, key in enumerate(order):
                    pts = []
                    for t, blk in sorted(cb["concurrency"].items(), key=lambda kv: int(kv[0])):
                        res = blk["clients"].get(key)
                        if res and res.get("status") == "ok":
                            pts.append((int(t), res[field]))
                    if pts:
                        ax.plot([p[0] for p in pts], [p[1] for p in pts],
                                marker=markers[i % len(markers)], label=label_of(key),
                                color="C%d" % (i % 10),
                                linestyle="--" if key.endswith("-thread") else "-")
                ax.set_xscale("log")
                if logy:
                    ax.set_yscale("log")
                ax.minorticks_off()       # log minor ticks cost seconds of layout
                if logy:
                    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                    ax.yaxis.set_major_formatter(FuncFormatter(_compact))
                ticks = sorted(int(t) for t in cb["concurrency"])
                ax.set_xticks(ticks)
                ax.set_xticklabels([str(t) for t in ticks])
                ax.set_title("%s, %s" % (case, loop), fontsize=9)
                ax.set_xlabel("concurrent tasks")
                ax.grid(True, alpha=0.3)
                if col == 0:
                    ax.set_ylabel(ylab)
        handles, labels = [], []
        for ax in axes.flat:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels) or 1),
                   fontsize=8)
        fig.suptitle("memcached asyncio clients: %s" % title)
        fig.tight_layout(rect=(0, 0.08, 1, 0.97))
        p = os.path.join(out_dir, fname)
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths.append(fname)

    # fairness at the highest concurrency
    fig, axes = plt.subplots(1, len(loops), squeeze=False, figsize=(7 * len(loops), 4.6))
    for col, loop in enumerate(loops):
        ax = axes[0][col]
        width = 0.8 / max(1, len(order))
        for i, key in enumerate(order):
            xs, ys = [], []
            for j, case in enumerate(CASE_NAMES):
                cb = results[loop]["cases"].get(case)
                if not cb or not cb["concurrency"]:
                    continue
                top = max(cb["concurrency"], key=int)
                res = cb["concurrency"][top]["clients"].get(key)
                if res and res.get("status") == "ok":
                    xs.append(j + (i - len(order) / 2 + 0.5) * width)
                    ys.append(res["fairness"])
            if xs:
                ax.bar(xs, ys, width=width, label=label_of(key), color="C%d" % (i % 10))
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_xticks(range(len(CASE_NAMES)))
        ax.set_xticklabels(CASE_NAMES, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("least / most served task (ops)")
        ax.set_title("fairness at the highest concurrency, %s" % loop, fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels) or 1), fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    p = os.path.join(out_dir, "aio_fairness.png")
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append("aio_fairness.png")
    return paths


# --------------------------------------------------------------------------
# main


def parse_pools(s, ap):
    out = {}
    for item in parse_list(s) or []:
        key, sep, n = item.partition("=")
        key = CLIENT_ALIASES.get(key.strip().lower(), key.strip().lower())
        if not sep or key not in aio_clients.ADAPTER_BY_KEY or not n.strip().isdigit() \
                or int(n) < 1:
            ap.error("--pool takes CLIENT=N[,CLIENT=N] with a known client and N >= 1")
        out[key] = int(n)
    return out


def write_report(report, out_dir, order, log):
    """Draws report's plots into out_dir (none without matplotlib), then
    writes aio.md and aio.json there."""
    try:
        report["plots"] = plot(report, out_dir, order)
    except ImportError as e:
        log("no plots: %s" % e)
        report["plots"] = []
    md = render_markdown(report, order)
    print(md)
    with open(os.path.join(out_dir, "aio.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out_dir, "aio.json"), "w") as f:
        json.dump(report, f, indent=1)


def replot(path, out_dir):
    """--replot: the report of an earlier run (its aio.json), drawn and
    written again; the clients in the order they were measured in."""
    with open(path) as f:
        report = json.load(f)
    if not isinstance(report, dict) or not isinstance(report.get("results"), dict) \
            or "meta" not in report:
        raise SystemExit("%s: not the aio.json of an aio_bench.py run" % path)
    order = list(report["meta"].get("client_settings") or {})
    os.makedirs(out_dir, exist_ok=True)
    write_report(report, out_dir, order,
                 lambda msg: print(msg, file=sys.stderr, flush=True))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="2 rounds of 0.03 s (well under a minute)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default bench/results)")
    ap.add_argument("--cases", help="comma-separated cases (default all): %s" % ",".join(CASE_NAMES))
    ap.add_argument("--clients", help="comma-separated clients (default: all available): %s"
                    % ",".join(a.key for a in aio_clients.ADAPTERS))
    ap.add_argument("--loops", help="comma-separated event loops (default: asyncio,uvloop)")
    ap.add_argument("--concurrency", help="comma-separated numbers of tasks (default 1,16,256)")
    ap.add_argument("--rounds", type=int, help="timed rounds per client (default 5, --quick 2)")
    ap.add_argument("--duration", type=float,
                    help="seconds of one timed run (default 0.3, --quick 0.03)")
    ap.add_argument("--warmup", type=float,
                    help="seconds of the untimed run before each timed one (default duration/4)")
    ap.add_argument("--pool", dest="pools",
                    help="override a client's pool size: CLIENT=N[,CLIENT=N] (connections; "
                         "threads for the to_thread clients)")
    ap.add_argument("--pin", choices=("same", "split", "none"), default="same",
                    help="CPU placement as in bench.py: 'same' (default) puts the client "
                         "process and memcached on one CPU, 'split' on different CPUs, "
                         "'none' leaves it to the scheduler")
    ap.add_argument("--replot", metavar="JSON",
                    help="measure nothing: draw the plots and write aio.md (and aio.json) "
                         "in --out again from the aio.json of an earlier run")
    args = ap.parse_args(argv)
    if args.replot:
        return replot(args.replot, args.out)
    install_signal_handlers()

    args.rounds = args.rounds or (2 if args.quick else 5)
    args.duration = args.duration or (0.03 if args.quick else 0.3)
    args.warmup = args.warmup if args.warmup is not None else args.duration / 4
    args.max_duration = 4 * args.duration
    # full mode: one round per pass over all cases and loops; quick: one pass
    args.passes = 1 if args.quick else args.rounds
    if not (1 <= args.rounds <= 100) or not (0 < args.duration <= 60) or \
            not (0 <= args.warmup <= 60):
        ap.error("--rounds must be 1..100, --duration 0..60 s, --warmup 0..60 s")
    args.pools = parse_pools(args.pools, ap)

    cases = parse_list(args.cases) or list(CASE_NAMES)
    unknown = [c for c in cases if c not in CASE_NAMES]
    if unknown:
        ap.error("unknown case(s): %s" % ", ".join(unknown))
    loops = parse_list(args.loops) or list(LOOPS)
    unknown = [x for x in loops if x not in LOOPS]
    if unknown:
        ap.error("unknown loop(s): %s (known: %s)" % (", ".join(unknown), ", ".join(LOOPS)))
    try:
        concs = [int(x) for x in parse_list(args.concurrency)] if args.concurrency \
            else list(CONCURRENCY)
    except ValueError:
        ap.error("--concurrency takes numbers")
    if any(not (1 <= t <= aio_worker.MAX_TASKS) for t in concs):
        ap.error("--concurrency: 1..%d tasks" % aio_worker.MAX_TASKS)

    all_keys = [a.key for a in aio_clients.ADAPTERS]
    wanted = parse_list(args.clients)
    if wanted:
        wanted = [CLIENT_ALIASES.get(w.lower(), w.lower()) for w in wanted]
        unknown = [w for w in wanted if w not in all_keys]
        if unknown:
            ap.error("unknown client(s): %s (known: %s)" % (", ".join(unknown),
                                                           ", ".join(all_keys)))
    else:
        wanted = all_keys

    def log(msg):
        print(msg, file=sys.stderr, flush=True)
    adapters, versions, skipped = [], {}, {}
    for cls in aio_clients.ADAPTERS:
        if cls.key not in wanted:
            continue
        ad = cls(pool=args.pools.get(cls.key))
        ok, why = ad.available()
        if not ok:
            skipped[ad.key] = why
            log("skipping %s: %s" % (ad.label, why))
            continue
        adapters.append(ad)
        versions[ad.key] = ad.version()
    loop_versions = {}
    for loop in list(loops):
        if loop == "uvloop":
            try:
                import uvloop
                loop_versions[loop] = "uvloop %s" % uvloop.__version__
            except Exception as e:
                log("skipping the uvloop loop: %s: %s" % (type(e).__name__, e))
                loops.remove(loop)
        else:
            loop_versions[loop] = "Python %s" % platform.python_version()
    order = [a.key for a in adapters]
    settings = {a.key: {"kind": a.kind, "by_tasks": {str(t): a.settings(t) for t in concs}}
                for a in adapters}

    client_cpus, server_cpus = cpu_placement(args.pin)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)      # inherited by the client processes

    os.makedirs(args.out, exist_ok=True)
    t_start = time.monotonic()
    report = {"meta": {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(), "cpu": cpu_model(), "cpus": os.cpu_count(),
        "kernel": platform.release(), "python": platform.python_version(),
        "memcached": memcached_version(), "clients": versions, "skipped_clients": skipped,
        "loops": loop_versions, "cmemcache_revision": repo_revision(),
        "rounds": args.rounds, "passes": args.passes, "duration": args.duration,
        "warmup": args.warmup,
        "max_duration": args.max_duration, "min_task_ops": MIN_TASK_OPS,
        "concurrency": concs, "cases": cases,
        "mode": "quick" if args.quick else "full",
        "server_options": "-U 0 -l 127.0.0.1 -t 2 -m 1024 -I 2m",
        "pin": args.pin,
        "client_cpus": sorted(client_cpus) if client_cpus else None,
        "server_cpus": sorted(server_cpus) if server_cpus else None,
        "client_settings": settings,
        "starved_window_ms": 1e3 * aio_worker.STARVED_WINDOW,
        "loadavg_start": _loadavg(),
    }, "results": {}}

    srv = Memcached(cpus=server_cpus).start()
    try:
        seeder = Seeder(srv.port)
        try:
            aio_worker.seed_all(seeder)
        finally:
            seeder.close()
        log("memcached on %s; %d rounds of %.2f s; loops %s; tasks %s" % (
            srv.address, args.rounds, args.duration, ",".join(loops),
            ",".join(map(str, concs))))
        report["results"] = run_all(args, adapters, loops, cases, concs, srv.port, log,
                                    server_pid=srv.proc.pid)
    finally:
        stop_all_servers()

    report["targets"] = targets(report["results"])
    report["meta"]["elapsed_seconds"] = round(time.monotonic() - t_start, 1)
    report["meta"]["loadavg_end"] = _loadavg()
    write_report(report, args.out, order, log)
    log("wrote %s and %s (%.0f s)" % (os.path.join(args.out, "aio.md"),
                                      os.path.join(args.out, "aio.json"),
                                      report["meta"]["elapsed_seconds"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
