"""cmemcache.django.CMemcacheCache against a real memcached: the behaviours
Django's own memcached backend tests check (tests/cache/tests.py), and the
async methods (on cmemcache.aio.Client, one client per event loop), each
checked to do what its blocking namesake does, with BaseCache's
sync_to_async fallback and the blocking client out of reach."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import decimal
import inspect
import pickle
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        USE_TZ=True,
    )
    django.setup()

from django.core import signals  # noqa: E402
from django.core.cache import InvalidCacheKey, caches  # noqa: E402
from django.core.cache.backends.base import BaseCache  # noqa: E402
from django.core.cache.backends.memcached import BaseMemcachedCache  # noqa: E402
from django.test import override_settings  # noqa: E402

import cmemcache  # noqa: E402
import cmemcache.aio  # noqa: E402
from cmemcache import django as backend_module  # noqa: E402
from cmemcache.django import CMemcacheCache  # noqa: E402

BACKEND = "cmemcache.django.CMemcacheCache"
THIRTY_DAYS = 60 * 60 * 24 * 30


def f() -> int:
    return 42


class C:
    def m(self) -> int:
        return 24


class Unpicklable:
    def __getstate__(self):
        raise pickle.PickleError()


def cache_settings(location: str | list[str], **extra: object) -> dict[str, dict[str, object]]:
    """CACHES with a default alias and the variants Django's tests use."""
    base = {"BACKEND": BACKEND, "LOCATION": location, **extra}
    return {
        "default": base,
        "prefix": {**base, "KEY_PREFIX": "cacheprefix"},
        "v2": {**base, "VERSION": 2},
        "custom_key": {**base, "KEY_FUNCTION": f"{__name__}.custom_key_func"},
    }


def custom_key_func(key: str, key_prefix: str, version: int) -> str:
    return "CUSTOM-" + "-".join([key_prefix, str(version), key])


@contextlib.contextmanager
def cache_of_a_killed_server(memcached_factory, **options: object) -> Iterator[BaseCache]:
    """The default cache on the address of a memcached just killed
    (socket_timeout 1 s, dead_retry 0, and ``options``)."""
    server = memcached_factory()
    server.kill()
    options = {"socket_timeout": 1, "dead_retry": 0, **options}
    with override_settings(CACHES=cache_settings(server.address, OPTIONS=options)):
        yield caches["default"]


@pytest.fixture
def cache(server) -> Iterator[BaseCache]:
    with override_settings(CACHES=cache_settings(server.address)):
        yield caches["default"]


# -- configuration -----------------------------------------------------------------------


def test_backend_is_a_django_memcached_backend(cache):
    assert isinstance(cache, CMemcacheCache)
    assert isinstance(cache, BaseMemcachedCache)
    assert isinstance(cache._cache, cmemcache.Client)
    assert cache._cache.pickleProtocol == pickle.HIGHEST_PROTOCOL
    assert cache.LibraryValueNotFoundException is ValueError


@pytest.mark.parametrize(
    "location",
    [["server1.tld", "server2:11211"], "server1.tld;server2:11211", "server1.tld,server2:11211",
     "server1.tld; server2:11211"],
)
def test_location_forms(location):
    with override_settings(CACHES=cache_settings(location)):
        assert caches["default"].client_servers == ["server1.tld", "server2:11211"]
        client = caches["default"]._cache
        assert [str(h) for h in client.servers] == ["inet:server1.tld:11211", "inet:server2:11211"]


def test_weighted_servers(server, memcached_factory):
    second = memcached_factory()
    location = [(server.address, 1), (second.address, 3)]
    with override_settings(CACHES=cache_settings(location)):
        cache = caches["default"]
        assert [h.weight for h in cache._cache.servers] == [1, 3]
        data = {f"w{i}": i for i in range(40)}
        assert cache.set_many(data) == []
        assert cache.get_many(list(data)) == data
        on_first = sum(server.raw_get(f":1:{k}".encode()) is not None for k in data)
        on_second = sum(second.raw_get(f":1:{k}".encode()) is not None for k in data)
        assert on_first + on_second == 40 and on_second > on_first > 0


def test_options_are_client_keyword_arguments(server):
    options = {"socket_timeout": 1.5, "pickleProtocol": 2, "dead_retry": 7}
    with override_settings(CACHES=cache_settings(server.address, OPTIONS=options)):
        cache = caches["default"]
        client = cache._cache
        assert (client.socket_timeout, client.pickleProtocol, client.dead_retry) == (1.5, 2, 7)
        cache.set("opt", {"a": 1})
        value, flags = server.raw_get(b":1:opt")
        assert flags == 1 and value[:2] == b"\x80\x02"  # a protocol-2 pickle
        assert cache.get("opt") == {"a": 1}


def test_unknown_option_is_an_error(server):
    with override_settings(CACHES=cache_settings(server.address, OPTIONS={"no_such": 1})):
        with pytest.raises(TypeError):
            caches["default"].get("x")


def test_backend_instances_share_one_client(cache):
    clients = []

    def worker():
        clients.append(caches["default"]._cache)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(clients) == 4
    assert all(c is cache._cache for c in clients)


# -- the cache API -----------------------------------------------------------------------


def test_simple_and_default(cache):
    cache.set("key", "value")
    assert cache.get("key") == "value"
    assert cache.get("does_not_exist") is None
    assert cache.get("does_not_exist", "bang!") == "bang!"
    cache.set("key_default_none", None)
    assert cache.get("key_default_none", default="default") is None


def test_add(cache):
    assert cache.add("addkey1", "value") is True
    assert cache.add("addkey1", "newvalue") is False
    assert cache.get("addkey1") == "value"


