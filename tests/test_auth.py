"""memcached's ASCII authentication (``memcached -Y authfile``) on every
client: cmemcache.StringClient, cmemcache.Client, cmemcache.aio.StringClient
and cmemcache.aio.Client, and through the Django, cachelib and dogpile
backends.

Every new connection sends ``set <user> 0 0 <n>\\r\\n<user> <password>\\r\\n``
first and waits for ``STORED`` before anything else goes out on it; a
refusal raises ``cmemcache.AuthenticationError`` and holds nothing down.
The servers are real memcached processes started with ``-Y``; the harness
reads their stats through connections that authenticate themselves.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

import cmemcache
import cmemcache.aio
from conftest import MemcachedServer, authenticate_socket, django_cache_class

USER = "cm-user"
PASSWORD = "pw-7GhQ2-n0t-in-any-message"
#: a second account: a UTF-8 password given as str, and one given as bytes
USER2 = "cm-user2"
PASSWORD2 = "pässwörd-Ω"
WRONG = "wrong-Xq91-n0t-in-any-message"
#: what a deadline may be overrun by on a loaded two-core machine (as in
#: tests/test_deadlines.py)
SLACK = 0.6

CLIENTS = ["StringClient", "Client", "aio.StringClient", "aio.Client"]


class AuthServer(MemcachedServer):
    """memcached -Y authfile; the harness's own connections (readiness,
    stats, raw commands) authenticate first."""

    def __init__(self, authfile, **kwargs):
        super().__init__(["-Y", str(authfile)], **kwargs)

    def _connect(self, timeout: float):
        return authenticate_socket(super()._connect(timeout), USER, PASSWORD)


def write_authfile(path):
    path.write_bytes(f"{USER}:{PASSWORD}\n{USER2}:{PASSWORD2}\n".encode())
    return path


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    server = AuthServer(write_authfile(tmp_path_factory.mktemp("auth") / "authfile"))
    try:
        yield server
    finally:
        server.dispose()


@pytest.fixture
def server(module_server):
    """The module's auth server, running and flushed."""
    if not module_server.running():
        module_server.start()
    module_server.resume()
    module_server.flush()
    return module_server


@pytest.fixture
def own_server(tmp_path):
    """An auth server of the test's own (to kill, restart or stop)."""
    servers = []

    def make(**kwargs):
        s = AuthServer(write_authfile(tmp_path / "authfile"), **kwargs)
        servers.append(s)
        return s

    try:
        yield make
    finally:
        for s in servers:
            s.dispose()


def make_client(kind: str, address: str, **kwargs):
    kwargs.setdefault("connect_timeout", 2)
    if kind == "StringClient":
        return cmemcache.StringClient([address], timeout=2, **kwargs)
    if kind == "aio.StringClient":
        return cmemcache.aio.StringClient([address], timeout=2, **kwargs)
    if kind == "Client":
        return cmemcache.Client([address], socket_timeout=2, **kwargs)
    if kind == "aio.Client":
        return cmemcache.aio.Client([address], socket_timeout=2, **kwargs)
    raise AssertionError(kind)


def strict(kind: str) -> dict[str, bool]:
    """strict=True for the python-memcached clients: failures raise."""
    return {} if "StringClient" in kind else {"strict": True}


def run_ops(client, *ops):
    """Runs ops, each (method name, arg, ...), on either kind of client, in
    one event loop for the asyncio ones (a client binds to its first loop):
    a list of each one's result or exception."""

    async def arun():
        out = []
        for name, *args in ops:
            try:
                out.append(await getattr(client, name)(*args))
            except cmemcache.Error as e:
                out.append(e)
        await client.close()
        return out

    if isinstance(client, (cmemcache.aio.StringClient, cmemcache.aio.Client)):
        return asyncio.run(arun())
    out = []
    for name, *args in ops:
        try:
            out.append(getattr(client, name)(*args))
        except cmemcache.Error as e:
            out.append(e)
    return out


def run_aio(coro_fn, *args):
    return asyncio.run(coro_fn(*args))


