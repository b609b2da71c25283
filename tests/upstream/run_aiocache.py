"""Child process: aiocache's acceptance tests for
``cmemcache.aiocache.CMemcacheCache`` (upstream/aiocache_suites.py), run by
pytest with anyio's plugin in auto mode on asyncio, every warning an error
(as aiocache's own pytest settings have it).

    python run_aiocache.py --sdist DIR --address HOST:PORT --report REPORT.json

Runs in the sdist directory, with it first on sys.path (the upstream tests
are the package ``tests``), against the memcached at HOST:PORT.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from upstream import report  # noqa: E402


class Markers:
    """The markers aiocache's own pytest settings register."""

    @staticmethod
    def pytest_configure(config: object) -> None:
        for line in ("memcached: tests requiring memcached backend",
                     "redis: tests requiring redis backend"):
            config.addinivalue_line("markers", line)  # type: ignore[attr-defined]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdist", type=Path, required=True)
    ap.add_argument("--address", required=True)
    ap.add_argument("--report", required=True)
    args = ap.parse_args()
    os.environ["CMEMCACHE_UPSTREAM_SERVER"] = args.address
    sdist = args.sdist.resolve()
    os.chdir(sdist)
    sys.path.insert(0, str(sdist))
    import pytest

    recorder = report.PytestRecorder()
    code = pytest.main(
        ["-p", "no:cacheprovider", "-p", "no:asyncio", "--noconftest", "-c", os.devnull,
         "--rootdir", str(TESTS.parent), "-o", "anyio_mode=auto", "-W", "error",
         "-o", "xfail_strict=true", str(TESTS / "upstream" / "aiocache_suites.py")],
        plugins=[recorder, Markers()],
    )
    from upstream import aiocache_suites

    report.write(args.report, recorder.outcomes, exit_code=int(code),
                 collected=recorder.collected,
                 mirrors=aiocache_suites.MIRRORS,
                 not_mirrored=aiocache_suites.NOT_MIRRORED,
                 not_applicable=aiocache_suites.NOT_APPLICABLE,
                 upstream_tests=aiocache_suites.upstream_tests())
    return 0


if __name__ == "__main__":
    sys.exit(main())
