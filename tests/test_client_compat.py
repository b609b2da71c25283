"""cmemcache.Client against python-memcached's memcache.Client.

Most tests here are differential: the same sequence of calls is made on a
``memcache.Client`` (python-memcached 1.62) and on a ``cmemcache.Client``
against the same real memcached (flushed in between), and the return values
(values *and* their types) must be the same, step by step.  Where cmemcache
deliberately behaves differently, the test checks cmemcache's behaviour on
its own and a comment says why it differs.
"""

from __future__ import annotations

import binascii
import logging
import zlib
from dataclasses import dataclass
from datetime import timedelta

import memcache
import pytest

import cmemcache
import cmemcache.client as cmemcache_client
from cmemcache import StringClient
from conftest import MemcachedServer, free_port

MODULES = (memcache, cmemcache)
MIB = 1024 * 1024


# -- comparing outcomes ------------------------------------------------------------------


@dataclass(frozen=True)
class Raised:
    """The outcome of a call that raised: compared by exception class name
    (the nested key errors are different class objects in the two modules)."""

    name: str


def outcome(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the exception is the outcome
        return Raised(type(e).__name__)


def shape(x):
    """The types inside a return value, so that True/1 and False/0 differ."""
    if isinstance(x, dict):
        return ("dict", sorted((repr(k), type(k).__name__, shape(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [shape(v) for v in x])
    return type(x).__name__


def assert_same(expected, actual, what=""):
    assert actual == expected, what
    assert shape(actual) == shape(expected), f"{what}: same values, different types"


class Recorder:
    """Runs one labelled step of a scenario and keeps its outcome."""

    def __init__(self):
        self.steps: list[tuple[str, object]] = []

    def __call__(self, label, fn, *args, **kwargs):
        value = outcome(fn, *args, **kwargs)
        self.steps.append((label, value))
        return value


def assert_same_steps(reference: Recorder, ours: Recorder):
    assert [label for label, _ in ours.steps] == [label for label, _ in reference.steps]
    for (label, expected), (_, actual) in zip(reference.steps, ours.steps):
        assert_same(expected, actual, f"step {label!r}: python-memcached {expected!r}, cmemcache {actual!r}")


def run_both(server: MemcachedServer, script, **client_kwargs):
    """Run ``script(client, record, server)`` once per module on a flushed
    server; returns the two recorders (python-memcached first)."""
    recorders = []
    for mod in MODULES:
        server.flush()
        client = mod.Client([server.address], **client_kwargs)
        record = Recorder()
        try:
            script(client, record, server)
        finally:
            client.disconnect_all()
        recorders.append(record)
    return recorders


def dead_address() -> str:
    """A loopback address where nothing listens."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def make_client():
    """``make(module, servers, **kwargs)``; every client is disconnected after the test."""
    made = []

    def make(mod, servers, **kwargs):
        client = mod.Client(servers, **kwargs)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            client.disconnect_all()


class UserValue:
    """A module-level class, so that pickles of it load anywhere."""

    def __init__(self, a):
        self.a = a

    def __eq__(self, other):
        return type(other) is UserValue and other.a == self.a

    def __hash__(self):
        return hash(self.a)


# -- differential scenarios --------------------------------------------------------------


def scenario_store(c, r, server):
    r("set str", c.set, "k", "v")
    r("get", c.get, "k")
    r("add existing", c.add, "k", "x")
    r("add new", c.add, "k2", b"bytes")
    r("get k2", c.get, "k2")
    r("replace existing", c.replace, "k", 5)
    r("get int", c.get, "k")
    r("replace missing", c.replace, "nope", 1)
    r("append missing", c.append, "nope", "x")
    r("prepend missing", c.prepend, "nope", "x")
    r("get nope", c.get, "nope")
    r("set text", c.set, "t", "mid")
    r("append", c.append, "t", "-end")
    r("prepend", c.prepend, "t", "start-")
    r("get t", c.get, "t")
    r("append noreply", c.append, "t", "!", noreply=True)
    r("prepend noreply", c.prepend, "t", "¡", noreply=True)
    r("get t again", c.get, "t")
    r("set noreply", c.set, "n", [1, 2], noreply=True)
    r("add noreply existing", c.add, "n", 0, noreply=True)
    r("get n", c.get, "n")
    r("replace noreply", c.replace, "n", {"a": 1}, noreply=True)
    r("get n replaced", c.get, "n")
    r("add noreply new", c.add, "n2", 7, noreply=True)
    r("get n2", c.get, "n2")
    r("set time", c.set, "e", "v", time=3600)
    r("get e", c.get, "e")
    r("set timedelta", c.set, "td", "v", time=timedelta(hours=1))
    r("get td", c.get, "td")
    r("set expired", c.set, "x", "v", time=-1)
    r("get expired", c.get, "x")
    r("add time", c.add, "at", 1, time=3600)
    r("replace time", c.replace, "at", 2, time=3600)
    r("get at", c.get, "at")
    r("get default miss", c.get, "missing", "dflt")
    r("get default kw miss", c.get, "missing", default=0)
    r("get default hit", c.get, "k", default="dflt")
    r("set compressed", c.set, "z", "a" * 5000, min_compress_len=100)
    r("get compressed", c.get, "z")
    r("set not worth compressing", c.set, "zz", "ab", min_compress_len=1)
    r("get zz", c.get, "zz")
    values = {
        "none": None,
        "true": True,
        "false": False,
        "float": 1.5,
        "tuple": (1, 2),
        "set": {1, 2},
        "ebytes": b"",
        "estr": "",
        "big": 2**100,
        "neg": -3,
        "dict": {"a": [1, {"b": (2,)}]},
        "user": UserValue(3),
        "bytearray": bytearray(b"ba"),
    }
    for name, value in values.items():
        r(f"set {name}", c.set, name, value)
        r(f"get {name}", c.get, name)
    # the bytes and flags on the server are part of the contract
    for key in ["k", "k2", "t", "n", "n2", "td", "at", "z", "zz", *values]:
        r(f"raw {key}", server.raw_get, key.encode())


def scenario_cas_plain(c, r, server):
    # Without cache_cas python-memcached's cas() is a plain set().
    r("set", c.set, "k", "v")
    r("gets", c.gets, "k")
    r("cas after gets", c.cas, "k", "w")
    r("get", c.get, "k")
    r("cas missing", c.cas, "new", "v")
    r("get new", c.get, "new")
    r("cas noreply", c.cas, "k", "n", noreply=True)
    r("get k", c.get, "k")
    r("gets missing", c.gets, "missing")
    r("cas_ids", lambda: dict(c.cas_ids))


def scenario_cas_cached(c, r, server):
    r("set", c.set, "k", "v")
    r("gets", c.gets, "k")
    r("cas_ids keys", lambda: sorted(c.cas_ids))
    r("cas ids are ints", lambda: [type(v).__name__ for v in c.cas_ids.values()])
    r("cas with fresh id", c.cas, "k", "w")
    r("get", c.get, "k")
    r("cas with stale id", c.cas, "k", "x")
    r("get unchanged", c.get, "k")
    r("gets again", c.gets, "k")
    server.raw_set(b"k", b"other", 0)
    r("cas after a change by another client", c.cas, "k", "y")
    r("get other", c.get, "k")
    r("gets 3", c.gets, "k")
    r("delete", c.delete, "k")
    r("cas after delete", c.cas, "k", "z")
    r("get deleted", c.get, "k")
    r("reset_cas", c.reset_cas)
    r("cas_ids empty", lambda: dict(c.cas_ids))
    r("cas without id is a set", c.cas, "k", "plain")
    r("get plain", c.get, "k")
    r("gets 4", c.gets, "k")
    r("cas noreply", c.cas, "k", "nr", noreply=True)
    r("get nr", c.get, "k")
    r("gets missing", c.gets, "missing")
    r("cas_ids keys at end", lambda: sorted(c.cas_ids))


def scenario_multi(c, r, server):
    r("set_multi", c.set_multi, {"a": 1, "b": "two", b"c": b"3", "d": [4]})
    r("get_multi", c.get_multi, ["a", "b", b"c", "d", "missing"])
    r("set_multi int keys prefix", c.set_multi, {1: "one", 2: "two"}, key_prefix="num_")
    r("get_multi int keys prefix", c.get_multi, [1, 2, 3], key_prefix="num_")
    r("get prefixed", c.get, "num_1")
    r("get_multi str keys prefix", c.get_multi, ["1", "2"], key_prefix="num_")
    r("get_multi bytes prefix", c.get_multi, [b"1"], key_prefix=b"num_")
    r("get_multi int keys", c.get_multi, [1, 2])
    r("set_multi int keys", c.set_multi, {10: 10, 11: "eleven"})
    r("get_multi int keys no prefix", c.get_multi, [10, 11, 12])
    r("get str of int key", c.get, "10")
    r("set_multi tuple keys", c.set_multi, {(7, "t1"): "x", (7, "t2"): "y"})
    r("get_multi tuple keys", c.get_multi, [(7, "t1"), (7, "t2"), (7, "t3")])
    r("get tuple key", c.get, (7, "t1"))
    r("get plain of tuple key", c.get, "t1")
    r("set_multi tuple keys prefix", c.set_multi, {(3, "u"): 1}, key_prefix="p_")
    r("get_multi tuple keys prefix", c.get_multi, [(3, "u")], key_prefix="p_")
    r("get p_u", c.get, "p_u")
    r("set_multi time", c.set_multi, {"ta": 1, "tb": 2}, time=3600)
    r("get_multi time", c.get_multi, ["ta", "tb"])
    r("set_multi expired", c.set_multi, {"xa": 1, "xb": 2}, time=-1)
    r("get_multi expired", c.get_multi, ["xa", "xb"])
    r("set_multi noreply", c.set_multi, {"na": "1", "nb": 2.5}, noreply=True)
    r("get_multi noreply", c.get_multi, ["na", "nb"])
    r("set_multi empty", c.set_multi, {})
    r("get_multi empty", c.get_multi, [])
    r("set_multi compressed", c.set_multi, {"big": "q" * 4000}, min_compress_len=100)
    r("get_multi compressed", c.get_multi, ["big"])
    r("raw big", server.raw_get, b"big")
    r("set_multi unicode", c.set_multi, {"ключ": "значение", "été": "été"})
    r("get_multi unicode", c.get_multi, ["ключ", "été"])
    r("get_multi duplicate keys", c.get_multi, ["a", "a", "b"])


def scenario_delete(c, r, server):
    r("set", c.set, "k", 1)
    r("delete", c.delete, "k")
    r("delete missing", c.delete, "k")
    r("set again", c.set, "k", 1)
    r("delete noreply", c.delete, "k", noreply=True)
    r("get", c.get, "k")
    r("delete noreply missing", c.delete, "k", noreply=True)
    r("set_multi", c.set_multi, {"a": 1, "b": 2, "c": 3})
    r("delete_multi", c.delete_multi, ["a", "b", "nope"])
    r("get_multi", c.get_multi, ["a", "b", "c"])
    r("delete_multi all missing", c.delete_multi, ["a", "b"])
    r("set_multi prefix", c.set_multi, {"a": 1, 5: 2}, key_prefix="p_")
    r("delete_multi prefix", c.delete_multi, ["a", 5], key_prefix="p_")
    r("get_multi prefix", c.get_multi, ["a", 5], key_prefix="p_")
    r("set_multi again", c.set_multi, {"x": 1, "y": 2})
    r("delete_multi time=0", c.delete_multi, ["x"], time=0)
    r("delete_multi noreply", c.delete_multi, ["y"], noreply=True)
    r("get_multi after", c.get_multi, ["x", "y"])
    r("delete_multi empty", c.delete_multi, [])
    r("set tuple key", c.set, (9, "tk"), "v")
    r("delete tuple key", c.delete, (9, "tk"))
    r("get tuple key", c.get, (9, "tk"))
    r("set_multi tuple", c.set_multi, {(9, "t1"): 1, (9, "t2"): 2})
    r("delete_multi tuple", c.delete_multi, [(9, "t1"), (9, "t2")])
    r("get_multi tuple", c.get_multi, [(9, "t1"), (9, "t2")])


def scenario_incr_decr(c, r, server):
    r("set int", c.set, "n", 10)
    r("incr", c.incr, "n")
    r("incr 5", c.incr, "n", 5)
    r("incr delta kw", c.incr, "n", delta=2)
    r("decr", c.decr, "n")
    r("decr below zero", c.decr, "n", 100)
    r("get", c.get, "n")
    r("incr missing", c.incr, "missing")
    r("decr missing", c.decr, "missing")
    r("incr noreply", c.incr, "n", noreply=True)
    r("decr noreply", c.decr, "n", 0, noreply=True)
    r("get after noreply", c.get, "n")
    r("set numeric str", c.set, "s", "41")
    r("incr str", c.incr, "s")
    r("get str", c.get, "s")
    r("set numeric bytes", c.set, "b", b"7")
    r("decr bytes", c.decr, "b", 2)
    r("get bytes", c.get, "b")
    r("set max", c.set, "w", 2**64 - 1)
    r("incr wraps", c.incr, "w")
    r("get wrapped", c.get, "w")
    r("incr big delta", c.incr, "w", 2**63)
    r("set text", c.set, "t", "abc")
    r("incr non-numeric", c.incr, "t")
    r("decr non-numeric", c.decr, "t")
    r("get text", c.get, "t")
    r("set pickled", c.set, "p", [1])
    r("incr pickled", c.incr, "p")
    r("set tuple key", c.set, (4, "tn"), 1)
    r("incr tuple key", c.incr, (4, "tn"), 3)
    r("get tuple key", c.get, (4, "tn"))
    r("get after errors", c.get, "n")


def scenario_touch(c, r, server):
    r("touch missing", c.touch, "k")
    r("set", c.set, "k", "v")
    r("touch", c.touch, "k", 3600)
    r("touch default time", c.touch, "k")
    r("touch noreply", c.touch, "k", 3600, noreply=True)
    r("get", c.get, "k")
    r("touch expire", c.touch, "k", -1)
    r("get expired", c.get, "k")
    r("touch noreply missing", c.touch, "k", 10, noreply=True)
    r("touch tuple key", c.touch, (1, "k"))


def scenario_flush_all(c, r, server):
    r("set_multi", c.set_multi, {"a": 1, "b": 2})
    r("flush_all", c.flush_all)
    r("get_multi", c.get_multi, ["a", "b"])
    r("set after flush", c.set, "a", 3)
    r("get after flush", c.get, "a")


def scenario_unicode(c, r, server):
    r("set str key", c.set, "ключ", "значение")
    r("get str key", c.get, "ключ")
    r("get same key as bytes", c.get, "ключ".encode())
    r("set bytes key", c.set, "été".encode(), 1)
    r("get bytes key as str", c.get, "été")
    r("get_multi", c.get_multi, ["ключ", "été"])
    r("get_multi bytes", c.get_multi, ["ключ".encode(), "été".encode()])
    r("delete str key", c.delete, "ключ")
    r("raw", server.raw_get, "été".encode())


def scenario_large_values(c, r, server):
    huge = b"x" * (MIB + 1)
    r("set huge", c.set, "h", huge)
    r("get huge", c.get, "h")
    r("raw huge", server.raw_get, b"h")
    r("set small", c.set, "h", b"small")
    r("add huge", c.add, "h2", huge)
    r("replace huge", c.replace, "h", huge)
    r("append huge", c.append, "h", huge)
    r("prepend huge", c.prepend, "h", huge)
    r("cas huge", c.cas, "h", huge)
    r("set huge noreply", c.set, "h", huge, noreply=True)
    r("get unchanged", c.get, "h")
    r("raw h2", server.raw_get, b"h2")
    r("set huge str", c.set, "s", "é" * (MIB // 2 + 1))
    r("set compressible huge", c.set, "c", "y" * (2 * MIB), min_compress_len=1000)
    r("get compressible huge", lambda: len(c.get("c")))
    r("raw compressed flags", lambda: server.raw_get(b"c")[1])


SCENARIOS = {
    "store": (scenario_store, {}),
    "store_cache_cas": (scenario_store, {"cache_cas": True}),
    "cas_plain": (scenario_cas_plain, {}),
    "cas_cached": (scenario_cas_cached, {"cache_cas": True}),
    "multi": (scenario_multi, {}),
    "multi_cache_cas": (scenario_multi, {"cache_cas": True}),
    "delete": (scenario_delete, {}),
    "incr_decr": (scenario_incr_decr, {}),
    "touch": (scenario_touch, {}),
    "flush_all": (scenario_flush_all, {}),
    "unicode": (scenario_unicode, {}),
    "large_values": (scenario_large_values, {}),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_same_sequence_same_results(server, name):
    script, kwargs = SCENARIOS[name]
    reference, ours = run_both(server, script, **kwargs)
    assert_same_steps(reference, ours)


def scenario_small_value_limit(c, r, server):
    """With server_max_value_length=100."""
    r("set 101 bytes", c.set, "k", b"x" * 101)
    r("raw", server.raw_get, b"k")
    r("set 100 bytes", c.set, "k", b"x" * 100)
    r("set long str compressed", c.set, "c", "x" * 500, min_compress_len=10)
    r("get", c.get, "c")
    r("set long list", c.set, "l", list(range(100)))
    r("raw l", server.raw_get, b"l")
    r("add", c.add, "a", "é" * 51)
    r("raw a", server.raw_get, b"a")


def test_small_value_limit(server):
    """server_max_value_length applies after encoding and compression: both
    return 0 and send nothing."""
    reference, ours = run_both(server, scenario_small_value_limit, server_max_value_length=100)
    assert_same_steps(reference, ours)


def test_set_multi_value_over_limit_is_listed_and_not_stored(server, make_client):
    # python-memcached is not run here: for a value over the limit it sends
    # nothing but still waits for a reply to it (until socket_timeout).
    c = make_client(cmemcache, [server.address])
    assert c.set_multi({"big": b"x" * (MIB + 1), "ok": 1}) == ["big"]
    assert server.raw_get(b"big") is None
    assert c.get_multi(["big", "ok"]) == {"ok": 1}


def test_value_refused_by_the_server(server):
    """Exactly 1 MiB passes the client's limit, memcached (-I 1m) refuses it
    with SERVER_ERROR: python-memcached returns False."""

    def script(c, r, server):
        r("set 1 MiB", c.set, "k", b"x" * MIB)
        r("get", c.get, "k")
        r("set small after", c.set, "k", b"ok")
        r("get small", c.get, "k")

    reference, ours = run_both(server, script)
    assert_same_steps(reference, ours)


def test_stats_attribute_counts_calls(server):
    """``client.stats`` (python-memcached's per-command call counter)."""

    def script(c, r, server):
        c.set("a", 1)
        c.get("a")
        c.get("b")
        c.gets("a")
        c.cas("a", 2)
        c.add("a", 1)
        c.replace("a", 1)
        c.append("a", "1")
        c.prepend("a", "1")
        c.get_multi(["a"])
        c.set_multi({"a": 1})
        c.delete("a")
        c.delete_multi(["a"])
        c.incr("a")
        c.decr("a")
        c.touch("a")
        r("stats", lambda: dict(c.stats))

    for kwargs in ({}, {"cache_cas": True}):
        reference, ours = run_both(server, script, **kwargs)
        assert_same_steps(reference, ours)


# -- keys --------------------------------------------------------------------------------

BAD_KEYS = {
    "None": None,
    "empty str": "",
    "empty bytes": b"",
    "int": 42,
    "float": 1.5,
    "too long str": "a" * 251,
    "too long bytes": b"a" * 251,
    "too long utf8": "é" * 126,
    "space bytes": b"a b",
    "space str": "a b",
    "nul": b"a\x00",
    "tab": "tab\there",
    "crlf": b"k\r\nflush_all",
    "lone cr": b"k\rx",
    "del": b"k\x7f",
    "control": b"\x01",
    "tuple with bad key": (1, "a b"),
    "tuple with None": (1, None),
}


def keyed_calls(key):
    return {
        "get": lambda c: c.get(key),
        "gets": lambda c: c.gets(key),
        "set": lambda c: c.set(key, 1),
        "set noreply": lambda c: c.set(key, 1, noreply=True),
        "add": lambda c: c.add(key, 1),
        "replace": lambda c: c.replace(key, 1),
        "append": lambda c: c.append(key, "1"),
        "prepend": lambda c: c.prepend(key, "1"),
        "cas": lambda c: c.cas(key, 1),
        "delete": lambda c: c.delete(key),
        "incr": lambda c: c.incr(key),
        "decr": lambda c: c.decr(key),
        "touch": lambda c: c.touch(key, 10),
        "get_multi": lambda c: c.get_multi([key]),
        "set_multi": lambda c: c.set_multi({key: 1}),
        "delete_multi": lambda c: c.delete_multi([key]),
        "check_key": lambda c: c.check_key(key),
    }


@pytest.mark.parametrize("name", list(BAD_KEYS))
def test_bad_keys_raise_the_same_errors(server, make_client, name):
    """Every keyed method raises the same MemcachedKeyError subclass (or
    accepts the key) as python-memcached.  Note python-memcached 1.62 on
    Python 3 raises MemcachedKeyCharacterError for an empty key: its "Key is
    empty" branch compares the already encoded key with a str."""
    key = BAD_KEYS[name]
    results = []
    for mod in MODULES:
        server.flush()
        c = make_client(mod, [server.address])
        results.append({call: outcome(fn, c) for call, fn in keyed_calls(key).items()})
    assert_same(results[0], results[1], f"key {key!r}")


@pytest.mark.parametrize(
    "key, extra",
    [
        (None, 0),
        ("", 0),
        (b"", 0),
        (b"", 3),
        (42, 0),
        (b"a" * 250, 0),
        (b"a" * 251, 0),
        (b"a" * 245, 5),
        (b"a" * 246, 5),
        (b"a b", 0),
        (b"\x00", 0),
        (b"\x7f", 0),
        (b"\x80\xff", 0),
        ("str", 0),
        ((1, b"abc"), 0),
        ((1, None), 0),
        ((1, b"a b"), 0),
    ],
    ids=lambda v: (repr(v)[:12] + f"..len{len(v)}") if isinstance(v, bytes) and len(v) > 8 else repr(v),
)
def test_check_key(make_client, key, extra):
    """check_key() itself, with and without key_extra_len (a prefix)."""
    pm = make_client(memcache, [dead_address()])
    cm = make_client(cmemcache, [dead_address()])
    assert_same(outcome(pm.check_key, key, extra), outcome(cm.check_key, key, extra), repr(key))


def test_check_key_limits_follow_the_client_settings(server, make_client):
    results = []
    for mod in MODULES:
        c = make_client(mod, [server.address], server_max_key_length=10)
        results.append([
            outcome(c.check_key, b"a" * 10),
            outcome(c.check_key, b"a" * 11),
            outcome(c.get, "a" * 10),
            outcome(c.get, "a" * 11),
            outcome(c.set, "a" * 11, 1),
            outcome(c.get_multi, ["a" * 8], key_prefix="pre"),
            outcome(c.set_multi, {"a" * 8: 1}, key_prefix="pre"),
            outcome(c.delete_multi, ["a" * 8], key_prefix="pre"),
            outcome(c.get_multi, ["a" * 7], key_prefix="pre"),
        ])
    assert_same(results[0], results[1])


def test_check_keys_false_skips_python_checks(server, make_client):
    results = []
    for mod in MODULES:
        server.flush()
        c = make_client(mod, [server.address], check_keys=False)
        results.append([outcome(c.set, "ok", 1), outcome(c.get, "ok"), outcome(c.get, "été"),
                        outcome(c.get_multi, ["ok", 5])])
    assert_same(results[0], results[1])


def test_key_with_trailing_newline_is_rejected(server, make_client):
    # python-memcached's check uses re.match(b"...+$"), and "$" also matches
    # before a final newline, so b"abc\n" passes its check and goes on the
    # wire (corrupting the request).  cmemcache rejects it like any other
    # control character.
    pm = make_client(memcache, [server.address])
    assert pm.check_key(b"abc\n") is None
    cm = make_client(cmemcache, [server.address])
    before = _command_counts(server)
    for key in (b"abc\n", "abc\n", (1, b"abc\n")):
        for call, fn in keyed_calls(key).items():
            if call == "check_key" and isinstance(key, str):
                continue  # check_key() takes encoded keys; a str is a type error in both
            with pytest.raises(cmemcache.Client.MemcachedKeyCharacterError):
                fn(cm)
    assert _command_counts(server) == before  # nothing reached the server
    assert cm.set("after", 1) is True and cm.get("after") == 1


def _command_counts(server):
    stats = server.stats()
    return {k: v for k, v in stats.items() if k.startswith("cmd_") or k.endswith(("_hits", "_misses"))}


def test_check_keys_false_still_never_sends_a_bad_key(server, make_client):
    # With check_keys=False python-memcached sends whatever it is given (a
    # key with a space becomes two keys on the wire).  cmemcache's engine
    # validates every key before sending, so it still raises.
    cm = make_client(cmemcache, [server.address], check_keys=False)
    with pytest.raises(cmemcache.Client.MemcachedKeyError):
        cm.set(b"a b", 1)
    with pytest.raises(cmemcache.Client.MemcachedKeyError):
        cm.get("k\r\nflush_all")
    assert cm.set("fine", 1) is True and cm.get("fine") == 1


def scenario_key_encoder(c, r, server):
    """With a key_encoder that lowers the keys."""
    r("set", c.set, "KeY", "v")
    r("get", c.get, "KEY")
    r("raw", server.raw_get, b"key")
    r("set_multi", c.set_multi, {"A": 1, "B": 2})
    r("get_multi", c.get_multi, ["A", "b"])
    r("delete", c.delete, "A")
    r("incr", c.incr, "B")
    r("touch", c.touch, "b", 100)
    r("gets", c.gets, "B")


def test_key_encoder(server, make_client):
    def lower(key):
        return key.lower()

    reference, ours = run_both(server, scenario_key_encoder, key_encoder=lower)
    assert_same_steps(reference, ours)


# -- server down -------------------------------------------------------------------------

DOWN_CALLS = {
    "get": lambda c: c.get("k"),
    "get default": lambda c: c.get("k", "dflt"),
    "gets": lambda c: c.gets("k"),
    "get_multi": lambda c: c.get_multi(["a", "b"]),
    "get_multi prefix": lambda c: c.get_multi(["a", 1], key_prefix="p_"),
    "set": lambda c: c.set("k", 1),
    "set noreply": lambda c: c.set("k", 1, noreply=True),
    "add": lambda c: c.add("k", 1),
    "replace": lambda c: c.replace("k", 1),
    "append": lambda c: c.append("k", "1"),
    "prepend": lambda c: c.prepend("k", "1"),
    "cas": lambda c: c.cas("k", 1),
    "set_multi": lambda c: c.set_multi({"a": 1, "b": 2}),
    "set_multi prefix": lambda c: c.set_multi({"a": 1, 7: 2}, key_prefix="p_"),
    "delete": lambda c: c.delete("k"),
    "delete noreply": lambda c: c.delete("k", noreply=True),
    "delete_multi": lambda c: c.delete_multi(["a", "b"]),
    "incr": lambda c: c.incr("k"),
    "decr": lambda c: c.decr("k", 2),
    "incr noreply": lambda c: c.incr("k", noreply=True),
    "touch": lambda c: c.touch("k", 10),
    "flush_all": lambda c: c.flush_all(),
    "get_stats": lambda c: c.get_stats(),
    "get_slab_stats": lambda c: c.get_slab_stats(),
    "get_slabs": lambda c: c.get_slabs(),
}


@pytest.mark.parametrize("call", list(DOWN_CALLS))
def test_server_down_same_return_value(make_client, call):
    """Nothing listens: python-memcached returns None / 0 / {} / [] / the
    keys of set_multi, and 1 from delete_multi (it skips keys that have no
    server and reports only a failed send)."""
    address = dead_address()
    fn = DOWN_CALLS[call]
    pm = make_client(memcache, [address])
    cm = make_client(cmemcache, [address])
    expected = outcome(fn, pm)
    assert not isinstance(expected, Raised)
    assert_same(expected, outcome(fn, cm), call)
    # and the same again, now that the server is held down
    assert_same(outcome(fn, pm), outcome(fn, cm), f"{call}, second call")


@pytest.mark.parametrize("call", list(DOWN_CALLS))
def test_server_down_is_logged_and_counted(make_client, caplog, call):
    caplog.set_level(logging.DEBUG, logger="cmemcache")
    cm = make_client(cmemcache, [dead_address()])
    DOWN_CALLS[call](cm)
    assert sum(cm.error_counts.values()) >= 1
    assert cm.error_counts["ConnectionError"] >= 1
    warnings = [r for r in caplog.records if r.name == "cmemcache" and r.levelno >= logging.WARNING]
    assert warnings, [(r.levelname, r.getMessage()) for r in caplog.records]


def test_server_down_then_forget_dead_hosts(make_client):
    """A server that was down is held down for dead_retry seconds by both
    clients; forget_dead_hosts() makes both use it again at once."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    pm = make_client(memcache, [address])
    cm = make_client(cmemcache, [address])
    assert pm.get("k") is None and cm.get("k") is None
    assert pm.set("k", 1) == 0 and cm.set("k", 1) == 0
    assert bool(pm.servers[0].deaduntil) and bool(cm.servers[0].deaduntil)
    server = MemcachedServer(port=port)
    try:
        server.raw_set(b"k", b"7", 2)
        # still held down (dead_retry is 30 s)
        assert_same(pm.get("k"), cm.get("k"))
        assert cm.get("k") is None
        assert_same(pm.set("k2", 1), cm.set("k2", 1))
        for c in (pm, cm):
            assert c.forget_dead_hosts() is None
        assert not pm.servers[0].deaduntil and not cm.servers[0].deaduntil
        assert_same(pm.get("k"), cm.get("k"))
        assert cm.get("k") == 7
        assert_same(pm.set("k2", 1), cm.set("k2", 1))
        assert cm.set("k2", 2) is True
    finally:
        server.stop()


def test_timeout_returns_neutral_values(memcached_factory, make_client, caplog):
    """A server that accepts connections but never answers (SIGSTOP)."""
    caplog.set_level(logging.DEBUG, logger="cmemcache")
    server = memcached_factory()
    server.pause()
    results = []
    for mod in MODULES:
        c = make_client(mod, [server.address], socket_timeout=0.3)
        results.append([c.get("k"), c.set("k", 1), c.get_multi(["a"]), c.delete("k"), c.incr("k")])
    assert_same(results[0], results[1])
    assert results[1] == [None, 0, {}, 0, None]
    assert c.error_counts["TimeoutError"] >= 1
    assert any(r.levelno >= logging.WARNING and "TimeoutError" in r.getMessage() for r in caplog.records)


def test_strict_raises_connection_error(make_client):
    # python-memcached has no way to see a failure; strict=True is
    # cmemcache's opt-in to exceptions instead of neutral values.
    cm = make_client(cmemcache, [dead_address()], strict=True)
    for fn in (lambda: cm.get("k"), lambda: cm.set("k", 1), lambda: cm.get_multi(["a"]),
               lambda: cm.delete("k"), lambda: cm.incr("k"), lambda: cm.set_multi({"a": 1})):
        with pytest.raises(cmemcache.ConnectionError):
            fn()
    assert issubclass(cmemcache.ConnectionError, cmemcache.Error)
    assert issubclass(cmemcache.ConnectionError, ConnectionError)


def test_strict_raises_timeout_error(memcached_factory, make_client):
    server = memcached_factory()
    cm = make_client(cmemcache, [server.address], strict=True, socket_timeout=0.3)
    assert cm.set("k", "v") is True
    server.pause()
    with pytest.raises(cmemcache.TimeoutError):
        cm.get("k")
    assert issubclass(cmemcache.TimeoutError, TimeoutError)
    server.resume()
    cm.forget_dead_hosts()
    assert cm.get("k") == "v"


def test_strict_still_maps_key_errors_and_misses(server, make_client):
    cm = make_client(cmemcache, [server.address], strict=True)
    assert cm.get("missing") is None
    assert cm.get("missing", 3) == 3
    assert cm.add("k", 1) is True
    assert cm.add("k", 1) is False
    with pytest.raises(cmemcache.Client.MemcachedKeyCharacterError):
        cm.get("a b")


# -- documented differences --------------------------------------------------------------


def test_set_multi_lists_keys_of_a_dead_server(memcached_factory, make_client):
    # python-memcached drops from set_multi's result the keys whose server
    # walk found no live server while others were stored; cmemcache lists
    # every key that was not stored.
    live = memcached_factory()
    servers = [(live.address, 1), (dead_address(), 50)]
    keys = [f"key{i}" for i in range(60)]
    mapping = {k: k for k in keys}

    cm = make_client(cmemcache, servers)
    not_stored = cm.set_multi(mapping)
    stored = [k for k in keys if live.raw_get(k.encode()) is not None]
    assert sorted(not_stored) == sorted(set(keys) - set(stored))
    assert not_stored and stored  # the server list makes both cases happen

    live.flush()
    pm = make_client(memcache, servers)
    pm_not_stored = pm.set_multi(mapping)
    pm_stored = [k for k in keys if live.raw_get(k.encode()) is not None]
    assert sorted(pm_stored) == sorted(stored)
    # the keys python-memcached lost without a word
    assert set(keys) - set(pm_stored) - set(pm_not_stored)


def test_get_slabs_works(memcached_factory, make_client):
    server = memcached_factory()  # no flushed items of earlier tests in its counts
    # python-memcached's get_slabs() splits bytes with a str separator on
    # Python 3 (TypeError); cmemcache parses "stats items" per slab.
    pm = make_client(memcache, [server.address])
    cm = make_client(cmemcache, [server.address])
    assert cm.set_multi({f"k{i}": "x" * 10 for i in range(5)}) == []
    assert cm.set("large", "y" * 5000) is True
    with pytest.raises(TypeError):
        pm.get_slabs()

    slabs = cm.get_slabs()
    raw = server.stats(b"items")
    assert [name for name, _ in slabs] == [f"127.0.0.1:{server.port} (1)"]
    per_slab = slabs[0][1]
    assert len(per_slab) >= 2  # the small values and the large one
    expected_ids = {name.split(":")[1] for name in raw}
    assert set(per_slab) == expected_ids
    for slab_id, fields in per_slab.items():
        assert isinstance(fields, dict) and fields
        for field, value in fields.items():
            int(value)  # a real number
            assert f"items:{slab_id}:{field}" in raw
        for field in ("number", "mem_requested", "evicted", "outofmemory"):
            assert fields[field] == raw[f"items:{slab_id}:{field}"]
    assert sum(int(f["number"]) for f in per_slab.values()) == 6


def test_flush_all_with_delay(memcached_factory, make_client):
    # python-memcached's flush_all() takes no argument; cmemcache accepts
    # memcached's delay.
    server = memcached_factory()
    pm = make_client(memcache, [server.address])
    with pytest.raises(TypeError):
        pm.flush_all(3600)
    cm = make_client(cmemcache, [server.address])
    assert cm.set("k", "v") is True
    assert cm.flush_all(3600) is None
    assert cm.get("k") == "v"  # not invalidated yet
    assert cm.flush_all() is None
    assert cm.get("k") is None


def test_explicit_cas_token(server, make_client):
    # python-memcached hides cas ids (cache_cas); cmemcache also hands the
    # token out: gets(key, with_token=True) and cas(..., token=...).
    cm = make_client(cmemcache, [server.address])
    assert cm.gets("k", with_token=True) == (None, None)
    assert cm.gets("k", "dflt", with_token=True) == ("dflt", None)
    assert cm.set("k", {"v": 1}) is True
    value, token = cm.gets("k", with_token=True)
    assert value == {"v": 1} and isinstance(token, int)
    assert cm.cas("k", {"v": 2}, token=token) is True
    assert cm.cas("k", {"v": 3}, token=token) is False  # changed since
    assert cm.get("k") == {"v": 2}
    value, token = cm.gets("k", with_token=True)
    server.raw_set(b"k", b"other", 0)
    assert cm.cas("k", "mine", token=token) is False
    assert cm.get("k") == b"other"
    value, token = cm.gets("k", with_token=True)
    assert cm.delete("k") == 1
    assert cm.cas("k", "gone", token=token) is False
    assert cm.get("k") is None
    # no cache_cas: nothing is remembered
    assert cm.cas_ids == {}


def test_unknown_flags_and_corrupt_pickle_read_as_a_miss(server, make_client, caplog):
    # python-memcached raises ValueError('Unknown flags on get: 20') for
    # flags it does not know (and leaves its connection out of step), and
    # returns None (not default) for a pickle that does not load.  cmemcache
    # reads both as a miss: ``default``, logged and counted.
    caplog.set_level(logging.DEBUG, logger="cmemcache")
    server.raw_set(b"f32", b"abc", 32)
    server.raw_set(b"bad", b"not a pickle\x00", 1)

    pm = make_client(memcache, [server.address])
    with pytest.raises(ValueError):
        pm.get("f32")
    pm.disconnect_all()
    assert pm.get("bad") is None
    assert pm.get("bad", "dflt") is None

    cm = make_client(cmemcache, [server.address])
    assert cm.get("f32") is None
    assert cm.get("f32", "dflt") == "dflt"
    assert cm.get("bad", "dflt") == "dflt"
    assert cm.get("bad") is None
    assert cm.get_multi(["f32", "bad"]) == {}
    assert cm.error_counts["Undecodable"] == 6  # 4 gets and 2 keys of the get_multi
    assert sum(1 for r in caplog.records if r.levelno >= logging.WARNING) >= 6
    assert cm.set("k", 1) is True and cm.get("k") == 1


# -- stats, servers, connections ---------------------------------------------------------


def test_get_stats(server, make_client):
    pm = make_client(memcache, [server.address])
    cm = make_client(cmemcache, [server.address])
    assert cm.set("k", 1) is True
    p, c = pm.get_stats(), cm.get_stats()
    assert [name for name, _ in c] == [name for name, _ in p] == [f"127.0.0.1:{server.port} (1)"]
    assert set(c[0][1]) == set(p[0][1])
    for stat in ("pid", "version", "limit_maxbytes", "curr_items", "threads"):
        assert c[0][1][stat] == p[0][1][stat]
        assert isinstance(c[0][1][stat], str)
    for args in ("settings", "slabs", "items"):
        p, c = pm.get_stats(args), cm.get_stats(args)
        assert [n for n, _ in c] == [n for n, _ in p]
        assert set(c[0][1]) == set(p[0][1])
        assert all(isinstance(v, str) for v in c[0][1].values())


def test_get_stats_weight_in_name(memcached_factory, make_client):
    a, b = memcached_factory(), memcached_factory()
    servers = [(a.address, 2), b.address]
    pm = make_client(memcache, servers)
    cm = make_client(cmemcache, servers)
    names = [name for name, _ in cm.get_stats()]
    assert names == [name for name, _ in pm.get_stats()]
    assert names == [f"127.0.0.1:{a.port} (2)", f"127.0.0.1:{b.port} (1)"]
    b.stop()
    # an unreachable server is left out (fresh clients: python-memcached
    # still lists a server whose old socket it has not found closed yet)
    pm = make_client(memcache, servers)
    cm = make_client(cmemcache, servers)
    assert_same([n for n, _ in pm.get_stats()], [n for n, _ in cm.get_stats()])
    assert [n for n, _ in cm.get_stats()] == [f"127.0.0.1:{a.port} (2)"]


def test_get_slab_stats(memcached_factory, make_client):
    server = memcached_factory()
    pm = make_client(memcache, [server.address])
    cm = make_client(cmemcache, [server.address])
    assert cm.set_multi({"a": "x", "b": "y" * 3000}) == []
    # nothing changes slab counters between the two calls
    assert_same(pm.get_slab_stats(), cm.get_slab_stats())
    data = cm.get_slab_stats()[0][1]
    assert "active_slabs" in data and "total_malloced" in data
    assert int(data["active_slabs"]) >= 2


def test_set_servers(memcached_factory, make_client):
    a, b = memcached_factory(), memcached_factory()
    results = []
    for mod in MODULES:
        a.flush()
        b.flush()
        c = make_client(mod, [a.address])
        steps = [c.set("k", "on a"), c.get("k")]
        steps.append(c.set_servers([b.address]))
        steps += [c.get("k"), c.set("k", "on b"), c.get("k")]
        steps += [a.raw_get(b"k"), b.raw_get(b"k")]
        steps += [[str(h) for h in c.servers], len(c.buckets)]
        c.set_servers([(a.address, 3), (b.address, 2)])
        steps += [[(str(h), h.weight) for h in c.servers], len(c.buckets)]
        steps += [[str(h) for h in c.buckets]]
        results.append(steps)
    assert_same(results[0], results[1])
    assert results[1][3] is None and results[1][5] == "on b"


def test_servers_attribute(make_client):
    specs = ["127.0.0.1:11311", ("127.0.0.1:11312", 3), "inet:127.0.0.1:11313", "localhost",
             "unix:/tmp/nothing.sock", "inet6:[::1]:11314"]
    pm = make_client(memcache, specs)
    cm = make_client(cmemcache, specs)
    for ph, ch in zip(pm.servers, cm.servers):
        assert (str(ch), ch.weight, ch.family, ch.address) == (str(ph), ph.weight, ph.family, ph.address)
    assert [str(h) for h in cm.buckets] == [str(h) for h in pm.buckets]


@pytest.mark.parametrize("spec", ["127.0.0.1:11211:3", "host:port", "inet:"])
def test_bad_server_strings(spec):
    for mod in MODULES:
        with pytest.raises(ValueError):
            mod.Client([spec])


def test_disconnect_all(server, make_client):
    deltas = []
    for mod in MODULES:
        c = make_client(mod, [server.address])
        assert c.set("k", 1) is True
        before = int(server.stats()["total_connections"])
        assert c.disconnect_all() is None
        assert c.get("k") == 1
        after = int(server.stats()["total_connections"])
        deltas.append(after - before)
    # one new client connection (plus the stats connection) for each
    assert deltas[0] == deltas[1] == 2


def test_reset_cas(server, make_client):
    def script(c, r, server):
        r("set", c.set, "a", 1)
        r("set b", c.set, "b", 2)
        r("gets", c.gets, "a")
        r("gets b", c.gets, "b")
        r("ids", lambda: sorted(c.cas_ids))
        r("reset", c.reset_cas)
        r("ids after", lambda: dict(c.cas_ids))

    reference, ours = run_both(server, script, cache_cas=True)
    assert_same_steps(reference, ours)


def test_debuglog(make_client, capsys):
    for mod in MODULES:
        quiet = make_client(mod, [dead_address()])
        quiet.debuglog("not shown")
        loud = make_client(mod, [dead_address()], debug=1)
        loud.debuglog("shown")
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "MemCached: shown\n" in captured.err
        assert "not shown" not in captured.err


# -- names -------------------------------------------------------------------------------


def test_exception_classes():
    names = ["MemcachedKeyError", "MemcachedKeyLengthError", "MemcachedKeyCharacterError",
             "MemcachedKeyNoneError", "MemcachedKeyTypeError", "MemcachedStringEncodingError"]
    for name in names:
        ours, theirs = getattr(cmemcache.Client, name), getattr(memcache.Client, name)
        assert [b.__name__ for b in ours.__mro__] == [b.__name__ for b in theirs.__mro__]
    C = cmemcache.Client
    for sub in (C.MemcachedKeyLengthError, C.MemcachedKeyCharacterError, C.MemcachedKeyNoneError,
                C.MemcachedKeyTypeError):
        assert issubclass(sub, C.MemcachedKeyError)
    assert not issubclass(C.MemcachedStringEncodingError, C.MemcachedKeyError)


def test_class_constants():
    for name in ("_FLAG_PICKLE", "_FLAG_INTEGER", "_FLAG_LONG", "_FLAG_COMPRESSED", "_FLAG_TEXT",
                 "_SERVER_RETRIES"):
        assert getattr(cmemcache.Client, name) == getattr(memcache.Client, name), name


def test_module_names():
    assert cmemcache.SERVER_MAX_KEY_LENGTH == memcache.SERVER_MAX_KEY_LENGTH == 250
    assert cmemcache.SERVER_MAX_VALUE_LENGTH == memcache.SERVER_MAX_VALUE_LENGTH == MIB
    assert callable(cmemcache.useOldServerHashFunction)
    assert callable(cmemcache.cmemcache_hash)
    assert cmemcache._DEAD_RETRY == memcache._DEAD_RETRY
    assert cmemcache._SOCKET_TIMEOUT == memcache._SOCKET_TIMEOUT


def test_client_attributes(make_client):
    address = dead_address()
    pm = make_client(memcache, [address])
    cm = make_client(cmemcache, [address])
    for name in ("debug", "dead_retry", "socket_timeout", "flush_on_reconnect", "cache_cas",
                 "do_check_key", "pickleProtocol", "pickler", "unpickler", "compressor",
                 "decompressor", "persistent_load", "persistent_id", "server_max_key_length",
                 "server_max_value_length", "picklerIsKeyword"):
        assert getattr(cm, name) == getattr(pm, name), name


def test_cmemcache_hash_is_python_memcached_1_60s():
    keys = [b"", b"foo", b"ob", b"71", b"\xff" * 10] + [b"key%d" % i for i in range(2000)]
    zero = 0
    for key in keys:
        h = ((binascii.crc32(key) & 0xFFFFFFFF) >> 16) & 0x7FFF
        assert cmemcache.cmemcache_hash(key) == h
        assert cmemcache.cmemcache_hash(key) == memcache.cmemcache_hash(key)
        zero += memcache.cmemcache_hash(key) == 0
    assert zero >= 2  # b"ob" and b"71" hash to 0 in python-memcached 1.60+
    assert cmemcache.cmemcache_hash(b"foo") == 3187


# -- several servers ---------------------------------------------------------------------


#: weights 1, 2, 3 -> buckets [s0, s1, s1, s2, s2, s2]
BUCKET_SERVER = [0, 1, 1, 2, 2, 2]


@pytest.fixture
def three_servers(memcached_factory):
    servers = [memcached_factory() for _ in range(3)]
    spec = [(s.address, w) for s, w in zip(servers, (1, 2, 3))]
    return servers, spec


def _where(servers, key: bytes):
    return [i for i, s in enumerate(servers) if s.raw_get(key) is not None]


def _pm_server_index(pm, servers, key):
    host, _ = pm._get_server(key)
    return [s.port for s in servers].index(host.port)


def _keys_not_hashing_to_zero(n):
    out = []
    i = 0
    while len(out) < n:
        k = f"key:{i}"
        if memcache.cmemcache_hash(k.encode()) != 0:
            out.append(k)
        i += 1
    return out


def test_keys_land_where_python_memcached_looks(three_servers, make_client):
    servers, spec = three_servers
    cm = make_client(cmemcache, spec)
    pm = make_client(memcache, spec)
    keys = _keys_not_hashing_to_zero(300) + ["ключ", "été"]
    for k in keys:
        assert cm.set(k, k) is True
    prefixed = {f"m{i}": i for i in range(100)}
    assert cm.set_multi(prefixed, key_prefix="pre:") == []
    tuple_keys = {(h, f"t{h}"): h for h in range(0, 60, 7)}
    assert cm.set_multi(tuple_keys) == []
    assert cm.set((12345, "single-tuple"), "x") is True

    for k in keys:
        kb = k.encode()
        assert _where(servers, kb) == [_pm_server_index(pm, servers, kb)], k
        assert pm.get(k) == k
    for k, v in prefixed.items():
        kb = ("pre:" + k).encode()
        assert _where(servers, kb) == [_pm_server_index(pm, servers, kb)], k
    assert pm.get_multi(list(prefixed), key_prefix="pre:") == prefixed
    for (h, k), v in tuple_keys.items():
        assert _where(servers, k.encode()) == [BUCKET_SERVER[h % 6]], (h, k)
        assert pm.get((h, k)) == v
    assert pm.get_multi(list(tuple_keys)) == tuple_keys
    assert _where(servers, b"single-tuple") == [BUCKET_SERVER[12345 % 6]]
    # and python-memcached's writes are where cmemcache reads
    for s in servers:
        s.flush()
    assert pm.set_multi({k: k.upper() for k in keys}) == []
    assert cm.get_multi(keys) == {k: k.upper() for k in keys}
    for k in keys[:50]:
        assert cm.get(k) == k.upper()
    assert cm.delete_multi(keys) == 1
    assert all(not _where(servers, k.encode()) for k in keys)


def test_keys_hashing_to_zero_land_where_python_memcached_looks(three_servers, make_client):
    """python-memcached 1.60+ maps a key whose 15-bit hash is 0 to bucket 0
    (1.59 and earlier read 0 as 1)."""
    servers, spec = three_servers
    cm = make_client(cmemcache, spec)
    pm = make_client(memcache, spec)
    for k in ("ob", "71"):
        assert memcache.cmemcache_hash(k.encode()) == 0
        assert cm.set(k, k) is True
        assert _where(servers, k.encode()) == [_pm_server_index(pm, servers, k.encode())], k
        assert pm.get(k) == k


def test_default_key_hash_matches_python_memcached_for_every_key(three_servers, make_client):
    servers, spec = three_servers
    cm = make_client(cmemcache, spec)
    pm = make_client(memcache, spec)
    keys = ["ob", "71"] + [f"k{i}" for i in range(200)]
    assert cm.set_multi({k: k for k in keys}) == []
    for k in keys:
        assert _where(servers, k.encode()) == [_pm_server_index(pm, servers, k.encode())], k
    assert pm.get_multi(keys) == {k: k for k in keys}


def test_failover_placement_matches_python_memcached(three_servers, make_client):
    """With one server down both clients walk python-memcached's rehash
    sequence to the same live server."""
    servers, spec = three_servers
    servers[1].stop()
    cm = make_client(cmemcache, spec)
    pm = make_client(memcache, spec)
    keys = _keys_not_hashing_to_zero(200)
    for k in keys:
        cm.set(k, k)
    live = [servers[0], servers[2]]
    for k in keys:
        host, _ = pm._get_server(k.encode())
        expected = [s.port for s in live].index(host.port) if host is not None else None
        found = [i for i, s in enumerate(live) if s.raw_get(k.encode()) is not None]
        assert found == ([] if expected is None else [expected]), k
        assert pm.get(k) == (k if expected is not None else None)


def test_use_old_server_hash_function(three_servers, make_client, monkeypatch):
    servers, spec = three_servers
    monkeypatch.setattr(memcache, "serverHashFunction", memcache.serverHashFunction)
    monkeypatch.setattr(cmemcache, "serverHashFunction", cmemcache.serverHashFunction)
    monkeypatch.setattr(cmemcache_client, "serverHashFunction", cmemcache_client.serverHashFunction)
    memcache.useOldServerHashFunction()
    cmemcache.useOldServerHashFunction()
    cm = make_client(cmemcache, spec)
    pm = make_client(memcache, spec)
    keys = [f"old{i}" for i in range(200)]
    assert cm.set_multi({k: k for k in keys}) == []
    for k in keys:
        kb = k.encode()
        assert _where(servers, kb) == [BUCKET_SERVER[zlib.crc32(kb) % 6]], k
        assert _where(servers, kb) == [_pm_server_index(pm, servers, kb)], k
    assert pm.get_multi(keys) == {k: k for k in keys}


def test_use_old_server_hash_function_rebinds_module_name(monkeypatch):
    """python-memcached's useOldServerHashFunction() rebinds the module's
    serverHashFunction, which code reads to find a key's server."""
    monkeypatch.setattr(memcache, "serverHashFunction", memcache.serverHashFunction)
    monkeypatch.setattr(cmemcache, "serverHashFunction", cmemcache.serverHashFunction)
    monkeypatch.setattr(cmemcache_client, "serverHashFunction", cmemcache_client.serverHashFunction)
    memcache.useOldServerHashFunction()
    cmemcache.useOldServerHashFunction()
    for key in (b"foo", b"bar", b"ob"):
        assert cmemcache.serverHashFunction(key) == memcache.serverHashFunction(key)


def test_replaced_server_hash_function_is_used(three_servers, make_client, monkeypatch):
    """python-memcached documents serverHashFunction as a replaceable module
    global: code assigns its own hash to it."""
    servers, spec = three_servers

    def everything_on_bucket_5(key):
        return 5

    monkeypatch.setattr(memcache, "serverHashFunction", everything_on_bucket_5)
    monkeypatch.setattr(cmemcache, "serverHashFunction", everything_on_bucket_5)
    cm = make_client(cmemcache, spec)
    pm = make_client(memcache, spec)
    keys = [f"r{i}" for i in range(30)]
    assert pm.set_multi({k: 1 for k in keys}) == []
    assert all(_where(servers, k.encode()) == [2] for k in keys)
    for s in servers:
        s.flush()
    assert cm.set_multi({k: 1 for k in keys}) == []
    assert [k for k in keys if _where(servers, k.encode()) != [2]] == []


def test_stringclient_and_client_agree_on_placement(three_servers, make_client):
    servers, spec = three_servers
    cm = make_client(cmemcache, spec)
    sc = StringClient(spec)
    try:
        for i in range(100):
            k = f"sc{i}".encode()
            assert cm.set(k, b"v") is True
            assert _where(servers, k) == [sc.server_index(k)]
    finally:
        sc.disconnect_all()