def checker(server):
    """A correctly authenticated StringClient, to look at what is stored."""
    return cmemcache.StringClient([server.address], timeout=2, connect_timeout=2,
                                  username=USER, password=PASSWORD)


# -- round trips with the right credentials ------------------------------------------


def test_string_client_round_trip(server):
    c = cmemcache.StringClient([server.address], timeout=2, connect_timeout=2,
                               username=USER, password=PASSWORD)
    assert c.set("k", b"v") is True
    assert c.get("k") == b"v"
    assert c.set_multi({"a": b"1", "b": b"2"}) == []
    assert c.get_multi(["a", "b", "missing"]) == {"a": b"1", "b": b"2"}
    assert c.set("n", b"41") is True
    assert c.incr("n") == 42
    assert c.delete("k") is True
    assert c.get("k") is None
    assert server.raw_get(b"n") == (b"42", 0)
    c.disconnect_all()


def test_client_round_trip(server):
    c = cmemcache.Client([server.address], socket_timeout=2, username=USER, password=PASSWORD,
                         strict=True)
    assert c.set("k", {"x": 1}) is True
    assert c.get("k") == {"x": 1}
    assert c.set_multi({"a": "1", "b": 2}) == []
    assert c.get_multi(["a", "b", "missing"]) == {"a": "1", "b": 2}
    assert c.set("n", "41") is True
    assert c.incr("n") == 42
    assert c.delete("k") == 1
    assert c.get("k") is None
    assert server.raw_get(b"n") == (b"42", 16)  # str: flags 16
    c.disconnect_all()


def test_aio_string_client_round_trip(server):
    async def main():
        async with cmemcache.aio.StringClient([server.address], timeout=2, connect_timeout=2,
                                              username=USER, password=PASSWORD) as c:
            assert await c.set("k", b"v") is True
            assert await c.get("k") == b"v"
            assert await c.set_multi({"a": b"1", "b": b"2"}) == []
            assert await c.get_multi(["a", "b", "missing"]) == {"a": b"1", "b": b"2"}
            assert await c.set("n", b"41") is True
            assert await c.incr("n") == 42
            assert await c.delete("k") is True
            assert await c.get("k") is None

    run_aio(main)
    assert server.raw_get(b"n") == (b"42", 0)


def test_aio_client_round_trip(server):
    async def main():
        async with cmemcache.aio.Client([server.address], socket_timeout=2, username=USER,
                                        password=PASSWORD, strict=True) as c:
            assert await c.set("k", {"x": 1}) is True
            assert await c.get("k") == {"x": 1}
            assert await c.set_multi({"a": "1", "b": 2}) == []
            assert await c.get_multi(["a", "b", "missing"]) == {"a": "1", "b": 2}
            assert await c.set("n", "41") is True
            assert await c.incr("n") == 42
            assert await c.delete("k") == 1
            assert await c.get("k") is None

    run_aio(main)
    assert server.raw_get(b"n") == (b"42", 16)  # str: flags 16


@pytest.mark.parametrize("password", [PASSWORD2, PASSWORD2.encode()], ids=["str", "bytes"])
@pytest.mark.parametrize("user", [USER2, USER2.encode()], ids=["str", "bytes"])
def test_str_and_bytes_credentials(server, user, password):
    c = cmemcache.StringClient([server.address], timeout=2, connect_timeout=2,
                               username=user, password=password)
    assert c.set("k2", b"v2") is True
    assert checker(server).get("k2") == b"v2"


# -- refused credentials ---------------------------------------------------------------


def _wrong_password_blocking(kind, address):
    c = make_client(kind, address, username=USER, password=WRONG, **strict(kind))
    for _ in range(2):  # refused again: not held down, no "marked dead"
        with pytest.raises(cmemcache.AuthenticationError) as info:
            c.set("k", b"v")
        assert "authentication failed" in str(info.value)
        with pytest.raises(cmemcache.AuthenticationError):
            c.get("k")
    sc = c._sc if kind == "Client" else c
    assert sc.dead_servers() == []
    c.disconnect_all()
    return info.value


