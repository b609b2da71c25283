"""cmemcache.dogpile.CMemcacheBackend: dogpile.cache regions on a real memcached."""

from __future__ import annotations

import hashlib
import importlib.metadata
import pickle
import threading
import time
from typing import Any

import pytest

pytest.importorskip("dogpile.cache")

from dogpile.cache import make_region  # noqa: E402
from dogpile.cache.api import NO_VALUE, CachedValue  # noqa: E402
from dogpile.cache.backends.memcached import GenericMemcachedBackend, MemcachedLock  # noqa: E402
from dogpile.cache.region import CacheRegion, register_backend  # noqa: E402

import cmemcache  # noqa: E402
from cmemcache.dogpile import CMemcacheBackend  # noqa: E402

register_backend("cmemcache", "cmemcache.dogpile", "CMemcacheBackend")


def make(server, expiration_time: float | None = None, **arguments: Any) -> CacheRegion:
    """A region on ``server`` with the cmemcache backend."""
    return make_region().configure(
        "cmemcache",
        expiration_time=expiration_time,
        arguments={"url": server.address, **arguments},
    )


def test_entry_point_names_the_backend():
    names = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="dogpile.cache")}
    assert names.get("cmemcache") == "cmemcache.dogpile:CMemcacheBackend"


def test_backend_and_client(server):
    region = make(server, dead_retry=5, socket_timeout=1.5, pool_size=3, connect_timeout=0.5)
    backend = region.backend
    assert isinstance(backend, CMemcacheBackend)
    assert isinstance(backend, GenericMemcachedBackend)
    client = backend.client
    assert isinstance(client, cmemcache.Client)
    assert (client.dead_retry, client.socket_timeout) == (5, 1.5)
    assert (client.pool_size, client.connect_timeout) == (3, 0.5)
    assert client.pickleProtocol == pickle.HIGHEST_PROTOCOL
    assert [str(h) for h in client.servers] == [f"inet:{server.address}"]
    assert backend.set_arguments == {}


def test_defaults_and_pickle_protocol_override(server):
    region = make(server, pickleProtocol=2)
    client = region.backend.client
    assert (client.dead_retry, client.socket_timeout, client.pickleProtocol) == (30, 3, 2)
    region.set("p", {"a": 1})
    data, flags = server.raw_get(b"p")
    assert flags == 1 and data[:2] == b"\x80\x02"


def test_unknown_arguments_are_ignored(server):
    """As dogpile's own backends do: an argument that is neither the
    backend's nor a keyword of cmemcache.Client is left out (and the
    arguments dict is not changed)."""
    arguments = {"url": server.address, "no_such_option": 1, "pool_size": 2}
    region = make_region().configure("cmemcache", arguments=arguments)
    assert arguments == {"url": server.address, "no_such_option": 1, "pool_size": 2}
    backend = region.backend
    assert backend.client_options == {"pool_size": 2, "pickleProtocol": pickle.HIGHEST_PROTOCOL}
    assert backend.client.pool_size == 2
    region.set("k", "v")
    assert region.get("k") == "v"


def test_bad_value_of_a_client_option_fails_at_configure(server):
    with pytest.raises(ValueError):
        make(server, distribution="no-such-distribution")


