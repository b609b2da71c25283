"""bench/aio_bench.py: a quick run against the installed asyncio peers and the
sync clients through asyncio.to_thread (answers checked, every number present
and positive), and the worker's answer checks and task accounting on their own."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
sys.path.insert(0, BENCH)

import aio_clients  # noqa: E402
import aio_worker  # noqa: E402
from bench import Seeder  # noqa: E402

PEERS = ("aiomcache", "emcache", "memcachio")
CASES = ("get_hit", "set_10", "get_multi_100", "mix")
CONCURRENCY = (1, 16, 256)
NUMBERS = ("ops_per_sec", "p50_us", "p99_us", "cpu_us_per_op", "server_us_per_op", "max_gap_ms")
#: the clients of other projects: one that stops answering on a busy machine
#: is reported as hung by the worker (its stall guard), and costs only its
#: own results; cmemcache's clients never may
PEER_KEYS = ("aiomcache", "emcache", "emcache-autobatch", "memcachio")


def peer_hung(key: str, res: dict) -> bool:
    """A peer that stopped answering, or whose library raised (its connect
    timeout on a loaded machine, say): reported, not a wrong answer."""
    return key in PEER_KEYS and res["status"] in ("hung", "error")


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def expected_clients() -> list[str]:
    keys = ["aio-stringclient", "aio-client"] if installed("cmemcache.aio") else []
    keys += ["stringclient-thread", "client-thread"]
    for peer in PEERS:
        if installed(peer):
            keys.append(peer)
            if peer == "emcache":
                keys.append("emcache-autobatch")
    return keys


def expected_loops() -> list[str]:
    return ["asyncio"] + (["uvloop"] if installed("uvloop") else [])


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("aio")
    clients = expected_clients()
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, "aio_bench.py"), "--quick", "--rounds", "1",
         "--duration", "0.02", "--warmup", "0.005", "--pin", "none", "--out", str(out),
         "--clients", ",".join(clients), "--loops", ",".join(expected_loops())],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "aio.json") as f:
        report = json.load(f)
    return out, report, proc


def _client_results(report):
    for loop, block in report["results"].items():
        for case, cb in block["cases"].items():
            for tasks, group in cb["concurrency"].items():
                for key, res in group["clients"].items():
                    yield loop, case, int(tasks), key, res


@pytest.mark.hang_timeout(600)
def test_quick_run_covers_every_loop_case_concurrency_and_client(quick_run):
    _out, report, _proc = quick_run
    assert sorted(report["results"]) == sorted(expected_loops())
    for loop in expected_loops():
        block = report["results"][loop]
        assert sorted(block["cases"]) == sorted(CASES)
        for case in CASES:
            groups = block["cases"][case]["concurrency"]
            assert sorted(int(t) for t in groups) == list(CONCURRENCY)
            for tasks in CONCURRENCY:
                want = [k for k in expected_clients()
                        if k != "emcache-autobatch" or case in ("get_hit", "mix")]
                assert sorted(groups[str(tasks)]["clients"]) == sorted(want), (loop, case, tasks)


@pytest.mark.hang_timeout(600)
def test_quick_run_checked_every_answer_and_has_positive_numbers(quick_run):
    _out, report, _proc = quick_run
    seen = hung = 0
    for loop, case, tasks, key, res in _client_results(report):
        where = (loop, case, tasks, key)
        if peer_hung(key, res):
            if res["status"] == "hung":
                assert "no answer within" in res["detail"], (where, res)
            hung += 1
            continue
        assert res["status"] == "ok", (where, res.get("detail"))
        checks = res["checks"]
        assert checks, where
        n = max(tasks, 2)
        assert any(c.endswith("x%d concurrent" % n) or " x%d concurrent" % n in c
                   for c in checks), (where, checks)
        first = {"get_hit": "get", "set_10": "set", "get_multi_100": "get_multi 100",
                 "mix": "get"}[case]
        assert checks[0] == first, (where, checks)
        assert len(res["runs"]) == 1, where
        run = res["runs"][0]
        assert run["ops"] >= tasks, where
        assert run["seconds"] > 0, where
        for field in NUMBERS:
            assert res[field] > 0, (where, field, res[field])
        assert res["p50_us"] <= res["p99_us"], where
        assert 0 < res["fairness"] <= 1, where
        assert run["task_ops_min"] <= run["task_ops_max"], where
        assert res["fairness"] == pytest.approx(run["task_ops_min"] / run["task_ops_max"],
                                                abs=1e-4)
        assert 0 <= res["starved_120ms"] <= tasks, where
        assert res["user_us_per_op"] >= 0 and res["sys_us_per_op"] >= 0, where
        assert res["samples"] == [pytest.approx(run["ops_per_sec"], abs=0.1)], where
        seen += 1
    assert seen + hung == sum(len(g["clients"]) for b in report["results"].values()
                              for c in b["cases"].values() for g in c["concurrency"].values())
    assert seen >= len(expected_loops()) * len(CASES) * len(CONCURRENCY) * 2


@pytest.mark.hang_timeout(600)
@pytest.mark.parametrize("peer", PEERS)
def test_quick_run_measured_the_peer(quick_run, peer):
    pytest.importorskip(peer)
    _out, report, _proc = quick_run
    runs = [(loop, case, tasks) for loop, case, tasks, key, res in _client_results(report)
            if key == peer and (res["status"] == "ok" or peer_hung(key, res))]
    assert len(runs) == len(expected_loops()) * len(CASES) * len(CONCURRENCY)
    assert report["meta"]["clients"][peer]


@pytest.mark.hang_timeout(600)
@pytest.mark.parametrize("key", ("aio-stringclient", "aio-client"))
def test_quick_run_measured_cmemcache_aio(quick_run, key):
    pytest.importorskip("cmemcache.aio")
    _out, report, _proc = quick_run
    runs = [(loop, case, tasks) for loop, case, tasks, k, res in _client_results(report)
            if k == key and res["status"] == "ok"]
    assert len(runs) == len(expected_loops()) * len(CASES) * len(CONCURRENCY)
    for row in report["targets"]:
        assert row["aio"][key] is not None, row
        assert row["met"][key] in (True, False)


@pytest.mark.hang_timeout(600)
def test_quick_run_meta_targets_and_files(quick_run):
    out, report, proc = quick_run
    meta = report["meta"]
    assert meta["mode"] == "quick"
    assert meta["rounds"] == 1
    assert meta["passes"] == 1
    assert meta["concurrency"] == list(CONCURRENCY)
    assert meta["memcached"].startswith("memcached ")
    assert meta["loops"]["asyncio"].startswith("Python ")
    assert meta["elapsed_seconds"] > 0
    for key in expected_clients():
        assert meta["client_settings"][key]["by_tasks"]["256"] is not None
    assert meta["client_settings"]["stringclient-thread"]["by_tasks"]["256"]["threads"] == \
        aio_clients.THREADS
    if installed("aiomcache"):
        assert meta["client_settings"]["aiomcache"]["by_tasks"]["256"] == {"pool_size": 256}
    if not installed("cmemcache.aio"):
        assert "aio-stringclient" not in meta["clients"]
        assert "aio-client" not in meta["clients"]
    rows = report["targets"]
    figures = {(r["loop"], r["case"], r["tasks"], r["what"]) for r in rows}
    for loop in expected_loops():
        assert (loop, "get_multi_100", 256, "ops/s") in figures
        assert (loop, "get_hit", 256, "fairness") in figures
        if installed("aiomcache") or installed("memcachio"):
            assert (loop, "get_hit", 16, "CPU µs/op") in figures
            assert (loop, "set_10", 256, "ops/s") in figures
    for r in rows:
        assert r["threshold"] > 0
        if r["baseline"] is not None:
            assert r["baseline_value"] > 0
        if r["what"] == "ops/s" and installed("cmemcache.aio"):
            # memcached served every call it timed: it cannot have been slower
            # than the client measured against it, by far
            assert r["server_bound"] > 0.5 * max(v for v in r["aio"].values() if v)
        else:
            assert r["server_bound"] is None
    md = (out / "aio.md").read_text()
    assert md.rstrip("\n") == proc.stdout.rstrip("\n")
    assert "## Targets for cmemcache.aio" in md
    for loop in expected_loops():
        assert "## %s loop" % loop in md
    for key in expected_clients():
        assert "| %s |" % aio_clients.ADAPTER_BY_KEY[key].label in md
    if installed("matplotlib"):
        assert sorted(report["plots"]) == ["aio_cpu.png", "aio_fairness.png",
                                           "aio_latency.png", "aio_throughput.png"]
        for p in report["plots"]:
            assert (out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert report["plots"] == []


def test_replot_draws_and_writes_an_earlier_run_again(quick_run, tmp_path):
    out, report, _proc = quick_run
    saved = dict(report, plots=[])          # as a run without matplotlib left it
    (tmp_path / "saved.json").write_text(json.dumps(saved))
    again = tmp_path / "again"
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, "aio_bench.py"), "--replot",
         str(tmp_path / "saved.json"), "--out", str(again)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the same tables, the clients in the same order, the plots drawn again
    assert (again / "aio.md").read_text() == (out / "aio.md").read_text()
    redone = json.loads((again / "aio.json").read_text())
    assert redone["results"] == report["results"]
    assert redone["plots"] == report["plots"]
    for p in redone["plots"]:
        assert (again / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "other.json").write_text(json.dumps({"ops": 1}))
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, "aio_bench.py"), "--replot",
         str(tmp_path / "other.json"), "--out", str(tmp_path / "no")],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 1
    assert "not the aio.json of an aio_bench.py run" in proc.stderr
    assert not (tmp_path / "no").exists()


@pytest.mark.hang_timeout(300)
def test_full_mode_runs_one_round_per_pass(tmp_path):
    clients = ["stringclient-thread"] + (["aiomcache"] if installed("aiomcache") else [])
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, "aio_bench.py"), "--rounds", "3",
         "--duration", "0.02", "--cases", "get_hit,set_10", "--concurrency", "1,16",
         "--loops", "asyncio", "--clients", ",".join(clients), "--pin", "none",
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("pass 3/3") == 2          # one line per case in the last pass
    report = json.loads((tmp_path / "aio.json").read_text())
    assert report["meta"]["mode"] == "full" and report["meta"]["passes"] == 3
    seen = 0
    for _loop, case, tasks, key, res in _client_results(report):
        assert res["status"] == "ok", (case, tasks, key, res.get("detail"))
        assert len(res["runs"]) == len(res["samples"]) == 3, (case, tasks, key)
        assert res["ops_per_sec"] == sorted(r["ops_per_sec"] for r in res["runs"])[1]
        seen += 1
    assert seen == 2 * 2 * len(clients)


def test_cli_rejects_bad_arguments():
    script = os.path.join(BENCH, "aio_bench.py")
    for args, word in ((["--concurrency", "0"], "--concurrency"),
                       (["--concurrency", "300"], "--concurrency"),
                       (["--pool", "nosuch=4"], "--pool"),
                       (["--pool", "aiomcache=0"], "--pool"),
                       (["--clients", "nosuch"], "unknown client"),
                       (["--cases", "nosuch"], "unknown case"),
                       (["--loops", "tokio"], "unknown loop")):
        proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                              timeout=60, cwd=ROOT)
        assert proc.returncode == 2, (args, proc.stderr)
        assert word in proc.stderr, (args, proc.stderr)


# -- the worker's checks and accounting, in this process ---------------------------------


@pytest.fixture
def seeded(memcached):
    memcached.fresh()
    seeder = Seeder(memcached.port)
    try:
        aio_worker.seed_all(seeder)
        yield memcached.port, seeder
    finally:
        seeder.close()
        memcached.flush()


class Crossing(aio_clients.ThreadStringClient):
    """Right answers one at a time; with several gets in flight, each reply
    goes to the request after it (a pipelining bug)."""

    async def open(self, port, concurrency):
        await super().open(port, concurrency)
        inner = self.get
        self.in_flight = 0

        async def get(key):
            self.in_flight += 1
            try:
                await asyncio.sleep(0)
                if self.in_flight > 1 and key in aio_worker.GET_KEYS:
                    i = aio_worker.GET_KEYS.index(key)
                    key = aio_worker.GET_KEYS[(i + 1) % len(aio_worker.GET_KEYS)]
                return await inner(key)
            finally:
                self.in_flight -= 1
        self.get = get


class Dropping(aio_clients.ThreadStringClient):
    """Reports every set as stored but stores every other one only."""

    async def open(self, port, concurrency):
        await super().open(port, concurrency)
        inner = self.set
        self.count = 0

        async def set_(key, value):
            self.count += 1
            if self.count % 2 == 0:
                return True
            return await inner(key, value)
        self.set = set_


class Losing(aio_clients.ThreadStringClient):
    """get_multi leaves out the last key asked."""

    async def open(self, port, concurrency):
        await super().open(port, concurrency)
        inner = self.get_multi
        self.get_multi = lambda keys: inner(list(keys)[:-1])


async def _check(adapter, check, port, tasks, seeder):
    await adapter.open(port, tasks)
    try:
        return await check(adapter, tasks, seeder)
    finally:
        await adapter.close()


@pytest.mark.parametrize("case", CASES)
def test_checks_pass_for_a_correct_client(seeded, case):
    port, seeder = seeded
    names = asyncio.run(_check(aio_clients.ThreadStringClient(), aio_worker.CHECKS[case],
                               port, 16, seeder))
    assert names[0] == {"get_hit": "get", "set_10": "set", "get_multi_100": "get_multi 100",
                        "mix": "get"}[case]
    assert any(n.endswith("x16 concurrent") or "x16 concurrent" in n for n in names)


def test_check_catches_replies_crossed_between_concurrent_gets(seeded):
    port, seeder = seeded

    async def one_at_a_time():
        ad = Crossing()
        await ad.open(port, 16)
        try:
            return [await ad.get(k) for k in aio_worker.GET_KEYS[:16]]
        finally:
            await ad.close()
    assert asyncio.run(one_at_a_time()) == aio_worker.GET_VALUES[:16]
    with pytest.raises(aio_worker.Wrong, match="16 concurrent gets: 1[56] wrong"):
        asyncio.run(_check(Crossing(), aio_worker.check_get, port, 16, seeder))


def test_check_catches_a_set_reported_stored_but_not_stored(seeded):
    port, seeder = seeded
    with pytest.raises(aio_worker.Wrong, match="server holds a wrong value"):
        asyncio.run(_check(Dropping(), aio_worker.check_set, port, 16, seeder))


def test_check_catches_a_key_missing_from_get_multi(seeded):
    port, seeder = seeded
    with pytest.raises(aio_worker.Wrong, match="get_multi of 100 keys: 99 keys, 99 right"):
        asyncio.run(_check(Losing(), aio_worker.check_get_multi, port, 16, seeder))


class Sleepy(aio_clients.Adapter):
    """No server: task 0's operations take 150 ms, the others' none."""

    def __init__(self):
        super().__init__()
        self.calls = {}

    async def _get(self, key):
        self.calls[key] = self.calls.get(key, 0) + 1
        await asyncio.sleep(0.15 if key == aio_worker.GET_KEYS[0] else 0)

    def open_sync(self):
        self.get = self._get


def test_run_tasks_counts_every_task_and_the_one_starved():
    ad = Sleepy()
    ad.open_sync()
    run = asyncio.run(aio_worker.run_tasks(ad, "get_hit", 8, 0.2))
    counts = [ad.calls.get(k, 0) for k in aio_worker.GET_KEYS[:8]]
    assert run["ops"] == sum(counts)
    assert run["task_ops_min"] == counts[0] == min(counts)
    assert run["task_ops_max"] == max(counts)
    assert 1 <= counts[0] <= 2          # 150 ms each, stopped after 200 ms
    assert run["starved_120ms"] >= 1    # task 0 waited 150 ms for its first reply
    assert run["max_gap_ms"] >= 150
    assert run["fairness"] == pytest.approx(counts[0] / max(counts), abs=1e-4)
    assert run["cpu_us_per_op"] > 0


class Instant(aio_clients.Adapter):
    """No server: every operation is one pass through the event loop."""

    def __init__(self):
        super().__init__()
        self.get = lambda key: asyncio.sleep(0)


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_every_task_runs_even_when_the_process_stalls_at_the_start(loop_name, monkeypatch):
    # a stall between the start and the loop's next iteration (here: 50 ms
    # before the run awaits its tasks) must not let the stop overtake them
    if loop_name == "uvloop":
        pytest.importorskip("uvloop")
    real_gather = asyncio.gather

    def stalling_gather(*aws, **kwargs):
        time.sleep(0.05)
        return real_gather(*aws, **kwargs)

    async def go():
        monkeypatch.setattr(asyncio, "gather", stalling_gather)
        try:
            return await aio_worker.run_tasks(Instant(), "get_hit", 32, 0.001)
        finally:
            monkeypatch.setattr(asyncio, "gather", real_gather)
    loop = aio_worker.make_loop(loop_name)
    try:
        run = loop.run_until_complete(go())
    finally:
        loop.close()
    assert run["task_ops_min"] >= 1
    assert run["ops"] >= 32


def test_quantile_is_nearest_rank():
    values = list(range(1, 101))
    assert aio_worker._quantile(values, 0.50) == 50
    assert aio_worker._quantile(values, 0.99) == 99
    assert aio_worker._quantile(values, 1.0) == 100
    assert aio_worker._quantile([7], 0.99) == 7


class FailingSoon(aio_clients.ThreadStringClient):
    """Right answers for the answer check (2 + max(tasks, 2) gets), then a
    ConnectionResetError on the next get: the first of the warm-up."""

    key = "failing-soon"

    async def open(self, port, concurrency):
        await super().open(port, concurrency)
        inner = self.get
        self.count = 0
        self.fail_at = 3 + max(concurrency, 2)

        async def get(key):
            self.count += 1
            if self.count == self.fail_at:
                raise ConnectionResetError("reset by the test")
            return await inner(key)
        self.get = get


def test_run_tasks_stops_every_task_when_one_fails(seeded):
    port, _seeder = seeded

    async def go():
        ad = FailingSoon()
        await ad.open(port, 16)
        ad.fail_at = 10                 # the 10th get of the run
        try:
            with pytest.raises(ConnectionResetError):
                await aio_worker.run_tasks(ad, "get_hit", 16, 5.0)
            return ad.count, [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        finally:
            await ad.close()
    count, left = asyncio.run(go())
    assert left == []
    # after the failure no task starts more than one more get (one it may
    # start before the failure is seen, none after the stop flag)
    assert 10 <= count <= 10 + 2 * 15


def test_run_group_reports_a_failing_client_and_times_the_others(seeded, monkeypatch):
    port, seeder = seeded
    monkeypatch.setitem(aio_clients.ADAPTER_BY_KEY, FailingSoon.key, FailingSoon)
    job = {"port": port, "case": "get_hit", "rounds": 2, "duration": 0.02, "warmup": 0.01,
           "clients": [FailingSoon.key, "stringclient-thread"]}
    out = asyncio.run(aio_worker.run_group(job, 4, seeder, lambda msg: None))
    assert out[FailingSoon.key]["status"] == "error"
    assert out[FailingSoon.key]["detail"] == \
        "warm-up: ConnectionResetError: reset by the test"
    assert out[FailingSoon.key]["runs"] == []
    assert out["stringclient-thread"]["status"] == "ok"
    assert len(out["stringclient-thread"]["runs"]) == 2
    assert out["stringclient-thread"]["checks"] == ["get", "get_miss", "get x4 concurrent"]


def test_run_group_leaves_out_the_clients_to_skip(seeded):
    port, seeder = seeded
    job = {"port": port, "case": "set_10", "rounds": 1, "duration": 0.02, "warmup": 0.0,
           "clients": ["stringclient-thread", "client-thread"],
           "skip": {"4": ["stringclient-thread"], "16": ["client-thread"]}}
    out4 = asyncio.run(aio_worker.run_group(job, 4, seeder, lambda msg: None))
    out16 = asyncio.run(aio_worker.run_group(job, 16, seeder, lambda msg: None))
    assert list(out4) == ["client-thread"]
    assert list(out16) == ["stringclient-thread"]
    assert out4["client-thread"]["status"] == out16["stringclient-thread"]["status"] == "ok"


def test_server_cpu_counts_every_thread_of_the_server(monkeypatch):
    # a stand-in server: two threads that spin for 0.3 s of CPU each, then
    # stay (as memcached's do: an ended thread leaves /proc/<pid>/task)
    code = ("import threading, time\n"
            "def spin():\n"
            "    t = time.thread_time() + 0.3\n"
            "    while time.thread_time() < t: pass\n"
            "    time.sleep(30)\n"
            "for _ in range(2): threading.Thread(target=spin).start()\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        monkeypatch.setattr(aio_worker, "SERVER_PID", proc.pid)
        deadline = time.monotonic() + 10
        used = 0
        while time.monotonic() < deadline and used < 0.6e9:
            time.sleep(0.05)
            used = aio_worker.server_cpu_ns()
        assert used >= 0.6e9                # both threads' time
        assert aio_worker.server_cpu_ns() >= used
    finally:
        proc.kill()
        proc.wait()
    assert aio_worker.server_cpu_ns() is None          # the process is gone
    monkeypatch.setattr(aio_worker, "SERVER_PID", None)
    assert aio_worker.server_cpu_ns() is None
