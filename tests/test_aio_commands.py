"""cmemcache.aio.StringClient and cmemcache.aio.Client against their blocking
namesakes.

Most tests here are differential: the same script runs on a blocking client
and on an asyncio client (each against a memcached, or a scripted fake
server, of its own), and every step's outcome — the value and its types, or
the exception's class, text and ``partial`` — must be the same.  The asyncio
client is driven through ``Bridge``: its event loop runs in a thread of its
own, and every method is called and awaited there, so a script written for
the blocking client runs on it unchanged.  The asyncio-only behaviour
(``async with``, ``await close()``, many tasks on one client, the loop it is
bound to) is tested with coroutines of its own.

Every test runs on the default asyncio loop and on uvloop (the ``lt``
fixture).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest
import uvloop

import cmemcache
import cmemcache.aio
import test_client_compat as compat
import test_errors as errs
import test_keys as keys_suite
import test_meta as meta_suite
from conftest import free_port, wait_until
from fakeserver import (FakeConnection, FakeServer, close, echo_reply, expect, reset, send,
                        send_chunks, sleep, stall)

MiB = 1024 * 1024

# -- loops and the bridge ---------------------------------------------------------------

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


class LoopThread:
    """An event loop running forever in a thread of its own."""

    def __init__(self, name: str):
        self.name = name
        self.loop = LOOPS[name]()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"loop-{name}",
                                       daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 60.0):
        """Runs a coroutine on the loop; its result, or its exception."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) in the loop's thread, awaited when it returns
        an awaitable."""

        async def go():
            res = fn(*args, **kwargs)
            if inspect.isawaitable(res):
                res = await res
            return res

        return self.run(go())

    def close(self):
        async def leftovers():
            return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

        left = self.run(leftovers())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        return left


@pytest.fixture(scope="module")
def loops():
    """One thread per kind of loop, for the module: {"asyncio": ..., "uvloop": ...}."""
    threads = {name: LoopThread(name) for name in sorted(LOOPS)}
    try:
        yield threads
    finally:
        left = {name: t.close() for name, t in threads.items()}
        assert left == {name: [] for name in threads}, f"tasks left on the loops: {left}"


@pytest.fixture(params=sorted(LOOPS))
def lt(request, loops):
    """The test's loop: asyncio's default loop, then uvloop."""
    return loops[request.param]


class Bridge:
    """An asyncio client as a blocking one: every attribute is read, and
    every method called and awaited, in the loop's thread."""

    def __init__(self, client, lt: LoopThread):
        object.__setattr__(self, "_client", client)
        object.__setattr__(self, "_lt", lt)

    def __getattr__(self, name):
        value = self._lt.call(getattr, self._client, name)
        if callable(value) and not isinstance(value, type):
            return functools.partial(self._lt.call, value)
        return value

    def __setattr__(self, name, value):
        self._lt.call(setattr, self._client, name, value)

    def __enter__(self):
        assert self._lt.call(self._client.__aenter__) is self._client
        return self

    def __exit__(self, *exc):
        self._lt.call(self._client.__aexit__, *exc)


class Clients:
    """``make(kind, cls, servers, **kwargs)``: a blocking client (kind
    "sync") or a bridged asyncio one (kind "aio": on the test's loop, or a
    LoopThread) of class "StringClient" or "Client"; every one is closed
    after the test."""

    def __init__(self, default_lt=None):
        self.default_lt = default_lt
        self.made = []

    def __call__(self, kind, cls, servers, **kwargs):
        if cls == "StringClient":
            kwargs.setdefault("timeout", 2)
            kwargs.setdefault("connect_timeout", 2)
        mod = cmemcache if kind == "sync" else cmemcache.aio
        client = getattr(mod, cls)(servers, **kwargs)
        if kind != "sync":
            client = Bridge(client, self.default_lt if kind == "aio" else kind)
        self.made.append(client)
        return client

    def close(self):
        for c in self.made:
            c.close()


@pytest.fixture
def clients(lt):
    """Clients, the asyncio ones on the test's loop."""
    made = Clients(lt)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def clients_on():
    """Clients, the asyncio ones on the loop each names."""
    made = Clients()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def fakes():
    """``make(script=None, **kwargs) -> FakeServer``, all stopped together
    after the test."""
    made = []

    def make(script=None, **kwargs):
        made.append(FakeServer(script, **kwargs))
        return made[-1]

    try:
        yield make
    finally:
        stoppers = [threading.Thread(target=f.stop) for f in made]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(10)


# -- comparing outcomes ----------------------------------------------------------------


@dataclass
class Raised:
    """The outcome of a call that raised."""

    type: type
    text: str
    partial: object = None