def _wrong_password_aio(kind, address):
    async def main():
        c = make_client(kind, address, username=USER, password=WRONG, **strict(kind))
        try:
            for _ in range(2):
                with pytest.raises(cmemcache.AuthenticationError) as info:
                    await c.set("k", b"v")
                assert "authentication failed" in str(info.value)
                with pytest.raises(cmemcache.AuthenticationError):
                    await c.get_multi(["k", "j"])
            sc = c._sc if kind == "aio.Client" else c
            assert sc.dead_servers() == []
            return info.value
        finally:
            await c.close()

    return asyncio.run(main())


@pytest.mark.parametrize("kind", CLIENTS)
def test_wrong_password_raises_and_stores_nothing(server, kind):
    if kind.startswith("aio."):
        exc = _wrong_password_aio(kind, server.address)
    else:
        exc = _wrong_password_blocking(kind, server.address)
    assert isinstance(exc, cmemcache.Error)
    assert exc.__class__ is cmemcache.AuthenticationError
    assert not isinstance(exc, cmemcache.ConnectionError)
    assert "CLIENT_ERROR" in str(exc)
    assert checker(server).get("k") is None
    assert server.raw_get(b"k") is None


def test_client_non_strict_answers_by_value(server, caplog):
    c = cmemcache.Client([server.address], socket_timeout=2, username=USER, password=WRONG)
    with caplog.at_level(logging.WARNING, logger="cmemcache"):
        assert c.set("k", "v") == 0
        assert c.get("k") is None
        assert c.get_multi(["k", "j"]) == {}
        assert c.set_multi({"k": "v", "j": "w"}) == ["k", "j"]
        assert c.delete("k") == 0
        assert c.incr("k") is None
        # python-memcached's answer for servers it cannot use
        assert c.delete_multi(["k", "j"]) == 1
    assert c.error_counts["AuthenticationError"] >= 6
    assert "AuthenticationError" in caplog.text
    assert checker(server).get_multi(["k", "j"]) == {}
    assert c._sc.dead_servers() == []


def test_client_debug_line_marks_nothing_dead(server, capsys):
    c = cmemcache.Client([server.address], socket_timeout=2, username=USER, password=WRONG,
                         debug=1)
    assert c.get("k") is None
    assert capsys.readouterr().err == (
        f"MemCached: MemCache: inet:{server.address}: authentication failed: "
        "CLIENT_ERROR authentication failure.\n")


def test_aio_client_non_strict_answers_by_value(server):
    async def main():
        async with cmemcache.aio.Client([server.address], socket_timeout=2, username=USER,
                                        password=WRONG) as c:
            assert await c.set("k", "v") == 0
            assert await c.get("k") is None
            assert await c.get_multi(["k", "j"]) == {}
            assert await c.set_multi({"k": "v", "j": "w"}) == ["k", "j"]
            assert await c.delete("k") == 0
            assert await c.incr("k") is None
            return c.error_counts["AuthenticationError"]

    assert run_aio(main) >= 6
    assert checker(server).get_multi(["k", "j"]) == {}


@pytest.mark.parametrize("kind", ["StringClient", "aio.StringClient"])
def test_no_credentials_is_a_client_error(server, kind):
    """Without credentials every command is refused with a CLIENT_ERROR
    line (cmemcache.ClientError): a get as "unauthenticated", a set as a
    malformed authentication attempt (memcached reads any set before
    authentication as one)."""
    c = make_client(kind, server.address)
    set_result, get_result = run_ops(c, ("set", "k", b"v"), ("get", "k"))
    assert isinstance(set_result, cmemcache.ClientError), set_result
    assert str(set_result) == "bad authentication token format"
    assert isinstance(get_result, cmemcache.ClientError), get_result
    assert str(get_result) == "unauthenticated"
    assert checker(server).get("k") is None


