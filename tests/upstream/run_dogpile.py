"""Child process: dogpile.cache's memcached backend suites for the
``cmemcache`` backend (upstream/dogpile_suites.py), run by pytest with the
sdist's own pytest configuration.

    python run_dogpile.py --sdist DIR --port PORT --report REPORT.json

Runs in the sdist directory (the upstream file reads tests/tls/ca-root.crt
from there when it is imported) against the memcached on 127.0.0.1:PORT.
Without --full, tests marked ``time_intensive`` are left out, as
dogpile.cache's own test sessions do unless asked for a full run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from upstream import report  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdist", type=Path, required=True)
    ap.add_argument("--port", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--full", action="store_true",
                    help="also the tests marked time_intensive (dogpile's own runs leave them out)")
    args = ap.parse_args()
    os.environ["DOGPILE_MEMCACHED_PORT"] = args.port  # read by the upstream file on import
    os.chdir(args.sdist)
    sys.path.insert(0, str(args.sdist))
    import pytest

    recorder = report.PytestRecorder()
    code = pytest.main(
        ["-p", "no:cacheprovider", "--noconftest", "-c", str(args.sdist / "pyproject.toml"),
         "--rootdir", str(TESTS.parent), *([] if args.full else ["-m", "not time_intensive"]),
         str(TESTS / "upstream" / "dogpile_suites.py")],
        plugins=[recorder],
    )
    from upstream import dogpile_suites

    report.write(args.report, recorder.outcomes, exit_code=int(code),
                 collected=recorder.collected,
                 mirrors=dogpile_suites.MIRRORS,
                 not_mirrored=dogpile_suites.NOT_MIRRORED,
                 upstream_tests=dogpile_suites.upstream_tests(),
                 different_bases=dogpile_suites.same_bases())
    return 0


if __name__ == "__main__":
    sys.exit(main())
