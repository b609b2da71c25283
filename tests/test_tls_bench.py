"""bench/tls_bench.py: a quick run (certificates, a plain and a TLS memcached,
every client on both) whose answers are checked by the script itself; here
every case has a positive rate on both transports for cmemcache's clients and
for the peers installed.  No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytest.importorskip("trustme")
if shutil.which("memcached") is None:
    pytest.skip("memcached not installed", allow_module_level=True)


def test_quick_run(tmp_path):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "tls_bench.py"), "--quick",
                        "--no-callgrind", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads((tmp_path / "tls.json").read_text())
    kinds = ["stringclient", "client"] + [k for k in ("pymemcache", "emcache")
                                          if importlib.util.find_spec(k) is not None]
    assert set(report["results"]) == {"get", "set", "get_multi"}
    for case, res in report["results"].items():
        assert sorted(res) == sorted(kinds), case
        for kind in kinds:
            r = res[kind]
            assert "error" not in r, (case, kind, r)
            assert r["plain"] > 0 and r["tls"] > 0, (case, kind, r)
    md = (tmp_path / "tls.md").read_text()
    assert md.count("| get 10 B |") == len(kinds)
    assert "cmemcache.StringClient" in md
