"""Python code that runs in the middle of a call cannot corrupt it.

A multi-key call reads keys and values in place while it runs Python code
(a key's ``__hash__`` when the result dict is filled, an int subclass's
``__str__`` when a ``(hash, key)`` tuple picks its server, the decoder,
``pickle.loads``, signal handlers) and while it waits on sockets with the GIL
released (other threads).  Any of these may change the caller's list, dict or
mapping; the call owns what it uses, so the request on the wire and the result
are the ones the call was given.
"""

from __future__ import annotations

import gc
import pickle
import signal
import threading
import time

import pytest

import cmemcache
from cmemcache import StringClient

# -- keys whose hooks change the list they came from ------------------------------------


class MutatingStr(str):
    """A str key whose __hash__ empties and refills a list (freeing the keys
    that were in it), the first few times it is hashed."""

    victim: list = []
    fires = 0

    def __hash__(self):
        victim = type(self).victim
        if victim and MutatingStr.fires < 3:
            MutatingStr.fires += 1
            victim[:] = [("x%d" % i) * 3 for i in range(len(victim) + 5)]
            gc.collect()
        return str.__hash__(self)

    def __eq__(self, other):
        return str.__eq__(self, other)


class MutatingInt(int):
    """An int for (hash, key) tuples whose __str__ changes a list."""

    victim: list = []
    fires = 0

    def __str__(self):
        victim = type(self).victim
        if victim and MutatingInt.fires < 3:
            MutatingInt.fires += 1
            victim.clear()
            victim.extend((MutatingInt(7), "y%d" % i) for i in range(40))
            gc.collect()
        return int.__str__(self)


# -- 1. a key listed twice ---------------------------------------------------------------


@pytest.fixture
def client(memcached):
    memcached.resume()
    memcached.flush()
    c = cmemcache.Client([memcached.address])
    yield c
    c.disconnect_all()


TUPLES = [
    (1,),
    (b"hello", 0),
    (pickle.dumps("evil"), 1),
    (b"7", 2),
    (b"x", 16),
    ("text", 16),
    (),
    ((1, 2), 3),
]


@pytest.mark.parametrize("value", TUPLES, ids=repr)
def test_a_key_listed_twice_comes_back_as_stored(client, value):
    assert client.set("t1", value) is True
    assert client.get("t1") == value
    got = client.get_multi(["t1", "t1"])
    assert got == {"t1": value}
    assert type(got["t1"]) is tuple


def test_every_kind_of_value_listed_many_times(client):
    values = {
        "b": b"bytes",
        "s": "text",
        "i": 42,
        "neg": -3,
        "big": 2**70,
        "l": [1, 2],
        "t": (b"raw", 0),
        "d": {"a": (1,)},
        "none": None,
    }
    for k, v in values.items():
        assert client.set(k, v) is True
    keys = list(values) * 3 + ["missing", "missing"]
    got = client.get_multi(keys)
    assert got == values
    assert got == {k: client.get(k) for k in values}


def test_undecodable_value_listed_twice_is_left_out_once(client, memcached):
    sc = StringClient([memcached.address])
    sc.set(b"odd", b"?", flags=0x400)  # unknown flag: the Client reads a miss
    sc.set(b"ok", b"v", flags=0)
    assert client.get_multi(["odd", "ok", "odd"]) == {"ok": b"v"}
    assert client.get("odd") is None


def test_key_listed_twice_with_a_prefix_and_over_servers(memcached_factory):
    servers = [memcached_factory() for _ in range(3)]
    c = cmemcache.Client([s.address for s in servers])
    values = {"k%d" % i: (i, "v") for i in range(30)}
    assert c.set_multi(values, key_prefix="p:") == []
    got = c.get_multi(list(values) + list(values)[::-1], key_prefix="p:")
    assert got == values


def test_string_client_duplicates_in_every_multi_call(mc):
    assert mc.set_multi({b"a": b"1", b"b": b"2"}) == []
    assert mc.get_multi([b"a", b"a", b"b", b"a"]) == {b"a": b"1", b"b": b"2"}
    got = mc.gets_multi([b"a", b"a"])
    assert list(got) == [b"a"] and got[b"a"][0] == b"1"
    assert mc.delete_multi([b"a", b"a"]) is False  # the second finds nothing
    assert mc.get(b"a") is None and mc.get(b"b") == b"2"