def test_prefix(cache):
    cache.set("somekey", "value")
    assert caches["prefix"].has_key("somekey") is False
    caches["prefix"].set("somekey", "value2")
    assert cache.get("somekey") == "value"
    assert caches["prefix"].get("somekey") == "value2"


def test_keys_as_stored_on_the_server(cache, server):
    cache.set("k", "v")
    caches["prefix"].set("k", b"raw")
    caches["custom_key"].set("k", 7)
    assert server.raw_get(b":1:k") == (b"v", 16)
    assert server.raw_get(b"cacheprefix:1:k") == (b"raw", 0)
    assert server.raw_get(b"CUSTOM--1-k") == (b"7", 2)


def test_delete_and_has_key(cache):
    cache.set_many({"key1": "spam", "key2": "eggs"})
    assert cache.delete("key1") is True
    assert cache.get("key1") is None
    assert cache.get("key2") == "eggs"
    assert cache.delete("nonexistent_key") is False
    cache.set("hello1", "goodbye1")
    assert cache.has_key("hello1") is True
    assert cache.has_key("goodbye1") is False
    cache.set("null", None)
    assert cache.has_key("null") is True
    assert "null" in cache
    assert "goodbye1" not in cache


def test_incr_decr(cache):
    cache.set("answer", 41)
    assert cache.incr("answer") == 42
    assert cache.get("answer") == 42
    assert cache.incr("answer", 10) == 52
    assert cache.incr("answer", -10) == 42
    assert cache.decr("answer") == 41
    assert cache.decr("answer", -9) == 50
    assert cache.get("answer") == 50
    for call in (cache.incr, cache.decr):
        for delta in (1, -1):
            with pytest.raises(ValueError):
                call("does_not_exist", delta)
    cache.set("null", None)
    # not Django's "Key ... not found": memcached's error for a value that
    # is not a number (as Django's pylibmc and pymemcache backends raise
    # their library's client error)
    for call in (cache.incr, cache.decr):
        for delta in (1, -1):
            with pytest.raises(cmemcache.ClientError, match="non-numeric value") as info:
                call("null", delta)
            assert not isinstance(info.value, ValueError)
    assert cache.get("null", "missing") is None
    cache.set("zero", 1)
    assert cache.decr("zero", 5) == 0  # memcached stops at 0


def test_get_set_delete_many(cache):
    assert cache.set_many({"a": "a", "b": "b", "c": "c", "d": "d"}) == []
    assert cache.get_many(["a", "c", "d"]) == {"a": "a", "c": "c", "d": "d"}
    assert cache.get_many(["a", "b", "e"]) == {"a": "a", "b": "b"}
    assert cache.get_many(iter(["a", "b", "e"])) == {"a": "a", "b": "b"}
    cache.set_many({"x": None, "y": 1})
    assert cache.get_many(["x", "y"]) == {"x": None, "y": 1}
    assert cache.set_many({}) == []
    cache.delete_many(["a", "b"])
    assert cache.get_many(["a", "b", "c"]) == {"c": "c"}
    assert cache.delete_many([]) is None


def test_set_many_returns_failing_keys(cache):
    too_large = b"x" * (2 * 1024 * 1024)
    assert cache.set_many({"ok": 1, "big": too_large}) == ["big"]
    assert cache.get_many(["ok", "big"]) == {"ok": 1}


def test_failed_set_deletes_the_old_value(cache):
    cache.set("small_value", "a")
    assert cache.get("small_value") == "a"
    cache.set("small_value", "a" * (2**20 + 1))
    assert cache.get("small_value") is None


def test_touch(cache, server):
    cache.set("t", "v", timeout=10)
    assert cache.touch("t", timeout=1000) is True
    assert 990 <= server.raw_ttl(":1:t") <= 1000
    assert cache.touch("t", timeout=None) is True
    assert server.raw_ttl(":1:t") == -1
    assert cache.touch("t") is True  # the default timeout, 300
    assert 290 <= server.raw_ttl(":1:t") <= 300
    assert cache.touch("t", timeout=0) is True
    assert cache.get("t") is None
    assert cache.touch("nonexistent") is False


def test_get_or_set(cache):
    assert cache.get("projector") is None
    assert cache.get_or_set("projector", 42) == 42
    assert cache.get("projector") == 42
    assert cache.get_or_set("projector", 43) == 42
    assert cache.get_or_set("null", None) is None
    assert cache.get_or_set("null", "default") is None  # None was stored
    calls = []

    def make() -> str:
        calls.append(1)
        return "made"

    assert cache.get_or_set("callable", make) == "made"
    assert cache.get_or_set("callable", make) == "made"
    assert calls == [1]
    assert cache.get_or_set("versioned", "v2", version=2) == "v2"
    assert cache.get("versioned", version=2) == "v2"
    assert cache.get("versioned") is None


# -- timeouts ----------------------------------------------------------------------------


def test_timeouts_as_the_server_sees_them(cache, server):
    cache.set("forever", "x", None)
    assert server.raw_ttl(":1:forever") == -1
    cache.set("default", "x")  # TIMEOUT defaults to 300 s
    assert 295 <= server.raw_ttl(":1:default") <= 300
    cache.set("float", "x", 100.2)
    assert 95 <= server.raw_ttl(":1:float") <= 100
    cache.set("year", "x", 60 * 60 * 24 * 365)  # sent as a Unix time
    # a Unix time: memcached's one-second clock may add a second
    assert 60 * 60 * 24 * 365 - 10 <= server.raw_ttl(":1:year") <= 60 * 60 * 24 * 365 + 1
    assert cache.get("year") == "x"


def test_zero_timeout_expires_immediately(cache):
    cache.set("key1", "eggs", 0)
    assert cache.get("key1") is None
    assert cache.add("key2", "ham", 0) is True
    assert cache.get("key2") is None
    assert cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, 0) == []
    assert cache.get_many(["key3", "key4"]) == {}
    cache.set("key5", "belgian fries", timeout=5)
    assert cache.touch("key5", timeout=0) is True
    assert cache.get("key5") is None


