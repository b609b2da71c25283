"""Child process: python-memcached's tests/test_memcache.py with
``memcache`` being cmemcache.

    python run_python_memcached.py --sdist DIR --address ADDRESS --report REPORT.json \
        [--exclude TEST_ID]...

The test file (DIR/tests/test_memcache.py) is run as it is in the sdist
except for the one server address it names, "127.0.0.1:11211", which
becomes ADDRESS (a memcached the calling test started).  ``memcache`` is ``cmemcache.client``, the module of
``cmemcache.Client`` (it also has ``_Host`` and ``SERVER_MAX_*``, which the
file imports).  ``from .utils import captured_stderr`` gets
upstream/pmc_utils.py: the sdist has no tests/utils.py.
"""

from __future__ import annotations

import argparse
import sys
import types
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from upstream import pmc_utils, report  # noqa: E402

PACKAGE = "python_memcached_tests"
ADDRESS_IN_FILE = '"127.0.0.1:11211"'


def load(sdist: Path, address: str) -> types.ModuleType:
    import cmemcache.client

    sys.modules["memcache"] = cmemcache.client
    package = types.ModuleType(PACKAGE)
    package.__path__ = []
    sys.modules[PACKAGE] = package
    sys.modules[f"{PACKAGE}.utils"] = pmc_utils
    path = sdist / "tests" / "test_memcache.py"
    source = path.read_text()
    count = source.count(ADDRESS_IN_FILE)
    if count != 2:
        raise SystemExit(f"{path} names {ADDRESS_IN_FILE} {count} times, not 2: the file changed")
    source = source.replace(ADDRESS_IN_FILE, repr(address))
    module = types.ModuleType(f"{PACKAGE}.test_memcache")
    module.__file__ = str(path)
    module.__package__ = PACKAGE
    sys.modules[module.__name__] = module
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdist", type=Path, required=True)
    ap.add_argument("--address", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--exclude", action="append", default=[])
    args = ap.parse_args()
    module = load(args.sdist, args.address)
    suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    loaded = report.unittest_ids(suite)
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=report.UnittestRecorder)
    result = runner.run(report.only(suite, lambda t: t.id() not in args.exclude))
    report.write(args.report, result.outcomes, loaded=loaded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
