"""The framework backends pass the TLS and authentication options through:
cmemcache.django.CMemcacheCache (OPTIONS, to cmemcache.Client and, for the
async methods, cmemcache.aio.Client), cmemcache.dogpile.CMemcacheBackend
(its arguments) and cachelib.MemcachedCache / Flask-Caching (a
cmemcache.Client built by the application), each against real ``memcached
-Z`` and ``memcached -Y`` servers.

Every configuration below round-trips values through each backend, then
changes one option so that the server must refuse (a wrong CA, a wrong
host name, verification left on, a protocol version the server does not
take, a wrong password) and checks each backend's documented answer:
Django's reads return None (not the default) and writes store nothing,
dogpile's reads return NO_VALUE, cachelib's reads return None and its
writes False; with ``strict`` the ``cmemcache.Error`` is raised instead.
The password and the client key's password never appear in a repr, an
exception or a log record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest

import cmemcache
import cmemcache.aio
from conftest import MemcachedServer, authenticate_socket, django_cache_class
from tls_support import (  # noqa: F401  (fixtures)
    CLIENT_KEY_PASSWORD,
    TLSCertificates,
    TLSMemcachedServer,
    no_tls_build,
    tls_certs,
)

USER = "bt-user"
PASSWORD = "bt-pw-Zk41-n0t-in-any-message"
WRONG = "bt-wrong-Qp07-n0t-in-any-message"
KEY_PASSWORD = CLIENT_KEY_PASSWORD.decode()
SECRETS = (PASSWORD, WRONG, KEY_PASSWORD)


NO_TLS = no_tls_build()


class AuthServer(MemcachedServer):
    """memcached -Y authfile; the harness's connections authenticate."""

    def _connect(self, timeout: float):
        return authenticate_socket(super()._connect(timeout), USER, PASSWORD)


class TLSAuthServer(TLSMemcachedServer):
    """memcached -Z -Y authfile; the harness authenticates over TLS."""

    def _connect(self, timeout: float):
        return authenticate_socket(super()._connect(timeout), USER, PASSWORD)


@dataclasses.dataclass
class Setup:
    """A server, the backend options that reach it, and options that
    differ in one way the server (or the client's check of it) refuses."""

    name: str
    server: MemcachedServer
    options: dict[str, Any]
    bad_options: dict[str, Any]
    #: the cmemcache.Error a strict client raises with bad_options
    error: type[cmemcache.Error]
    #: a fragment of that error's message
    match: str


def _tls(certs: TLSCertificates, **kwargs: Any) -> dict[str, Any]:
    return {"tls": True, "tls_ca_file": certs.ca_file, "tls_server_hostname": "localhost",
            **kwargs}


def _make_setup(name: str, certs: TLSCertificates, authfile) -> Setup:
    if name == "tls":
        server = TLSMemcachedServer(certs)
        return Setup(name, server, _tls(certs), _tls(certs, tls_ca_file=certs.wrong_ca_file),
                     cmemcache.ConnectionError, "certificate verify failed")
    if name == "tls_unverified":
        # the certificate names other.example and comes from a CA not given
        server = TLSMemcachedServer(certs, cert=certs.other_cert, key=certs.other_key)
        opts = _tls(certs, tls_ca_file=certs.wrong_ca_file, tls_verify=False)
        bad = {**opts, "tls_verify": True}
        return Setup(name, server, opts, bad, cmemcache.ConnectionError,
                     "certificate verify failed")
    if name == "mutual_tls":
        # ssl_session_cache: memcached verifying client certificates
        # refuses resumption without it (tests/test_tls.py)
        server = TLSMemcachedServer(certs, verify_mode=2, session_cache=True)
        opts = _tls(certs, tls_certfile=certs.client_cert, tls_keyfile=certs.client_key_encrypted,
                    tls_keyfile_password=KEY_PASSWORD, tls_min_version="1.2",
                    tls_max_version="1.3")
        bad = {**opts, "tls_server_hostname": "other.example"}
        return Setup(name, server, opts, bad, cmemcache.ConnectionError,
                     "not valid for 'other.example'")
    if name == "tls13":
        server = TLSMemcachedServer(certs, extra_args=["-o", "ssl_min_version=3"])
        opts = _tls(certs, tls_min_version="1.3", tls_max_version="1.3")
        bad = _tls(certs, tls_min_version="1.2", tls_max_version="1.2")
        return Setup(name, server, opts, bad, cmemcache.ConnectionError, "TLS failed")
    if name == "auth":
        server = AuthServer(["-Y", str(authfile)])
        return Setup(name, server, {"username": USER, "password": PASSWORD},
                     {"username": USER, "password": WRONG}, cmemcache.AuthenticationError,
                     "authentication failed")
    if name == "tls_auth":
        server = TLSAuthServer(certs, extra_args=["-Y", str(authfile)])
        return Setup(name, server, _tls(certs, username=USER, password=PASSWORD),
                     _tls(certs, username=USER, password=WRONG),
                     cmemcache.AuthenticationError, "authentication failed")
    raise AssertionError(name)