def test_forever_and_long_timeouts(cache):
    cache.set("key1", "eggs", None)
    assert cache.get("key1") == "eggs"
    assert cache.add("key2", "ham", None) is True
    assert cache.add("key1", "new eggs", None) is False
    assert cache.get("key1") == "eggs"
    cache.set("key3", "eggs", THIRTY_DAYS + 1)
    assert cache.add("key4", "ham", THIRTY_DAYS + 1) is True
    cache.set_many({"key5": "sausage", "key6": "lobster bisque"}, THIRTY_DAYS + 1)
    assert cache.get_many(["key2", "key3", "key4", "key5", "key6"]) == {
        "key2": "ham", "key3": "eggs", "key4": "ham", "key5": "sausage",
        "key6": "lobster bisque",
    }


def test_default_timeout_none_and_far_future(server):
    with override_settings(CACHES=cache_settings(server.address, TIMEOUT=None)):
        caches["default"].set("infinite_foo", "bar")
        assert caches["default"].get("infinite_foo") == "bar"
        assert server.raw_ttl(":1:infinite_foo") == -1
    with override_settings(CACHES=cache_settings(server.address, TIMEOUT=31536000)):
        caches["default"].set("future_foo", "bar")
        assert caches["default"].get("future_foo") == "bar"
        assert server.raw_ttl(":1:future_foo") > THIRTY_DAYS


@pytest.mark.hang_timeout(30)
def test_expiration_and_touch_over_time(cache):
    cache.set("expire1", "very quickly", 1)
    cache.set("expire2", "very quickly", 1)
    cache.set_many({"expire3": "very quickly"}, 1)
    cache.set("kept", "touched", 1)
    assert cache.touch("kept", timeout=30) is True
    cache.set("forever", "touched", 1)
    assert cache.touch("forever", timeout=None) is True
    time.sleep(2.5)
    assert cache.get("expire1") is None
    assert cache.add("expire2", "newvalue") is True
    assert cache.get("expire2") == "newvalue"
    assert cache.has_key("expire3") is False
    assert cache.get_many(["kept", "forever"]) == {"kept": "touched", "forever": "touched"}


# -- values ------------------------------------------------------------------------------


