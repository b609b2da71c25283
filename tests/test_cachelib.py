"""cachelib.MemcachedCache and Flask-Caching with a cmemcache.Client passed
as the server list (both use an already-built client as it is)."""

from __future__ import annotations

import datetime
import time

import pytest

cachelib = pytest.importorskip("cachelib")

import cmemcache  # noqa: E402


@pytest.fixture
def client(server):
    c = cmemcache.Client([server.address], socket_timeout=2)
    try:
        yield c
    finally:
        c.disconnect_all()


@pytest.fixture
def cache(client):
    return cachelib.MemcachedCache(servers=client, key_prefix="app:", default_timeout=300)


# -- cachelib ----------------------------------------------------------------------------


def test_uses_the_client_given(cache, client):
    assert cache._client is client
    with cache._client_context() as c:
        assert c is client


def test_set_get_add_delete_has(cache, server):
    assert cache.get("missing") is None
    assert cache.set("k", {"a": [1, 2]}) is True
    assert cache.get("k") == {"a": [1, 2]}
    assert server.raw_get(b"app:k")[1] == 1  # pickled by cmemcache under the prefix
    assert cache.add("k", "other") is False
    assert cache.add("new", "v") is True
    assert cache.get("new") == "v"
    assert cache.has("k") is True
    assert cache.has("missing") is False
    assert cache.get("k") == {"a": [1, 2]}  # has() appended nothing
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert cache.has("k") is False


def test_values(cache):
    values = {
        "bytes": bytes(range(256)) + b"\r\nEND\r\n",
        "text": "Iñtërnâtiônàlizætiøn",
        "int": 42,
        "bool": True,
        "none_in_list": [None],
        "date": datetime.date(2024, 2, 29),
    }
    for key, value in values.items():
        assert cache.set(key, value)
    for key, value in values.items():
        got = cache.get(key)
        assert got == value and type(got) is type(value), key


def test_many(cache):
    assert cache.set_many({"a": 1, "b": "two", "c": [3]}) == ["a", "b", "c"]
    assert cache.get_many("a", "b", "c", "d") == [1, "two", [3], None]
    assert cache.get_dict("a", "d") == {"a": 1, "d": None}
    assert cache.delete_many("a", "c") == ["a", "c"]
    assert cache.get_many("a", "b", "c") == [None, "two", None]


def test_inc_dec_and_clear(cache):
    assert cache.inc("n") == 1
    assert cache.inc("n", 5) == 6
    assert cache.dec("n", 2) == 4
    assert cache.get("n") == 4
    assert cache.clear() is True
    assert cache.get("n") is None


def test_timeouts(cache, server):
    # cachelib sends Unix times, which memcached's one-second clock may read
    # as up to a second longer than asked
    cache.set("default", 1)
    assert 295 <= server.raw_ttl(b"app:default") <= 301
    cache.set("forever", 1, timeout=0)
    assert server.raw_ttl(b"app:forever") == -1
    cache.set("delta", 1, timeout=datetime.timedelta(minutes=2))
    assert 115 <= server.raw_ttl(b"app:delta") <= 121
    cache.set_many({"m1": 1}, timeout=60)
    assert 55 <= server.raw_ttl(b"app:m1") <= 61


@pytest.mark.hang_timeout(30)
def test_expiry(cache):
    cache.set("short", "v", timeout=1)
    cache.set("long", "v", timeout=60)
    time.sleep(2.5)
    assert cache.get("short") is None
    assert cache.get("long") == "v"


def test_keys_memcached_refuses_are_misses(cache):
    for key in ("with space", "x" * 300, "ctrl\x01"):
        assert cache.get(key) is None
        assert cache.has(key) is False
        assert cache.delete(key) is False
    assert cache.set("Iñtërnâtiônàl", "v") is True
    assert cache.get("Iñtërnâtiônàl") == "v"


# -- Flask-Caching -----------------------------------------------------------------------


@pytest.fixture
def flask_app(client):
    pytest.importorskip("flask_caching")
    from flask import Flask
    from flask_caching import Cache

    app = Flask(__name__)
    app.config.update(TESTING=True)
    cache = Cache(
        app,
        config={
            "CACHE_TYPE": "MemcachedCache",
            "CACHE_MEMCACHED_SERVERS": client,  # a client object is used as it is
            "CACHE_KEY_PREFIX": "flask:",
            "CACHE_DEFAULT_TIMEOUT": 300,
        },
    )
    calls: dict[str, int] = {"view": 0, "square": 0}

    @app.route("/hello/<name>")
    @cache.cached(timeout=60)
    def hello(name: str) -> str:
        calls["view"] += 1
        return f"hello {name} #{calls['view']}"

    @cache.memoize(timeout=60)
    def square(x: int) -> int:
        calls["square"] += 1
        return x * x

    app.extensions["test"] = (cache, calls, square)
    return app


def test_flask_caching_backend_is_cachelib_on_our_client(flask_app, client):
    from flask_caching.backends.memcache import MemcachedCache

    cache, _, _ = flask_app.extensions["test"]
    with flask_app.app_context():
        assert isinstance(cache.cache, MemcachedCache)
        assert cache.cache._client is client
        cache.set("direct", {"x": 1})
        assert cache.get("direct") == {"x": 1}
        assert client.get("flask:direct") == {"x": 1}


def test_flask_caching_cached_view(flask_app, server):
    _, calls, _ = flask_app.extensions["test"]
    http = flask_app.test_client()
    first = http.get("/hello/ann")
    second = http.get("/hello/ann")
    other = http.get("/hello/bob")
    assert first.status_code == second.status_code == other.status_code == 200
    assert first.get_data(as_text=True) == "hello ann #1"
    assert second.get_data(as_text=True) == "hello ann #1"
    assert other.get_data(as_text=True) == "hello bob #2"
    assert calls["view"] == 2
    assert 55 <= server.raw_ttl(b"flask:view//hello/ann") <= 61


def test_flask_caching_memoize(flask_app):
    cache, calls, square = flask_app.extensions["test"]
    with flask_app.app_context():
        assert [square(3), square(3), square(4)] == [9, 9, 16]
        assert calls["square"] == 2
        cache.delete_memoized(square, 3)
        assert square(3) == 9
        assert square(4) == 16
        assert calls["square"] == 3
        cache.delete_memoized(square)
        assert square(4) == 16
        assert calls["square"] == 4
        cache.clear()
        assert square(4) == 16
        assert calls["square"] == 5
