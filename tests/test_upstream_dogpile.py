"""dogpile.cache's own memcached backend tests for the ``cmemcache`` backend.

tests/cache/test_memcached_backend.py comes from the dogpile.cache sdist on
PyPI matching the installed version (pip download at test time, kept in
build/upstream/).  upstream/dogpile_suites.py gives the ``cmemcache``
backend one class for each of that file's pymemcache classes, and a child
process runs them with pytest and the sdist's own pytest settings against
this module's memcached (DOGPILE_MEMCACHED_PORT, which the file reads).
As dogpile's own test sessions do by default, the tests marked
``time_intensive`` are left out; CMEMCACHE_UPSTREAM_FULL=1 runs them too.
"""

from __future__ import annotations

import os

import pytest

from upstream import harness, sdist

pytest.importorskip("dogpile.cache")

FILE = "tests/upstream/dogpile_suites.py"
FULL = os.environ.get("CMEMCACHE_UPSTREAM_FULL") == "1"


@pytest.mark.hang_timeout(harness.CHILD_TIMEOUT + 60)
def test_dogpile_memcached_backend_suites(server):
    source = sdist.fetch("dogpile.cache", ("tests", "pyproject.toml", "LICENSE"))
    report = harness.run("run_dogpile.py", "--sdist", str(source), "--port", str(server.port),
                         *(["--full"] if FULL else []))
    problems = harness.not_passed(report)
    assert not problems, harness.explain(report, problems)
    assert report["exit_code"] == 0, report["output"][-8000:]
    assert report["different_bases"] == {}
    mirrors, not_mirrored = report["mirrors"], report["not_mirrored"]
    upstream = report["upstream_tests"]
    # every upstream pymemcache class is mirrored, or named with the reason it is not
    assert set(upstream) == set(mirrors.values()) | set(not_mirrored)
    assert not set(mirrors.values()) & set(not_mirrored)
    expected = {
        f"{FILE}::{ours}::{name}"
        for ours, theirs in mirrors.items()
        for name, marks in upstream[theirs].items()
        if FULL or "time_intensive" not in marks
    }
    assert set(report["tests"]) == expected, harness.explain(report, {
        "missing": str(sorted(expected - set(report["tests"]))),
        "unexpected": str(sorted(set(report["tests"]) - expected)),
    })
    # dogpile.cache 1.5.0: 24 + 24 + 24 + 5 + 5 + 27 tests, 14 of them time_intensive: 95 run
    assert all(upstream[theirs] for theirs in mirrors.values())
    assert f"{FILE}::CMemcacheTest::test_argument_dictionary_unmodified" in expected
    print(f"dogpile.cache's memcached backend tests: {len(report['tests'])} of "
          f"{len(expected)} passed, mirroring {len(mirrors)} upstream classes")
