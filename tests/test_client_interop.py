"""Values shared through one memcached by cmemcache.Client and the other
Python clients: python-memcached, pymemcache (with its python-memcached
compatible ``pickle_serde``) and pylibmc.

The flag scheme (python-memcached's): 0 bytes, 16 UTF-8 text, 2 int
(decimal), 4 "long" (read as int), 1 pickle, +8 zlib.  pylibmc writes int
with flag 4 and bool as flag 2 "1"/"0", so it reads back its own bools as
ints; cmemcache must return what pylibmc itself returns for those.
"""

from __future__ import annotations

import logging
import pickle
import random
import zlib

import memcache
import pylibmc
import pymemcache.serde
import pytest
from pymemcache.client.base import Client as PymemcacheClient

import cmemcache


class UserValue:
    """A user class at module level (pickled by reference)."""

    def __init__(self, name, items):
        self.name = name
        self.items = items

    def __eq__(self, other):
        return type(other) is UserValue and (other.name, other.items) == (self.name, self.items)

    def __repr__(self):
        return f"UserValue({self.name!r}, {self.items!r})"


def _big_text(n: int = 200_000) -> str:
    rng = random.Random(1234)
    words = ["memcached", "ключ", "été", "value", "☃", "cache", "x"]
    out = []
    size = 0
    while size < n:
        w = rng.choice(words)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n]


BIG_TEXT = _big_text()

VALUES = {
    "bytes": b"\x00\x01binary\xff\r\n",
    "str": "héllo wörld ☃ ключ",
    "int": 42,
    "bigint": 2**100,
    "negint": -12345,
    "bool_true": True,
    "bool_false": False,
    "float": 3.25,
    "none": None,
    "dict": {"a": 1, "b": [1, 2, {"c": "d"}], 3: (4, 5)},
    "list": [1, "two", 3.0, None, b"five"],
    "tuple": (1, "two", (3,)),
    "set": {1, 2, 3, "four"},
    "user": UserValue("u", [1, 2, 3]),
    "empty_bytes": b"",
    "empty_str": "",
}

#: flags python-memcached's scheme gives each value
EXPECTED_FLAGS = {
    "bytes": 0,
    "str": 16,
    "int": 2,
    "bigint": 2,
    "negint": 2,
    "empty_bytes": 0,
    "empty_str": 16,
}

COMPRESS_LEN = 1000


def same_value(expected, actual) -> bool:
    return actual == expected and type(actual) is type(expected)


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(params=["text", "meta"])
def clients(server, request):
    """One client of each library on the flushed server (cmemcache's
    speaking the text protocol, or meta commands)."""
    made = {
        "cmemcache": cmemcache.Client([server.address], protocol=request.param),
        "python-memcached": memcache.Client([server.address]),
        "pymemcache": PymemcacheClient(("127.0.0.1", server.port), serde=pymemcache.serde.pickle_serde,
                                       connect_timeout=5, timeout=5),
        # pickle_serde does not handle flag 8; CompressedSerde is pymemcache's
        # way to read and write python-memcached's compressed values
        "pymemcache-compressed": PymemcacheClient(
            ("127.0.0.1", server.port),
            serde=pymemcache.serde.CompressedSerde(min_compress_len=COMPRESS_LEN),
            connect_timeout=5, timeout=5,
        ),
        "pylibmc": pylibmc.Client([server.address]),
    }
    try:
        yield made
    finally:
        made["cmemcache"].disconnect_all()
        made["python-memcached"].disconnect_all()
        made["pymemcache"].close()
        made["pymemcache-compressed"].close()
        made["pylibmc"].disconnect_all()


def write(clients, writer: str, key: str, value, compress: bool = False):
    c = clients[writer]
    if writer == "pymemcache":
        assert c.set(key, value, noreply=False) is True
    elif writer == "pymemcache-compressed":
        assert c.set(key, value, noreply=False) is True
    elif compress:
        assert c.set(key, value, min_compress_len=COMPRESS_LEN)
    else:
        assert c.set(key, value)


