"""aiocache's acceptance tests (tests/acceptance/ of its sdist) for
``cmemcache.aiocache.CMemcacheCache``: one class here for each upstream
class that runs on aiocache's memcached cache (its ``cache`` fixture is
parametrized over the memory, redis and memcached caches; here it is ours
alone), with that fixture's set-up: namespace ``"test"`` and the test keys
deleted afterwards.

Loaded by run_aiocache.py, which puts the sdist on sys.path (the upstream
files are the package ``tests.acceptance``), names the memcached in
CMEMCACHE_UPSTREAM_SERVER and runs the async tests and fixtures through
anyio's pytest plugin on asyncio (pytest-asyncio in aiocache's own runs).
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiocache import caches

from cmemcache.aiocache import CMemcacheCache
from tests.acceptance import test_base, test_decorators, test_lock, test_serializers
from tests.acceptance.test_lock import custom_memcached_cache, lock  # noqa: F401 (fixtures)
from tests.utils import KEY_LOCK, Keys

HOST, _, PORT = os.environ.get("CMEMCACHE_UPSTREAM_SERVER", "127.0.0.1:11211").rpartition(":")

#: each class here and the upstream class it runs
MIRRORS = {
    "TestCache": "test_base.TestCache",
    "TestMemcachedCache": "test_base.TestMemcachedCache",
    "TestRedLock": "test_lock.TestRedLock",
    "TestMemcachedRedLock": "test_lock.TestMemcachedRedLock",
    "TestOptimisticLock": "test_lock.TestOptimisticLock",
    "TestStringSerializer": "test_serializers.TestStringSerializer",
    "TestJsonSerializer": "test_serializers.TestJsonSerializer",
    "TestPickleSerializer": "test_serializers.TestPickleSerializer",
    "TestAltSerializers": "test_serializers.TestAltSerializers",
    "TestCached": "test_decorators.TestCached",
    "TestCachedStampede": "test_decorators.TestCachedStampede",
    "TestMultiCachedDecorator": "test_decorators.TestMultiCachedDecorator",
}

#: the upstream classes not run, and why
NOT_MIRRORED = {
    "test_base.TestMemoryCache": "SimpleMemoryCache's own tests",
    "test_base.TestRedisCache": "RedisCache's own tests",
    "test_lock.TestMemoryRedLock": "SimpleMemoryCache's own tests",
    "test_lock.TestRedisRedLock": "RedisCache's own tests",
    "test_lock.TestMemoryOptimisticLock": "SimpleMemoryCache's own tests (a float ttl)",
    "test_lock.TestRedisOptimisticLock": "RedisCache's own tests",
    "test_serializers.TestNullSerializer": "SimpleMemoryCache only: it stores the objects",
    "test_plugins.TestHitMissRatioPlugin": "SimpleMemoryCache only (fills its dict)",
    "test_plugins.TestTimingPlugin": "SimpleMemoryCache only (fills its dict)",
    "test_factory.TestCache": "Cache.from_url of aiocache's own backends",
}

#: tests of the mirrored classes that are about aiomcache, and why
NOT_APPLICABLE = {
    "TestMemcachedCache.test_accept_explicit_args":
        "constructs aiocache's MemcachedCache (tests/test_aiocache.py checks ours)",
    "TestMemcachedCache.test_set_too_long_key":
        "aiomcache's message 'aiomcache error: invalid key' (ours: 'cmemcache error: ...')",
    "TestMemcachedCache.test_set_float_ttl_fails":
        "aiomcache's message 'aiomcache error: exptime not int: 0.1' (ours: 'cmemcache ...')",
    "TestMemcachedCache.test_multi_set_float_ttl":
        "aiomcache's message 'aiomcache error: exptime not int: 0.1' (ours: 'cmemcache ...')",
    "TestMemcachedCache.test_close": "aiomcache's pool (client._pool._pool.qsize())",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def reset_caches() -> None:
    # as the upstream conftest
    caches._caches = {}
    caches.set_config(
        {
            "default": {
                "cache": "aiocache.SimpleMemoryCache",
                "serializer": {"class": "aiocache.serializers.NullSerializer"},
            }
        }
    )


@pytest.fixture
async def memcached_cache() -> AsyncIterator[CMemcacheCache]:
    async with CMemcacheCache(endpoint=HOST, port=int(PORT), namespace="test") as cache:
        yield cache
        await asyncio.gather(*(cache.delete(k) for k in (*Keys, KEY_LOCK)))


@pytest.fixture
def cache(memcached_cache: CMemcacheCache) -> CMemcacheCache:
    return memcached_cache


def _mirror(name: str, path: str) -> type:
    module, cls_name = path.split(".")
    upstream = getattr(globals()[module], cls_name)
    body: dict[str, Any] = {"__module__": __name__, "__qualname__": name}
    for test, why in NOT_APPLICABLE.items():
        if test.startswith(name + "."):
            body[test.split(".", 1)[1]] = None  # not collected
    return type(name, (upstream,), body)


for _name, _path in MIRRORS.items():
    globals()[_name] = _mirror(_name, _path)


def upstream_tests() -> dict[str, list[str]]:
    """Every test method of every upstream acceptance class."""
    from tests.acceptance import test_factory, test_plugins

    modules = {"test_base": test_base, "test_decorators": test_decorators,
               "test_lock": test_lock, "test_serializers": test_serializers,
               "test_factory": test_factory, "test_plugins": test_plugins}
    out = {}
    for mod_name, module in modules.items():
        for cls_name, cls in vars(module).items():
            if inspect.isclass(cls) and cls_name.startswith("Test") and cls.__module__ == module.__name__:
                out[f"{mod_name}.{cls_name}"] = sorted(
                    n for n in dir(cls) if n.startswith("test") and callable(getattr(cls, n)))
    return out
