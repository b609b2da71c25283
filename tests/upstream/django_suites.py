"""Django's memcached cache tests (tests/cache/tests.py of its sdist) for
``cmemcache.django.CMemcacheCache``, set up as that file sets them up for
``PyMemcacheCache`` (``PyMemcacheCacheTests``): ``BaseMemcachedTests`` and
``TestCase``, its CACHES from ``caches_setting_for_tests`` without the
cull caches.

``CMemcacheAsyncDrivenTests`` runs the same tests once more on
``AsyncDrivenCMemcacheCache``, whose blocking methods each run their async
namesake (``get`` runs ``aget`` in ``asyncio.run``): Django's checks of
every blocking method then check the backend's async methods, on a new
event loop each call.

Loaded by run_django.py, which puts the sdist's tests/ on sys.path (the
upstream file is the module ``cache.tests``) and names the memcached in
CMEMCACHE_UPSTREAM_SERVER."""

from __future__ import annotations

import asyncio
import inspect
import os
from typing import Any

from cache import tests as upstream
from django.core.cache import cache
from django.core.cache.backends.base import BaseCache
from django.test import TestCase, override_settings

from cmemcache.django import CMemcacheCache

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


#: BaseCache's async methods, each with its blocking namesake
ASYNC_METHODS = sorted(
    name for name in dir(BaseCache)
    if inspect.iscoroutinefunction(getattr(BaseCache, name)) and hasattr(BaseCache, name[1:])
)


def _through_async(async_name: str) -> Any:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return asyncio.run(getattr(self, async_name)(*args, **kwargs))

    method.__name__ = async_name[1:]
    return method


class AsyncDrivenCMemcacheCache(CMemcacheCache):
    """CMemcacheCache whose blocking methods are its async ones, each
    call on an event loop of its own."""


for _name in ASYNC_METHODS:
    setattr(AsyncDrivenCMemcacheCache, _name[1:], _through_async(_name))


AsyncDriven_params = {
    **CMemcacheCache_params,
    "BACKEND": f"{__name__}.AsyncDrivenCMemcacheCache",
}

#: the tests of the async-driven run that cannot pass there, and why
ASYNC_DRIVEN_NOT_APPLICABLE = {
    "test_set_many_returns_failing_keys":
        "patches cmemcache.Client.set_multi; aset_many() calls cmemcache.aio.Client.set_multi",
    # Pickling a QuerySet evaluates it.  The async methods pickle on the
    # event loop, where Django refuses database queries: the same call in
    # an async view raises SynchronousOnlyOperation (evaluate it first).
    "test_cache_write_for_model_instance_with_deferred":
        "pickles an unevaluated QuerySet: a database query on the event loop",
    "test_cache_read_for_model_instance_with_deferred":
        "pickles an unevaluated QuerySet: a database query on the event loop",
}


@override_settings(
    CACHES=upstream.caches_setting_for_tests(
        base=AsyncDriven_params,
        exclude=upstream.memcached_excluded_caches,
    )
)
class CMemcacheAsyncDrivenTests(CMemcacheCacheTests):
    base_params = AsyncDriven_params
