"""Django's memcached cache tests (tests/cache/tests.py of its sdist) for
``cmemcache.django.CMemcacheCache``, set up as that file sets them up for
``PyMemcacheCache`` (``PyMemcacheCacheTests``): ``BaseMemcachedTests`` and
``TestCase``, its CACHES from ``caches_setting_for_tests`` without the
cull caches.

Loaded by run_django.py, which puts the sdist's tests/ on sys.path (the
upstream file is the module ``cache.tests``) and names the memcached in
CMEMCACHE_UPSTREAM_SERVER."""

from __future__ import annotations

import os

from cache import tests as upstream
from django.core.cache import cache
from django.test import TestCase, override_settings

CMemcacheCache_params = {
    "BACKEND": "cmemcache.django.CMemcacheCache",
    "LOCATION": os.environ["CMEMCACHE_UPSTREAM_SERVER"],
}

#: the upstream class this one mirrors, and its tests that are about
#: pymemcache itself (pickle protocol and options of pymemcache's client)
MIRRORS = "PyMemcacheCacheTests"


@override_settings(
    CACHES=upstream.caches_setting_for_tests(
        base=CMemcacheCache_params,
        exclude=upstream.memcached_excluded_caches,
    )
)
class CMemcacheCacheTests(upstream.BaseMemcachedTests, TestCase):
    base_params = CMemcacheCache_params
    # As PyLibMCCacheTests: the client keeps its pooled connections when
    # Django closes the cache at the end of a request.
    should_disconnect_on_close = False

    @property
    def incr_decr_type_error(self):
        # As PyLibMCCacheTests: the library's ClientError (memcached's
        # "CLIENT_ERROR cannot increment or decrement non-numeric value").
        return cache._lib.ClientError
