"""Child process: Django's memcached cache tests for
``cmemcache.django.CMemcacheCache`` (upstream/django_suites.py), run by
Django's test runner machinery (test databases, test environment).

    python run_django.py --tests DIR --address ADDRESS --report REPORT.json

DIR is the sdist's tests/ directory (holding the ``cache`` test app).  The
settings are those of Django's tests/test_sqlite.py with the ``cache`` app
installed, as Django's runtests.py runs that app.
"""

from __future__ import annotations

import argparse
import os
import sys
import unittest
from pathlib import Path

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

    upstream_class = getattr(django_suites.upstream, django_suites.MIRRORS)
    loader = unittest.defaultTestLoader
    suite = loader.loadTestsFromTestCase(django_suites.CMemcacheCacheTests)
    runner = DiscoverRunner(verbosity=1, interactive=False)
    runner.setup_test_environment()
    databases = runner.setup_databases(aliases=runner.get_databases(suite))
    try:
        result = unittest.TextTestRunner(
            stream=sys.stdout, verbosity=2, resultclass=report.UnittestRecorder
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
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