def test_no_credentials_client(server):
    c = cmemcache.Client([server.address], socket_timeout=2)
    assert c.set("k", "v") == 0
    assert c.error_counts["ClientError"] == 1
    strict = cmemcache.Client([server.address], socket_timeout=2, strict=True)
    with pytest.raises(cmemcache.ClientError, match="unauthenticated"):
        strict.get("k")


@pytest.mark.parametrize("kind", CLIENTS)
def test_unix_socket(own_server, tmp_socket_dir, kind):
    server = own_server(unix_path=f"{tmp_socket_dir}/mc.sock")
    c = make_client(kind, server.address, username=USER, password=PASSWORD, **strict(kind))
    assert run_ops(c, ("set", "u", b"1"), ("get", "u")) == [True, b"1"]
    bad = make_client(kind, server.address, username=USER, password=WRONG, **strict(kind))
    (result,) = run_ops(bad, ("get", "u"))
    assert isinstance(result, cmemcache.AuthenticationError), result


# -- new connections: restarts, flush_on_reconnect, a stopped server ---------------------


def test_restart_reauthenticates(own_server):
    server = own_server()
    c = cmemcache.StringClient([server.address], timeout=2, connect_timeout=2,
                               username=USER, password=PASSWORD)
    assert c.set("k", b"before") is True
    server.kill()
    server.start()  # the same port
    assert c.get("k") is None  # a new connection, authenticated: the data is gone
    assert c.set("k", b"after") is True
    assert checker(server).get("k") == b"after"


def test_restart_reauthenticates_aio(own_server):
    server = own_server()

    async def main():
        async with cmemcache.aio.StringClient([server.address], timeout=2, connect_timeout=2,
                                              username=USER, password=PASSWORD) as c:
            assert await c.set("k", b"before") is True
            server.kill()
            server.start()
            await asyncio.sleep(0.05)  # the loop sees the old connection end
            assert await c.get("k") is None
            assert await c.set("k", b"after") is True

    run_aio(main)
    assert checker(server).get("k") == b"after"


@pytest.mark.parametrize("kind", ["StringClient", "aio.StringClient"])
def test_flush_on_reconnect_after_authenticating(server, kind):
    """The flush_all of flush_on_reconnect goes out after STORED: before it,
    memcached would refuse it (and the request after it)."""
    checker(server).set("old", b"1")
    c = make_client(kind, server.address, username=USER, password=PASSWORD,
                    flush_on_reconnect=True)
    # held down, then back at once: the next connect is a reconnect, which
    # flushes before the first request
    c.mark_dead(0)
    c.forget_dead()
    results = run_ops(c, ("set", "new", b"2"), ("get", "old"), ("get", "new"))
    assert results == [True, None, b"2"]
    assert checker(server).get_multi(["old", "new"]) == {"new": b"2"}


def test_client_flush_on_reconnect_after_authenticating(server):
    c = cmemcache.Client([server.address], socket_timeout=2, username=USER, password=PASSWORD,
                         flush_on_reconnect=1, strict=True)
    assert c.set("old", 1) is True
    c._sc.mark_dead(0)
    c.forget_dead_hosts()
    assert c.set("new", 2) is True
    assert c.get_multi(["old", "new"]) == {"new": 2}


@pytest.mark.parametrize("kind", ["StringClient", "aio.StringClient"])
def test_stopped_server_times_out_by_connect_timeout(own_server, kind):
    """SIGSTOP: the kernel still completes the TCP handshake, but STORED
    never comes; the connect deadline ends the wait."""
    server = own_server()
    connect_timeout = 0.5
    if kind == "StringClient":
        c = cmemcache.StringClient([server.address], timeout=5, connect_timeout=connect_timeout,
                                   username=USER, password=PASSWORD)
    else:
        c = cmemcache.aio.StringClient([server.address], timeout=5,
                                       connect_timeout=connect_timeout,
                                       username=USER, password=PASSWORD)
    server.pause()
    try:
        start = time.monotonic()
        (result,) = run_ops(c, ("get", "k"))
        took = time.monotonic() - start
    finally:
        server.resume()
    assert isinstance(result, cmemcache.TimeoutError), result
    assert took < connect_timeout + SLACK


