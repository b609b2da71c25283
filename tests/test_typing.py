"""The package and a typed example program pass mypy --strict, and the
example runs against a real server."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_mypy_strict_on_the_package_and_a_typed_program():
    pytest.importorskip("mypy")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         str(ROOT / "python" / "cmemcache"), str(ROOT / "examples" / "typed_app.py")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout


def test_the_typed_program_runs(memcached):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "typed_app.py"), memcached.address],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