READERS = ["python-memcached", "pymemcache", "pylibmc"]
WRITERS = ["python-memcached", "pymemcache", "pylibmc"]


# -- cmemcache writes, the others read --------------------------------------------------


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("name", list(VALUES))
def test_written_by_cmemcache_read_by_others(clients, server, reader, name):
    value = VALUES[name]
    assert clients["cmemcache"].set(name, value) is True
    got = clients[reader].get(name)
    assert same_value(value, got), (reader, value, got)


@pytest.mark.parametrize("reader", ["python-memcached", "pymemcache-compressed", "pylibmc"])
def test_compressed_text_written_by_cmemcache(clients, server, reader):
    assert clients["cmemcache"].set("big", BIG_TEXT, min_compress_len=COMPRESS_LEN) is True
    data, flags = server.raw_get(b"big")
    assert flags == 16 | 8
    assert len(data) < len(BIG_TEXT.encode()) // 2
    assert zlib.decompress(data) == BIG_TEXT.encode()
    got = clients[reader].get("big")
    assert same_value(BIG_TEXT, got)


@pytest.mark.parametrize("reader", ["python-memcached", "pymemcache-compressed", "pylibmc"])
def test_compressed_object_written_by_cmemcache(clients, server, reader):
    value = {"rows": [UserValue(str(i), [i] * 10) for i in range(300)]}
    assert clients["cmemcache"].set("obj", value, min_compress_len=COMPRESS_LEN) is True
    assert server.raw_get(b"obj")[1] == 1 | 8
    assert same_value(value, clients[reader].get("obj"))


def test_get_multi_by_others(clients, server):
    cm = clients["cmemcache"]
    assert cm.set_multi(VALUES) == []
    for reader in ("python-memcached", "pymemcache", "pylibmc"):
        c = clients[reader]
        got = c.get_multi(list(VALUES)) if reader != "pymemcache" else c.get_many(list(VALUES))
        assert set(got) == set(VALUES), reader
        for name, value in VALUES.items():
            assert same_value(value, got[name]), (reader, name, got[name])


@pytest.mark.parametrize("name", list(VALUES))
def test_same_bytes_and_flags_as_python_memcached(clients, server, name):
    value = VALUES[name]
    assert clients["python-memcached"].set("k", value) is True
    theirs = server.raw_get(b"k")
    server.flush()
    assert clients["cmemcache"].set("k", value) is True
    ours = server.raw_get(b"k")
    assert ours == theirs
    if name in EXPECTED_FLAGS:
        assert ours[1] == EXPECTED_FLAGS[name]
    elif name not in ("int", "bigint", "negint"):
        assert ours[1] == 1
        assert pickle.loads(ours[0]) == value


def test_same_compressed_bytes_as_python_memcached(clients, server):
    assert clients["python-memcached"].set("k", BIG_TEXT, min_compress_len=COMPRESS_LEN) is True
    theirs = server.raw_get(b"k")
    server.flush()
    assert clients["cmemcache"].set("k", BIG_TEXT, min_compress_len=COMPRESS_LEN) is True
    assert server.raw_get(b"k") == theirs


def test_higher_pickle_protocol_read_by_others(server, clients):
    cm = cmemcache.Client([server.address], pickleProtocol=pickle.HIGHEST_PROTOCOL)
    try:
        for name, value in VALUES.items():
            assert cm.set(name, value) is True
        for reader in READERS:
            for name, value in VALUES.items():
                assert same_value(value, clients[reader].get(name)), (reader, name)
    finally:
        cm.disconnect_all()