CONFIGS = ["tls", "tls_unverified", "mutual_tls", "tls13", "auth", "tls_auth"]


@pytest.fixture(scope="module")
def servers(tls_certs, tmp_path_factory):
    """The module's servers, one per configuration, made on first use."""
    authfile = tmp_path_factory.mktemp("auth") / "authfile"
    authfile.write_text(f"{USER}:{PASSWORD}\n")
    made: dict[str, Setup] = {}

    def get(name: str) -> Setup:
        if name not in made:
            made[name] = _make_setup(name, tls_certs, authfile)
        return made[name]

    try:
        yield get
    finally:
        for s in made.values():
            s.server.dispose()


@pytest.fixture(params=CONFIGS)
def setup(request, servers) -> Setup:
    """A configuration's server, running and flushed."""
    if request.param != "auth" and NO_TLS:
        pytest.skip("cmemcache built without OpenSSL")
    s = servers(request.param)
    if not s.server.running():
        s.server.start()
    s.server.flush()
    return s


def assert_nothing_secret(texts: list[str]) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, (secret, text[:500])


def shown(*objects: Any) -> list[str]:
    """repr and str of each object (an exception's args and attributes too)."""
    out = []
    for o in objects:
        out += [repr(o), str(o)]
        if isinstance(o, BaseException):
            out += [repr(o.args), repr(vars(o))]
        if isinstance(o, cmemcache.Client):
            out += [repr(o.servers)] + [str(h) for h in o.servers]
    return out


def logged(caplog) -> list[str]:
    return [caplog.text] + [r.getMessage() for r in caplog.records]


# -- Django ----------------------------------------------------------------------------------


def django_cache(address: str, options: dict[str, Any]):
    """The backend as Django's CACHES setting makes it."""
    CMemcacheCache = django_cache_class()
    from django.core.cache import caches
    from django.test import override_settings

    with override_settings(CACHES={"default": {
            "BACKEND": "cmemcache.django.CMemcacheCache",
            "LOCATION": address,
            "OPTIONS": options,
    }}):
        cache = caches["default"]
    assert isinstance(cache, CMemcacheCache)
    return cache


def test_django_round_trips(setup):
    cache = django_cache(setup.server.address, {**setup.options, "strict": True})
    cache.set("dj", {"a": 1})
    assert cache.get("dj") == {"a": 1}
    assert cache.get_many(["dj", "missing"]) == {"dj": {"a": 1}}
    assert cache.add("n", 41) is True
    assert cache.incr("n") == 42
    assert setup.server.raw_get(b":1:dj") is not None

    async def main():  # the async methods: cmemcache.aio.Client with the same options
        client = cache._aclient()
        assert isinstance(client, cmemcache.aio.Client)
        await cache.aset("dj2", [5])
        got = await cache.aget("dj2")
        many = await cache.aget_many(["dj", "dj2"])
        await cache.aset_many({"dj3": 3})
        return got, many, await cache.aget("dj3"), await cache.aincr("n")

    got, many, third, n = asyncio.run(main())
    assert got == [5]
    assert many == {"dj": {"a": 1}, "dj2": [5]}
    assert third == 3
    assert n == 43
    assert setup.server.raw_get(b":1:dj2") is not None
    assert setup.server.raw_get(b":1:n")[0] == b"43"
    cache.close()