@dataclass
class Recorder:
    """Runs one labelled step and keeps its outcome, with the addresses of
    the run's servers replaced by their index (the two runs use servers of
    their own)."""

    subs: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)

    def norm(self, x):
        if isinstance(x, str):
            for old, new in self.subs.items():
                x = x.replace(old, new)
            return x
        if isinstance(x, Raised):
            return Raised(x.type, self.norm(x.text), self.norm(x.partial))
        if isinstance(x, dict):
            return {self.norm(k): self.norm(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(self.norm(v) for v in x)
        return x

    def __call__(self, label, fn, *args, **kwargs):
        value = outcome(fn, *args, **kwargs)
        self.steps.append((label, self.norm(value)))
        return value


def outcome(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the exception is the outcome
        return Raised(type(e), str(e), getattr(e, "partial", None))


def address_subs(servers) -> dict:
    subs = {}
    for i, s in enumerate(servers):
        subs[s.address] = f"<server {i}>"
        port = getattr(s, "port", None)
        if port:
            subs[str(port)] = f"<port {i}>"
    return subs


def shape(x):
    """The types inside a value, so that True/1 and b""/"" differ."""
    if isinstance(x, dict):
        return ("dict", sorted((repr(k), type(k).__name__, shape(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [shape(v) for v in x])
    if isinstance(x, Raised):
        return ("raised", x.type.__name__, shape(x.partial))
    return type(x).__name__


def assert_same(expected, actual, what=""):
    assert actual == expected, what
    assert shape(actual) == shape(expected), f"{what}: same values, different types"


def assert_same_steps(sync: Recorder, aio: Recorder):
    assert [label for label, _ in aio.steps] == [label for label, _ in sync.steps]
    assert sync.steps, "the script recorded nothing"
    for (label, expected), (_, actual) in zip(sync.steps, aio.steps):
        assert_same(expected, actual, f"step {label!r}: sync {expected!r}, aio {actual!r}")


def run_pair(clients, memcached_factory, cls, script, *, server_args=(), nservers=1,
             **client_kwargs):
    """``script(client, record, servers)`` on a blocking and on an asyncio
    client of class ``cls``, each against fresh memcached servers of its
    own; the two runs must record the same outcomes."""
    recorders = []
    for kind in ("sync", "aio"):
        servers = [memcached_factory(server_args) for _ in range(nservers)]
        c = clients(kind, cls, [s.address for s in servers], **client_kwargs)
        r = Recorder(address_subs(servers))
        script(c, r, servers[0] if nservers == 1 else servers)
        c.close()
        recorders.append(r)
    assert_same_steps(*recorders)
    return recorders


# -- the classes side by side -------------------------------------------------------------


def public(cls):
    return sorted(n for n in dir(cls) if not n.startswith("_"))


def doc_signature(method) -> str:
    """``name(args)`` from the first line of a C method's docstring."""
    first = ((method.__doc__ or "") + "\n").splitlines()[0]
    return re.split(r" -> |: ", first.removeprefix("await "))[0]


HELPERS = {"call_counts", "reset_call_counts", "forget_dead", "mark_dead", "hold_downs",
           "dead_servers", "server_index"}

# The meta commands are the blocking StringClient's only, so far.
META = {"meta_get", "meta_set", "meta_delete", "meta_arithmetic"}
ATTRIBUTES = {"servers", "discovery", "discovered_version", "discovery_interval"}


def test_stringclient_has_every_method_with_the_same_arguments():
    sync, aio = cmemcache.StringClient, cmemcache.aio.StringClient
    assert issubclass(aio, cmemcache._cmemcache.AsyncStringClient)
    # the one extra: open connections per server
    assert set(public(aio)) - set(public(sync)) == {"connections"}
    commands = 0
    assert META <= set(public(sync))
    for name in public(sync):
        s, a = getattr(sync, name), getattr(aio, name)
        if name in ATTRIBUTES:
            assert not callable(a) and not callable(s), name
            continue
        assert callable(a), name
        if name in ("close", "disconnect_all"):
            assert inspect.iscoroutinefunction(a), name
        elif name in HELPERS:
            if a.__doc__:
                assert doc_signature(a) == doc_signature(s), name
        else:
            assert doc_signature(s).startswith(name + "("), name
            assert a.__doc__.startswith("await "), name
            assert doc_signature(a) == doc_signature(s), name
            commands += 1
    assert commands == 29


def test_client_has_every_method_with_the_same_signature():
    sync, aio = cmemcache.Client, cmemcache.aio.Client
    assert public(aio) == public(sync)
    assert issubclass(aio, cmemcache.client._Policy)
    coroutines = {"get", "gets", "get_multi", "set", "add", "replace", "append", "prepend", "cas",
                  "set_multi", "delete", "delete_multi", "touch", "incr", "decr", "flush_all",
                  "get_stats", "get_slab_stats", "get_slabs", "close", "disconnect_all",
                  "quit_all", "discover", "get_or_set", "invalidate"}
    for name in public(sync):
        s, a = getattr(sync, name), getattr(aio, name)
        if not callable(s) or isinstance(s, type):
            assert type(a) is type(s) or a is s, name
            continue
        assert inspect.iscoroutinefunction(a) == (name in coroutines), name
        if name in ("get", "set"):  # the blocking ones are ClientBase's, in C
            continue
        assert inspect.signature(a) == inspect.signature(s), name
    assert inspect.signature(aio.get).parameters.keys() == {"self", "key", "default"}
    assert list(inspect.signature(aio.set).parameters) == [
        "self", "key", "val", "time", "min_compress_len", "noreply"]
    for name in ("MemcachedKeyError", "MemcachedKeyLengthError", "MemcachedKeyCharacterError",
                 "MemcachedKeyNoneError", "MemcachedKeyTypeError",
                 "MemcachedStringEncodingError"):
        assert getattr(aio, name) is getattr(sync, name)
    assert inspect.signature(aio.__init__).parameters.keys() - {"max_connections",
                                                                 "max_inflight", "args",
                                                                 "kwargs"} == {"self",
                                                                               "servers"}


CONSTRUCTOR_CASES = (
    [((spec,), {}) for spec in keys_suite.BAD_SERVERS]
    + [((spec,), {}) for spec in keys_suite.BAD_SERVERS[:3]]
    + [(([spec],), {}) for spec in keys_suite.BAD_SERVERS]
    + [(([spec],), {}) for spec in keys_suite.BAD_WEIGHTED]
    + [((s,), {}) for s in keys_suite.STRICT_TYPE_ERROR_SERVERS]
    + [((s,), {}) for s in keys_suite.LOOSE_TYPE_ERROR_SERVERS]
    + [((["127.0.0.1:11211"],), kw) for kw in (
        {"timeout": 0}, {"timeout": -1}, {"connect_timeout": 0}, {"connect_timeout": -0.5},
        {"timeout": "1"}, {"dead_retry": -1}, {"max_value_size": 0},
        {"max_value_size": 2**30 + 1}, {"pool_size": -1}, {"pool_size": 1025},
        {"timeout_limit": -1}, {"distribution": "nosuch"}, {"failover": "nosuch"},
        {"distribution": "ketama", "failover": "rehash"},
        {"distribution": "python-memcached", "failover": "next"},
        {"distribution": "ketama", "key_hash": "crc32"}, {"key_hash": "nosuch"},
        {"proxy": "nosuch"}, {"nosuch": 1},
        {"timeout": 0.5, "connect_timeout": 0.25, "dead_retry": 0, "max_value_size": 10,
         "pool_size": 0, "noreply_fence": False, "distribution": "rendezvous",
         "failover": "next", "flush_on_reconnect": True, "timeout_limit": 0},
        {"distribution": "libmemcached-ketama", "key_hash": "md5"},
        {"distribution": "modula", "key_hash": "python-memcached"},
        {"proxy": "twemproxy"},
    )]
    + [(("127.0.0.1:11211", 1.0), {})]
)


@pytest.mark.parametrize("args, kwargs", CONSTRUCTOR_CASES, ids=repr)
def test_stringclient_constructor_accepts_and_refuses_the_same(args, kwargs):
    def make(cls):
        c = cls(*args, **kwargs)
        return ("made", c.servers)

    assert_same(outcome(make, cmemcache.StringClient), outcome(make, cmemcache.aio.StringClient),
                repr((args, kwargs)))


@pytest.mark.parametrize("kwargs", [{"max_connections": 0}, {"max_connections": 4097},
                                    {"max_inflight": 0}, {"max_inflight": -1},
                                    {"max_inflight": "8"}, {"max_connections": 1.5}], ids=repr)
def test_aio_options_are_checked(kwargs):
    exc = TypeError if not isinstance(next(iter(kwargs.values())), int) else ValueError
    with pytest.raises(exc):
        cmemcache.aio.StringClient(["127.0.0.1:11211"], **kwargs)
    with pytest.raises(exc):
        cmemcache.aio.Client(["127.0.0.1:11211"], **kwargs)
    for ok in ({"max_connections": 1, "max_inflight": 1},
               {"max_connections": 4096, "max_inflight": 4096}):
        assert cmemcache.aio.StringClient(["127.0.0.1:11211"], **ok).servers == ("127.0.0.1:11211",)


@pytest.mark.parametrize("cls", ["StringClient", "Client"])
def test_pool_size_is_checked_and_max_connections_decides(lt, memcached_factory, cls):
    aclass = getattr(cmemcache.aio, cls)
    for bad in (-1, 1025):
        with pytest.raises(ValueError, match="pool_size"):
            aclass(["127.0.0.1:11211"], pool_size=bad)
    srv = memcached_factory()

    async def go():
        # pool_size=0 keeps no idle connection in the blocking client: here
        # the connections stay, up to max_connections
        async with aclass([srv.address], pool_size=0, max_connections=1) as c:
            key = b"p" if cls == "StringClient" else "p"
            assert await c.set(key, b"1") is True
            for _ in range(3):
                assert await c.get(key) == b"1"
            assert curr_connections(srv) == 1
            got = await asyncio.gather(*(c.get(key) for _ in range(100)))
            assert got == [b"1"] * 100
            assert curr_connections(srv) == 1
    lt.run(go())


@pytest.mark.parametrize("args, kwargs", [
    ((["127.0.0.1:11211"],), {}),
    (("127.0.0.1:11211",), {}),
    (([("127.0.0.1:11211", 3), "inet:127.0.0.1:11212", "unix:/tmp/nothing.sock",
       "inet6:[::1]:11214", "localhost"],), {}),
    ((["127.0.0.1:11211"], 1, 2), {"socket_timeout": 0.5, "dead_retry": 5, "cache_cas": True}),
    ((["127.0.0.1:11211"],), {"distribution": "ketama"}),
    ((["127.0.0.1:11211"],), {"distribution": "ketama", "failover": "rehash"}),
    ((["127.0.0.1:11211"],), {"socket_timeout": 0}),
    ((["127.0.0.1:11211:3"],), {}),
    ((["host:port"],), {}),
    ((["127.0.0.1:11211"],), {"nosuch": 1}),
    ((["127.0.0.1:11211"],), {"key_hash": "crc32", "proxy": "twemproxy", "strict": True}),
], ids=repr)
def test_client_constructor_accepts_and_refuses_the_same(args, kwargs):
    def make(cls):
        c = cls(*args, **kwargs)
        return ("made", [(str(h), h.weight, h.family, h.address) for h in c.servers],
                c.socket_timeout, c.dead_retry, c.cache_cas, c.failover, c.debug)

    assert_same(outcome(make, cmemcache.Client), outcome(make, cmemcache.aio.Client),
                repr((args, kwargs)))


# -- StringClient scripts (the cases of test_commands.py) ---------------------------------

BINARY_VALUES = [b"\x00", b"\x00" * 10, b"a\r\nb", b"\r\n", b"END\r\n", b"\r\nEND\r\n",
                 b"VALUE x 0 1\r\nx\r\nEND\r\n", b"\r\nflush_all\r\n", b"STORED\r\n",
                 bytes(range(256)), bytes(range(256)) * 40]
NON_ASCII_KEYS = ["clé", "ключ", "🔑", "\u2028x", "日本語のキー"]
RNG = random.Random(20240611)
BIG = RNG.randbytes(MiB)
BIGGER = RNG.randbytes(MiB + MiB // 2)


def sc_basics(c, r, srv):
    r("set", c.set, b"greeting", b"hello")
    r("get", c.get, b"greeting")
    r("raw", srv.raw_get, b"greeting")
    r("get miss", c.get, b"missing")
    r("gets miss", c.gets, b"missing")
    r("get miss flags", c.get, b"missing", with_flags=True)
    r("gets miss flags", c.gets, b"missing", with_flags=True)
    r("set str key", c.set, "plain", b"v1")
    r("get bytes of str key", c.get, b"plain")
    r("set bytes key", c.set, b"plain", b"v2")
    r("get str of bytes key", c.get, "plain")
    for key in NON_ASCII_KEYS:
        value = ("value of " + key).encode()
        r(f"set {key}", c.set, key, value)
        r(f"raw {key}", srv.raw_get, key.encode())
        r(f"get {key}", c.get, key)
        r(f"get {key} as bytes", c.get, key.encode())
        r(f"get_multi {key}", c.get_multi, [key])
    r("250 utf8 bytes", c.set, "é" * 125, b"v")
    r("raw 250", srv.raw_get, ("é" * 125).encode())
    r("251 utf8 bytes", c.set, "é" * 125 + "x", b"v")
    for value in (bytearray(b"from a bytearray"), memoryview(b"from a memoryview"),
                  memoryview(b"0123456789")[2:7], b"plain bytes"):
        r(f"set {type(value).__name__}", c.set, b"k", value)
        r(f"get {type(value).__name__}", c.get, b"k")
    r("set empty", c.set, b"empty", b"")
    r("get empty", c.get, b"empty")
    r("gets empty", lambda: c.gets(b"empty")[0])
    r("get_multi empty", c.get_multi, [b"empty"])
    r("raw empty", srv.raw_get, b"empty")
    for i, value in enumerate(BINARY_VALUES):
        r(f"binary {i} canary", c.set, b"canary", b"still here")
        r(f"binary {i} set", c.set, b"bin", value)
        r(f"binary {i} get", c.get, b"bin")
        r(f"binary {i} get_multi", c.get_multi, [b"bin", b"canary"])
        r(f"binary {i} raw", srv.raw_get, b"bin")
        r(f"binary {i} canary again", c.get, b"canary")
    k250 = b"k" * 250
    r("key 250", c.set, k250, b"long key")
    r("get 250", c.get, k250)
    r("get_multi 250", c.get_multi, [k250])
    r("set 251", c.set, b"k" * 251, b"x")
    r("get 251", c.get, b"k" * 251)


def sc_flags_and_exptime(c, r, srv):
    for flags in (0, 1, 2**31, 2**32 - 1):
        r(f"set {flags}", c.set, b"f", b"value", flags=flags)
        r(f"raw {flags}", srv.raw_get, b"f")
        r(f"get {flags}", c.get, b"f")
        r(f"get with_flags {flags}", c.get, b"f", with_flags=True)
        got = r(f"gets with_flags {flags}", c.gets, b"f", with_flags=True)
        token = got[2]
        r(f"gets is its token {flags}", lambda: c.gets(b"f") == (b"value", token))
        r(f"gat {flags}", c.gat, b"f", 0, with_flags=True)
        r(f"gats {flags}", lambda: c.gats(b"f", 0, with_flags=True) == (b"value", flags, token))
        r(f"get_multi {flags}", c.get_multi, [b"f"], with_flags=True)
        r(f"gets_multi {flags}", lambda: c.gets_multi([b"f"], with_flags=True)
          == {b"f": (b"value", flags, token)})
    r("add flags", c.add, b"k", b"a", flags=7)
    r("raw add", srv.raw_get, b"k")
    r("replace flags", c.replace, b"k", b"b", flags=8)
    r("raw replace", srv.raw_get, b"k")
    _, token = c.gets(b"k")
    r("cas flags", c.cas, b"k", b"c", token, flags=9)
    r("raw cas", srv.raw_get, b"k")
    r("negative exptime", c.set, b"gone", b"v", exptime=-1)
    r("get gone", c.get, b"gone")
    r("set_multi expired", c.set_multi, {b"m1": b"v", b"m2": b"v"}, exptime=-1)
    r("get_multi expired", c.get_multi, [b"m1", b"m2"])
    r("unix time past", c.set, b"past", b"v", exptime=int(time.time()) - 60)
    r("get past", c.get, b"past")
    r("thirty days", c.set, b"month", b"v", exptime=2_592_000)
    r("get month", c.get, b"month")
    r("unix time future", c.set, b"abs", b"v", exptime=int(time.time()) + 3600)
    r("get abs", c.get, b"abs")
    r("gat set", c.set, b"g", b"v")
    r("gat -1", c.gat, b"g", -1)
    r("gat gone", c.get, b"g")


def sc_store(c, r, srv):
    r("add", c.add, b"k", b"first")
    r("add again", c.add, b"k", b"second")
    r("get", c.get, b"k")
    r("replace missing", c.replace, b"r", b"v")
    r("get r", c.get, b"r")
    r("set r", c.set, b"r", b"old")
    r("replace", c.replace, b"r", b"new")
    r("get r new", c.get, b"r")
    r("append missing", c.append, b"a", b"x")
    r("prepend missing", c.prepend, b"a", b"x")
    r("get a", c.get, b"a")
    r("set a", c.set, b"a", b"middle", flags=3)
    r("append", c.append, b"a", b"-end")
    r("prepend", c.prepend, b"a", b"start-")
    r("get a flags", c.get, b"a", with_flags=True)
    r("append crlf", c.append, b"a", b"\r\nEND\r\n")
    r("get a crlf", c.get, b"a")
    r("store positional", c.set, b"p", b"v", 100, 5, False)
    r("get p", c.get, b"p", with_flags=True)


def sc_cas(c, r, srv):
    r("set", c.set, b"k", b"v1")
    value, token = r("gets", lambda: c.gets(b"k"))
    r("token is an int", lambda: isinstance(token, int) and token > 0)
    srv.raw_set(b"k", b"changed")
    r("cas conflict", c.cas, b"k", b"mine", token)
    r("get changed", c.get, b"k")
    value, token2 = c.gets(b"k")
    r("token changed", lambda: token2 != token)
    r("cas", c.cas, b"k", b"mine", token2)
    r("get mine", c.get, b"k")
    r("stale token", c.cas, b"k", b"again", token2)
    r("delete", c.delete, b"k")
    r("cas missing", c.cas, b"k", b"ghost", token2)
    r("get none", c.get, b"k")
    r("set a", c.set, b"a", b"1")
    r("set b", c.set, b"b", b"2")
    got = c.gets_multi([b"a", b"b", b"c"])
    r("gets_multi keys", lambda: sorted(got))
    r("gets_multi values", lambda: (got[b"a"][0], got[b"b"][0]))
    r("cas from gets_multi", c.cas, b"a", b"1'", got[b"a"][1])
    value, token = c.gats(b"b", 0)
    r("gats token", lambda: (value, token == got[b"b"][1]))
    r("cas from gats", c.cas, b"b", b"2'", token)
    r("get_multi after", c.get_multi, [b"a", b"b"])
    _, token = c.gets(b"a")
    r("cas noreply", c.cas, b"a", b"w", token, noreply=True)
    r("get w", c.get, b"a")
    r("cas keywords", c.cas, b"a", b"kw", cas=1, exptime=0, flags=0)


def sc_incr_decr(c, r, srv):
    r("incr missing", c.incr, b"n")
    r("decr missing", c.decr, b"n")
    r("set", c.set, b"n", b"5")
    r("incr 3", c.incr, b"n", 3)
    r("incr", c.incr, b"n")
    r("decr", c.decr, b"n")
    r("decr 100", c.decr, b"n", 100)
    r("decr at 0", c.decr, b"n", 1)
    r("incr 0", c.incr, b"n", 0)
    r("incr delta kw", c.incr, b"n", delta=7)
    r("get", c.get, b"n")
    r("set 10", c.set, b"n", b"10")
    r("decr shorter", c.decr, b"n")
    r("read back", lambda: c.get(b"n").rstrip(b" "))
    r("set max", c.set, b"n", b"18446744073709551615")
    r("wrap", c.incr, b"n", 1)
    r("set 1", c.set, b"n", b"1")
    r("wrap big", c.incr, b"n", 2**64 - 1)
    r("set 2", c.set, b"n", b"2")
    r("wrap to 1", c.incr, b"n", 2**64 - 1)
    r("to max", c.incr, b"n", 2**64 - 2)
    r("set text", c.set, b"text", b"hello")
    r("incr text", c.incr, b"text", 1)
    r("decr text", c.decr, b"text", 1)
    r("in sync", c.set, b"after", b"a")
    r("get after", c.get, b"after")
    r("get text", c.get, b"text")
    r("incr noreply", c.incr, b"n", 1, noreply=True)
    r("decr noreply", c.decr, b"n", 1, noreply=True)
    r("get n", c.get, b"n")


def sc_touch_gat(c, r, srv):
    r("touch missing", c.touch, b"missing", 10)
    r("set", c.set, b"k", b"v", flags=12)
    r("touch", c.touch, b"k", 10)
    r("touch 0", c.touch, b"k", 0)
    r("touch kw", c.touch, b"k", exptime=10)
    r("get", c.get, b"k")
    r("gat missing", c.gat, b"missing", 10)
    r("gats missing", c.gats, b"missing", 10)
    r("gat", c.gat, b"k", 10)
    r("gat flags", c.gat, b"k", 10, with_flags=True)
    value, token = c.gats(b"k", 10)
    r("gats", lambda: (value, isinstance(token, int)))
    r("gats flags", lambda: c.gats(b"k", 10, with_flags=True) == (b"v", 12, token))
    r("gets", lambda: c.gets(b"k") == (b"v", token))
    r("touch noreply", c.touch, b"k", 10, noreply=True)
    r("touch noreply missing", c.touch, b"nope", 10, noreply=True)
    r("get after", c.get, b"k")


def sc_multi(c, r, srv):
    r("get_multi []", c.get_multi, [])
    r("gets_multi []", c.gets_multi, [])
    r("set_multi {}", c.set_multi, {})
    r("delete_multi []", c.delete_multi, [])
    for i in range(10):
        r(f"set {i}", c.set, b"k%d" % i, b"v%d" % i)
    r("get_multi evens", c.get_multi, [b"k%d" % i for i in range(0, 20, 2)])
    r("get_multi iter", c.get_multi, iter([b"k1", b"k3"]))
    r("get_multi tuple", c.get_multi, (b"k1", b"k2"))
    r("set bytes-key", c.set, b"bytes-key", b"b")
    r("set str-key", c.set, "str-key", b"s")
    r("set clé", c.set, "clé", b"c")
    r("keys as given", c.get_multi, [b"bytes-key", "str-key", "clé"])
    r("duplicates", c.get_multi, [b"k1", b"k1", b"zz", b"k1"])
    r("gets_multi duplicates", lambda: c.gets_multi([b"k1", b"k1"])[b"k1"][0])
    r("set pre:a", c.set, b"pre:a", b"1")
    r("set pre:b", c.set, b"pre:b", b"2")
    r("set a", c.set, b"a", b"unprefixed")
    r("prefix", c.get_multi, [b"a", b"b", b"c"], key_prefix=b"pre:")
    r("prefix str keys", c.get_multi, ["a", "b"], key_prefix=b"pre:")
    r("prefix str", c.get_multi, ["a", "b"], key_prefix="pre:")
    r("gets_multi prefix", lambda: {k: v[0] for k, v in
                                   c.gets_multi([b"a"], key_prefix=b"pre:").items()})
    r("prefix flags", c.get_multi, [b"a"], key_prefix=b"pre:", with_flags=True)
    mapping = {b"many-%05d" % i: b"value-%05d" % i for i in range(5000)}
    r("set_multi many", c.set_multi, mapping)
    r("get_multi many", c.get_multi, list(mapping))
    r("delete_multi many", c.delete_multi, list(mapping))
    r("get_multi many gone", c.get_multi, list(mapping))
    r("set_multi tuples", c.set_multi, {b"a": b"1", "b": b"2", b"c": (b"3", 42),
                                        b"d": (b"", 2**32 - 1)})
    for k in (b"a", b"b", b"c", b"d"):
        r(f"raw {k!r}", srv.raw_get, k)
    r("get_multi flags", c.get_multi, [b"c", b"d"], with_flags=True)
    r("set_multi flags prefix", c.set_multi, {b"a": b"1", b"b": (b"2", 5)}, flags=9,
      key_prefix=b"p:")
    r("raw p:a", srv.raw_get, b"p:a")
    r("raw p:b", srv.raw_get, b"p:b")
    r("get_multi p:", c.get_multi, [b"a", b"b"], key_prefix=b"p:")
    r("set_multi noreply", c.set_multi, {b"x%d" % i: b"y%d" % i for i in range(50)},
      noreply=True)
    r("get after noreply", c.get, b"x49")
    r("get_multi after noreply", c.get_multi, [b"x%d" % i for i in range(50)])
    r("set_multi exptime", c.set_multi, {b"e1": b"v"}, exptime=100)
    r("set_multi items", c.set_multi, {b"i1": b"v1", b"i2": b"v2"}.items())
    r("delete missing", c.delete, b"nokey")
    r("delete", c.delete, b"a")
    r("delete again", c.delete, b"a")
    r("delete_multi", c.delete_multi, [b"b", b"c"])
    r("delete_multi missing", c.delete_multi, [b"d", b"missing"])
    r("delete_multi prefix", c.delete_multi, [b"a"], key_prefix=b"p:")
    r("raw p:a gone", srv.raw_get, b"p:a")
    r("delete_multi noreply", c.delete_multi, [b"x1", b"x2"], noreply=True)
    r("delete noreply", c.delete, b"x3", noreply=True)
    r("get_multi deleted", c.get_multi, [b"x1", b"x2", b"x3", b"x4"])


def sc_flush_version_stats(c, r, srv):
    r("set_multi", c.set_multi, {b"a": b"1", b"b": b"2"})
    r("flush_all", c.flush_all)
    r("get_multi", c.get_multi, [b"a", b"b"])
    r("set after", c.set, b"a", b"after")
    r("get after", c.get, b"a")
    r("flush_all 600", c.flush_all, delay=600)
    r("get before delay", c.get, b"a")
    r("flush_all 0", c.flush_all, delay=0)
    r("get flushed", c.get, b"a")
    r("set n", c.set, b"n", b"1")
    r("flush_all noreply", c.flush_all, noreply=True)
    r("get n", c.get, b"n")
    r("flush positional", c.flush_all, 0)
    versions = r("version", c.version)
    r("version is the server's", lambda: list(versions.values()) == [srv.stats()["version"]])
    stats = c.get_stats()
    r("stats shape", lambda: (len(stats), stats[0][0], sorted(stats[0][1])))
    r("stats pid", lambda: stats[0][1]["pid"] == str(srv.pid))
    r("stats str", lambda: all(isinstance(k, str) and isinstance(v, str)
                               for k, v in stats[0][1].items()))
    ((name, settings),) = c.get_stats("settings")
    r("settings", lambda: (name, settings["item_size_max"], settings["maxbytes"],
                           settings["num_threads"]))
    r("set k", c.set, b"k", b"v")
    ((_, items),) = c.get_stats("items")
    r("items", lambda: sorted(items))
    ((_, slabs),) = c.get_stats("slabs")
    r("slabs", lambda: "active_slabs" in slabs)
    r("in sync", c.get, b"k")
    r("stats none", lambda: c.get_stats(None)[0][0])
    r("stats bad", c.get_stats, "nosuch")
    r("get after bad stats", c.get, b"k")
    r("servers", lambda: c.servers)
    r("server_index", c.server_index, b"anything")
    r("server_index str", c.server_index, "clé")


def sc_noreply(c, r, srv):
    for i in range(20):
        r(f"set nr{i}", c.set, b"nr%d" % i, b"value-%d" % i, noreply=True)
    r("get nr0", c.get, b"nr0")
    r("get_multi nr", c.get_multi, [b"nr%d" % i for i in range(20)])
    r("raw nr19", srv.raw_get, b"nr19")
    r("probe", c.set, b"probe", b"probe-value")
    r("text", c.set, b"text", b"not a number")
    r("exists", c.set, b"exists", b"e")
    r("add exists", c.add, b"exists", b"x", noreply=True)
    r("replace missing", c.replace, b"missing", b"x", noreply=True)
    r("append missing", c.append, b"missing", b"x", noreply=True)
    r("prepend missing", c.prepend, b"missing", b"x", noreply=True)
    r("delete missing", c.delete, b"missing", noreply=True)
    r("touch missing", c.touch, b"missing", 10, noreply=True)
    r("incr text", c.incr, b"text", 1, noreply=True)
    r("incr missing", c.incr, b"missing", 1, noreply=True)
    r("cas missing", c.cas, b"missing", b"x", 1, noreply=True)
    r("get probe", c.get, b"probe")
    r("get exists", c.get, b"exists")
    r("get text", c.get, b"text")
    r("get missing", c.get, b"missing")
    r("set d", c.set, b"d", b"1")
    r("set n", c.set, b"n", b"10")
    r("delete d", c.delete, b"d", noreply=True)
    r("incr n", c.incr, b"n", 5, noreply=True)
    r("decr n", c.decr, b"n", 2, noreply=True)
    r("get d", c.get, b"d")
    r("get n", lambda: int(c.get(b"n")))
    r("flush noreply", c.flush_all, noreply=True)
    r("get n flushed", c.get, b"n")
    for i in range(300):
        c.set(b"k%d" % i, b"v%d" % i, noreply=True)
        if i % 7 == 0:
            r(f"own reply {i}", c.get, b"k%d" % i)
    r("get_multi 300", c.get_multi, [b"k%d" % i for i in range(300)])
    r("too large for the server", c.set, b"huge", b"h" * (2 * MiB), noreply=True)
    r("probe after huge", c.get, b"probe")
    r("huge not stored", c.get, b"huge")


def sc_too_large(c, r, srv):
    r("set old", c.set, b"k", b"old")
    r("at the default limit", c.set, b"k", b"x" * MiB)
    r("old value dropped", c.get, b"k")
    r("in sync", c.set, b"small", b"s")
    r("get small", c.get, b"small")
    before = srv.stats()["cmd_set"]
    r("over the default limit", c.set, b"k", b"x" * (MiB + 1))
    r("nothing sent", lambda: srv.stats()["cmd_set"] == before)
    r("get k", c.get, b"k")
    r("set_multi one too large for the server", c.set_multi,
      {b"a": b"small-a", b"big": b"x" * (MiB + 100), b"c": b"small-c"})
    r("get_multi", c.get_multi, [b"a", b"big", b"c"])


def sc_big_values(c, r, srv):
    r("set 1 MiB", c.set, b"big", BIG)
    r("set 1.5 MiB", c.set, b"bigger", BIGGER)
    r("get 1 MiB", c.get, b"big")
    r("get_multi", c.get_multi, [b"big", b"bigger"])
    r("raw", srv.raw_get, b"big")
    r("gets", lambda: c.gets(b"bigger")[0])
    r("set_multi big", c.set_multi, {b"b%d" % i: BIG[i:] for i in range(3)})
    r("get_multi big", c.get_multi, [b"b%d" % i for i in range(3)])
    r("append big", c.append, b"b0", BIG[:1000])
    r("get appended", c.get, b"b0")


def sc_max_value_size(c, r, srv):
    r("at the limit", c.set, b"k", b"x" * 1000)
    r("get", c.get, b"k")
    r("over", c.set, b"k", b"y" * 1001)
    r("over in set_multi", c.set_multi, {b"a": b"ok", b"k": b"y" * 1001})
    r("over in append", c.append, b"k", b"y" * 1001)
    r("raw k", srv.raw_get, b"k")
    r("raw a", srv.raw_get, b"a")
    srv.raw_set(b"stored-big", b"b" * 2000)
    srv.raw_set(b"small", b"s")
    r("stored value over max_value_size", c.get, b"stored-big")
    r("in sync", c.get, b"small")
    r("in a get_multi", c.get_multi, [b"small", b"stored-big"])
    r("in sync again", c.get, b"small")


def sc_connections(c, r, srv):
    def curr():
        return int(srv.stats()["curr_connections"]) - 1

    r("set", c.set, b"k", b"v")
    r("one connection", lambda: wait_until(lambda: curr() == 1))
    total = int(srv.stats()["total_connections"])
    r("close", c.close)
    r("closed", lambda: wait_until(lambda: curr() == 0))
    r("reused after close", c.get, b"k")
    r("reconnected", lambda: wait_until(lambda: curr() == 1)
      and int(srv.stats()["total_connections"]) > total)
    r("disconnect_all", c.disconnect_all)
    r("closed again", lambda: wait_until(lambda: curr() == 0))
    r("get", c.get, b"k")
    r("close twice", lambda: (c.close(), c.close()))
    r("closed at the end", lambda: wait_until(lambda: curr() == 0))
    total = int(srv.stats()["total_connections"])
    for _ in range(50):
        c.get(b"k")
    r("connections are reused", lambda: int(srv.stats()["total_connections"]) == total + 2)


STRINGCLIENT_SCRIPTS = {
    "basics": (sc_basics, (), {}),
    "flags_and_exptime": (sc_flags_and_exptime, (), {}),
    "store": (sc_store, (), {}),
    "cas": (sc_cas, (), {}),
    "incr_decr": (sc_incr_decr, (), {}),
    "touch_gat": (sc_touch_gat, (), {}),
    "multi": (sc_multi, (), {}),
    "flush_version_stats": (sc_flush_version_stats, (), {}),
    "noreply": (sc_noreply, (), {"max_value_size": 4 * MiB}),
    "noreply_no_fence": (sc_noreply, (), {"max_value_size": 4 * MiB, "noreply_fence": False}),
    "too_large": (sc_too_large, (), {}),
    "big_values": (sc_big_values, ("-I", "2m"), {"max_value_size": 2 * MiB}),
    "max_value_size": (sc_max_value_size, (), {"max_value_size": 1000}),
    "connections": (sc_connections, (), {}),
}


@pytest.mark.parametrize("name", sorted(STRINGCLIENT_SCRIPTS))
def test_stringclient_same_script_same_results(clients, memcached_factory, name):
    script, server_args, kwargs = STRINGCLIENT_SCRIPTS[name]
    run_pair(clients, memcached_factory, "StringClient", script, server_args=server_args,
             **kwargs)


def test_stringclient_expiry(clients_on, loops, memcached_factory):
    """exptime=1 items are gone 2.1 s later; touch and gat move the expiry
    both ways (the items of the blocking client and of one asyncio client
    per loop age together: one sleep for all)."""
    runs = []
    for kind in ("sync", *loops.values()):
        srv = memcached_factory()
        runs.append((clients_on(kind, "StringClient", [srv.address]),
                     Recorder(address_subs([srv]))))
    for c, r in runs:
        r("short", c.set, b"short", b"1", exptime=1)
        r("touched-short", c.set, b"touched-short", b"2")
        r("touch short", c.touch, b"touched-short", 1)
        r("gat-short", c.set, b"gat-short", b"3")
        r("gat short", c.gat, b"gat-short", 1)
        r("gats-short", c.set, b"gats-short", b"3s")
        r("gats short", lambda: c.gats(b"gats-short", 1)[0])
        r("touched-long", c.set, b"touched-long", b"4", exptime=1)
        r("touch long", c.touch, b"touched-long", 100)
        r("gat-long", c.set, b"gat-long", b"5", exptime=1)
        r("gat long", c.gat, b"gat-long", 100)
        r("forever", c.set, b"forever", b"6")
        r("short still there", c.get, b"short")
    time.sleep(2.1)
    for c, r in runs:
        for k in (b"short", b"touched-short", b"gat-short", b"gats-short", b"touched-long",
                  b"gat-long", b"forever"):
            r(f"after {k!r}", c.get, k)
    for _, r in runs[1:]:
        assert_same_steps(runs[0][1], r)
    assert runs[0][1].steps[-1] == ("after b'forever'", b"6")
    assert runs[0][1].steps[-7] == ("after b'short'", None)


def test_stringclient_unix_socket(clients, memcached_factory, tmp_socket_dir):
    recorders = []
    for kind in ("sync", "aio"):
        path = os.path.join(tmp_socket_dir, f"{kind}.sock")
        srv = memcached_factory(unix_path=path)
        c = clients(kind, "StringClient", [f"unix:{path}"])
        r = Recorder({path: "<path>"})
        r("set", c.set, b"k", b"over a unix socket")
        r("get", c.get, b"k")
        r("get_multi", c.get_multi, [b"k", b"x"])
        r("set_multi", c.set_multi, {b"a%d" % i: BIG[:i * 1000] for i in range(50)})
        r("get_multi big", c.get_multi, [b"a%d" % i for i in range(50)])
        r("version", lambda: c.version()[c.servers[0]].startswith("1.6"))
        r("stats pid", lambda: c.get_stats()[0][1]["pid"] == str(srv.pid))
        r("servers", lambda: c.servers)
        r("raw", srv.raw_get, b"k")
        r("close", c.close)
        srv.kill()
        os.unlink(path)
        r("gone", c.get, b"k")
        r("held down", c.get, b"k")
        recorders.append(r)
    assert_same_steps(*recorders)
    assert recorders[1].steps[1] == ("get", b"over a unix socket")
    assert recorders[1].steps[-2][1].type is cmemcache.ConnectionError


# -- Client scripts (the scenarios of test_client_compat.py) ---------------------------------


def client_scenarios():
    out = {f"compat_{name}": (script, kwargs) for name, (script, kwargs) in
           compat.SCENARIOS.items()}
    return out


def cl_tokens_and_errors(c, r, srv):
    r("gets miss token", c.gets, "k", with_token=True)
    r("gets miss default token", c.gets, "k", "dflt", with_token=True)
    r("set", c.set, "k", {"v": 1})
    value, token = r("gets token", lambda: c.gets("k", with_token=True))
    r("cas token", c.cas, "k", {"v": 2}, token=token)
    r("cas stale", c.cas, "k", {"v": 3}, token=token)
    r("get", c.get, "k")
    _, token = c.gets("k", with_token=True)
    srv.raw_set(b"k", b"other", 0)
    r("cas changed", c.cas, "k", "mine", token=token)
    r("get other", c.get, "k")
    _, token = c.gets("k", with_token=True)
    r("delete", c.delete, "k")
    r("cas gone", c.cas, "k", "gone", token=token)
    r("cas_ids", lambda: dict(c.cas_ids))
    srv.raw_set(b"f32", b"abc", 32)
    srv.raw_set(b"bad", b"not a pickle\x00", 1)
    r("unknown flags", c.get, "f32")
    r("unknown flags default", c.get, "f32", "dflt")
    r("bad pickle default", c.get, "bad", "dflt")
    r("bad pickle", c.get, "bad")
    r("get_multi undecodable", c.get_multi, ["f32", "bad"])
    r("error_counts", lambda: dict(c.error_counts))
    r("in sync", lambda: (c.set("k", 1), c.get("k")))
    # (a delayed flush_all cancels an earlier one for the items not yet
    # reclaimed: the immediate one comes last)
    r("flush_all delay", c.flush_all, 3600)
    r("flush_all", c.flush_all)
    r("get_stats names", lambda: [n for n, _ in c.get_stats()])
    r("get_stats keys", lambda: sorted(c.get_stats()[0][1]))
    r("set_multi", c.set_multi, {f"k{i}": "x" * 10 for i in range(5)})
    r("set large", c.set, "large", "y" * 5000)
    for args in ("settings", "slabs", "items"):
        r(f"get_stats {args} keys", lambda: sorted(c.get_stats(args)[0][1]))
    r("get_slabs", lambda: [(n, sorted(d)) for n, d in c.get_slabs()])
    r("get_slab_stats", lambda: [(n, sorted(d)) for n, d in c.get_slab_stats()])
    r("stats", lambda: dict(c.stats))
    r("check_key", c.check_key, b"a b")
    r("check_key ok", c.check_key, b"ab")
    r("check_key extra", c.check_key, b"a" * 246, 5)
    r("debuglog", c.debuglog, "text")
    r("forget_dead_hosts", c.forget_dead_hosts)
    r("reset_cas", c.reset_cas)
    r("pickleProtocol", lambda: c.pickleProtocol)
    r("server_max_value_length", lambda: c.server_max_value_length)
    r("servers", lambda: [str(h) for h in c.servers])
    r("disconnect_all", c.disconnect_all)
    r("quit_all", c.quit_all)
    r("after quit_all", c.get, "k")
    r("close", c.close)
    r("after close", c.get, "k")


def cl_set_servers(c, r, servers):
    a, b = servers
    r("set on a", c.set, "k", "on a")
    r("set_servers", c.set_servers, [b.address])
    r("get on b", c.get, "k")
    r("set on b", c.set, "k", "on b")
    r("raw a", a.raw_get, b"k")
    r("raw b", b.raw_get, b"k")
    r("servers", lambda: [str(h) for h in c.servers])
    c.set_servers([(a.address, 3), (b.address, 2)])
    r("weights", lambda: ([(str(h), h.weight) for h in c.servers], len(c.buckets)))
    r("get_stats", lambda: [n for n, _ in c.get_stats()])
    r("get_multi", c.get_multi, ["k", "x"])


def cl_strict(c, r, srv):
    r("get missing", c.get, "missing")
    r("get missing default", c.get, "missing", 3)
    r("add", c.add, "k", 1)
    r("add again", c.add, "k", 1)
    r("bad key", c.get, "a b")
    r("set text", c.set, "t", "abc")
    r("incr text", c.incr, "t")
    r("decr text", c.decr, "t")
    srv.kill()
    for name, fn in compat.DOWN_CALLS.items():
        r(f"down {name}", fn, c)


def cl_small_limits(c, r, srv):
    compat.scenario_small_value_limit(c, r, srv)
    r("set_multi over", c.set_multi, {"big": b"x" * 101, "ok": 1})
    r("get_multi", c.get_multi, ["big", "ok"])
    r("check_key 10", c.check_key, b"a" * 10)
    r("check_key 11", c.check_key, b"a" * 11)
    r("get 11", c.get, "a" * 11)
    r("get_multi prefix", c.get_multi, ["a" * 8], key_prefix="pre")
    r("set_multi prefix", c.set_multi, {"a" * 8: 1}, key_prefix="pre")
    r("delete_multi prefix", c.delete_multi, ["a" * 8], key_prefix="pre")
    r("get_multi prefix ok", c.get_multi, ["a" * 7], key_prefix="pre")


def cl_check_keys_false(c, r, srv):
    r("set", c.set, "ok", 1)
    r("get", c.get, "ok")
    r("get é", c.get, "été")
    r("get_multi int", c.get_multi, ["ok", 5])
    r("space still refused", c.set, b"a b", 1)
    r("crlf still refused", c.get, "k\r\nflush_all")


def cl_debug(c, r, srv):
    r("delete missing", c.delete, "nope")
    r("touch missing", c.touch, "nope")
    r("add", c.add, "k", 1)
    r("add again", c.add, "k", 1)
    r("delete_multi", c.delete_multi, ["k", "nope"])
    r("cas missing", c.cas, "k", 2, token=1)


CLIENT_SCRIPTS = {
    **client_scenarios(),
    "tokens_and_errors": (cl_tokens_and_errors, {}),
    "key_encoder": (compat.scenario_key_encoder, {"key_encoder": str.lower}),
    "strict": (cl_strict, {"strict": True, "dead_retry": 0}),
    "small_limits": (cl_small_limits, {"server_max_value_length": 100,
                                       "server_max_key_length": 10}),
    "check_keys_false": (cl_check_keys_false, {"check_keys": False}),
    "debug": (cl_debug, {"debug": 1}),
    "set_servers": (cl_set_servers, {}),
}


@pytest.mark.parametrize("name", sorted(CLIENT_SCRIPTS))
def test_client_same_script_same_results(clients, memcached_factory, capsys, name):
    script, kwargs = CLIENT_SCRIPTS[name]
    run_pair(clients, memcached_factory, "Client", script,
             nservers=2 if name == "set_servers" else 1, **kwargs)
    if name == "debug":  # python-memcached's lines on stderr, once per client
        err = capsys.readouterr().err.splitlines()
        assert len(err) % 2 == 0 and err, err
        assert err[: len(err) // 2] == err[len(err) // 2:]


@pytest.mark.parametrize("call", list(compat.DOWN_CALLS))
def test_client_server_down_same_return_value(clients, call, caplog):
    caplog.set_level(logging.DEBUG, logger="cmemcache")
    address = f"127.0.0.1:{free_port()}"
    fn = compat.DOWN_CALLS[call]
    results = []
    for kind in ("sync", "aio"):
        c = clients(kind, "Client", [address])
        results.append([outcome(fn, c), outcome(fn, c), c.error_counts["ConnectionError"]])
    assert_same(results[0], results[1], call)
    assert not isinstance(results[1][0], Raised)
    assert results[1][2] >= 1
    warnings = [r for r in caplog.records if r.name == "cmemcache" and r.levelno >= logging.WARNING]
    assert len(warnings) >= 2


@pytest.mark.serial
def test_client_timeout_returns_neutral_values(clients, memcached_factory):
    results = []
    for kind in ("sync", "aio"):
        srv = memcached_factory()
        srv.pause()
        c = clients(kind, "Client", [srv.address], socket_timeout=0.3)
        started = time.monotonic()
        results.append([c.get("k"), c.set("k", 1), c.get_multi(["a"]), c.delete("k"),
                        c.incr("k"), c.error_counts["TimeoutError"]])
        assert time.monotonic() - started < 4
        srv.resume()
    assert_same(results[0], results[1])
    assert results[1] == [None, 0, {}, 0, None, 3]


def alternate(names):
    """(loop, name) pairs: the names dealt out to the two kinds of loop in
    turn (cases that do not depend on the loop run once each)."""
    order = sorted(LOOPS)
    return [(order[i % len(order)], n) for i, n in enumerate(names)]


@pytest.mark.parametrize("loop, name", alternate(list(compat.BAD_KEYS)))
def test_client_bad_keys_same_errors(clients_on, loops, fakes, loop, name):
    key = compat.BAD_KEYS[name]
    clients = clients_on
    results = []
    for kind in ("sync", loops[loop]):
        fake = fakes()
        c = clients(kind, "Client", [fake.address])
        results.append({call: outcome(fn, c) for call, fn in compat.keyed_calls(key).items()})
        results[-1]["sent"] = fake.received()
    assert_same(results[0], results[1], f"key {key!r}")


@pytest.mark.parametrize("key, extra", [(None, 0), ("", 0), (b"", 3), (42, 0), (b"a" * 251, 0),
                                        (b"a" * 246, 5), (b"\x80\xff", 0), ((1, b"abc"), 0),
                                        ((1, None), 0)], ids=repr)
def test_client_check_key_same(clients, key, extra):
    address = f"127.0.0.1:{free_port()}"
    assert_same(outcome(clients("sync", "Client", [address]).check_key, key, extra),
                outcome(clients("aio", "Client", [address]).check_key, key, extra))


# -- bad input: the same exception, nothing sent (the cases of test_keys.py) -----------------


def nothing_sent(c, fake) -> bool:
    """A probe gets its own reply and is all the fake server ever received."""
    assert c.get(b"probe") == b"probe"
    c.close()
    assert fake.wait_all_finished(5.0)
    return fake.received() == b"get probe\r\n"


def assert_refused_alike(clients, fakes, calls, kind="aio", **kwargs):
    """Each call raises the same on both clients (asyncio's before sending
    anything)."""
    address = f"127.0.0.1:{free_port()}"  # the blocking client's: never connected to
    sync = clients("sync", "StringClient", [address], timeout=1, connect_timeout=1, **kwargs)
    fake = fakes()
    aio = clients(kind, "StringClient", [fake.address], timeout=1, connect_timeout=1, **kwargs)
    wrong = []
    for what, call in calls:
        expected, got = outcome(call, sync), outcome(call, aio)
        if not isinstance(expected, Raised) or expected != got:
            wrong.append((what, expected, got))
    assert wrong == []
    assert sync.dead_servers() == []  # nothing tried to connect
    assert nothing_sent(aio, fake)


@pytest.mark.parametrize("loop, method", alternate(keys_suite.METHODS))
def test_bad_keys_refused_before_sending(clients_on, loops, fakes, loop, method):
    assert_refused_alike(clients_on, fakes,
                         [(keys_suite.key_id(bad), keys_suite.keyed_calls(bad)[method])
                          for bad in keys_suite.BAD_KEYS], kind=loops[loop])


def test_bad_key_prefixes_too_large_values_types_and_ranges_refused_before_sending(
        clients, fakes):
    calls = list(keys_suite.BAD_PREFIXES.items())
    calls += list(keys_suite.TYPE_ERRORS.items()) + list(keys_suite.RANGE_ERRORS.items())
    calls += [(f"exptime {e}", lambda c, e=e: c.set(b"k", b"v", exptime=e))
              for e in keys_suite.EXPTIMES_OUTSIDE_INT32]
    calls += [("set no value", lambda c: c.set(b"k")),
              ("set unknown kw", lambda c: c.set(b"k", b"v", nosuch=1)),
              ("get too many", lambda c: c.get(b"k", True)),
              ("touch no exptime", lambda c: c.touch(b"k")),
              ("cas no token", lambda c: c.cas(b"k", b"v")),
              ("get_stats int", lambda c: c.get_stats(5)),
              ("get_stats crlf", lambda c: c.get_stats("items\r\nflush_all")),
              ("server_index list", lambda c: c.server_index([b"k"])),
              ("mark_dead index", lambda c: c.mark_dead(1)),
              ("mark_dead str", lambda c: c.mark_dead("0")),
              ("mark_dead negative", lambda c: c.mark_dead(0, -1.0))]
    assert_refused_alike(clients, fakes, calls)
    assert_refused_alike(clients, fakes, list(keys_suite.TOO_LARGE.items()), max_value_size=100)


def test_stringclient_sends_the_same_bytes(clients, fakes):
    """The same calls put the same requests on the wire (noreply with its
    fences, prefixes, flags, exptimes, cas ids, the meta no-op)."""
    def script(c):
        c.get(b"k")
        c.get("clé", with_flags=True)
        c.gets(b"k")
        c.gat(b"k", 5)
        c.gats(b"k", -1, with_flags=True)
        c.get_multi([b"a", "b", b"a"], key_prefix=b"p:")
        c.gets_multi([b"a"])
        c.set(b"k", b"v", 10, 3)
        c.set(b"k", b"v", noreply=True)
        c.add(b"k", memoryview(b"0123")[1:3], flags=2**32 - 1)
        c.replace(b"k", bytearray(b"r"), exptime=-1)
        c.append(b"k", b"a", noreply=True)
        c.prepend(b"k", b"p")
        c.cas(b"k", b"c", 2**64 - 1, 7, 8, True)
        c.set_multi({b"a": b"1", b"b": (b"2", 9)}, 100, 4, key_prefix=b"q:")
        c.set_multi({b"a": b"1", b"b": b"2"}, noreply=True)
        c.delete(b"k")
        c.delete(b"k", noreply=True)
        c.delete_multi([b"a", b"b"], key_prefix=b"q:")
        c.delete_multi([b"a"], noreply=True)
        c.incr(b"n", 2**64 - 1)
        c.decr(b"n", 0, noreply=True)
        c.touch(b"k", 2**31 - 1)
        c.touch(b"k", 0, noreply=True)
        c.flush_all(5)
        c.flush_all(noreply=True)
        c.version()
        c.get_stats("settings")
        return [c.get(b"end"), c.get_multi([b"x", b"y"])]

    sent = []
    for kind in ("sync", "aio"):
        fake = fakes()
        c = clients(kind, "StringClient", [fake.address])
        assert script(c) == [b"end", {b"x": b"x", b"y": b"y"}]
        c.close()
        assert fake.wait_all_finished(5.0)
        assert fake.connection_count == 1
        sent.append(fake.received())
    assert sent[1] == sent[0]
    assert sent[1].count(b"mn\r\n") == 9  # one per noreply call


# -- faults: the cases of test_errors.py ---------------------------------------------------------

MULTI_REPLY = errs.MULTI_REPLY
FAULTS = {}
for _cut in (0, 1, 5, 11, 12, 13, 17, 18, 19, 20, len(errs.FULL_REPLY) - 1):
    FAULTS[f"truncated-{_cut}"] = ([expect(errs.GET_K), send(errs.FULL_REPLY[:_cut]), close()],
                                   lambda c: c.get(b"k"), {}, {})
for _cut in (0, 5, 15, 18, 30, 37, len(MULTI_REPLY) - 1):
    FAULTS[f"multi-truncated-{_cut}"] = (
        [expect(rb"get a b\r\n"), send(MULTI_REPLY[:_cut]), close()],
        lambda c: c.get_multi([b"a", b"b"]), {}, {})
for _i, _reply in enumerate(errs.GARBAGE_TO_GET + [
        b"VALUE k 0 " + count + b"\r\nkkkkk\r\nEND\r\n"
        for count in (b"-1", b"1a", b"", b"4294967296", b"18446744073709551621", b"2000000000")]):
    FAULTS[f"garbage-get-{_i}"] = ([expect(errs.GET_K), send(_reply)], lambda c: c.get(b"k"),
                                   {}, {})
for _i, _reply in enumerate([b"HELLO\r\n", b"END\r\n", b"VALUE k 0 1\r\nk\r\nEND\r\n", b"1\r\n"]):
    FAULTS[f"reply-to-set-{_i}"] = ([expect(rb"set k 0 0 1\r\nv\r\n"), send(_reply)],
                                    lambda c: c.set(b"k", b"v"), {}, {})
# An error line that is the whole reply leaves the stream in sync: the
# blocking driver closes the connection all the same, the asyncio one may
# keep it (its other requests in flight on it read their own replies).
IN_SYNC = {"require_new": False}
for _i, _reply in enumerate([b"SERVER_ERROR out of memory storing object\r\n",
                             b"SERVER_ERROR object too large for cache\r\n",
                             b"CLIENT_ERROR bad data chunk\r\n", b"ERROR\r\n"]):
    FAULTS[f"error-to-set-{_i}"] = ([expect(rb"set k 0 0 1\r\nv\r\n"), send(_reply)],
                                    lambda c: c.set(b"k", b"v"), {}, IN_SYNC)
LEGAL = {"faulted": None}  # a good reply: the connection is kept
for _name, _pattern, _call, _reply, _sync in [
        ("delete-stored", rb"delete k\r\n", lambda c: c.delete(b"k"), b"STORED\r\n", {}),
        ("touch-deleted", rb"touch k 10\r\n", lambda c: c.touch(b"k", 10), b"DELETED\r\n", {}),
        ("incr-12a", rb"incr k 1\r\n", lambda c: c.incr(b"k", 1), b"12a\r\n", {}),
        ("incr-2**64", rb"incr k 1\r\n", lambda c: c.incr(b"k", 1),
         b"18446744073709551616\r\n", {}),
        ("incr-largest", rb"incr k 1\r\n", lambda c: c.incr(b"k", 1),
         b"18446744073709551615\r\n", LEGAL),
        ("version-stored", rb"version\r\n", lambda c: c.version(), b"STORED\r\n", {}),
        ("cas-deleted", rb"cas k 0 0 1 7\r\nv\r\n", lambda c: c.cas(b"k", b"v", 7),
         b"DELETED\r\n", {}),
        ("gets-bad-cas", rb"gets k\r\n", lambda c: c.gets(b"k"),
         b"VALUE k 0 1 -1\r\nk\r\nEND\r\n", {}),
        ("gets-largest", rb"gets k\r\n", lambda c: c.gets(b"k", with_flags=True),
         b"VALUE k 4294967295 1 18446744073709551615\r\nk\r\nEND\r\n", LEGAL),
        ("bad-flags", errs.GET_K, lambda c: c.get(b"k", with_flags=True),
         b"VALUE k abc 1\r\nk\r\nEND\r\n", {}),
        ("terminator", errs.GET_K, lambda c: c.get(b"k"), b"VALUE k 0 5\r\nhelloXXEND\r\n", {}),
        ("large-terminator", errs.GET_K, lambda c: c.get(b"k"),
         b"VALUE k 0 100000\r\n" + b"x" * 100000 + b"XYEND\r\n", {}),
        ("other-key", errs.GET_K, lambda c: c.get(b"k"), b"VALUE x 0 1\r\nx\r\nEND\r\n", {}),
        ("key-twice", errs.GET_K, lambda c: c.get(b"k"),
         b"VALUE k 0 1\r\nx\r\nVALUE k 0 1\r\ny\r\nEND\r\n", {}),
        ("multi-other-key", rb"get a b\r\n", lambda c: c.get_multi([b"a", b"b"]),
         b"VALUE a 0 1\r\nx\r\nVALUE c 0 1\r\ny\r\nEND\r\n", {}),
        ("multi-no-prefix", rb"get p:a\r\n", lambda c: c.get_multi([b"a"], key_prefix=b"p:"),
         b"VALUE a 0 1\r\nx\r\nEND\r\n", {}),
        ("multi-server-error-mid", rb"get a b\r\n", lambda c: c.get_multi([b"a", b"b"]),
         b"VALUE a 0 1\r\na\r\nSERVER_ERROR out of memory writing get response\r\n", {}),
        ("multi-error-mid", rb"get a b\r\n", lambda c: c.get_multi([b"a", b"b"]),
         b"VALUE a 0 1\r\na\r\nERROR\r\n", {}),
        ("get-server-error", errs.GET_K, lambda c: c.get(b"k"), b"SERVER_ERROR out of memory\r\n",
         IN_SYNC),
        ("get-client-error", errs.GET_K, lambda c: c.get(b"k"), b"CLIENT_ERROR bad\r\n", IN_SYNC),
        ("get-error", errs.GET_K, lambda c: c.get(b"k"), b"ERROR unknown command\r\n", IN_SYNC),
        ("flush-server-error", rb"flush_all[^\r\n]*\r\n", lambda c: c.flush_all(),
         b"SERVER_ERROR out of memory\r\n", IN_SYNC),
        ("delete-server-error", rb"delete k\r\n", lambda c: c.delete(b"k"),
         b"SERVER_ERROR out of memory\r\n", IN_SYNC),
        ("incr-server-error", rb"incr k 1\r\n", lambda c: c.incr(b"k", 1),
         b"SERVER_ERROR out of memory\r\n", IN_SYNC),
        ("touch-server-error", rb"touch k 5\r\n", lambda c: c.touch(b"k", 5),
         b"SERVER_ERROR out of memory\r\n", IN_SYNC),
        ("version-server-error", rb"version\r\n", lambda c: c.version(),
         b"SERVER_ERROR out of memory\r\n", IN_SYNC),
        ("stats-server-error", rb"stats\r\n", lambda c: c.get_stats(),
         b"SERVER_ERROR out of memory\r\n", IN_SYNC),
        ("gat-server-error", rb"gat 5 k\r\n", lambda c: c.gat(b"k", 5),
         b"SERVER_ERROR out of memory\r\n", IN_SYNC),
        ("empty-value", errs.GET_K, lambda c: c.get(b"k"), b"VALUE k 0 0\r\n\r\nEND\r\n", LEGAL),
        ("value-like-end", errs.GET_K, lambda c: c.get(b"k"),
         b"VALUE k 0 7\r\n\r\nEND\r\n\r\nEND\r\n", LEGAL),
        ("multi-one-found", rb"get a b\r\n", lambda c: c.get_multi([b"a", b"b"]),
         b"VALUE b 0 1\r\n2\r\nEND\r\n", LEGAL),
]:
    FAULTS[_name] = ([expect(_pattern), send(_reply)], _call, {}, _sync)
FAULTS["too-large-for-max-value-size"] = (
    [expect(errs.GET_K), send(b"VALUE k 0 1001\r\n" + b"x" * 1001 + b"\r\nEND\r\n")],
    lambda c: c.get(b"k"), {"max_value_size": 1000}, {})
FAULTS["close-mid-value"] = ([expect(errs.GET_K), send(b"VALUE k 0 100\r\n" + b"x" * 50), close()],
                             lambda c: c.get(b"k"), {}, {})
FAULTS["reset-mid-reply"] = ([expect(errs.GET_K), send(b"VALUE k 0 5\r\nhel"), sleep(0.05),
                              reset()],
                             lambda c: c.get(b"k"), {}, {})
FAULTS["close-before-store-reply"] = ([expect(rb"set k 0 0 1\r\nv\r\n"), close()],
                                      lambda c: c.set(b"k", b"v"), {}, {})
FAULTS["late-reply"] = ([expect(errs.GET_K), sleep(1.0), send(echo_reply(b"k") + b"END\r\n")],
                        lambda c: c.get(b"k"), {"timeout": 0.3}, {})
FAULTS["no-reply"] = ([expect(errs.GET_K), stall()], lambda c: c.get(b"k"), {"timeout": 0.3},
                      {"check_closed": False})
FAULTS["dripped-within-timeout"] = (
    [expect(errs.GET_K), send_chunks(echo_reply(b"k") + b"END\r\n", 1, 0.005)],
    lambda c: c.get(b"k"), {"timeout": 3}, {"faulted": None})
FAULTS["dripped-past-timeout"] = (
    [expect(errs.GET_K), send_chunks(b"VALUE k 0 40\r\n" + b"v" * 40 + b"\r\nEND\r\n", 1, 0.05)],
    lambda c: c.get(b"k"), {"timeout": 0.4}, {})
FAULTS["stray-error-after-noreply"] = (
    [expect(rb"set a [^\r\n]*noreply\r\n1\r\n"), send(b"CLIENT_ERROR bad command line format\r\n")],
    lambda c: [c.set(b"a", b"1", noreply=True), c.get(b"p")], {}, {"require_new": False})


def _half_close(conn: FakeConnection):
    conn.expect(errs.GET_K)
    conn.shut_wr()
    conn.hold()


def _error_before_value_sent(conn: FakeConnection):
    m = conn.expect(rb"set k 0 0 (\d+)[^\r\n]*\r\n")
    conn.send(b"SERVER_ERROR object too large for cache\r\n")
    conn.read_exact(int(m.group(1)) + 2)
    conn.echo()


FAULTS["half-close"] = (_half_close, lambda c: c.get(b"k"), {"timeout": 5}, {})
FAULTS["error-before-value-sent"] = (_error_before_value_sent,
                                     lambda c: c.set(b"k", b"x" * (2 * MiB)),
                                     {"timeout": 3, "max_value_size": 4 * MiB},
                                     {"require_new": False})
FAULTS["timeout-sending-large-value"] = (
    [expect(rb"set big "), stall()], lambda c: c.set(b"big", b"x" * 8_000_000),
    {"timeout": 0.5, "max_value_size": 16 * MiB, "_rcvbuf": 4096}, {"check_closed": False})


# on both loops: the faults that depend on when bytes arrive
BOTH_LOOPS = {"truncated-0", "truncated-13", "multi-truncated-18", "large-terminator",
              "close-mid-value", "reset-mid-reply", "close-before-store-reply",
              "no-reply", "dripped-within-timeout", "dripped-past-timeout", "half-close",
              "stray-error-after-noreply", "error-before-value-sent",
              "timeout-sending-large-value", "get-server-error", "value-like-end"}
FAULT_PARAMS = ([(loop, n) for n in FAULTS if n in BOTH_LOOPS for loop in sorted(LOOPS)]
                + alternate([n for n in FAULTS if n not in BOTH_LOOPS]))


@pytest.mark.serial
@pytest.mark.parametrize("loop, name", FAULT_PARAMS)
def test_faults_same_outcome_and_in_sync_after(clients_on, loops, fakes, loop, name):
    """A reply cut short, malformed, late, an error line: the same outcome,
    and the next requests get their own replies (on a new connection unless
    the stream stayed in sync)."""
    steps, call, kwargs, sync_kwargs = FAULTS[name]
    kwargs = dict(kwargs)
    fake_kwargs = {"rcvbuf": kwargs.pop("_rcvbuf")} if "_rcvbuf" in kwargs else {}
    kwargs.setdefault("timeout", 0.5)
    kwargs.setdefault("connect_timeout", 0.5)
    results = []
    for kind in ("sync", loops[loop]):
        fake = fakes(steps, **fake_kwargs)
        c = clients_on(kind, "StringClient", [fake.address], **kwargs)
        r = Recorder(address_subs([fake]))
        started = time.monotonic()
        r("call", call, c)
        assert time.monotonic() - started < kwargs["timeout"] + 2.5
        errs.assert_in_sync(c, fake, **sync_kwargs)
        results.append(r)
    assert_same_steps(*results)


# -- asyncio only: async with, close, tasks, the loop --------------------------------------------


def curr_connections(server) -> int:
    return int(server.stats()["curr_connections"]) - 1


@pytest.mark.parametrize("cls", ["StringClient", "Client"])
def test_async_with_closes_every_connection(lt, memcached_factory, cls):
    srv = memcached_factory()

    async def go():
        aclass = getattr(cmemcache.aio, cls)
        async with aclass([srv.address], max_connections=3) as c:
            assert type(c) is aclass
            key, value = (b"k", b"v") if cls == "StringClient" else ("k", {"v": 1})
            assert await c.set(key, value) is True
            got = await asyncio.gather(*(c.get(key) for _ in range(200)))
            assert got == [value] * 200
            opened = curr_connections(srv)
        assert 1 <= opened <= 3
        return c, key, value

    c, key, value = lt.run(go())
    assert wait_until(lambda: curr_connections(srv) == 0)
    # usable again after the block, as the blocking client after close()
    assert lt.run(c.get(key)) == value
    lt.run(c.close())
    assert wait_until(lambda: curr_connections(srv) == 0)
    assert srv.raw_get(b"k") is not None


def test_close_fails_what_is_in_flight_and_the_client_reconnects(lt, memcached_factory):
    srv = memcached_factory()
    srv.raw_set(b"k", b"v")

    async def go():
        c = cmemcache.aio.StringClient([srv.address], timeout=10)
        assert await c.get(b"k") == b"v"
        srv.pause()
        try:
            tasks = [asyncio.ensure_future(c.get(b"k")) for _ in range(20)]
            tasks.append(asyncio.ensure_future(c.get_multi([b"k", b"x"])))
            tasks.append(asyncio.ensure_future(c.set(b"k2", b"v2")))
            await asyncio.sleep(0.1)
            assert not any(t.done() for t in tasks)
            started = time.monotonic()
            await c.close()
            done, pending = await asyncio.wait(tasks, timeout=2)
            assert not pending
            assert time.monotonic() - started < 2
            for t in tasks:
                assert isinstance(t.exception(), cmemcache.ConnectionError), t.exception()
            assert c.connections() == (0,)
        finally:
            srv.resume()
        assert await c.get(b"k") == b"v"
        assert c.connections() == (1,)
        await c.close()
        await c.close()
        assert c.connections() == (0,)

    lt.run(go())
    assert wait_until(lambda: curr_connections(srv) == 0)


def test_a_client_runs_on_one_loop_until_closed(lt, memcached_factory):
    srv = memcached_factory()
    c = cmemcache.aio.StringClient([srv.address])
    assert lt.run(c.set(b"k", b"v")) is True

    async def elsewhere():
        return await c.get(b"k")

    with pytest.raises(RuntimeError, match="another event loop"):
        asyncio.run(elsewhere())
    assert lt.run(c.get(b"k")) == b"v"
    lt.run(c.close())
    # closed: the next loop may have it
    assert asyncio.run(elsewhere()) == b"v"
    # and once that loop is closed (asyncio.run ended), the next one takes it
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(elsewhere()) == b"v"
        assert wait_until(lambda: curr_connections(srv) == 1)   # the old loop's went
    asyncio.run(c.close())
    assert wait_until(lambda: curr_connections(srv) == 0)


def test_calls_outside_a_loop_raise(memcached_factory):
    srv = memcached_factory()
    total = int(srv.stats()["total_connections"])
    c = cmemcache.aio.StringClient([srv.address])
    call = c.get(b"k")
    with pytest.raises(RuntimeError):
        call.send(None)
    call.close()
    # preparing a call sends nothing; one never awaited is dropped quietly
    c.set(b"k", b"v")
    c.get_multi([b"a"])
    # the raw stats connections only
    assert int(srv.stats()["total_connections"]) == total + 1
    client = cmemcache.aio.Client([srv.address])
    coro = client.set("k", 1)
    coro.close()
    assert srv.raw_get(b"k") is None


@pytest.mark.parametrize("max_connections, max_inflight", [(1, 1), (1, 4), (2, 64), (4, 2)])
def test_many_tasks_each_get_their_own_replies(lt, memcached_factory, max_connections,
                                               max_inflight):
    """Pipelined requests of 300 tasks (one connection or a few, at most
    max_inflight in flight each): every reply to its own request."""
    srv = memcached_factory()

    async def task(c, n):
        key = b"t%d" % n
        value = b"%d:" % n + BIG[: (n * 97) % 5000]
        for round_ in range(5):
            v = value + b":%d" % round_
            assert await c.set(key, v, noreply=n % 3 == 0) is True
            assert await c.get(key) == v
            got = await c.get_multi([key, b"t%d" % ((n + 1) % 300), b"none"])
            assert got[key] == v and b"none" not in got
            assert await c.incr(b"ctr") is not None
            assert await c.delete(b"nope-%d" % n) is False
            assert (await c.gets(key))[0] == v
        return n

    async def go():
        async with cmemcache.aio.StringClient([srv.address], max_connections=max_connections,
                                              max_inflight=max_inflight) as c:
            assert await c.set(b"ctr", b"0") is True
            done = await asyncio.gather(*(task(c, n) for n in range(300)))
            assert done == list(range(300))
            assert int(await c.get(b"ctr")) == 1500
            assert c.connections()[0] <= max_connections
            assert curr_connections(srv) <= max_connections

    lt.run(go(), timeout=120)


def test_noreply_fences_under_pipelining(lt, memcached_factory):
    """noreply writes that fail (NOT_STORED, NOT_FOUND, CLIENT_ERROR) queued
    back to back with reads on one connection: each read gets its own
    reply."""
    srv = memcached_factory()

    async def go():
        async with cmemcache.aio.StringClient([srv.address], max_connections=1) as c:
            assert await c.set(b"exists", b"e") is True
            assert await c.set(b"text", b"abc") is True
            calls = []
            for i in range(100):
                calls += [c.add(b"exists", b"x", noreply=True),
                          c.incr(b"text", 1, noreply=True),
                          c.delete(b"missing", noreply=True),
                          c.set(b"k%d" % i, b"v%d" % i, noreply=True),
                          c.get(b"k%d" % i),
                          c.get(b"exists")]
            got = await asyncio.gather(*calls)
            for i in range(100):
                assert got[6 * i: 6 * i + 6] == [True, None, True, True, b"v%d" % i, b"e"], i
            assert c.connections() == (1,)
            assert await c.get(b"text") == b"abc"

    lt.run(go())


def test_client_many_tasks_python_values(lt, memcached_factory):
    srv = memcached_factory()

    async def task(c, n):
        value = {"n": n, "s": "é" * (n % 7), "l": list(range(n % 5))}
        key = f"obj-{n}"
        assert await c.set(key, value) is True
        assert await c.get(key) == value
        assert await c.get_multi([key, "absent"]) == {key: value}
        assert await c.set_multi({f"m{n}-{i}": i for i in range(3)}, key_prefix="p:") == []
        assert await c.get_multi([f"m{n}-{i}" for i in range(3)], key_prefix="p:") == \
            {f"m{n}-{i}": i for i in range(3)}
        assert await c.add(key, 0) is False
        assert await c.delete(key) == 1
        assert await c.get(key, "dflt") == "dflt"

    async def go():
        async with cmemcache.aio.Client([srv.address]) as c:
            await asyncio.gather(*(task(c, n) for n in range(200)))
            assert await c.get_multi([f"obj-{n}" for n in range(200)]) == {}

    lt.run(go())


def test_cancelled_calls_leave_nothing_behind(lt, memcached_factory):
    """Cancelled while waiting for its reply: the next call on the same
    connection reads its own reply."""
    srv = memcached_factory()
    values = {b"c%d" % i: b"v%d-" % i + BIG[: 50_000 + i] for i in range(20)}
    for k, v in values.items():
        srv.raw_set(k, v)

    async def go():
        midway = 0
        async with cmemcache.aio.StringClient([srv.address], max_connections=1) as c:
            for i, k in enumerate(values):
                t = asyncio.ensure_future(c.get(k))
                for _ in range(i % 4):
                    await asyncio.sleep(0)
                t.cancel()
                if i % 4 == 0:
                    # never started: nothing was sent
                    with pytest.raises(asyncio.CancelledError):
                        await t
                else:
                    # its request went out as it started; the reply may have
                    # come in the iterations given to it
                    try:
                        assert await t == values[k]
                    except asyncio.CancelledError:
                        midway += 1
                other = list(values)[(i + 1) % len(values)]
                assert await c.get(other) == values[other]
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0):
                        await c.get_multi(list(values))
                assert await c.get_multi([k, other]) == {k: values[k], other: values[other]}
            assert c.connections() == (1,)
        return midway

    midway = lt.run(go())
    print("cancelled while waiting for the reply: %d of 15" % midway)
    assert midway >= 1


def test_client_timeout_on_a_stalled_server_is_bounded(lt, memcached_factory):
    srv = memcached_factory()

    async def go():
        c = cmemcache.aio.StringClient([srv.address], timeout=0.3, timeout_limit=0)
        assert await c.set(b"k", b"v") is True
        srv.pause()
        try:
            started = time.monotonic()
            results = await asyncio.gather(c.get(b"k"), c.get_multi([b"k"]), c.set(b"k", b"w"),
                                           c.version(), return_exceptions=True)
            assert time.monotonic() - started < 2.3
            for res in results:
                assert isinstance(res, cmemcache.TimeoutError), res
            assert results[1].partial == {}
        finally:
            srv.resume()
        assert await c.get(b"k") == b"v"
        await c.close()

    lt.run(go())


@pytest.mark.parametrize("fence", [True, False])
def test_a_task_reads_its_own_noreply_writes(lt, memcached_factory, fence):
    """A noreply write that returned is read by the server before any later
    request: with requests of other tasks in flight on several
    connections, a task's get after its own set(noreply=True) sees the new
    value, as with the blocking client (a regression: the get could go on
    a less loaded connection and be answered first)."""
    srv = memcached_factory()
    stale = []

    async def task(c, n):
        key = b"t%d" % n
        for round_ in range(20):
            v = b"%d:%d:" % (n, round_) + BIG[: (n * 97) % 5000]
            assert await c.set(key, v, noreply=True) is True
            if round_ % 5 == 4:
                assert await c.set(key, v + b"!", noreply=True) is True
                assert await c.append(key, b"?", noreply=True) is True
                v += b"!?"
            got = await c.get(key)
            if got != v:
                stale.append((n, round_))
            if round_ % 7 == 6:
                assert await c.delete(key, noreply=True) is True
                if await c.get(key) is not None:
                    stale.append((n, round_, "deleted"))

    async def go():
        async with cmemcache.aio.StringClient([srv.address], noreply_fence=fence,
                                              max_connections=3, max_inflight=16) as c:
            await asyncio.gather(*(task(c, n) for n in range(200)))
            return c.connections()

    conns = lt.run(go(), timeout=120)
    assert stale == []
    assert 1 <= conns[0] <= 3


def open_sockets() -> int:
    """Sockets this process has open (from /proc/self/fd)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n


@pytest.mark.parametrize("how", ["close", "async with", "Client.close"])
def test_close_gives_up_the_connects_under_way(lt, memcached_factory, how):
    """A regression: a connect started before close() (for a call that
    close() failed) attached its connection afterwards, so the client held
    an open connection after close() and async with."""
    srv = memcached_factory()
    srv.raw_set(b"k", b"v")

    async def go():
        before = open_sockets()
        if how == "Client.close":
            c = cmemcache.aio.Client([srv.address])
            call = c.get("k")
        else:
            c = cmemcache.aio.StringClient([srv.address])
            call = c.get(b"k")
        if how == "async with":
            async with c:
                t = asyncio.ensure_future(call)
                await asyncio.sleep(0)  # the call asked for a connection
        else:
            t = asyncio.ensure_future(call)
            await asyncio.sleep(0)
            await c.close()
        if how == "Client.close":
            assert await t is None  # a failure: python-memcached's miss
        else:
            with pytest.raises(cmemcache.ConnectionError):
                await t
        for _ in range(20):
            await asyncio.sleep(0.01)
        sc = c if how != "Client.close" else c._sc
        assert sc.connections() == (0,)
        assert open_sockets() == before
        assert curr_connections(srv) == 0
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
        # given up is no failure of the server: not held down, usable at once
        assert sc.hold_downs() == (0.0,)
        assert await (c.get(b"k") if how != "Client.close" else c.get("k")) == b"v"
        await c.close()
        assert open_sockets() == before

    lt.run(go())
    assert wait_until(lambda: curr_connections(srv) == 0)


def test_a_connect_under_way_when_the_loop_ends_is_no_failure(memcached_factory):
    srv = memcached_factory()
    srv.raw_set(b"k", b"v")
    c = cmemcache.aio.StringClient([srv.address], dead_retry=30)

    async def leave():
        asyncio.get_running_loop().create_task(c.get(b"k"))
        await asyncio.sleep(0)

    asyncio.run(leave())
    assert c.hold_downs() == (0.0,)
    assert c.connections() == (0,)

    async def again():
        await c.close()
        return await c.get(b"k")

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(again()) == b"v"
        runner.run(c.close())
    assert wait_until(lambda: curr_connections(srv) == 0)


@pytest.mark.parametrize("fence", [True, False])
@pytest.mark.parametrize("max_connections, max_inflight", [(1, 1), (1, 2), (2, 4)])
def test_noreply_calls_beyond_the_room_there_is_all_end(lt, memcached_factory, fence,
                                                        max_connections, max_inflight):
    """A regression: with noreply_fence=False, noreply calls waiting for
    room on a connection that carried only noreply commands waited for ever
    (no reply ever came to give them their turn), past their timeout."""
    srv = memcached_factory()

    async def go():
        async with cmemcache.aio.StringClient([srv.address], noreply_fence=fence, timeout=1,
                                              max_connections=max_connections,
                                              max_inflight=max_inflight) as c:
            keys = [b"nr%d" % i for i in range(200)]
            async with asyncio.timeout(5):
                done = await asyncio.gather(*(c.set(k, k * 2, noreply=True) for k in keys),
                                            c.delete(b"none", noreply=True),
                                            c.touch(b"none", 5, noreply=True))
                assert done == [True] * 202
                assert await c.get_multi(keys) == {k: k * 2 for k in keys}
            assert c.connections()[0] <= max_connections

    lt.run(go())


def sockets_to(port: int) -> list:
    """Duplicates of this process's TCP sockets connected to port."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(int(fd)))
        except OSError:
            continue
        try:
            if s.family == socket.AF_INET and s.getpeername()[1] == port:
                out.append(s)
                continue
        except OSError:
            pass
        s.close()
    return out


def test_calls_waiting_for_a_connection_whose_write_fails_all_end(lt, memcached_factory):
    """A regression: when writing to a connection failed (EPIPE), the
    calls waiting for room on it were never placed again and waited for
    ever, past their timeout."""
    srv = memcached_factory()

    async def go():
        async with cmemcache.aio.StringClient([srv.address], max_connections=1, max_inflight=2,
                                              timeout=1) as c:
            assert await c.set(b"k", b"v") is True
            dups = sockets_to(srv.port)
            assert dups
            tasks = [asyncio.ensure_future(c.get(b"k")) for _ in range(6)]
            # the first written as it started, the second queued (its write
            # is due), four waiting for room
            await asyncio.sleep(0)
            dups[0].shutdown(socket.SHUT_RDWR)  # that write fails
            for s in dups:
                s.close()
            started = time.monotonic()
            done, pending = await asyncio.wait(tasks, timeout=3)
            for t in pending:
                t.cancel()
            assert not pending
            assert time.monotonic() - started < 2
            outcomes = [t.result() if t.exception() is None else type(t.exception())
                        for t in tasks]
            # the two on the connection when its write failed fail, the
            # others get their value: the first may have had its reply
            # before the shutdown, and the third its room
            err = cmemcache.ConnectionError
            assert outcomes in ([err, err] + [b"v"] * 4, [b"v", err, err] + [b"v"] * 3)
            assert await c.get(b"k") == b"v"

    lt.run(go())


# -- meta commands (test_meta.py's scripts) ----------------------------------------------------

# the scripts of test_meta.py that take a StringClient (mc) and its server
# only; test_meta_get_hit_and_last_access waits a second for memcached's clock
META_SCRIPTS = sorted(
    name for name, fn in vars(meta_suite).items()
    if name.startswith("test_") and callable(fn)
    and set(inspect.signature(fn).parameters) <= {"mc", "server", "key"}
    and "mc" in inspect.signature(fn).parameters
    and name != "test_meta_get_hit_and_last_access")


def test_meta_scripts_cover_every_meta_command():
    text = "".join(inspect.getsource(getattr(meta_suite, n)) for n in META_SCRIPTS)
    for cmd in ("meta_get", "meta_set", "meta_delete", "meta_arithmetic", "binary_key"):
        assert f"mc.{cmd}" in text or cmd in text, cmd
    assert len(META_SCRIPTS) >= 18


@pytest.mark.parametrize("name", META_SCRIPTS)
def test_meta_script_on_aio(name, lt, memcached):
    """test_meta.py's script, run on a bridged aio.StringClient."""
    fn = getattr(meta_suite, name)
    params = inspect.signature(fn).parameters
    client = Bridge(cmemcache.aio.StringClient([memcached.address], timeout=2,
                                               connect_timeout=2), lt)
    args = {"mc": client, "server": memcached.fresh()}
    try:
        if "key" in params:
            for key in meta_suite.BINARY_KEYS:
                fn(**{k: args.get(k, key) for k in params})
        else:
            fn(**{k: args[k] for k in params})
    finally:
        client.close()


def test_meta_many_tasks_on_aio(lt, memcached):
    """256 tasks mixing meta and text calls on one aio.StringClient: each
    reads its own values back."""
    memcached.fresh()

    async def go():
        async with cmemcache.aio.StringClient([memcached.address], timeout=5) as c:
            async def task(t: int):
                key = b"m%d" % t
                token = await c.meta_set(key, b"%d" % t * (t + 1), flags=t, return_cas=True)
                r = await c.meta_get(key, cas=True, flags=True)
                assert (r.value, r.flags, r.cas) == (b"%d" % t * (t + 1), t, token)
                assert await c.get(key, with_flags=True) == (r.value, t)
                assert await c.meta_arithmetic(b"n%d" % t, vivify=0, initial=t) == t
                assert await c.meta_delete(key, cas=token) is True
                return await c.meta_get(key)

            assert await asyncio.gather(*[task(t) for t in range(256)]) == [None] * 256

    lt.run(go())


def test_the_call_with_the_most_arguments(lt, memcached):
    """meta_get with every keyword: the call holds all 14 arguments."""
    c = Bridge(cmemcache.aio.StringClient([memcached.address], timeout=2), lt)
    assert c.meta_set("k", b"v", ttl=100, flags=5, mode="set", invalidate=False,
                      return_cas=False, binary_key=False, cas=None) is True
    r = c.meta_get("k", value=True, cas=True, flags=True, ttl=True, size=True,
                   last_access=True, hit=True, no_bump=True, touch=200, vivify=None,
                   recache=None, binary_key=False)
    assert (r.value, r.flags, r.size, r.hit) == (b"v", 5, 1, False) and 199 <= r.ttl <= 200
    with pytest.raises(TypeError, match="positional"):
        c.meta_get("k", *range(16))
    c.close()


def test_meta_requests_carry_opaque_tokens(lt, fakes):
    """Pipelined meta requests each carry O<n>; a reply whose token is not
    its request's (a reordering proxy, a crossed connection) fails the
    connection with ProtocolError instead of answering the wrong call."""
    def script(conn):
        line = conn.expect(rb"^mg a v O(\d+)\r\n").group(0)
        token = int(line.split(b"O")[1])
        conn.send(b"VA 1 O%d\r\nA\r\n" % token)
        first = conn.expect(rb"^mg b v O(\d+)\r\n")
        second = conn.expect(rb"^mg c v O(\d+)\r\n")
        assert int(first.group(1)) != int(second.group(1))
        # the two replies swapped: their tokens give it away
        conn.send(b"VA 1 O%s\r\nC\r\nVA 1 O%s\r\nB\r\n" % (second.group(1), first.group(1)))
        conn.expect(rb"^$", timeout=5)  # until the client closes

    fake = fakes(script)
    c = cmemcache.aio.StringClient([fake.address], timeout=2)

    async def go():
        assert (await c.meta_get("a")).value == b"A"
        b, cc = await asyncio.gather(c.meta_get("b"), c.meta_get("c"), return_exceptions=True)
        return b, cc

    b, cc = lt.run(go())
    assert isinstance(b, cmemcache.ProtocolError) and "opaque" in str(b)
    assert isinstance(cc, cmemcache.ProtocolError)
    lt.call(c.close)