def test_get_multi_decoded_with_duplicates_keeps_decoder_values(mc):
    mc.set(b"p", pickle.dumps((9,)), flags=1)
    mc.set(b"r", b"raw", flags=0x300)
    seen = []

    def decoder(key, data, flags, omit):
        seen.append((key, data, flags))
        return ("decoded", data)

    got = mc.get_multi_decoded([b"p", b"r", b"p", b"r"], b"", decoder, object(), pickle.loads)
    assert got == {b"p": (9,), b"r": ("decoded", b"raw")}
    assert seen == [(b"r", b"raw", 0x300)] * 2


# -- 2. the caller's list changes during the call -----------------------------------------


def test_key_hash_that_empties_the_key_list(mc):
    names = ["m%d" % i for i in range(50)]
    expect = {k: ("v" + k).encode() for k in names}
    assert mc.set_multi(expect) == []
    for call in (mc.get_multi, mc.gets_multi):
        # the list holds the only reference to each key: the hook frees them
        victim = [MutatingStr("m%d" % i) for i in range(50)]
        MutatingStr.victim, MutatingStr.fires = victim, 0
        try:
            got = call(victim)
        finally:
            MutatingStr.victim = []
        assert victim[0] == "x0x0x0"  # the hook did replace them
        if call == mc.get_multi:
            assert got == expect
        else:
            assert {k: v for k, (v, _cas) in got.items()} == expect


def test_key_hash_that_empties_the_key_list_through_client(client):
    for i in range(40):
        client.set("c%d" % i, ["c%d" % i])
    victim = [MutatingStr("c%d" % i) for i in range(40)]
    MutatingStr.victim, MutatingStr.fires = victim, 0
    try:
        got = client.get_multi(victim)
    finally:
        MutatingStr.victim = []
    assert got == {"c%d" % i: ["c%d" % i] for i in range(40)}


@pytest.mark.parametrize("distribution", ["ketama", "modula", "rendezvous", "libmemcached-ketama"])
def test_tuple_key_str_hook_that_replaces_the_list(memcached_factory, distribution):
    servers = [memcached_factory() for _ in range(2)]
    sc = StringClient([s.address for s in servers], distribution=distribution)
    keys = [(i * 7919, "tk%d" % i) for i in range(30)]
    for key in keys:
        assert sc.set(key, key[1].encode()) is True

    def fresh():
        # the list holds the only reference to each tuple, int and str
        return [(MutatingInt(i * 7919), "tk%d" % i) for i in range(30)]

    try:
        victim = fresh()
        MutatingInt.victim, MutatingInt.fires = victim, 0
        got = sc.get_multi(victim)
        assert len(victim) == 40 and victim[0][1] == "y0"
        victim = fresh()
        MutatingInt.victim, MutatingInt.fires = victim, 0
        assert sc.set_multi({key: key[1].encode() + b"!" for key in victim}) == []
        victim = fresh()
        MutatingInt.victim, MutatingInt.fires = victim, 0
        got2 = sc.get_multi(victim)
        victim = fresh()
        MutatingInt.victim, MutatingInt.fires = victim, 0
        assert sc.delete_multi(victim) is True
    finally:
        MutatingInt.victim = []
    assert got == {key: key[1].encode() for key in keys}
    assert got2 == {key: key[1].encode() + b"!" for key in keys}
    assert sc.get_multi(keys) == {}