# -- the others write, cmemcache reads --------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("name", list(VALUES))
def test_written_by_others_read_by_cmemcache(clients, server, writer, name):
    value = VALUES[name]
    write(clients, writer, name, value)
    got = clients["cmemcache"].get(name)
    if writer == "pylibmc":
        # pylibmc's own reading of what it wrote (bool comes back as int)
        own = clients["pylibmc"].get(name)
        assert same_value(own, got), (own, got)
        if name not in ("bool_true", "bool_false"):
            assert same_value(value, got)
    else:
        assert same_value(value, got), (writer, value, got)
    # and the same through get_multi and gets
    assert same_value(got, clients["cmemcache"].get_multi([name])[name])
    assert same_value(got, clients["cmemcache"].gets(name))


def test_pylibmc_flags_are_read(clients, server):
    lib, cm = clients["pylibmc"], clients["cmemcache"]
    lib.set("i", 7)
    lib.set("b", True)
    lib.set("f", False)
    lib.set("big", 2**100)
    assert server.raw_get(b"i") == (b"7", 4)
    assert server.raw_get(b"b") == (b"1", 2)
    assert server.raw_get(b"f") == (b"0", 2)
    assert server.raw_get(b"big") == (str(2**100).encode(), 4)
    got = cm.get_multi(["i", "b", "f", "big"])
    assert got == {"i": 7, "b": 1, "f": 0, "big": 2**100}
    assert all(type(v) is int for v in got.values())
    # pylibmc's int is incr-able through cmemcache, as through pylibmc
    assert cm.incr("i", 3) == 10
    assert lib.get("i") == 10


@pytest.mark.parametrize("writer", ["python-memcached", "pymemcache-compressed", "pylibmc"])
def test_compressed_text_written_by_others(clients, server, writer):
    write(clients, writer, "big", BIG_TEXT, compress=True)
    data, flags = server.raw_get(b"big")
    assert flags & 8, flags
    assert flags & ~8 == 16
    assert same_value(BIG_TEXT, clients["cmemcache"].get("big"))
    assert same_value(BIG_TEXT, clients["cmemcache"].get_multi(["big"])["big"])


@pytest.mark.parametrize("writer", ["python-memcached", "pymemcache-compressed", "pylibmc"])
def test_compressed_object_written_by_others(clients, server, writer):
    value = [UserValue(str(i), list(range(20))) for i in range(200)]
    write(clients, writer, "obj", value, compress=True)
    assert server.raw_get(b"obj")[1] == 1 | 8
    assert same_value(value, clients["cmemcache"].get("obj"))


def test_written_with_multi_by_others(clients, server):
    cm = clients["cmemcache"]
    assert clients["python-memcached"].set_multi(VALUES, key_prefix="pm:") == []
    assert clients["pymemcache"].set_many({f"ym:{k}": v for k, v in VALUES.items()}, noreply=False) == []
    assert clients["pylibmc"].set_multi(VALUES, key_prefix="lib:") == []
    for prefix in ("pm:", "ym:"):
        got = cm.get_multi(list(VALUES), key_prefix=prefix)
        assert set(got) == set(VALUES)
        for name, value in VALUES.items():
            assert same_value(value, got[name]), (prefix, name)
    got = cm.get_multi(list(VALUES), key_prefix="lib:")
    own = clients["pylibmc"].get_multi(list(VALUES), key_prefix="lib:")
    assert set(got) == set(own) == set(VALUES)
    for name in VALUES:
        assert same_value(own[name], got[name]), name


# -- values cmemcache cannot decode ------------------------------------------------------

UNDECODABLE = {
    "flags 32": (b"abc", 32),
    "flags 32 | text": (b"abc", 32 | 16),
    "flags 64": (b"1", 64),
    "high flags": (b"x", 1 << 31),
    "corrupt pickle": (b"\x80\x04garbage that is not a pickle", 1),
    "truncated pickle": (pickle.dumps({"a": list(range(50))})[:-10], 1),
    "pickle of a missing class": (b"cno_such_module_xyz\nNoSuchClass\n)\x81.", 1),
    "corrupt zlib": (b"definitely not zlib", 16 | 8),
    "bad utf-8 text": (b"\xff\xfe\xfd", 16),
    "non-numeric int": (b"12ab", 2),
    "non-numeric long": (b"", 4),
}


