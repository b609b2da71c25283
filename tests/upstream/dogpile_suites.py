"""dogpile.cache's memcached backend suites (tests/cache/test_memcached_backend.py
of its sdist) for the ``cmemcache`` backend, as that file sets them up for
``dogpile.cache.pymemcache``: one class here for each of its pymemcache
classes, with the same bases and ``backend = "cmemcache"``.

Loaded by run_dogpile.py, which puts the sdist on sys.path and sets
DOGPILE_MEMCACHED_PORT (read by the upstream file) before pytest imports
this module."""

from __future__ import annotations

from tests.cache import test_memcached_backend as upstream

#: each class here and the upstream pymemcache class it mirrors
MIRRORS = {
    "CMemcacheTest": "PyMemcacheTest",
    "CMemcacheDistributedWithTimeoutTest": "PyMemcacheDistributedWithTimeoutTest",
    "CMemcacheDistributedTest": "PyMemcacheDistributedTest",
    "CMemcacheDistributedMutexTest": "PyMemcacheDistributedMutexTest",
    "CMemcacheDistributedMutexWithTimeoutTest": "PyMemcacheDistributedMutexWithTimeoutTest",
    "CMemcacheSerializerTest": "PyMemcacheSerializerTest",
}

#: the upstream pymemcache classes with no counterpart, and why
NOT_MIRRORED = {
    "PyMemcacheTLSTest": "a TLS memcached: cmemcache has no TLS",
    "PyMemcacheRetryTest": "pymemcache's RetryingClient arguments (enable_retry_client, retry_attempts)",
    "PyMemcacheArgsTest": "mocks of pymemcache's HashClient and RetryingClient constructors",
}


class CMemcacheTest(upstream._NonDistributedMemcachedTestSuite):
    backend = "cmemcache"


class CMemcacheDistributedWithTimeoutTest(upstream._DistributedMemcachedWithTimeoutTestSuite):
    backend = "cmemcache"


class CMemcacheDistributedTest(upstream._DistributedMemcachedTestSuite):
    backend = "cmemcache"


class CMemcacheDistributedMutexTest(upstream._DistributedMemcachedMutexTestSuite):
    backend = "cmemcache"


class CMemcacheDistributedMutexWithTimeoutTest(upstream._DistributedMemcachedMutexWithTimeoutTestSuite):
    backend = "cmemcache"


class CMemcacheSerializerTest(upstream._GenericSerializerTestSuite, upstream._NonDistributedMemcachedTestSuite):
    backend = "cmemcache"


def same_bases() -> dict[str, str]:
    """Each class here whose bases (other than the upstream class's
    ``backend``) differ from its upstream counterpart's: none expected."""
    out = {}
    for ours, theirs in MIRRORS.items():
        mine = [b.__name__ for b in globals()[ours].__bases__]
        upstream_bases = [b.__name__ for b in getattr(upstream, theirs).__bases__]
        if mine != upstream_bases:
            out[ours] = f"{mine} != {upstream_bases}"
    return out


def marks(cls: type, name: str) -> list[str]:
    return sorted(m.name for m in getattr(getattr(cls, name), "pytestmark", []))


def upstream_tests() -> dict[str, dict[str, list[str]]]:
    """The test method names of every upstream pymemcache class, with the
    names of their pytest marks."""
    return {
        name: {n: marks(cls, n) for n in dir(cls) if n.startswith("test") and callable(getattr(cls, n))}
        for name, cls in vars(upstream).items()
        if isinstance(cls, type) and name.startswith("PyMemcache") and name.endswith("Test")
    }