def test_django_bad_options_fail_as_documented(setup, caplog):
    cache = django_cache(setup.server.address, setup.bad_options)
    with caplog.at_level(logging.DEBUG):
        # not strict: logged, reads answer None (not the default), writes store nothing
        cache.set("dj", 1)
        assert cache.get("dj", "default") is None
        assert cache.add("dj", 1) is False
        assert cache.get_many(["dj"]) == {}

        async def main():
            await cache.aset("dj", 1)
            return await cache.aget("dj", "default"), await cache.aadd("dj", 1)

        assert asyncio.run(main()) == (None, False)
    assert setup.error.__name__ in caplog.text
    assert setup.server.raw_get(b":1:dj") is None

    strict = django_cache(setup.server.address, {**setup.bad_options, "strict": True})
    with pytest.raises(setup.error, match=setup.match):
        strict.get("dj")
    with pytest.raises(setup.error, match=setup.match):
        strict.set("dj", 1)

    async def amain():
        with pytest.raises(setup.error, match=setup.match):
            await strict.aget("dj")
        with pytest.raises(setup.error, match=setup.match):
            await strict.aset("dj", 1)

    asyncio.run(amain())
    assert setup.server.raw_get(b":1:dj") is None


def test_django_secrets_never_shown(setup, caplog):
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for options in (setup.options, setup.bad_options,
                        {**setup.bad_options, "strict": True}):
            cache = django_cache(setup.server.address, options)
            results: list[Any] = []
            for call in (lambda: cache.set("dj", 1), lambda: cache.get("dj")):
                try:
                    results.append(call())
                except cmemcache.Error as e:
                    results.append(e)

            async def main(cache=cache):
                out: list[Any] = [cache._aclient()]
                try:
                    out.append(await cache.aget("dj"))
                except cmemcache.Error as e:
                    out.append(e)
                return out

            results += asyncio.run(main())
            texts += shown(cache, cache._cache, cache._cache._sc, cache._aio, *results)
    texts += logged(caplog)
    assert_nothing_secret(texts)


# -- dogpile.cache ---------------------------------------------------------------------------


def dogpile_region(address: str, options: dict[str, Any]):
    dogpile_cache = pytest.importorskip("dogpile.cache")
    return dogpile_cache.make_region().configure(
        "cmemcache", arguments={"url": [address], **options})


def test_dogpile_round_trips(setup):
    region = dogpile_region(setup.server.address, {**setup.options, "strict": True})
    region.set("dp", {"d": 4})
    assert region.get("dp") == {"d": 4}
    region.set_multi({"dp2": 2, "dp3": [3]})
    assert region.get_multi(["dp", "dp2", "dp3"]) == [{"d": 4}, 2, [3]]
    assert region.get_or_create("made", lambda: "x") == "x"
    assert setup.server.raw_get(b"dp") is not None
    # every option went to the client
    for name, value in setup.options.items():
        assert region.backend.client_options[name] == value


def test_dogpile_bad_options_fail_as_documented(setup, caplog):
    from dogpile.cache.api import NO_VALUE

    region = dogpile_region(setup.server.address, setup.bad_options)
    with caplog.at_level(logging.DEBUG):
        region.set("dp", 1)  # not stored, nothing raised
        assert region.get("dp") is NO_VALUE
        assert region.get_multi(["dp", "x"]) == [NO_VALUE, NO_VALUE]
    assert setup.error.__name__ in caplog.text
    assert setup.server.raw_get(b"dp") is None
    strict = dogpile_region(setup.server.address, {**setup.bad_options, "strict": True})
    with pytest.raises(setup.error, match=setup.match):
        strict.get("dp")
    with pytest.raises(setup.error, match=setup.match):
        strict.set("dp", 1)
    assert setup.server.raw_get(b"dp") is None


def test_dogpile_secrets_never_shown(setup, caplog):
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for options in (setup.options, setup.bad_options,
                        {**setup.bad_options, "strict": True}):
            region = dogpile_region(setup.server.address, options)
            results: list[Any] = []
            for call in (lambda: region.set("dp", 1), lambda: region.get("dp")):
                try:
                    results.append(call())
                except cmemcache.Error as e:
                    results.append(e)
            texts += shown(region, region.backend, region.backend.client, *results)
    texts += logged(caplog)
    assert_nothing_secret(texts)


# -- cachelib and Flask-Caching -----------------------------------------------------------------


def cachelib_cache(address: str, options: dict[str, Any]):
    cachelib = pytest.importorskip("cachelib")
    client = cmemcache.Client([address], socket_timeout=2, **options)
    return cachelib.MemcachedCache(servers=client, key_prefix="cl:"), client