def test_another_thread_changes_the_list_while_the_call_waits(memcached):
    memcached.resume()
    memcached.flush()
    sc = StringClient([memcached.address], timeout=5)
    keys = ["w%d" % i for i in range(200)]
    assert sc.set_multi({k: k.encode() for k in keys}) == []
    mapping = {k: k.encode() + b"2" for k in keys}
    for call in ("get_multi", "set_multi", "delete_multi"):
        # fresh objects: the list and dict hold the only references
        victim = ["w%d" % i for i in range(200)]
        victim_map = {"w%d" % i: ("w%d" % i).encode() + b"2" for i in range(200)}
        stop = threading.Event()

        def mutate():
            time.sleep(0.1)  # the call is waiting on the stopped server by now
            n = 0
            while not stop.is_set() and n < 100_000:
                victim[n % len(victim)] = "z" * (n % 50 + 1) + str(n)
                victim_map.pop(next(iter(victim_map)), None)
                victim_map["n%d" % n] = b"junk"
                n += 1
                if n % 100 == 0:
                    time.sleep(0)

        memcached.pause()
        t = threading.Thread(target=mutate)
        t.start()
        resumer = threading.Timer(0.3, memcached.resume)
        resumer.start()
        try:
            if call == "get_multi":
                got = sc.get_multi(victim)
            elif call == "set_multi":
                got = sc.set_multi(victim_map)
            else:
                got = sc.delete_multi(victim)
        finally:
            stop.set()
            t.join()
            resumer.join()
            memcached.resume()
        assert victim != keys
        if call == "get_multi":
            assert got == {k: k.encode() for k in keys}
        elif call == "set_multi":
            assert got == []
            assert sc.get_multi(keys) == mapping
        else:
            assert got is True
            assert sc.get_multi(keys) == {}


def test_signal_handler_changes_the_list_mid_call(memcached):
    memcached.resume()
    memcached.flush()
    sc = StringClient([memcached.address], timeout=5)
    keys = ["s%d" % i for i in range(100)]
    assert sc.set_multi({k: k.encode() for k in keys}) == []
    victim = ["s%d" % i for i in range(100)]  # the only references

    fired = []

    def handler(signum, frame):
        fired.append(signum)
        if len(fired) <= 3:  # a few times: the collection is slow under ASan
            victim[:] = [("q%d" % i) * 9 for i in range(300)]
            gc.collect()

    old = signal.signal(signal.SIGALRM, handler)
    try:
        memcached.pause()
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        threading.Timer(0.4, memcached.resume).start()
        got = sc.get_multi(victim)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        memcached.resume()
    assert victim != keys
    assert got == {k: k.encode() for k in keys}


class KeepingMapping(dict):
    """A dict subclass whose items() returns a list it keeps, and changes."""

    kept = None

    def items(self):
        self.kept = list(dict.items(self))
        return self.kept


class ChangingBuffer:
    """A value (Python 3.12+ buffer protocol) whose export changes the
    mapping's kept list of items."""

    def __init__(self, data, mapping):
        self.data = data
        self.mapping = mapping

    def __buffer__(self, flags):
        if self.mapping.kept is not None:
            self.mapping.kept[:] = [("gone%d" % i, b"x") for i in range(50)]
            gc.collect()
        return memoryview(self.data)


def test_mapping_items_list_changed_while_values_are_read(mc):
    import sys

    mapping = KeepingMapping()
    for i in range(20):
        data = b"val%d" % i
        value = ChangingBuffer(data, mapping) if sys.version_info >= (3, 12) else bytearray(data)
        mapping["mk%d" % i] = value
    assert mc.set_multi(mapping) == []
    assert mc.get_multi(["mk%d" % i for i in range(20)]) == {
        "mk%d" % i: b"val%d" % i for i in range(20)
    }
    assert mc.get(b"gone0") is None


class StrangeMod(int):
    """A big int whose % answers anything."""

    def __mod__(self, other):
        return 10**9

    def __rmod__(self, other):
        return -(10**9)


@pytest.mark.parametrize("hash_value", [2**100, -(2**90), 2**64 + 5])
def test_int_subclass_cannot_pick_a_bucket_outside_the_table(memcached_factory, hash_value):
    servers = [memcached_factory() for _ in range(3)]
    sc = StringClient([(s.address, w) for s, w in zip(servers, (1, 2, 3))])
    key = (StrangeMod(hash_value), "strange")
    # python-memcached: buckets[hash % len(buckets)], with the int's own value
    assert sc.server_index(key) == [0, 1, 1, 2, 2, 2][hash_value % 6]
    assert sc.set(key, b"v") is True
    assert sc.get((hash_value, "strange")) == b"v"
    assert sc.get_multi([key]) == {key: b"v"}
