"""Django's own cache tests for ``cmemcache.django.CMemcacheCache``.

tests/cache/ comes from the Django sdist on PyPI matching the installed
Django (pip download at test time, kept in build/upstream/).
upstream/django_suites.py subclasses its ``BaseMemcachedTests`` as it does
for pymemcache (``PyMemcacheCacheTests``), and a child process runs that
class with Django's test runner machinery against this module's memcached.
Every test of ``PyMemcacheCacheTests`` must run and pass, except its two
about pymemcache's own client (``test_pymemcache_*``) and the three cull
tests that Django itself skips for every memcached backend.  Django 6's
async tests in ``BaseCacheTests`` run as well (through Django's
``sync_to_async`` fallback: the backend has no async methods of its own).
"""

from __future__ import annotations

import pytest

from upstream import harness, sdist

django = pytest.importorskip("django")

CLASS = "upstream.django_suites.CMemcacheCacheTests"
#: skipped by Django's own code for every memcached backend (the cull
#: caches are left out of their CACHES)
UPSTREAM_SKIPS = {"test_cull", "test_zero_cull", "test_cull_delete_when_store_empty"}
PYMEMCACHE_ONLY = {"test_pymemcache_highest_pickle_version", "test_pymemcache_options"}


@pytest.fixture
def server(memcached):
    if not memcached.running():
        memcached.start()
    memcached.flush()
    return memcached


@pytest.mark.hang_timeout(harness.CHILD_TIMEOUT + 60)
def test_django_memcached_cache_tests(server):
    source = sdist.fetch("Django", ("tests/cache", "LICENSE"))
    report = harness.run("run_django.py", "--tests", str(source / "tests"), "--address", server.address)
    assert report["django"] == django.__version__
    ours, upstream = set(report["ours"]), set(report["upstream"])
    assert upstream - ours == PYMEMCACHE_ONLY and ours <= upstream
    expected = {f"{CLASS}.{name}" for name in ours}
    skips = {f"{CLASS}.{name}": "skipped" for name in UPSTREAM_SKIPS}
    problems = harness.not_passed(report, skips)
    assert not problems, harness.explain(report, problems)
    assert set(report["tests"]) == expected
    for test in skips:
        assert report["tests"][test]["detail"] == "Culling isn't implemented."
    passed = [t for t, e in report["tests"].items() if e["outcome"] == "passed"]
    assert len(passed) == len(expected) - len(UPSTREAM_SKIPS) > 50
    assert f"{CLASS}.test_incr" in passed and f"{CLASS}.test_decr" in passed
    # Django 6 has async tests in BaseCacheTests (none in 5.2): they ran and passed too
    assert {f"{CLASS}.{name}" for name in report["async_tests"]} <= set(passed)