def test_cachelib_round_trips(setup):
    cache, client = cachelib_cache(setup.server.address, {**setup.options, "strict": True})
    assert cache._client is client
    assert cache.set("k", [1, 2]) is True
    assert cache.get("k") == [1, 2]
    assert cache.set_many({"a": 1, "b": "two"}) == ["a", "b"]
    assert cache.get_many("a", "b", "k") == [1, "two", [1, 2]]
    assert cache.inc("n") == 1
    assert cache.has("k") is True
    assert setup.server.raw_get(b"cl:k") is not None
    client.disconnect_all()


def test_cachelib_bad_options_fail_as_documented(setup, caplog):
    cache, client = cachelib_cache(setup.server.address, setup.bad_options)
    with caplog.at_level(logging.DEBUG):
        assert cache.set("k", 1) is False
        assert cache.get("k") is None
        assert cache.has("k") is False
        assert cache.add("k", 1) is False
    assert setup.error.__name__ in caplog.text
    assert setup.server.raw_get(b"cl:k") is None
    strict, _ = cachelib_cache(setup.server.address, {**setup.bad_options, "strict": True})
    with pytest.raises(setup.error, match=setup.match):
        strict.get("k")
    with pytest.raises(setup.error, match=setup.match):
        strict.set("k", 1)


def flask_cache(client):
    pytest.importorskip("flask_caching")
    from flask import Flask
    from flask_caching import Cache

    app = Flask(__name__)
    cache = Cache(app, config={"CACHE_TYPE": "MemcachedCache",
                               "CACHE_MEMCACHED_SERVERS": client,
                               "CACHE_KEY_PREFIX": "flask:"})
    calls = []

    @app.route("/v")
    @cache.cached(timeout=60)
    def view() -> str:
        calls.append(1)
        return f"view #{len(calls)}"

    return app, cache, calls


def test_flask_caching_round_trips_and_fails_as_documented(setup, caplog):
    pytest.importorskip("cachelib")
    good = cmemcache.Client([setup.server.address], socket_timeout=2, strict=True,
                            **setup.options)
    app, cache, calls = flask_cache(good)
    with app.app_context():
        cache.set("direct", {"x": 1})
        assert cache.get("direct") == {"x": 1}
    http = app.test_client()
    assert http.get("/v").text == "view #1"
    assert http.get("/v").text == "view #1"  # from memcached
    assert setup.server.raw_get(b"flask:direct") is not None
    good.disconnect_all()

    bad = cmemcache.Client([setup.server.address], socket_timeout=2, **setup.bad_options)
    app, cache, calls = flask_cache(bad)
    with caplog.at_level(logging.DEBUG):
        with app.app_context():
            assert cache.set("direct2", 1) is False
            assert cache.get("direct2") is None
        http = app.test_client()
        # the view is served, and computed each time: nothing could be cached
        assert http.get("/v").text == "view #1"
        assert http.get("/v").text == "view #2"
    assert setup.error.__name__ in caplog.text
    assert setup.server.raw_get(b"flask:direct2") is None
    assert_nothing_secret(logged(caplog) + shown(good, bad, cache, cache.cache))


def test_cachelib_secrets_never_shown(setup, caplog):
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for options in (setup.options, setup.bad_options,
                        {**setup.bad_options, "strict": True}):
            cache, client = cachelib_cache(setup.server.address, options)
            results: list[Any] = []
            for call in (lambda: cache.set("k", 1), lambda: cache.get("k")):
                try:
                    results.append(call())
                except cmemcache.Error as e:
                    results.append(e)
            texts += shown(cache, client, client._sc, *results)
    texts += logged(caplog)
    assert_nothing_secret(texts)


# -- a key password that does not open the key ---------------------------------------------------


@pytest.mark.skipif(NO_TLS, reason="cmemcache built without OpenSSL")
def test_wrong_key_password_is_refused_without_showing_it(servers):
    """The client key's password goes through too: a wrong one fails where
    each backend makes its client (Django: the first cache call; dogpile:
    configure()), naming the key file and not the password."""
    s = servers("mutual_tls")
    wrong = {**s.options, "tls_keyfile_password": WRONG}
    cache = django_cache(s.server.address, wrong)
    with pytest.raises(ValueError, match="client-encrypted.key") as e:
        cache.get("k")
    assert_nothing_secret(shown(e.value))

    async def main():
        with pytest.raises(ValueError, match="client-encrypted.key") as e:
            await cache.aget("k")
        return e.value

    assert_nothing_secret(shown(asyncio.run(main())))
    with pytest.raises(ValueError, match="client-encrypted.key") as e:
        dogpile_region(s.server.address, wrong)
    assert_nothing_secret(shown(e.value))