@pytest.mark.parametrize("case", list(UNDECODABLE))
def test_undecodable_value_reads_as_a_miss(mc, memcached, caplog, case):
    caplog.set_level(logging.DEBUG, logger="cmemcache")
    data, flags = UNDECODABLE[case]
    assert mc.set(b"bad", data, 0, flags) is True  # the raw StringClient
    assert mc.set(b"good", b"fine", 0, 0) is True
    assert memcached.raw_get(b"bad") == (data, flags)

    cm = cmemcache.Client([memcached.address])
    try:
        assert cm.get("bad") is None
        assert cm.get("bad", "dflt") == "dflt"
        assert cm.get("bad", default=0) == 0
        assert cm.gets("bad", "dflt") == "dflt"
        assert cm.get_multi(["bad", "good"]) == {"good": b"fine"}
        assert cm.error_counts["Undecodable"] == 5
        warnings = [r for r in caplog.records if r.name == "cmemcache" and r.levelno >= logging.WARNING]
        assert len(warnings) == 5
        assert sum(cm.error_counts.values()) == 5  # no network error counted
        # the connection is still in step: the next calls work
        assert cm.get("good") == b"fine"
        assert cm.set("next", {"ok": True}) is True
        assert cm.get("next") == {"ok": True}
        # and the value is still there, untouched, for a client that knows it
        assert memcached.raw_get(b"bad") == (data, flags)
    finally:
        cm.disconnect_all()


def test_flags_32_through_python_memcached_raises(mc, memcached):
    """What python-memcached does with the same value (the reason cmemcache
    reads it as a miss instead)."""
    assert mc.set(b"bad", b"abc", 0, 32) is True
    pm = memcache.Client([memcached.address])
    try:
        with pytest.raises(ValueError, match="Unknown flags"):
            pm.get("bad")
    finally:
        pm.disconnect_all()


def test_undecodable_value_log_names_the_key(mc, memcached, caplog):
    """The warning says which key held the value (the thing to look for)."""
    caplog.set_level(logging.DEBUG, logger="cmemcache")
    assert mc.set(b"the-bad-key", b"abc", 0, 32) is True
    cm = cmemcache.Client([memcached.address])
    try:
        for call in (lambda: cm.get("the-bad-key"), lambda: cm.gets("the-bad-key"),
                     lambda: cm.get_multi(["the-bad-key"])):
            caplog.clear()
            call()
            messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(messages) == 1
            assert "the-bad-key" in messages[0], messages
    finally:
        cm.disconnect_all()


# -- values written by meta commands (get_or_set) ----------------------------------------


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("name", list(VALUES))
def test_get_or_set_written_read_by_others(clients, server, reader, name):
    """get_or_set stores with ms: the same bytes and flags as set(), read by
    every peer's text get."""
    value = VALUES[name]
    assert same_value(value, clients["cmemcache"].get_or_set(name, lambda: value))
    meta_written = server.raw_get(name.encode())
    assert clients["cmemcache"].set("text-" + name, value) is True
    assert meta_written == server.raw_get(("text-" + name).encode())
    got = clients[reader].get(name)
    if reader == "pylibmc" and name in ("bool_true", "bool_false"):
        got = bool(got)  # pylibmc reads python-memcached's bools as ints
    assert same_value(value, got), (reader, value, got)


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("name", list(VALUES))
def test_written_by_others_read_by_get_or_set(clients, server, writer, name):
    write(clients, writer, name, VALUES[name])
    want = clients["cmemcache"].get(name)

    def producer():
        raise AssertionError("a hit must not produce")

    assert same_value(want, clients["cmemcache"].get_or_set(name, producer))
