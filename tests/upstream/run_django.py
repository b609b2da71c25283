"""Child process: Django's memcached cache tests for
``cmemcache.django.CMemcacheCache`` (upstream/django_suites.py), run by
Django's test runner machinery (test databases, test environment).

    python run_django.py --tests DIR --address ADDRESS --report REPORT.json

DIR is the sdist's tests/ directory (holding the ``cache`` test app).  The
settings are those of Django's tests/test_sqlite.py with the ``cache`` app
installed, as Django's runtests.py runs that app.

The report also says, per test, what ran underneath (``Probe``): which
callables BaseCache's ``sync_to_async`` fallback was given (none
expected), how often each ``cmemcache.aio.Client`` and ``cmemcache.Client``
command and each async method of the backend was called; and where each of
BaseCache's async methods is defined in the backend's class.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import sys
import unittest
from collections import Counter
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from upstream import report  # noqa: E402


def configure() -> None:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3"},
            "other": {"ENGINE": "django.db.backends.sqlite3"},
        },
        SECRET_KEY="django_tests_secret_key",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=False,
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "cache",
        ],
    )
    django.setup()


#: the commands of the two clients the backend calls
CLIENT_METHODS = ("get", "get_multi", "set", "set_multi", "add", "delete", "delete_multi",
                  "incr", "decr", "touch", "flush_all", "disconnect_all")


class Probe:
    """Counts, per test, the calls that show which implementation ran."""

    def __init__(self) -> None:
        self.current = "(outside a test)"
        self.calls: dict[str, dict[str, Counter[str]]] = {}

    def count(self, kind: str, name: str) -> None:
        self.calls.setdefault(self.current, {}).setdefault(kind, Counter())[name] += 1

    def wrap(self, cls: type, name: str, kind: str) -> None:
        original = getattr(cls, name)
        probe = self
        if inspect.iscoroutinefunction(original):
            @functools.wraps(original)
            async def counted(*args: Any, **kwargs: Any) -> Any:
                probe.count(kind, name)
                return await original(*args, **kwargs)
        else:
            @functools.wraps(original)
            def counted(*args: Any, **kwargs: Any) -> Any:
                probe.count(kind, name)
                return original(*args, **kwargs)
        setattr(cls, name, counted)

    def install(self, async_methods: list[str]) -> None:
        import cmemcache
        import cmemcache.aio
        from django.core.cache.backends import base

        from cmemcache.django import CMemcacheCache

        real = base.sync_to_async  # BaseCache's fallback, looked up at each call

        def recording(func: Any, *args: Any, **kwargs: Any) -> Any:
            self.count("sync_to_async", getattr(func, "__qualname__", repr(func)))
            return real(func, *args, **kwargs)

        base.sync_to_async = recording
        for name in CLIENT_METHODS:
            self.wrap(cmemcache.aio.Client, name, "aio")
            self.wrap(cmemcache.Client, name, "sync")
        for name in async_methods:
            self.wrap(CMemcacheCache, name, "backend_async")

    def report(self) -> dict[str, dict[str, dict[str, int]]]:
        return {test: {kind: dict(c) for kind, c in kinds.items()}
                for test, kinds in self.calls.items()}


def own_async_methods(async_methods: list[str]) -> dict[str, str]:
    """Where each of BaseCache's async methods is defined for the backend."""
    from cmemcache.django import CMemcacheCache

    out = {}
    for name in async_methods:
        fn = getattr(CMemcacheCache, name)
        out[name] = f"{fn.__module__}.{fn.__qualname__}"
    return out


def per_loop_clients() -> list[dict[str, int]]:
    """How many asyncio clients each configuration made, and how many are
    still open (their loops not yet closed, or closed since the last
    sweep)."""
    from cmemcache import django as backend

    return [{"made": c.made, "open": c.loops()} for c in backend._aio_clients.values()]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", type=Path, required=True)
    ap.add_argument("--address", required=True)
    ap.add_argument("--report", required=True)
    args = ap.parse_args()
    os.environ["CMEMCACHE_UPSTREAM_SERVER"] = args.address
    sys.path.insert(0, str(args.tests))
    configure()
    import django
    from django.test.runner import DiscoverRunner

    from upstream import django_suites

    async_methods = django_suites.ASYNC_METHODS
    own = own_async_methods(async_methods)
    probe = Probe()
    probe.install(async_methods)

    class Recorder(report.UnittestRecorder):
        def startTest(self, test: Any) -> None:
            probe.current = test.id()
            super().startTest(test)

        def stopTest(self, test: Any) -> None:
            super().stopTest(test)
            probe.current = "(outside a test)"

    # The probe sees the fallback when it is used: BaseCache's own aclear()
    # on the backend goes through sync_to_async(self.clear).
    import asyncio

    from django.core.cache.backends.base import BaseCache

    from cmemcache.django import CMemcacheCache

    probe.current = "(probe check)"
    asyncio.run(BaseCache.aclear(CMemcacheCache(args.address, {})))
    probe.current = "(outside a test)"

    upstream_class = getattr(django_suites.upstream, django_suites.MIRRORS)
    loader = unittest.defaultTestLoader
    suite = unittest.TestSuite([
        loader.loadTestsFromTestCase(django_suites.CMemcacheCacheTests),
        loader.loadTestsFromTestCase(django_suites.CMemcacheAsyncDrivenTests),
    ])
    runner = DiscoverRunner(verbosity=1, interactive=False)
    runner.setup_test_environment()
    databases = runner.setup_databases(aliases=runner.get_databases(suite))
    try:
        result = unittest.TextTestRunner(
            stream=sys.stdout, verbosity=2, resultclass=Recorder
        ).run(suite)
    finally:
        runner.teardown_databases(databases)
        runner.teardown_test_environment()
    report.write(
        args.report, result.outcomes, django=django.__version__,
        ours=list(loader.getTestCaseNames(django_suites.CMemcacheCacheTests)),
        upstream=list(loader.getTestCaseNames(upstream_class)),
        async_tests=sorted(n for n in loader.getTestCaseNames(django_suites.CMemcacheCacheTests)
                           if getattr(getattr(django_suites.CMemcacheCacheTests, n), "__code__", None)
                           and getattr(django_suites.CMemcacheCacheTests, n).__code__.co_flags & 0x80),
        base_async_methods=async_methods, own_async_methods=own, calls=probe.report(),
        per_loop=per_loop_clients(),
        async_driven_not_applicable=django_suites.ASYNC_DRIVEN_NOT_APPLICABLE,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
