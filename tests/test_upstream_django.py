"""Django's own cache tests for ``cmemcache.django.CMemcacheCache``.

tests/cache/ comes from the Django sdist on PyPI matching the installed
Django (pip download at test time, kept in build/upstream/).
upstream/django_suites.py subclasses its ``BaseMemcachedTests`` as it does
for pymemcache (``PyMemcacheCacheTests``), and a child process runs that
class with Django's test runner machinery against this module's memcached.
Every test of ``PyMemcacheCacheTests`` must run and pass, except its two
about pymemcache's own client (``test_pymemcache_*``) and the three cull
tests that Django itself skips for every memcached backend.

The async methods are the backend's own, on ``cmemcache.aio.Client``, and
the run proves it (run_django.py's probe): every one of BaseCache's async
methods is defined by ``CMemcacheCache``; BaseCache's ``sync_to_async``
fallback is never called in any test (the probe is shown to see it when it
is called); Django 6's async tests in ``BaseCacheTests`` pass, and those
that await the cache reach ``cmemcache.aio.Client``.  The same tests run
once more on ``AsyncDrivenCMemcacheCache`` (each blocking method runs its
async namesake on a new event loop), so Django's checks of every blocking
method check the async ones too, on Django 5.2 (which has no async tests in
``BaseCacheTests``) as on 6: they must pass without one call of the
blocking ``cmemcache.Client``, but for three that cannot apply
(``ASYNC_DRIVEN_NOT_APPLICABLE``).
"""

from __future__ import annotations

import pytest

from upstream import harness, sdist

django = pytest.importorskip("django")

CLASS = "upstream.django_suites.CMemcacheCacheTests"
DRIVEN = "upstream.django_suites.CMemcacheAsyncDrivenTests"
#: skipped by Django's own code for every memcached backend (the cull
#: caches are left out of their CACHES)
UPSTREAM_SKIPS = {"test_cull", "test_zero_cull", "test_cull_delete_when_store_empty"}
PYMEMCACHE_ONLY = {"test_pymemcache_highest_pickle_version", "test_pymemcache_options"}
#: BaseCache's async methods in Django 5.2 and 6
ASYNC_METHODS = {"aadd", "aget", "aset", "atouch", "adelete", "aget_many", "aget_or_set",
                 "ahas_key", "aincr", "adecr", "aset_many", "adelete_many", "aclear",
                 "aincr_version", "adecr_version", "aclose"}


@pytest.mark.hang_timeout(harness.CHILD_TIMEOUT + 60)
def test_django_memcached_cache_tests(server):
    source = sdist.fetch("Django", ("tests/cache", "LICENSE"))
    report = harness.run("run_django.py", "--tests", str(source / "tests"), "--address", server.address)
    assert report["django"] == django.__version__
    ours, upstream = set(report["ours"]), set(report["upstream"])
    assert upstream - ours == PYMEMCACHE_ONLY and ours <= upstream
    expected = {f"{cls}.{name}" for cls in (CLASS, DRIVEN) for name in ours}
    skips = {f"{cls}.{name}": "skipped" for cls in (CLASS, DRIVEN) for name in UPSTREAM_SKIPS}
    not_applicable = {f"{DRIVEN}.{name}" for name in report["async_driven_not_applicable"]}
    problems = harness.not_passed(report, skips)
    assert set(problems) == not_applicable, harness.explain(
        report, {t: p for t, p in problems.items() if t not in not_applicable})
    assert all(problems[t].startswith(("failed", "error")) for t in not_applicable)
    assert set(report["tests"]) == expected
    for test in skips:
        assert report["tests"][test]["detail"] == "Culling isn't implemented."
    passed = {t for t, e in report["tests"].items() if e["outcome"] == "passed"}
    assert len(passed) == len(expected) - len(skips) - len(not_applicable) > 100
    print(f"Django {django.__version__}'s cache tests: {len(passed)} passed, {len(skips)} "
          f"skipped by Django, {len(not_applicable)} not applicable, of {len(expected)}")
    assert {f"{CLASS}.test_incr", f"{CLASS}.test_decr", f"{DRIVEN}.test_incr"} <= passed

    # Every async method of BaseCache is the backend's own ...
    assert ASYNC_METHODS <= set(report["base_async_methods"])
    assert report["own_async_methods"] == {
        name: f"cmemcache.django.CMemcacheCache.{name}" for name in report["base_async_methods"]}
    # ... and the fallback is never used, although the probe sees it when it is.
    calls = report["calls"]
    check = calls.pop("(probe check)")
    assert list(check["sync_to_async"]) == ["BaseMemcachedCache.clear"]
    assert check["sync"] == {"flush_all": 1}
    used = {test: kinds["sync_to_async"] for test, kinds in calls.items() if "sync_to_async" in kinds}
    assert used == {}
    # What awaited the backend reached cmemcache.aio.Client.
    for test, kinds in calls.items():
        if test in expected and "backend_async" in kinds:
            assert kinds.get("aio"), (test, kinds)

    # Django 6's async tests in BaseCacheTests (none in 5.2) ran and passed,
    # four of them awaiting aset() (the others only check BaseCache's
    # fallback, which the backend does not use); in the async-driven run
    # their set-up and tear-down call no blocking client method either.
    async_tests = {f"{cls}.{name}" for cls in (CLASS, DRIVEN) for name in report["async_tests"]}
    assert async_tests <= passed
    if django.VERSION >= (6,):
        assert len(report["async_tests"]) >= 8
        awaited = {t for t in async_tests if "aset" in calls.get(t, {}).get("backend_async", {})}
        assert {f"{cls}.test_{name}_async_uses_specialized_implementation"
                for cls in (CLASS, DRIVEN)
                for name in ("get_or_set", "has_key", "incr", "incr_version")} <= awaited
        assert all(calls[t]["aio"]["set"] == calls[t]["backend_async"]["aset"] for t in awaited)
        assert all("sync" not in calls[t] for t in async_tests if t.startswith(DRIVEN))
    else:
        assert report["async_tests"] == []

    # The async-driven run: Django's tests of every blocking method passed
    # with the async methods alone doing the work.
    driven = {t for t in passed if t.startswith(DRIVEN + ".")}
    assert len(driven) == len(ours) - len(UPSTREAM_SKIPS) - len(not_applicable) > 50
    for test in driven:
        assert "sync" not in calls.get(test, {}), (test, calls[test])
    made = sum(c["made"] for c in report["per_loop"])
    assert made > 2 * len(driven)  # a new loop, so a new client, for each call
    # the clients of closed loops were closed as new ones were made
    assert all(c["open"] <= 2 for c in report["per_loop"]), report["per_loop"]
    for name in ("test_touch", "test_get_many", "test_set_many", "test_delete_many",
                 "test_get_or_set_callable", "test_incr_version", "test_long_timeout",
                 "test_forever_timeout", "test_zero_timeout"):
        kinds = calls[f"{DRIVEN}.{name}"]
        assert f"{DRIVEN}.{name}" in passed and kinds["aio"], (name, kinds)