# -- many threads and tasks over an auth server ------------------------------------------


def test_threads_share_a_client(server):
    c = cmemcache.StringClient([server.address], timeout=5, connect_timeout=5,
                               username=USER, password=PASSWORD, pool_size=2)
    errors: list[BaseException] = []
    crossed: list[tuple] = []

    def worker(t: int) -> None:
        try:
            for i in range(150):
                key, value = f"t{t}-{i % 10}", f"v{t}-{i}".encode()
                assert c.set(key, value) is True
                got = c.get(key)
                if got != value:
                    crossed.append((key, value, got))
                many = c.get_multi([key, f"t{t}-none"])
                if many != {key: value}:
                    crossed.append((key, value, many))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert errors == []
    assert crossed == []
    got = checker(server).get_multi([f"t{t}-{j}" for t in range(8) for j in range(10)])
    assert len(got) == 80
    assert all(v.startswith(f"v{k[1:].split('-')[0]}-".encode()) for k, v in got.items())


def test_tasks_share_an_aio_client(server):
    async def main():
        async with cmemcache.aio.StringClient([server.address], timeout=5, connect_timeout=5,
                                              username=USER, password=PASSWORD,
                                              max_connections=4) as c:
            async def task(t: int) -> list[tuple]:
                crossed = []
                for i in range(30):
                    key, value = f"a{t}-{i % 5}", f"w{t}-{i}".encode()
                    assert await c.set(key, value) is True
                    got = await c.get(key)
                    if got != value:
                        crossed.append((key, value, got))
                return crossed

            results = await asyncio.gather(*(task(t) for t in range(64)))
            return [x for r in results for x in r]

    assert run_aio(main) == []
    got = checker(server).get_multi([f"a{t}-{j}" for t in range(64) for j in range(5)])
    assert len(got) == 320


# -- bad arguments fail before anything connects ------------------------------------------

BAD = [
    ({"username": USER}, TypeError),
    ({"password": PASSWORD}, TypeError),
    ({"username": 7, "password": PASSWORD}, TypeError),
    ({"username": USER, "password": 7}, TypeError),
    ({"username": "", "password": PASSWORD}, ValueError),
    ({"username": "a b", "password": PASSWORD}, ValueError),
    ({"username": "a\x01", "password": PASSWORD}, ValueError),
    ({"username": "u" * 251, "password": PASSWORD}, ValueError),
    ({"username": USER, "password": ""}, ValueError),
    ({"username": USER, "password": PASSWORD + "\r\nget x"}, ValueError),
    ({"username": USER, "password": PASSWORD + "\n"}, ValueError),
    ({"username": USER, "password": PASSWORD + "\0"}, ValueError),
    ({"username": USER, "password": PASSWORD + "p" * 250}, ValueError),
    ({"username": USER, "password": "\udc80" + PASSWORD}, ValueError),
]


@pytest.mark.parametrize("kind", CLIENTS)
def test_bad_arguments_fail_before_connecting(server, kind):
    before = int(server.stats()["total_connections"])
    for kwargs, exc in BAD:
        with pytest.raises(exc) as info:
            make_client(kind, server.address, **kwargs)
        assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)
        assert info.value.__context__ is None or PASSWORD not in str(info.value.__context__)
    after = int(server.stats()["total_connections"])
    assert after == before + 1  # the stats connection itself, nothing else


def test_limits_are_taken(server):
    """The longest user and password memcached 1.6.18 takes are accepted by
    the constructors; whether the server knows them is its business."""
    c = cmemcache.StringClient([server.address], username="u" * 250, password="p" * 250,
                               connect_timeout=2)
    with pytest.raises(cmemcache.AuthenticationError):
        c.get("k")


# -- the credentials are never shown ---------------------------------------------------------


