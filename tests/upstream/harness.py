"""Starting an upstream suite's child process and reading its report."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: seconds one suite's child process may run
CHILD_TIMEOUT = 300.0


def run(script: str, *args: str, cwd: Path | None = None) -> dict[str, Any]:
    """Runs ``upstream/<script> *args --report FILE`` under this Python and
    gives the report it wrote; ``report["output"]`` is the child's output."""
    with tempfile.TemporaryDirectory(prefix="cmc-upstream-") as tmp:
        path = Path(tmp) / "report.json"
        proc = subprocess.run(
            [sys.executable, str(HERE / script), *args, "--report", str(path)],
            capture_output=True, text=True, timeout=CHILD_TIMEOUT, cwd=cwd,
        )
        output = f"exit code {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        assert proc.returncode == 0 and path.exists(), f"{script} wrote no report:\n{output[-20000:]}"
        data: dict[str, Any] = json.loads(path.read_text())
    data["output"] = output
    return data


def not_passed(report: dict[str, Any], expected: dict[str, str] | None = None) -> dict[str, str]:
    """The tests whose outcome is not the one expected (``passed`` unless
    ``expected`` names another), with their details."""
    expected = expected or {}
    return {
        test: f"{entry['outcome']}: {entry['detail']}"
        for test, entry in report["tests"].items()
        if entry["outcome"] != expected.get(test, "passed")
    }


def explain(report: dict[str, Any], problems: dict[str, str]) -> str:
    lines = [f"{test}\n    {detail}" for test, detail in sorted(problems.items())]
    return "\n".join(lines) + f"\n\nchild output (end):\n{report['output'][-8000:]}"
