"""cmemcache.aiocache.CMemcacheCache against a real memcached: aiocache's
own acceptance tests (from its sdist, run in a child process, see
upstream/aiocache_suites.py), then what they leave out, value by value:
what the server holds, the differences from aiocache's MemcachedCache, one
client per event loop, and down and stopped servers."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

pytest.importorskip("aiocache")

from aiocache import Cache, caches, cached  # noqa: E402
from aiocache.lock import OptimisticLock, OptimisticLockError, RedLock  # noqa: E402
from aiocache.serializers import JsonSerializer, PickleSerializer, StringSerializer  # noqa: E402

import cmemcache  # noqa: E402
import cmemcache.aio  # noqa: E402
from cmemcache.aiocache import CMemcacheCache  # noqa: E402
from upstream import harness, sdist  # noqa: E402

FILE = "tests/upstream/aiocache_suites.py"


def make(server: Any, **kwargs: Any) -> CMemcacheCache:
    return CMemcacheCache(endpoint=server.host, port=server.port, **kwargs)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- aiocache's own tests ------------------------------------------------------------------


@pytest.mark.hang_timeout(harness.CHILD_TIMEOUT + 60)
def test_aiocache_acceptance_suites(server):
    pytest.importorskip("marshmallow")  # imported by the upstream serializer tests
    pytest.importorskip("pytest_mock")  # their mocker fixture
    pytest.importorskip("anyio")  # the pytest plugin that runs them
    source = sdist.fetch("aiocache", ("tests", "LICENSE"))
    sets_before = int(server.stats()["cmd_set"])
    report = harness.run("run_aiocache.py", "--sdist", str(source), "--address", server.address)
    problems = harness.not_passed(report)
    assert not problems, harness.explain(report, problems)
    assert report["exit_code"] == 0, report["output"][-8000:]
    upstream = report["upstream_tests"]
    mirrors, not_mirrored = report["mirrors"], report["not_mirrored"]
    # every upstream class is run here, or named with the reason it is not
    assert set(upstream) == set(mirrors.values()) | set(not_mirrored)
    assert not set(mirrors.values()) & set(not_mirrored)
    not_applicable = report["not_applicable"]
    expected = set()
    for ours, theirs in mirrors.items():
        for name in upstream[theirs]:
            if f"{ours}.{name}" not in not_applicable:
                expected.add(f"{FILE}::{ours}::{name}")
    assert all(n.split(".")[1] in upstream[mirrors[n.split(".")[0]]] for n in not_applicable)
    ran = {t.split("[")[0] for t in report["tests"]}
    assert ran == expected, (sorted(expected - ran), sorted(ran - expected))
    # aiocache 0.12.3: 120 runs (the serializer tests are parametrized)
    assert len(report["tests"]) >= 100
    assert f"{FILE}::TestCache::test_increment_typeerror" in report["tests"]
    assert f"{FILE}::TestOptimisticLock::test_check_and_set_fail" in report["tests"]
    # they ran against this memcached
    assert int(server.stats()["cmd_set"]) - sets_before > 100


# -- construction ---------------------------------------------------------------------------


def test_defaults_and_options(server):
    cache = CMemcacheCache()
    assert (cache.endpoint, cache.port, cache.pool_size) == ("127.0.0.1", 11211, 2)
    assert cache.servers == ["127.0.0.1:11211"]
    assert isinstance(cache.serializer, JsonSerializer)
    assert cache.client_options == {"strict": True, "max_connections": 2}
    assert cache.namespace is None and cache.timeout == 5 and cache.ttl is None
    assert repr(cache) == "CMemcacheCache (127.0.0.1:11211)"
    with pytest.raises(TypeError):
        CMemcacheCache(random_attr="wtf")
    cache = CMemcacheCache(servers=["a:1", "b:2"], pool_size="4",
                           client_options={"socket_timeout": 0.5, "strict": False},
                           serializer=PickleSerializer(), namespace="ns", ttl=10)
    assert cache.servers == ["a:1", "b:2"] and cache.pool_size == 4
    assert cache.client_options == {"strict": False, "max_connections": 4, "socket_timeout": 0.5}
    assert isinstance(cache.serializer, PickleSerializer)
    assert CMemcacheCache(endpoint="::1", port=5).servers == ["inet6:[::1]:5"]
    assert CMemcacheCache(endpoint="/run/mc.sock").servers == ["unix:/run/mc.sock"]

    async def client_options() -> Any:
        client = make(server, pool_size=3, client_options={"socket_timeout": 1.5}).client
        return type(client), client._engine_options, client.socket_timeout, client.strict

    assert run(client_options()) == (cmemcache.aio.Client,
                                     {"max_connections": 3, "max_inflight": 64}, 1.5, True)


def test_by_url_and_by_configuration(server):
    async def scenario() -> list[Any]:
        by_url = Cache.from_url(f"cmemcache://{server.host}:{server.port}?pool_size=3")
        caches.set_config({"default": {
            "cache": "cmemcache.aiocache.CMemcacheCache", "endpoint": server.host,
            "port": server.port, "namespace": "conf:",
            "serializer": {"class": "aiocache.serializers.StringSerializer"}}})
        configured = caches.get("default")
        await configured.set("k", 42)
        out = [type(by_url).__name__, by_url.pool_size, by_url.servers,
               type(configured).__name__, await by_url.raw("get", b"conf:k")]
        await by_url.close()
        await configured.close()
        return out

    try:
        assert run(scenario()) == ["CMemcacheCache", 3, [server.address], "CMemcacheCache", "42"]
    finally:
        caches._caches = {}


# -- what the server holds ------------------------------------------------------------------


def test_values_on_the_server(server):
    async def scenario() -> list[Any]:
        cache = make(server, namespace="test:")
        string = make(server, serializer=StringSerializer())
        pickled = make(server, serializer=PickleSerializer())
        out = [await cache.set("key", {"a": [1, "x"]}), await cache.get("key"),
               await string.set("s", 12), await string.get("s"),
               await pickled.set("p", (1, {2})), await pickled.get("p"),
               await cache.set("with blank", "v"), await cache.get("with blank"),
               await cache.get("missing"), await cache.get("missing", default=7)]
        await cache.close()
        return out

    assert run(scenario()) == [True, {"a": [1, "x"]}, True, "12", True, (1, {2}),
                               True, "v", None, 7]
    assert server.raw_get(b"test:key") == (json.dumps({"a": [1, "x"]}).encode(), 0)
    assert server.raw_get(b"s") == (b"12", 0)
    data, flags = server.raw_get(b"p")
    assert flags == 0 and data[:1] == b"\x80"  # the serializer's bytes, stored as they are
    assert server.raw_get(b"test:with_blank") == (b'"v"', 0)


def test_values_of_other_clients(server):
    server.raw_set(b"bytes", b'{"a": 1}')
    server.raw_set(b"text", b'"t"', flags=16)  # python-memcached's str

    async def scenario() -> list[Any]:
        cache = make(server)
        raw = make(server, serializer=PickleSerializer())
        return [await cache.get("bytes"), await cache.get("text"),
                await raw._get(b"text", encoding=None), await cache.multi_get(["bytes", "text"])]

    assert run(scenario()) == [{"a": 1}, "t", b'"t"', [{"a": 1}, "t"]]


def test_multi_get_and_multi_set(server):
    async def scenario() -> list[Any]:
        cache = make(server, namespace="m:")
        out = [await cache.multi_set([("a", 1), ["b", "two"], ("c", None)]),
               await cache.multi_get(["a", "b", "c", "d", "a"]),
               await cache.multi_set([("t1", 1), ("t2", 2)], ttl=100),
               await cache.multi_get([])]
        return out

    assert run(scenario()) == [True, [1, "two", None, None, 1], True, []]
    assert 95 <= server.raw_ttl(b"m:t1") <= 100 and 95 <= server.raw_ttl(b"m:t2") <= 100
    assert server.raw_ttl(b"m:a") == -1


def test_add(server):
    async def scenario() -> list[Any]:
        cache = make(server)
        out = [await cache.add("k", "first", ttl=50)]
        with pytest.raises(ValueError, match="already exists"):
            await cache.add("k", "second")
        out.append(await cache.get("k"))
        return out

    assert run(scenario()) == [True, "first"]
    assert 45 <= server.raw_ttl(b"k") <= 50


def test_ttls(server):
    async def scenario() -> list[Any]:
        cache = make(server)
        default_ttl = make(server, ttl=20)  # aiocache keeps it as 20.0
        out = [await cache.set("int", 1, ttl=30), await cache.set("whole", 1, ttl=40.0),
               await cache.set("none", 1, ttl=None), await default_ttl.set("dflt", 1)]
        for bad, message in ((0.5, "exptime not int: 0.5"), (-1, "exptime negative: -1"),
                             ("10", "exptime not int: 10")):
            for call in (lambda: cache.set("bad", 1, ttl=bad),
                         lambda: cache.add("bad", 1, ttl=bad),
                         lambda: cache.multi_set([("bad", 1)], ttl=bad),
                         lambda: cache.expire("int", bad)):
                with pytest.raises(TypeError, match=f"^cmemcache error: {message}$"):
                    await call()
        out.append(await cache.get("bad"))
        return out

    assert run(scenario()) == [True, True, True, True, None]
    assert 25 <= server.raw_ttl(b"int") <= 30
    assert 35 <= server.raw_ttl(b"whole") <= 40
    assert server.raw_ttl(b"none") == -1
    assert 15 <= server.raw_ttl(b"dflt") <= 20


def test_invalid_keys_and_values_raise_type_error(server):
    sets_before = int(server.stats()["cmd_set"])

    async def scenario() -> None:
        cache = make(server)
        for key in ("k" * 251, "tab\tkey", "new\nline", "ctrl\x01"):
            for call in (lambda: cache.set(key, 1), lambda: cache.add(key, 1),
                         lambda: cache.get(key), lambda: cache.multi_get([key]),
                         lambda: cache.multi_set([(key, 1)]), lambda: cache.delete(key),
                         lambda: cache.exists(key), lambda: cache.increment(key),
                         lambda: cache.expire(key, 1)):
                with pytest.raises(TypeError, match="^cmemcache error: invalid key"):
                    await call()
        assert await cache.set("k" * 250, 1) is True  # the longest key
        raw = make(server, serializer=StringSerializer())
        raw.serializer.dumps = lambda value: value  # hands the value itself to the cache
        with pytest.raises(TypeError, match="value must be bytes or str, not dict"):
            await raw.set("obj", {"a": 1})
        with pytest.raises(TypeError, match="value must be bytes or str, not int"):
            await raw.multi_set([("obj", 1)])

    run(scenario())
    assert int(server.stats()["cmd_set"]) - sets_before == 1  # only the valid one was sent


def test_exists_keeps_value_and_expiry(server):
    async def scenario() -> list[Any]:
        cache = make(server)
        await cache.set("k", "v", ttl=100)
        return [await cache.exists("k"), await cache.exists("nope"), await cache.get("k")]

    assert run(scenario()) == [True, False, "v"]
    assert 95 <= server.raw_ttl(b"k") <= 100
    assert server.raw_get(b"nope") is None


def test_increment(server):
    async def scenario() -> list[Any]:
        cache = make(server)
        out = [await cache.increment("n", 2), await cache.increment("n", 3),
               await cache.increment("n", -5), await cache.increment("n", -1),
               await cache.increment("neg", -2), await cache.increment("n")]
        await cache.set("text", "value")
        with pytest.raises(TypeError, match="non-numeric"):
            await cache.increment("text")
        with pytest.raises(TypeError, match="non-numeric"):
            await cache.increment("neg")  # memcached stores -2 as text it cannot count
        return out

    # memcached stops at 0 (and 0 is returned, where aiocache's returns delta)
    assert run(scenario()) == [2, 5, 0, 0, -2, 1]
    assert server.raw_get(b"n") == (b"1", 0)
    assert server.raw_get(b"neg") == (b"-2", 0)


def test_increment_of_a_key_created_meanwhile(server):
    async def scenario() -> list[Any]:
        cache = make(server)
        return list(await asyncio.gather(*(cache.increment("race", 1) for _ in range(20))))

    assert sorted(run(scenario())) == list(range(1, 21))
    assert server.raw_get(b"race") == (b"20", 0)


def test_expire_delete_clear(server):
    async def scenario() -> list[Any]:
        cache = make(server, namespace="e:")
        await cache.set("k", "v", ttl=5)
        await cache.set("j", "v")
        out = [await cache.expire("k", 500), server.raw_ttl(b"e:k"),
               await cache.expire("k", 0), server.raw_ttl(b"e:k"),
               await cache.expire("nope", 5), await cache.delete("k"), await cache.delete("k")]
        with pytest.raises(ValueError, match="namespace"):
            await cache.clear(namespace="e:")
        out += [await cache.exists("j"), await cache.clear(), await cache.exists("j")]
        return out

    out = run(scenario())
    assert out[0] is True and 490 <= out[1] <= 500
    assert out[2:] == [True, -1, False, 1, 0, True, True, False]


def test_raw(server):
    async def scenario() -> list[Any]:
        cache = make(server)
        pickled = make(server, serializer=PickleSerializer())  # encoding None: bytes
        return [await cache.raw("set", b"key", b"value"), await cache.raw("get", b"key"),
                await cache.raw("prepend", b"key", b"super"), await cache.raw("get", b"key"),
                await pickled.raw("get", b"key"),
                await cache.raw("get_multi", [b"key", b"other"]),
                await cache.raw("incr", b"none"), await cache.raw("get", b"none")]

    assert run(scenario()) == [True, "value", True, "supervalue", b"supervalue",
                               {b"key": "supervalue"}, None, None]


def test_cas_and_optimistic_lock(server):
    async def scenario() -> list[Any]:
        cache = make(server)
        await cache.set("k", "v1")
        token = await cache._gets(cache.build_key("k"))
        out = [isinstance(token, int), await cache._gets(b"missing"),
               await cache.set("k", "v2", _cas_token=token),
               await cache.set("k", "v3", _cas_token=token), await cache.get("k")]
        async with OptimisticLock(cache, "k") as lock:
            await lock.cas("v4", ttl=100)
        out.append(await cache.get("k"))
        with pytest.raises(OptimisticLockError):
            async with OptimisticLock(cache, "k") as lock:
                await cache.set("k", "other")
                await lock.cas("v5")
        out.append(await cache.get("k"))
        return out

    assert run(scenario()) == [True, None, True, False, "v2", "v4", "other"]


def test_redlock_released_only_by_its_holder(server):
    async def scenario() -> list[Any]:
        cache = make(server, serializer=StringSerializer())
        lock = RedLock(cache, "res", lease=20)
        await lock.__aenter__()
        holder = lock._value
        out = [await cache.get("res-lock") == holder]
        other = RedLock(cache, "res", lease=20)
        other._value = "someone else"
        await other.__aexit__(None, None, None)
        out.append(await cache.get("res-lock") == holder)  # still held
        await lock.__aexit__(None, None, None)
        out.append(await cache.get("res-lock"))
        return out

    assert run(scenario()) == [True, True, None]
    assert server.raw_get(b"res-lock") is None


def test_cached_decorator(server):
    calls = []
    cache = make(server, namespace="deco:")

    @cached(cache=CMemcacheCache, endpoint=server.host, port=server.port, namespace="deco:",
            key_builder=lambda f, x: f"sq{x}", ttl=60)
    async def square(x: int) -> int:
        calls.append(x)
        return x * x

    async def scenario() -> list[Any]:
        return [await square(3), await square(3), await square(4), await cache.get("sq3")]

    assert run(scenario()) == [9, 9, 16, 9]
    assert run(scenario()) == [9, 9, 16, 9]  # the same objects on another loop
    assert calls == [3, 4]
    assert 55 <= server.raw_ttl(b"deco:sq3") <= 60


# -- event loops ------------------------------------------------------------------------------


def test_one_client_per_loop(server):
    cache = make(server)

    async def scenario(value: int) -> tuple[Any, Any]:
        await cache.set("k", value)
        return cache.client, await cache.get("k")

    first, v1 = run(scenario(1))
    second, v2 = run(scenario(2))
    assert (v1, v2) == (1, 2) and first is not second

    async def same_loop() -> bool:
        client = cache.client
        await cache.get("k")
        return cache.client is client

    assert run(same_loop()) is True
    # the closed loops' clients were closed when a new loop's was made
    with pytest.raises(cmemcache.ConnectionError, match="closed"):
        run(first._sc.get(b"k"))
    assert cache._clients.loops() == 1


def test_close_and_reuse(server):
    async def scenario() -> list[Any]:
        cache = make(server)
        await cache.set("k", "v")
        opened = int(server.stats()["total_connections"])
        await cache.close()
        out = [await cache.get("k")]  # reconnects
        out.append(int(server.stats()["total_connections"]) - opened >= 1)
        async with make(server) as other:
            out.append(await other.get("k"))
        return out

    assert run(scenario()) == ["v", True, "v"]


# -- down and stopped servers --------------------------------------------------------------------


def test_server_down_raises(memcached_factory):
    server = memcached_factory()
    host, port = server.host, server.port
    server.kill()

    async def scenario() -> list[Any]:
        cache = CMemcacheCache(endpoint=host, port=port, client_options={"dead_retry": 0})
        raised = []
        for call in (lambda: cache.get("k"), lambda: cache.set("k", 1),
                     lambda: cache.multi_get(["k"]), lambda: cache.add("k", 1),
                     lambda: cache.increment("k"), lambda: cache.exists("k"),
                     lambda: cache.delete("k"), lambda: cache.clear()):
            with pytest.raises(cmemcache.ConnectionError) as info:
                await call()
            raised.append(isinstance(info.value, cmemcache.Error))
        lenient = CMemcacheCache(endpoint=host, port=port,
                                 client_options={"dead_retry": 0, "strict": False})
        return raised + [await lenient.get("k", default="d"), await lenient.set("k", 1),
                         await lenient.exists("k"), await lenient.delete("k")]

    assert run(scenario()) == [True] * 8 + ["d", False, False, 0]


@pytest.mark.hang_timeout(60)
def test_stopped_server_times_out(memcached_factory):
    server = memcached_factory()
    cache = CMemcacheCache(endpoint=server.host, port=server.port,
                           client_options={"socket_timeout": 0.3, "dead_retry": 0,
                                           "timeout_limit": 100})
    run(cache.set("k", "before"))
    server.pause()
    try:
        async def stalled() -> list[Any]:
            out = []
            started = time.monotonic()
            with pytest.raises(cmemcache.TimeoutError):
                await cache.get("k")
            out.append(time.monotonic() - started < 3)
            # aiocache's own timeout, shorter than the client's
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await cache.get("k", timeout=0.05)
            out.append(time.monotonic() - started < 2)
            return out

        assert run(stalled()) == [True, True]
    finally:
        server.resume()

    async def recovered() -> list[Any]:
        # the cancelled call left no reply behind for the next one
        await cache.set("j", "after")
        return [await cache.get("k"), await cache.get("j")]

    assert run(recovered()) == ["before", "after"]