def test_one_client_for_every_thread(server):
    region = make(server)
    seen: list[object] = []

    def worker() -> None:
        seen.append(region.backend.client)
        region.set(f"t{threading.get_ident()}", 1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(seen) == 4 and all(c is region.backend.client for c in seen)


def test_set_get_delete(server):
    region = make(server, expiration_time=300)
    assert region.get("missing") is NO_VALUE
    region.set("k", {"value": [1, 2, 3]})
    assert region.get("k") == {"value": [1, 2, 3]}
    stored = pickle.loads(server.raw_get(b"k")[0])
    assert isinstance(stored, CachedValue) and stored.payload == {"value": [1, 2, 3]}
    region.set("text", "héllo")
    region.set("bytes", bytes(range(256)))
    assert region.get("text") == "héllo"
    assert region.get("bytes") == bytes(range(256))
    region.delete("k")
    assert region.get("k") is NO_VALUE
    region.delete("k")  # idempotent


def test_get_or_create(server):
    region = make(server, expiration_time=300)
    calls: list[int] = []

    def creator() -> str:
        calls.append(1)
        return f"created {len(calls)}"

    assert region.get_or_create("goc", creator) == "created 1"
    assert region.get_or_create("goc", creator) == "created 1"
    assert calls == [1]
    assert make(server).get("goc") == "created 1"  # another region, same server


def test_multi(server):
    region = make(server, expiration_time=300)
    region.set_multi({"a": 1, "b": "two", "c": [3]})
    assert region.get_multi(["a", "b", "c", "d"]) == [1, "two", [3], NO_VALUE]
    region.delete_multi(["a", "c"])
    assert region.get_multi(["a", "b", "c"]) == [NO_VALUE, "two", NO_VALUE]
    created: list[list[str]] = []

    def creator(*keys: str) -> list[str]:
        created.append(list(keys))
        return [k.upper() for k in keys]

    assert region.get_or_create_multi(["b", "x", "y"], creator) == ["two", "X", "Y"]
    assert created == [["x", "y"]]
    assert region.get_multi(["x", "y"]) == ["X", "Y"]


def test_cache_on_arguments(server):
    region = make(server, expiration_time=300)
    calls: list[tuple[int, int]] = []

    @region.cache_on_arguments()
    def add(x: int, y: int) -> int:
        calls.append((x, y))
        return x + y

    assert add(2, 3) == 5
    assert add(2, 3) == 5
    assert add(3, 3) == 6
    assert calls == [(2, 3), (3, 3)]
    add.invalidate(2, 3)
    assert add(2, 3) == 5
    assert calls == [(2, 3), (3, 3), (2, 3)]


def test_keys_memcached_refuses_are_hashed(server):
    region = make(server, expiration_time=300, distributed_lock=True)
    plain = "a" * 245  # with "_lock" in front still 250 bytes
    keys = {"plain:key": "plain:key", plain: plain}
    for key in ("with space", "ctrl\x01", "a" * 246, "é" * 123, ""):
        keys[key] = "sha1:" + hashlib.sha1(key.encode()).hexdigest()
    for key, sent in keys.items():
        assert region.backend.key_mangler(key) == sent
        assert region.get_or_create(key, lambda key=key: key.upper()) == key.upper()
        assert pickle.loads(server.raw_get(sent.encode())[0]).payload == key.upper()
    assert region.get_multi(list(keys)) == [k.upper() for k in keys]
    region.delete_multi(list(keys))
    assert region.get_multi(list(keys)) == [NO_VALUE] * len(keys)


def test_region_key_mangler_wins(server):
    region = make_region(key_mangler=lambda key: "own:" + key).configure(
        "cmemcache", arguments={"url": server.address}
    )
    region.set("k", 1)
    assert server.raw_get(b"own:k") is not None
    assert server.raw_get(b"k") is None


@pytest.mark.hang_timeout(30)
def test_expiration_time(server):
    region = make(server, expiration_time=1)
    calls: list[int] = []

    def creator() -> int:
        calls.append(1)
        return len(calls)

    assert region.get_or_create("e", creator) == 1
    assert region.get("e") == 1
    time.sleep(1.3)
    assert region.get("e") is NO_VALUE  # expired for dogpile ...
    assert region.get("e", ignore_expiration=True) == 1  # ... still in memcached
    assert region.get_or_create("e", creator) == 2
    assert region.get("e", expiration_time=60) == 2


def test_memcached_expire_time_and_min_compress_len(server):
    region = make(server, memcached_expire_time=120, min_compress_len=100)
    assert region.backend.set_arguments == {"time": 120, "min_compress_len": 100}
    region.set("small", "x")
    region.set_multi({"big": "y" * 5000})
    for key in ("small", "big"):
        assert 115 <= server.raw_ttl(key) <= 120
    assert server.raw_get(b"small")[1] == 1  # a pickle
    data, flags = server.raw_get(b"big")
    assert flags == 1 | 8 and len(data) < 1000  # a compressed pickle
    assert region.get_multi(["small", "big"]) == ["x", "y" * 5000]


def test_distributed_lock(server):
    region = make(server, expiration_time=300, distributed_lock=True, lock_timeout=7)
    mutex = region.backend.get_mutex("key")
    assert isinstance(mutex, MemcachedLock)
    assert mutex.acquire() is True
    assert 5 <= server.raw_ttl("_lockkey") <= 7
    assert mutex.locked()
    other = region.backend.get_mutex("key")
    assert other.acquire(wait=False) is False
    mutex.release()
    assert server.raw_ttl("_lockkey") is None
    assert other.acquire(wait=False) is True
    other.release()
    assert make(server).backend.get_mutex("key") is None  # no distributed_lock


@pytest.mark.hang_timeout(30)
@pytest.mark.parametrize("lease", [False, True], ids=["add-lock", "lease-lock"])
def test_distributed_lock_serializes_creators(server, lease):
    region = make(server, expiration_time=300, distributed_lock=True, lock_timeout=10,
                  lease_lock=lease)
    started = threading.Event()
    calls: list[int] = []
    results: list[str] = []

    def creator() -> str:
        calls.append(1)
        started.set()
        time.sleep(0.3)
        return "value"

    def worker() -> None:
        results.append(region.get_or_create("shared", creator))

    first = threading.Thread(target=worker)
    first.start()
    assert started.wait(10)
    assert server.raw_ttl("_lockshared") is not None  # the lock is held in memcached
    others = [threading.Thread(target=worker) for _ in range(3)]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join(20)
    assert results == ["value"] * 4
    assert calls == [1]
    assert server.raw_ttl("_lockshared") is None


def test_lease_lock(server):
    from cmemcache.dogpile import LeaseLock

    region = make(server, expiration_time=300, distributed_lock=True, lock_timeout=7,
                  lease_lock=True)
    mutex = region.backend.get_mutex("key")
    assert isinstance(mutex, LeaseLock)
    assert not mutex.locked()
    assert mutex.acquire() is True
    assert 5 <= server.raw_ttl("_lockkey") <= 7 and mutex.locked()
    other = region.backend.get_mutex("key")
    assert other.acquire(wait=False) is False
    mutex.release()
    assert server.raw_ttl("_lockkey") is None
    assert other.acquire(wait=False) is True
    other.release()
    # lock_timeout=0 (dogpile: no expiry): a lease still ends, after 30 s
    forever = make(server, distributed_lock=True, lease_lock=True).backend.get_mutex("f")
    assert forever.acquire() is True and 28 <= server.raw_ttl("_lockf") <= 30
    forever.release()


def test_lease_lock_is_not_released_by_a_holder_whose_lease_ended(server):
    region = make(server, distributed_lock=True, lock_timeout=1, lease_lock=True)
    slow, fast = region.backend.get_mutex("k"), region.backend.get_mutex("k")
    assert slow.acquire() is True
    # slow's lease ends; fast takes the lock (waiting for it)
    assert fast.acquire(wait=True) is True
    slow.release()  # too late: fast's lease stays
    assert fast.locked() and region.backend.get_mutex("k").acquire(wait=False) is False
    fast.release()
    assert not fast.locked()
    # dogpile's MemcachedLock, for comparison, deletes what it no longer holds
    plain = make(server, distributed_lock=True, lock_timeout=1)
    a, b = plain.backend.get_mutex("p"), plain.backend.get_mutex("p")
    assert a.acquire() is True
    assert b.acquire(wait=True) is True
    a.release()
    assert not b.locked()