def test_credentials_never_shown(server, caplog, capsys):
    shown: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for password in (PASSWORD, WRONG):
            clients = [make_client(kind, server.address, username=USER, password=password)
                       for kind in CLIENTS]
            clients.append(cmemcache.Client([server.address], username=USER, password=password,
                                            debug=1))
            for c in clients:
                shown += [repr(c), str(c)]
                for r in run_ops(c, ("set", "k", b"v"), ("get", "k"), ("get_multi", ["k", "j"])):
                    shown += [repr(r), str(r)]
                    if isinstance(r, BaseException):
                        shown += [repr(r.args), repr(vars(r))]
                shown += [repr(c), str(c)]
                if isinstance(c, cmemcache.Client):
                    shown += [str(h) for h in c.servers] + [repr(c.servers)]
    out, err = capsys.readouterr()
    shown += [caplog.text, out, err]
    shown += [r.getMessage() for r in caplog.records]
    assert "AuthenticationError" in caplog.text  # the failures were logged
    for text in shown:
        assert PASSWORD not in text and WRONG not in text


def test_refusal_text_is_the_servers(server):
    c = cmemcache.StringClient([server.address], username=USER, password=WRONG,
                               connect_timeout=2)
    with pytest.raises(cmemcache.AuthenticationError) as info:
        c.get("k")
    assert str(info.value) == (f"{server.address}: authentication failed: "
                               "CLIENT_ERROR authentication failure")


# -- the framework backends pass the credentials through ------------------------------------


def test_django_backend(server):
    CMemcacheCache = django_cache_class()

    cache = CMemcacheCache(server.address, {"OPTIONS": {"username": USER, "password": PASSWORD}})
    cache.set("dj", {"a": 1})
    assert cache.get("dj") == {"a": 1}
    assert server.raw_get(b":1:dj") is not None

    async def main():
        await cache.aset("dj2", 5)
        return await cache.aget("dj2")

    assert run_aio(main) == 5
    bad = CMemcacheCache(server.address, {"OPTIONS": {"username": USER, "password": WRONG,
                                                      "strict": True}})
    with pytest.raises(cmemcache.AuthenticationError):
        bad.get("dj")
    cache.close()


def test_cachelib_backend(server):
    cachelib = pytest.importorskip("cachelib")
    client = cmemcache.Client([server.address], socket_timeout=2, username=USER,
                              password=PASSWORD)
    cache = cachelib.MemcachedCache(servers=client)
    assert cache.set("cl", [1, 2])
    assert cache.get("cl") == [1, 2]
    assert server.raw_get(b"cl") is not None


def test_aiocache_backend(server):
    pytest.importorskip("aiocache")
    from cmemcache.aiocache import CMemcacheCache

    host, port = server.address.rsplit(":", 1)

    async def main():
        cache = CMemcacheCache(endpoint=host, port=int(port),
                               client_options={"username": USER, "password": PASSWORD})
        await cache.set("ac", {"c": 3})
        value = await cache.get("ac")
        await cache.close()
        bad = CMemcacheCache(endpoint=host, port=int(port),
                             client_options={"username": USER, "password": WRONG})
        with pytest.raises(cmemcache.AuthenticationError):
            await bad.get("ac")
        await bad.close()
        return value

    assert run_aio(main) == {"c": 3}
    assert PASSWORD not in repr(CMemcacheCache(endpoint=host, port=int(port), client_options={
        "username": USER, "password": PASSWORD}))


def test_dogpile_backend(server):
    dogpile_cache = pytest.importorskip("dogpile.cache")
    region = dogpile_cache.make_region().configure(
        "cmemcache",
        arguments={"url": [server.address], "username": USER, "password": PASSWORD},
    )
    region.set("dp", {"b": 2})
    assert region.get("dp") == {"b": 2}
    bad = dogpile_cache.make_region().configure(
        "cmemcache",
        arguments={"url": [server.address], "username": USER, "password": WRONG},
    )
    assert bad.get("dp") is dogpile_cache.api.NO_VALUE
    with pytest.raises(ValueError, match="password must not hold"):
        dogpile_cache.make_region().configure(
            "cmemcache",
            arguments={"url": [server.address], "username": USER, "password": "a\rb"},
        )