def test_data_types(cache):
    tests = {
        "string": "this is a string",
        "int": 42,
        "bigint": 2**70,
        "bool": True,
        "float": 1.5,
        "list": [1, 2, 3, 4],
        "tuple": (1, 2, 3, 4),
        "dict": {"A": 1, "B": 2},
        "set": {1, 2},
        "function": f,
        "class": C,
        "decimal": decimal.Decimal("1.10"),
        "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    }
    for key, value in tests.items():
        cache.set(key, value)
        got = cache.get(key)
        assert got == value and type(got) is type(value), key
    assert cache.get_many(list(tests)) == tests


def test_unicode(cache):
    stuff = {
        "ascii": "ascii_value",
        "unicode_ascii": "Iñtërnâtiônàlizætiøn1",
        "Iñtërnâtiônàlizætiøn": "Iñtërnâtiônàlizætiøn2",
        "ascii2": {"x": 1},
        "清": "清" * 1000,
    }
    for key, value in stuff.items():
        cache.set(key, value)
        assert cache.get(key) == value
    for key, value in stuff.items():
        assert cache.delete(key) is True
        assert cache.add(key, value) is True
        assert cache.get(key) == value
    for key in stuff:
        assert cache.delete(key) is True
    cache.set_many(stuff)
    assert cache.get_many(list(stuff)) == stuff


def test_binary_values(cache, server):
    compressed = zlib.compress(b"value_to_be_compressed")
    every_byte = bytes(range(256)) + b"\r\nEND\r\n"
    cache.set("binary1", compressed)
    assert cache.get("binary1") == compressed
    assert cache.add("binary1-add", every_byte) is True
    assert cache.get("binary1-add") == every_byte
    cache.set_many({"binary1-set_many": every_byte})
    assert cache.get("binary1-set_many") == every_byte
    assert server.raw_get(b":1:binary1-add") == (every_byte, 0)


def test_pickled_values_use_the_highest_protocol(cache, server):
    value = {"nested": [1, (2, 3)], "when": datetime.date(2020, 2, 29)}
    cache.set("pickled", value)
    data, flags = server.raw_get(b":1:pickled")
    assert flags == 1
    assert data[:2] == b"\x80" + bytes([pickle.HIGHEST_PROTOCOL])
    assert pickle.loads(data) == value
    assert cache.get("pickled") == value


def test_unpicklable_values_raise(cache):
    with pytest.raises(pickle.PickleError):
        cache.set("unpicklable", Unpicklable())
    with pytest.raises(pickle.PickleError):
        cache.add("unpicklable", Unpicklable())
    assert cache.get("unpicklable") is None


# -- keys --------------------------------------------------------------------------------

OPERATIONS = [
    ("add", lambda key: [key, 1]),
    ("get", lambda key: [key]),
    ("set", lambda key: [key, 1]),
    ("incr", lambda key: [key]),
    ("decr", lambda key: [key]),
    ("touch", lambda key: [key]),
    ("delete", lambda key: [key]),
    ("has_key", lambda key: [key]),
    ("get_many", lambda key: [[key, "b"]]),
    ("set_many", lambda key: [{key: 1, "b": 2}]),
    ("delete_many", lambda key: [[key, "b"]]),
    ("get_or_set", lambda key: [key, 1]),
]


@pytest.mark.parametrize("operation,args", OPERATIONS, ids=[o for o, _ in OPERATIONS])
def test_invalid_keys_raise_invalid_cache_key(cache, server, operation, args):
    spaces = "key with spaces and 清"
    cases = {
        spaces: "Cache key contains characters that will cause errors if used with "
        f"memcached: {':1:' + spaces!r}",
        "a" * 248: "Cache key will cause errors if used with memcached: "
        f"{':1:' + 'a' * 248!r} (longer than 250)",
        "ctrl\x01key": None,
        "é" * 200: "(longer than 250 bytes in UTF-8)",
    }
    before = command_counts(server)
    for key, message in cases.items():
        with pytest.raises(InvalidCacheKey) as e:
            getattr(cache, operation)(*args(key))
        if message is not None:
            assert message in str(e.value)
    assert command_counts(server) == before  # nothing was sent


def command_counts(server) -> dict[str, str]:
    """The server's counters of the commands a cache operation sends."""
    names = ("cmd_get", "cmd_set", "cmd_touch", "delete_hits", "delete_misses",
             "incr_hits", "incr_misses", "decr_hits", "decr_misses")
    stats = server.stats()
    return {name: stats[name] for name in names}


def test_longest_valid_keys(cache, server):
    ascii_key = "k" * (250 - 3)  # ":1:" makes 250
    utf8_key = "é" * 123 + "k"  # 247 bytes + ":1:"
    for key in (ascii_key, utf8_key):
        cache.set(key, "v")
        assert cache.get(key) == "v"
        assert cache.get_many([key]) == {key: "v"}
    assert server.raw_get(b":1:" + ascii_key.encode()) == (b"v", 16)


# -- clear, versions, close --------------------------------------------------------------


def test_clear(cache):
    cache.set_many({"key1": "spam", "key2": "eggs"})
    caches["prefix"].set("key3", "ham")
    cache.clear()
    assert cache.get_many(["key1", "key2"]) == {}
    assert caches["prefix"].get("key3") is None


def test_versioning(cache):
    cache.set("answer1", 42)
    assert cache.get("answer1", version=1) == 42
    assert cache.get("answer1", version=2) is None
    assert caches["v2"].get("answer1") is None
    assert caches["v2"].get("answer1", version=1) == 42
    caches["v2"].set("answer2", 42)
    assert cache.get("answer2") is None
    assert cache.get("answer2", version=2) == 42
    assert cache.add("answer1", 37, version=2) is True
    assert cache.get_many(["answer1"], version=2) == {"answer1": 37}
    cache.set("counter", 37, version=1)
    cache.set("counter", 42, version=2)
    assert cache.incr("counter", version=2) == 43
    assert caches["v2"].decr("counter") == 42
    assert cache.get("counter") == 37
    assert cache.delete("counter", version=2) is True
    assert cache.get("counter", version=2) is None


def test_incr_decr_version(cache):
    cache.set("answer", 42, version=2)
    assert cache.incr_version("answer", version=2) == 3
    assert cache.get("answer", version=2) is None
    assert cache.get("answer", version=3) == 42
    assert cache.decr_version("answer", version=3) == 2
    assert cache.get("answer", version=2) == 42
    with pytest.raises(ValueError):
        cache.incr_version("does_not_exist")
    cache.set("null", None)
    assert cache.incr_version("null") == 2
    assert cache.get("null", "default", version=2) is None


def test_custom_key_func(cache):
    cache.set("answer1", 42)
    assert caches["custom_key"].get("answer1") is None
    caches["custom_key"].set("answer2", 42)
    assert cache.get("answer2") is None
    assert caches["custom_key"].get("answer2") == 42


def test_close_keeps_pooled_connections(cache, server):
    cache.set("before", 1)
    opened = int(server.stats()["total_connections"])
    for i in range(20):
        assert cache.get("before") == 1
        caches["default"].close()
        signals.request_finished.send(sender=None)  # Django's end of a request
        cache.set(f"after{i}", i)
    assert cache.get_many([f"after{i}" for i in range(20)]) == {f"after{i}": i for i in range(20)}
    # Only the raw stats connections themselves were opened since.
    assert int(server.stats()["total_connections"]) - opened <= 2


def test_server_down_fails_quietly(memcached_factory):
    with cache_of_a_killed_server(memcached_factory) as cache:
        cache.set("k", "v")  # no exception, as with Django's memcached backends
        assert cache.get("k") is None
        assert cache.add("k", "v") is False  # a bool, as Django documents
        assert cache.get_many(["k", "j"]) == {}
        assert cache.set_many({"k": 1, "j": 2}) == ["k", "j"]
        assert cache.delete("k") is False
        assert cache.touch("k") is False
        with pytest.raises(ValueError):
            cache.incr("k")


def test_strict_option_raises_when_the_server_is_down(memcached_factory):
    with cache_of_a_killed_server(memcached_factory, strict=True) as cache:
        with pytest.raises(cmemcache.ConnectionError):
            cache.get("k")
        with pytest.raises(cmemcache.ConnectionError):
            cache.set("k", 1)
        with pytest.raises(cmemcache.ConnectionError):
            cache.get_or_set("k", 1)


# -- the async methods --------------------------------------------------------------------

ASYNC_METHODS = sorted(
    name for name in dir(BaseCache) if inspect.iscoroutinefunction(getattr(BaseCache, name)))


class _Forbidden:
    """Stands for the blocking client: any use of it fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"an async method used the blocking client's {name}")


@pytest.fixture
def acache(cache, monkeypatch) -> BaseCache:
    """The default cache with its blocking client and BaseCache's
    sync_to_async fallback out of reach."""
    import django.core.cache.backends.base as base

    def no_fallback(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"sync_to_async({args[0]!r}) used")

    monkeypatch.setattr(base, "sync_to_async", no_fallback)
    for alias in ("default", "prefix", "v2", "custom_key"):
        monkeypatch.setitem(caches[alias].__dict__, "_cache", _Forbidden())
    return cache


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_every_async_method_is_the_backends_own():
    assert {"aget", "aset", "aadd", "adelete", "aget_many", "aset_many", "adelete_many",
            "aincr", "adecr", "atouch", "ahas_key", "aclear", "aget_or_set",
            "aincr_version", "adecr_version", "aclose"} <= set(ASYNC_METHODS)
    for name in ASYNC_METHODS:
        method = getattr(CMemcacheCache, name)
        assert method is not getattr(BaseCache, name), name
        assert method.__qualname__ == f"CMemcacheCache.{name}", name
        assert inspect.iscoroutinefunction(method), name


def test_the_guard_catches_the_fallback_and_the_blocking_client(acache):
    with pytest.raises(AssertionError, match="sync_to_async"):
        run(BaseCache.aget(acache, "k"))
    with pytest.raises(AssertionError, match="blocking client's get"):
        acache.get("k")


def test_aget_aset_aadd(acache, server):
    async def scenario() -> list[Any]:
        out = [await acache.aget("key"), await acache.aget("key", "bang!")]
        out.append(await acache.aset("key", "value"))
        out += [await acache.aget("key"), await acache.aadd("key", "new"), await acache.aget("key")]
        out += [await acache.aadd("added", {"v": [1, 2]}), await acache.aget("added")]
        await acache.aset("none", None)
        out.append(await acache.aget("none", default="default"))
        await acache.aset("raw", b"\x00\r\nEND\r\n")
        return out

    assert run(scenario()) == [None, "bang!", None, "value", False, "value", True,
                               {"v": [1, 2]}, None]
    assert server.raw_get(b":1:key") == (b"value", 16)
    assert server.raw_get(b":1:raw") == (b"\x00\r\nEND\r\n", 0)
    data, flags = server.raw_get(b":1:added")
    assert flags == 1 and data[:2] == b"\x80" + bytes([pickle.HIGHEST_PROTOCOL])


def test_async_keys_prefixes_versions(acache, server):
    async def scenario() -> list[Any]:
        await acache.aset("k", "v")
        await caches["prefix"].aset("k", b"raw")
        await caches["custom_key"].aset("k", 7)
        await caches["v2"].aset("k", "two")
        return [await caches["prefix"].aget("k"), await caches["v2"].aget("k"),
                await acache.aget("k", version=2), await acache.aget("k")]

    assert run(scenario()) == [b"raw", "two", "two", "v"]
    assert server.raw_get(b":1:k") == (b"v", 16)
    assert server.raw_get(b"cacheprefix:1:k") == (b"raw", 0)
    assert server.raw_get(b"CUSTOM--1-k") == (b"7", 2)
    assert server.raw_get(b":2:k") == (b"two", 16)


def test_async_timeouts_as_the_server_sees_them(acache, server):
    async def scenario() -> list[Any]:
        await acache.aset("forever", "x", None)
        await acache.aset("default", "x")
        await acache.aset("float", "x", 100.2)
        await acache.aset("year", "x", 60 * 60 * 24 * 365)
        await acache.aset("zero", "x", 0)
        added = await acache.aadd("zero-add", "x", 0)
        many = await acache.aset_many({"m1": 1, "m2": 2}, 0)
        await acache.aset_many({"long1": 1}, THIRTY_DAYS + 1)
        return [added, many, await acache.aget("zero"), await acache.aget("zero-add"),
                await acache.aget_many(["m1", "m2"]), await acache.aget("year"),
                await acache.aget("long1")]

    assert run(scenario()) == [True, [], None, None, {}, "x", 1]
    assert server.raw_ttl(":1:forever") == -1
    assert 295 <= server.raw_ttl(":1:default") <= 300
    assert 95 <= server.raw_ttl(":1:float") <= 100
    year = 60 * 60 * 24 * 365
    assert year - 10 <= server.raw_ttl(":1:year") <= year + 1
    assert THIRTY_DAYS - 10 <= server.raw_ttl(":1:long1") <= THIRTY_DAYS + 2


def test_async_default_timeout_from_settings(server):
    with override_settings(CACHES=cache_settings(server.address, TIMEOUT=None)):
        run(caches["default"].aset("infinite", "bar"))
        assert server.raw_ttl(":1:infinite") == -1
    with override_settings(CACHES=cache_settings(server.address, TIMEOUT=31536000)):
        run(caches["default"].aset("future", "bar"))
        assert server.raw_ttl(":1:future") > THIRTY_DAYS


def test_atouch(acache, server):
    async def scenario() -> list[Any]:
        await acache.aset("t", "v", timeout=10)
        out = [await acache.atouch("t", timeout=1000)]
        out.append(server.raw_ttl(":1:t"))
        out += [await acache.atouch("t", timeout=None), server.raw_ttl(":1:t")]
        out += [await acache.atouch("t"), server.raw_ttl(":1:t")]
        out += [await acache.atouch("t", timeout=0), await acache.aget("t"),
                await acache.atouch("nonexistent")]
        return out

    out = run(scenario())
    assert out[0] is True and 990 <= out[1] <= 1000
    assert out[2:4] == [True, -1]
    assert out[4] is True and 290 <= out[5] <= 300
    assert out[6:] == [True, None, False]


def test_adelete_and_ahas_key(acache):
    async def scenario() -> list[Any]:
        await acache.aset_many({"key1": "spam", "key2": "eggs"})
        out = [await acache.adelete("key1"), await acache.aget("key1"), await acache.aget("key2"),
               await acache.adelete("nonexistent")]
        await acache.aset("null", None)
        out += [await acache.ahas_key("key2"), await acache.ahas_key("key1"),
                await acache.ahas_key("null")]
        return out

    assert run(scenario()) == [True, None, "eggs", False, True, False, True]


def test_async_many(acache, server):
    too_large = b"x" * (2 * 1024 * 1024)

    async def scenario() -> list[Any]:
        out = [await acache.aset_many({"a": "a", "b": "b", "c": "c", "d": "d"})]
        out.append(await acache.aget_many(["a", "c", "d"]))
        out.append(await acache.aget_many(iter(["a", "b", "e"])))
        out.append(await acache.aset_many({"ok": 1, "big": too_large}))
        out.append(await acache.aget_many(["ok", "big"]))
        out.append(await acache.aset_many({}))
        out.append(await acache.adelete_many(["a", "b"]))
        out.append(await acache.aget_many(["a", "b", "c"]))
        out.append(await acache.adelete_many([]))
        out.append(await acache.aget_many([]))
        return out

    assert run(scenario()) == [
        [], {"a": "a", "c": "c", "d": "d"}, {"a": "a", "b": "b"}, ["big"], {"ok": 1}, [], None,
        {"c": "c"}, None, {}]
    assert server.raw_get(b":1:c") == (b"c", 16)


def test_async_failed_set_deletes_the_old_value(acache, server):
    async def scenario() -> list[Any]:
        await acache.aset("small_value", "a")
        before = await acache.aget("small_value")
        result = await acache.aset("small_value", "a" * (2**20 + 1))
        return [before, result, await acache.aget("small_value")]

    assert run(scenario()) == ["a", None, None]
    assert server.raw_get(b":1:small_value") is None


def test_aincr_adecr(acache):
    async def scenario() -> list[Any]:
        await acache.aset("answer", 41)
        out = [await acache.aincr("answer"), await acache.aincr("answer", 10),
               await acache.aincr("answer", -10), await acache.adecr("answer"),
               await acache.adecr("answer", -9), await acache.aget("answer")]
        for call in (acache.aincr, acache.adecr):
            for delta in (1, -1):
                with pytest.raises(ValueError, match="Key ':1:does_not_exist' not found"):
                    await call("does_not_exist", delta)
        await acache.aset("null", None)
        for call in (acache.aincr, acache.adecr):
            for delta in (1, -1):
                with pytest.raises(cmemcache.ClientError, match="non-numeric value") as info:
                    await call("null", delta)
                assert not isinstance(info.value, ValueError)
        await acache.aset("zero", 1)
        out += [await acache.adecr("zero", 5), await acache.aget("null", "missing")]
        return out

    assert run(scenario()) == [42, 52, 42, 41, 50, 50, 0, None]


def test_aget_or_set(acache):
    calls = []

    def make() -> str:
        calls.append(1)
        return "made"

    async def scenario() -> list[Any]:
        return [
            await acache.aget("projector"), await acache.aget_or_set("projector", 42),
            await acache.aget("projector"), await acache.aget_or_set("projector", 43),
            await acache.aget_or_set("null", None), await acache.aget_or_set("null", "default"),
            await acache.aget_or_set("callable", make), await acache.aget_or_set("callable", make),
            await acache.aget_or_set("versioned", "v2", version=2),
            await acache.aget("versioned", version=2), await acache.aget("versioned"),
            await acache.aget_or_set("short", "s", timeout=0),
        ]

    assert run(scenario()) == [None, 42, 42, 42, None, None, "made", "made", "v2", "v2", None, "s"]
    assert calls == [1]


def test_aincr_adecr_version(acache):
    async def scenario() -> list[Any]:
        await acache.aset("answer", 42, version=2)
        out = [await acache.aincr_version("answer", version=2),
               await acache.aget("answer", version=2), await acache.aget("answer", version=3),
               await acache.adecr_version("answer", version=3),
               await acache.aget("answer", version=2)]
        with pytest.raises(ValueError, match="Key 'does_not_exist' not found"):
            await acache.aincr_version("does_not_exist")
        await acache.aset("null", None)
        out += [await acache.aincr_version("null"),
                await acache.aget("null", "default", version=2)]
        await caches["v2"].aset("v", 1)
        out += [await caches["v2"].aincr_version("v", 5), await acache.aget("v", version=7)]
        return out

    assert run(scenario()) == [3, None, 42, 2, 42, 2, None, 7, 1]


def test_aclear_and_aclose(acache, server):
    async def scenario() -> list[Any]:
        await acache.aset_many({"key1": "spam", "key2": "eggs"})
        await caches["prefix"].aset("key3", "ham")
        await acache.aclear()
        out = [await acache.aget_many(["key1", "key2"]), await caches["prefix"].aget("key3")]
        await acache.aset("after", 1)
        opened = int(server.stats()["total_connections"])
        for _ in range(5):
            await acache.aclose()
            out.append(await acache.aget("after"))
        # aclose() kept the connection: only the stats connections are new
        out.append(int(server.stats()["total_connections"]) - opened <= 2)
        return out

    assert run(scenario()) == [{}, None, 1, 1, 1, 1, 1, True]


def test_async_data_types_and_unicode(acache):
    values = {
        "string": "this is a string", "int": 42, "bigint": 2**70, "bool": True, "float": 1.5,
        "list": [1, 2, 3], "tuple": (1, 2), "dict": {"A": 1}, "set": {1, 2}, "function": f,
        "class": C, "decimal": decimal.Decimal("1.10"),
        "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "Iñtërnâtiônàlizætiøn": "Iñtërnâtiônàlizætiøn2", "清": "清" * 1000,
    }

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        got = {}
        for key, value in values.items():
            await acache.aset(key, value)
            got[key] = await acache.aget(key)
        return got, await acache.aget_many(list(values))

    one_by_one, many = run(scenario())
    assert one_by_one == values == many
    assert all(type(one_by_one[k]) is type(v) for k, v in values.items())


def test_async_unpicklable_values_raise(acache):
    async def scenario() -> Any:
        with pytest.raises(pickle.PickleError):
            await acache.aset("unpicklable", Unpicklable())
        with pytest.raises(pickle.PickleError):
            await acache.aadd("unpicklable", Unpicklable())
        return await acache.aget("unpicklable")

    assert run(scenario()) is None


ASYNC_OPERATIONS = [("a" + name, args) for name, args in OPERATIONS]


@pytest.mark.parametrize("operation,args", ASYNC_OPERATIONS, ids=[o for o, _ in ASYNC_OPERATIONS])
def test_async_invalid_keys_raise_invalid_cache_key(acache, server, operation, args):
    cases = {
        "key with spaces": "Cache key contains characters that will cause errors if used "
        "with memcached: ':1:key with spaces'",
        "a" * 248: "(longer than 250)",
        "ctrl\x01key": "Cache key contains characters",
        "é" * 200: "(longer than 250 bytes in UTF-8)",
    }

    async def scenario() -> None:
        for key, message in cases.items():
            with pytest.raises(InvalidCacheKey) as e:
                await getattr(acache, operation)(*args(key))
            assert message in str(e.value)

    before = command_counts(server)
    run(scenario())
    assert command_counts(server) == before  # nothing was sent


def test_sync_and_async_share_the_values(cache):
    cache.set("from-sync", {"a": (1, 2)})
    cache.set("n", 1)

    async def scenario() -> list[Any]:
        out = [await cache.aget("from-sync"), await cache.aincr("n")]
        await cache.aset("from-async", [1.5, "x"])
        return out

    assert run(scenario()) == [{"a": (1, 2)}, 2]
    assert cache.get("from-async") == [1.5, "x"]
    assert cache.incr("n") == 3


def test_many_tasks_on_one_loop(acache):
    async def one(i: int) -> tuple[Any, Any]:
        await acache.aset(f"task{i}", {"i": i})
        return await acache.aget(f"task{i}"), await acache.aincr("counter")

    async def scenario() -> tuple[list[tuple[Any, Any]], Any]:
        await acache.aset("counter", 0)
        results = await asyncio.gather(*(one(i) for i in range(50)))
        return results, await acache.aget("counter")

    results, counter = run(scenario())
    assert [r[0] for r in results] == [{"i": i} for i in range(50)]
    assert sorted(r[1] for r in results) == list(range(1, 51))
    assert counter == 50


# -- one asyncio client per event loop ------------------------------------------------------


def test_one_aio_client_per_loop(cache, server):
    async def client_and_value() -> tuple[Any, Any]:
        await cache.aset("k", "v")
        return cache._aclient(), await cache.aget("k")

    async def same_loop() -> bool:
        first = cache._aclient()
        await cache.aget("k")
        await asyncio.sleep(0)
        return cache._aclient() is first and caches["prefix"]._aclient() is first

    first, v1 = run(client_and_value())
    second, v2 = run(client_and_value())
    assert (v1, v2) == ("v", "v")
    assert isinstance(first, cmemcache.aio.Client) and first is not second
    assert run(same_loop()) is True
    # the client of a loop that closed was closed when the next loop's was made
    with pytest.raises(cmemcache.ConnectionError, match="closed"):
        run(first._sc.get(b":1:k"))
    assert cache._aio.loops() == 1
    assert cache._aio is caches["v2"]._aio  # every alias with this LOCATION and OPTIONS


def test_loops_in_threads_have_their_own_clients(cache):
    results: dict[int, Any] = {}
    barrier = threading.Barrier(4, timeout=10)

    def worker(i: int) -> None:
        async def scenario() -> Any:
            await caches["default"].aset(f"t{i}", i)
            client = caches["default"]._aclient()
            barrier.wait()  # every thread's loop is running now
            return client, await caches["default"].aget(f"t{i}")

        results[i] = asyncio.run(scenario())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(results) == [0, 1, 2, 3]
    assert [results[i][1] for i in range(4)] == [0, 1, 2, 3]
    assert len({id(results[i][0]) for i in range(4)}) == 4


def test_aio_only_options(server):
    options = {"socket_timeout": 1.5, "max_connections": 3, "max_inflight": 8}
    with override_settings(CACHES=cache_settings(server.address, OPTIONS=options)):
        cache = caches["default"]
        cache.set("k", 1)  # the blocking client does not take max_connections
        assert cache._cache.socket_timeout == 1.5

        async def scenario() -> Any:
            client = cache._aclient()
            assert client._engine_options == {"max_connections": 3, "max_inflight": 8}
            assert client.socket_timeout == 1.5
            return await cache.aget("k")

        assert run(scenario()) == 1


def test_close_all_aio_clients_of_a_configuration(cache):
    async def scenario() -> Any:
        await cache.aset("k", 1)
        return cache._aclient()

    client = run(scenario())
    cache._aio.close_all()
    assert cache._aio.loops() == 0
    with pytest.raises(cmemcache.ConnectionError, match="closed"):
        run(client._sc.get(b":1:k"))
    assert run(cache.aget("k")) == 1  # a new client on the new loop


# -- async methods when the server is down or stalled ----------------------------------------

#: (method, args) run on a cache whose server is down, blocking and async
DOWN_OPERATIONS = [
    ("set", ("k", "v")), ("get", ("k",)), ("get", ("k", "default")), ("add", ("k", "v")),
    ("get_many", (["k", "j"],)), ("set_many", ({"k": 1, "j": 2},)), ("delete", ("k",)),
    ("delete_many", (["k", "j"],)), ("touch", ("k",)), ("has_key", ("k",)),
    ("get_or_set", ("k", "made")), ("clear", ()), ("incr", ("k",)), ("decr", ("k",)),
    ("incr_version", ("k",)), ("close", ()),
]


def _outcome(call: Any) -> Any:
    try:
        return ("returned", call())
    except Exception as e:  # the outcome compared is the exception's type and text
        return ("raised", type(e).__name__, str(e))


def test_async_server_down_answers_as_the_blocking_methods(memcached_factory):
    with cache_of_a_killed_server(memcached_factory) as cache:
        blocking = [_outcome(lambda: getattr(cache, name)(*args)) for name, args in DOWN_OPERATIONS]

        async def scenario() -> list[Any]:
            out = []
            for name, args in DOWN_OPERATIONS:
                try:
                    out.append(("returned", await getattr(cache, "a" + name)(*args)))
                except Exception as e:
                    out.append(("raised", type(e).__name__, str(e)))
            return out

        started = time.monotonic()
        asynchronous = run(scenario())
        assert time.monotonic() - started < 10  # refused connects fail fast
    assert asynchronous == blocking
    # what python-memcached's failures answer, as the blocking methods do
    assert dict(zip([n + repr(a) for n, a in DOWN_OPERATIONS], asynchronous)) == {
        "set('k', 'v')": ("returned", None),
        "get('k',)": ("returned", None),
        "get('k', 'default')": ("returned", None),
        "add('k', 'v')": ("returned", False),
        "get_many(['k', 'j'],)": ("returned", {}),
        "set_many({'k': 1, 'j': 2},)": ("returned", ["k", "j"]),
        "delete('k',)": ("returned", False),
        "delete_many(['k', 'j'],)": ("returned", None),
        "touch('k',)": ("returned", False),
        "has_key('k',)": ("returned", True),
        "get_or_set('k', 'made')": ("returned", None),
        "clear()": ("returned", None),
        "incr('k',)": ("raised", "ValueError", "Key ':1:k' not found"),
        "decr('k',)": ("raised", "ValueError", "Key ':1:k' not found"),
        "incr_version('k',)": ("returned", 2),
        "close()": ("returned", None),
    }


def test_async_strict_option_raises_when_the_server_is_down(memcached_factory):
    with cache_of_a_killed_server(memcached_factory, strict=True) as cache:

        async def scenario() -> list[str]:
            raised = []
            for call in (lambda: cache.aget("k"), lambda: cache.aset("k", 1),
                         lambda: cache.aget_or_set("k", 1), lambda: cache.aget_many(["k"]),
                         lambda: cache.aincr("k"), lambda: cache.aclear()):
                with pytest.raises(cmemcache.ConnectionError) as info:
                    await call()
                raised.append(type(info.value).__name__)
            return raised

        assert run(scenario()) == ["ConnectionError"] * 6


@pytest.mark.hang_timeout(60)
def test_async_methods_on_a_stopped_server_time_out(memcached_factory):
    server = memcached_factory()
    options = {"socket_timeout": 0.3, "dead_retry": 0}
    strict = {**options, "strict": True}
    with override_settings(CACHES={
        "default": {"BACKEND": BACKEND, "LOCATION": server.address, "OPTIONS": options},
        "strict": {"BACKEND": BACKEND, "LOCATION": server.address, "OPTIONS": strict},
    }):
        cache, strict_cache = caches["default"], caches["strict"]
        run(cache.aset("k", "before"))
        server.pause()
        try:
            async def stalled() -> list[Any]:
                out = []
                for call in (lambda: cache.aget("k"), lambda: cache.aadd("new", 1),
                             lambda: cache.aget_many(["k", "j"])):
                    started = time.monotonic()
                    out.append(await call())
                    out.append(time.monotonic() - started < 3)
                started = time.monotonic()
                with pytest.raises(cmemcache.TimeoutError):
                    await strict_cache.aget("k")
                out.append(time.monotonic() - started < 3)
                return out

            assert run(stalled()) == [None, True, False, True, {}, True, True]
        finally:
            server.resume()

        async def recovered() -> Any:
            # a held-down server is probed again once its hold-down passed
            for _ in range(50):
                value = await cache.aget("k")
                if value is not None:
                    return value
                await asyncio.sleep(0.1)
            return None

        assert run(recovered()) == "before"


# -- get_or_set on leases (OPTIONS["leases"]) ------------------------------------------------


@pytest.fixture
def lease_cache(server) -> Iterator[BaseCache]:
    with override_settings(CACHES=cache_settings(server.address, OPTIONS={
            "leases": True, "lease_lock_ttl": 5})):
        yield caches["default"]


def test_get_or_set_with_leases(lease_cache, server):
    test_get_or_set(lease_cache)  # Django's semantics, unchanged
    # the backend's options, not the Client's
    assert "leases" not in lease_cache._options and "lease_lock_ttl" not in lease_cache._options
    runs: list = []

    def slow() -> str:
        runs.append(1)
        time.sleep(0.2)
        return "once"

    out: list = []
    threads = [threading.Thread(target=lambda: out.append(lease_cache.get_or_set("hot", slow, 60)))
               for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert out == ["once"] * 16 and runs == [1]
    assert 59 <= server.raw_ttl(":1:hot") <= 60
    # timeout=0 (expire at once): Django's own path, nothing stored
    assert lease_cache.get_or_set("gone", "x", timeout=0) == "x"
    assert server.raw_get(b":1:gone") is None

    async def main():
        aruns: list = []

        async def aslow() -> str:
            aruns.append(1)
            await asyncio.sleep(0.2)
            return "async once"

        got = await asyncio.gather(*[lease_cache.aget_or_set("ahot", aslow, 60)
                                     for _ in range(64)])
        assert got == ["async once"] * 64 and aruns == [1]
        assert await lease_cache.aget_or_set("hot", slow) == "once"
        await lease_cache.aclose()

    asyncio.run(main())
