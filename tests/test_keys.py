"""Input validation: bad keys, values, numbers and server specs are refused
before a single byte is sent."""

from __future__ import annotations

import json

import pytest

import cmemcache
from cmemcache import StringClient
from conftest import run_python

BAD_KEYS = [
    b"",
    b"a" * 251,
    b"a b",
    b" ",
    b"\r",
    b"\n",
    b"\t",
    b"\x00",
    b"k\r\nflush_all",
    b"k\nset evil 0 0 4\r\npwnd",
    b"trailing ",
    b" leading",
    *[b"k" + bytes([c]) + b"x" for c in list(range(0x00, 0x21)) + [0x7F]],
    *[bytes([c]) for c in list(range(0x00, 0x21)) + [0x7F]],
    "",
    "a" * 251,
    "é" * 126,  # 252 UTF-8 bytes
    "k\r\nflush_all",
    "a b",
    "ключ с пробелом",
    "tab\there",
    "nul\x00",
    "del\x7f",
]


def key_id(key) -> str:
    return repr(key[:20]) + (f"...{len(key)}" if len(key) > 20 else "")


def keyed_calls(bad):
    """Every keyed method, called with ``bad`` in the key position."""
    good = b"good-key"
    return {
        "get": lambda c: c.get(bad),
        "get_with_flags": lambda c: c.get(bad, with_flags=True),
        "gets": lambda c: c.gets(bad),
        "gat": lambda c: c.gat(bad, 10),
        "gats": lambda c: c.gats(bad, 10),
        "set": lambda c: c.set(bad, b"v"),
        "set_noreply": lambda c: c.set(bad, b"v", noreply=True),
        "add": lambda c: c.add(bad, b"v"),
        "replace": lambda c: c.replace(bad, b"v"),
        "append": lambda c: c.append(bad, b"v"),
        "prepend": lambda c: c.prepend(bad, b"v"),
        "cas": lambda c: c.cas(bad, b"v", 1),
        "incr": lambda c: c.incr(bad, 1),
        "decr": lambda c: c.decr(bad, 1),
        "delete": lambda c: c.delete(bad),
        "delete_noreply": lambda c: c.delete(bad, noreply=True),
        "touch": lambda c: c.touch(bad, 10),
        "get_multi": lambda c: c.get_multi([good, bad]),
        "get_multi_first": lambda c: c.get_multi([bad, good]),
        "gets_multi": lambda c: c.gets_multi([good, bad]),
        "set_multi": lambda c: c.set_multi({good: b"v", bad: b"v"}),
        "set_multi_noreply": lambda c: c.set_multi({good: b"v", bad: b"v"}, noreply=True),
        "delete_multi": lambda c: c.delete_multi([good, bad]),
    }


METHODS = list(keyed_calls(b"x"))


def assert_nothing_sent(client, fake):
    """A probe request afterwards gets its reply, and the probe is the only
    thing the server ever received."""
    assert client.get(b"probe") == b"probe"
    client.disconnect_all()
    assert fake.wait_all_finished(5.0)
    assert fake.received() == b"get probe\r\n"


def assert_refused_before_sending(fake_server, call, error, **client_kwargs) -> BaseException:
    """``call`` on a client of a fresh fake server raises ``error`` (returned)
    and sends nothing."""
    fake = fake_server()
    c = StringClient([fake.address], timeout=1, connect_timeout=1, **client_kwargs)
    with pytest.raises(error) as info:
        call(c)
    assert_nothing_sent(c, fake)
    return info.value


@pytest.mark.parametrize("method", METHODS)
def test_bad_keys_rejected_before_sending(fake_server, method):
    fake = fake_server()
    c = StringClient([fake.address], timeout=1, connect_timeout=1)
    wrong = []
    for bad in BAD_KEYS:
        try:
            keyed_calls(bad)[method](c)
        except cmemcache.InvalidKeyError as exc:
            if not isinstance(exc, ValueError):
                wrong.append((key_id(bad), "InvalidKeyError is not a ValueError"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            wrong.append((key_id(bad), repr(exc)))
        else:
            wrong.append((key_id(bad), "no exception"))
    assert wrong == []
    assert_nothing_sent(c, fake)


BAD_PREFIXES = {
    "get_multi-space": lambda c: c.get_multi([b"a"], key_prefix=b"bad prefix"),
    "get_multi-crlf": lambda c: c.get_multi([b"a"], key_prefix=b"p\r\n"),
    "get_multi-nul": lambda c: c.get_multi([b"a"], key_prefix=b"\x00"),
    "gets_multi-space": lambda c: c.gets_multi([b"a"], key_prefix=b"bad prefix"),
    "gets_multi-nul": lambda c: c.gets_multi([b"a"], key_prefix=b"\x00"),
    "set_multi-space": lambda c: c.set_multi({b"a": b"v"}, key_prefix=b"bad prefix"),
    "set_multi-injection": lambda c: c.set_multi({b"a": b"v"}, key_prefix=b"p\nflush_all\r\n"),
    "delete_multi-space": lambda c: c.delete_multi([b"a"], key_prefix=b"bad prefix"),
    "delete_multi-del": lambda c: c.delete_multi([b"a"], key_prefix=b"\x7f"),
    "get_multi-too-long": lambda c: c.get_multi([b"a" * 200], key_prefix=b"p" * 51),
    "set_multi-too-long": lambda c: c.set_multi({b"a" * 200: b"v"}, key_prefix=b"p" * 51),
    "delete_multi-too-long": lambda c: c.delete_multi([b"a" * 250], key_prefix=b"p"),
    "get_multi-empty-key": lambda c: c.get_multi([b""], key_prefix=b""),
}


@pytest.mark.parametrize("name", list(BAD_PREFIXES))
def test_bad_key_prefix_rejected_before_sending(fake_server, name):
    error = assert_refused_before_sending(fake_server, BAD_PREFIXES[name], cmemcache.InvalidKeyError)
    assert isinstance(error, ValueError)


def test_good_edge_keys_are_sent(fake_server):
    fake = fake_server()
    c = StringClient([fake.address], timeout=1, connect_timeout=1)
    for key in [b"k" * 250, b"!", b"~", bytes(range(0x21, 0x7F)), b"\x80\xff", "é" * 125]:
        raw = key.encode() if isinstance(key, str) else key
        assert c.get(key) == raw
    assert c.get_multi([b"a" * 200], key_prefix=b"p" * 50) == {b"a" * 200: b"p" * 50 + b"a" * 200}


# -- values ------------------------------------------------------------------------------------


#: calls with a value over a max_value_size of 100
TOO_LARGE = {
    "set": lambda c: c.set(b"k", b"x" * 101),
    "set-noreply": lambda c: c.set(b"k", b"x" * 101, noreply=True),
    "add": lambda c: c.add(b"k", b"x" * 101),
    "replace": lambda c: c.replace(b"k", b"x" * 101),
    "append": lambda c: c.append(b"k", b"x" * 101),
    "prepend": lambda c: c.prepend(b"k", b"x" * 101),
    "cas": lambda c: c.cas(b"k", b"x" * 101, 5),
    "bytearray": lambda c: c.set(b"k", bytearray(101)),
    "memoryview": lambda c: c.set(b"k", memoryview(b"x" * 101)),
    "set_multi-last": lambda c: c.set_multi({b"a": b"ok", b"k": b"x" * 101}),
    "set_multi-first": lambda c: c.set_multi({b"k": b"x" * 101, b"a": b"ok"}),
    "set_multi-tuple": lambda c: c.set_multi({b"a": b"ok", b"k": (b"x" * 101, 3)}),
    "set_multi-noreply": lambda c: c.set_multi({b"k": b"x" * 101}, noreply=True),
}


@pytest.mark.parametrize("name", list(TOO_LARGE))
def test_value_too_large_rejected_before_sending(fake_server, name):
    error = assert_refused_before_sending(fake_server, TOO_LARGE[name], cmemcache.ValueTooLargeError,
                                          max_value_size=100)
    assert isinstance(error, ValueError)


# -- types and ranges ------------------------------------------------------------------------------

TYPE_ERRORS = {
    "get-int-key": lambda c: c.get(42),
    "get-none-key": lambda c: c.get(None),
    "get-float-key": lambda c: c.get(1.5),
    "get-list-key": lambda c: c.get([b"k"]),
    "set-int-key": lambda c: c.set(42, b"v"),
    "set-none-key": lambda c: c.set(None, b"v"),
    "set-str-value": lambda c: c.set(b"k", "text"),
    "set-int-value": lambda c: c.set(b"k", 42),
    "set-none-value": lambda c: c.set(b"k", None),
    "set-float-flags": lambda c: c.set(b"k", b"v", flags=1.5),
    "set-str-flags": lambda c: c.set(b"k", b"v", flags="1"),
    "set-float-exptime": lambda c: c.set(b"k", b"v", exptime=1.5),
    "set-str-exptime": lambda c: c.set(b"k", b"v", exptime="1\r\nflush_all"),
    "add-str-value": lambda c: c.add(b"k", "text"),
    "append-str-value": lambda c: c.append(b"k", "text"),
    "cas-str-value": lambda c: c.cas(b"k", "text", 1),
    "cas-str-token": lambda c: c.cas(b"k", b"v", "12"),
    "cas-float-token": lambda c: c.cas(b"k", b"v", 1.0),
    "incr-float-delta": lambda c: c.incr(b"k", 1.5),
    "incr-str-delta": lambda c: c.incr(b"k", "1\r\nflush_all"),
    "decr-none-delta": lambda c: c.decr(b"k", None),
    "touch-str-exptime": lambda c: c.touch(b"k", "10"),
    "gat-str-exptime": lambda c: c.gat(b"k", "10"),
    "flush_all-str-delay": lambda c: c.flush_all("0\r\nflush_all"),
    "get_multi-int-key": lambda c: c.get_multi([b"a", 42]),
    "get_multi-none-key": lambda c: c.get_multi([None]),
    "get_multi-not-iterable": lambda c: c.get_multi(42),
    "get_multi-str-prefix": lambda c: c.get_multi([b"a"], key_prefix=42),
    "set_multi-not-mapping": lambda c: c.set_multi([b"a", b"b"]),
    "set_multi-str-value": lambda c: c.set_multi({b"a": "text"}),
    "set_multi-int-key": lambda c: c.set_multi({42: b"v"}),
    "set_multi-tuple-str-flags": lambda c: c.set_multi({b"a": (b"v", "1")}),
    "delete-int-key": lambda c: c.delete(42),
    "delete_multi-int-key": lambda c: c.delete_multi([42]),
    "server_index-int-key": lambda c: c.server_index(42),
}


@pytest.mark.parametrize("name", list(TYPE_ERRORS))
def test_wrong_types_raise_type_error_before_sending(fake_server, name):
    assert_refused_before_sending(fake_server, TYPE_ERRORS[name], TypeError)


RANGE_ERRORS = {
    "flags--1": lambda c: c.set(b"k", b"v", flags=-1),
    "flags-2**32": lambda c: c.set(b"k", b"v", flags=2**32),
    "flags-2**64": lambda c: c.set(b"k", b"v", flags=2**64),
    "add-flags-2**32": lambda c: c.add(b"k", b"v", flags=2**32),
    "cas-flags--1": lambda c: c.cas(b"k", b"v", 1, flags=-1),
    "set_multi-flags-2**32": lambda c: c.set_multi({b"a": b"v"}, flags=2**32),
    "set_multi-tuple-flags--1": lambda c: c.set_multi({b"a": (b"v", -1)}),
    "exptime-2**32": lambda c: c.set(b"k", b"v", exptime=2**32),
    "exptime-2**63": lambda c: c.set(b"k", b"v", exptime=2**63),
    "exptime-2**64": lambda c: c.set(b"k", b"v", exptime=2**64),
    "exptime--2**63-1": lambda c: c.set(b"k", b"v", exptime=-(2**63) - 1),
    "touch-exptime-2**64": lambda c: c.touch(b"k", 2**64),
    "gat-exptime-2**64": lambda c: c.gat(b"k", 2**64),
    "gats-exptime-2**64": lambda c: c.gats(b"k", 2**64),
    "set_multi-exptime-2**64": lambda c: c.set_multi({b"a": b"v"}, exptime=2**64),
    "flush_all-delay-2**64": lambda c: c.flush_all(2**64),
    "incr-delta--1": lambda c: c.incr(b"k", -1),
    "incr-delta-2**64": lambda c: c.incr(b"k", 2**64),
    "decr-delta--1": lambda c: c.decr(b"k", -1),
    "decr-delta-2**64": lambda c: c.decr(b"k", 2**64),
    "cas--1": lambda c: c.cas(b"k", b"v", -1),
    "cas-2**64": lambda c: c.cas(b"k", b"v", 2**64),
}


@pytest.mark.parametrize("name", list(RANGE_ERRORS))
def test_out_of_range_numbers_raise_value_error_before_sending(fake_server, name):
    assert_refused_before_sending(fake_server, RANGE_ERRORS[name], ValueError)


#: exptimes just outside memcached's 32-bit signed range
EXPTIMES_OUTSIDE_INT32 = [2**31, -(2**31) - 1]


@pytest.mark.parametrize("exptime", EXPTIMES_OUTSIDE_INT32)
def test_exptime_outside_int32_is_rejected(fake_server, exptime):
    """memcached parses exptime as a 32-bit signed number."""
    assert_refused_before_sending(fake_server, lambda c: c.set(b"k", b"v", exptime=exptime), ValueError)


def test_numbers_at_the_edges_are_accepted(fake_server):
    fake = fake_server()
    c = StringClient([fake.address], timeout=1, connect_timeout=1)
    assert c.set(b"k", b"v", flags=2**32 - 1, exptime=2**31 - 1) is True
    assert c.set(b"k", b"v", flags=0, exptime=-1) is True
    assert c.cas(b"k", b"v", 2**64 - 1) is True
    assert c.cas(b"k", b"v", 0) is True
    assert c.incr(b"k", 2**64 - 1) == 2**64 - 1
    assert c.decr(b"k", 0) == 0
    received = fake.received()
    assert b"set k 4294967295 2147483647 1" in received
    assert b"cas k 0 0 1 18446744073709551615" in received
    assert b"incr k 18446744073709551615" in received


# -- constructor arguments -----------------------------------------------------------------------------

BAD_SERVERS = [
    "127.0.0.1:99999",
    "127.0.0.1:65536",
    "127.0.0.1:-1",
    "127.0.0.1:abc",
    "127.0.0.1:",
    ":11211",
    "",
    "[::1",
    "[::1]x",
    "inet6:[::1]x",
    "inet6:::1",
    "unix:",
    "a" * 300 + ":11211",
    "local\x00host:11211",
    "127.0.0.1:11211:extra",
    "127.0.0.1 :11211",
    "127.0.0.1:11 211",
]

BAD_WEIGHTED = [
    ("127.0.0.1:11211", 0),
    ("127.0.0.1:11211", -1),
    ("127.0.0.1:99999", 1),
]

STRICT_TYPE_ERROR_SERVERS = [None, 11211, b"127.0.0.1:11211", [None], [11211], [b"127.0.0.1:11211"]]
LOOSE_TYPE_ERROR_SERVERS = [
    [("127.0.0.1:11211", "1")],
    [("127.0.0.1:11211", 1.5)],
    [("127.0.0.1:11211",)],
    [("127.0.0.1:11211", 1, 2)],
]


@pytest.mark.parametrize("spec", BAD_SERVERS, ids=repr)
def test_malformed_server_is_invalid(spec):
    with pytest.raises(cmemcache.InvalidServerError) as info:
        StringClient([spec])
    assert isinstance(info.value, ValueError)
    with pytest.raises(cmemcache.InvalidServerError):
        StringClient(spec)


@pytest.mark.parametrize("spec", BAD_WEIGHTED, ids=repr)
def test_malformed_weighted_server_is_invalid(spec):
    with pytest.raises(cmemcache.InvalidServerError):
        StringClient([spec])
    with pytest.raises(cmemcache.InvalidServerError):
        StringClient(["127.0.0.1:11211", spec])


@pytest.mark.parametrize("servers", STRICT_TYPE_ERROR_SERVERS, ids=repr)
def test_server_of_wrong_type(servers):
    with pytest.raises(TypeError):
        StringClient(servers)


@pytest.mark.parametrize("servers", LOOSE_TYPE_ERROR_SERVERS, ids=repr)
def test_weighted_server_of_wrong_shape(servers):
    # a weight must be an int >= 1: a wrong type is a TypeError, a wrong
    # shape may be either error
    with pytest.raises((TypeError, cmemcache.InvalidServerError)):
        StringClient(servers)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"connect_timeout": 0},
        {"connect_timeout": -0.5},
    ],
    ids=repr,
)
def test_bad_constructor_numbers(kwargs):
    with pytest.raises(ValueError):
        StringClient(["127.0.0.1:11211"], **kwargs)


def test_constructor_keywords_only():
    with pytest.raises(TypeError):
        StringClient(["127.0.0.1:11211"], 1.0)


SUBPROCESS_SPEC = r"""
import json, sys
import cmemcache
spec = json.loads(sys.argv[1])
if isinstance(spec, list):
    spec = [tuple(spec)]
try:
    cmemcache.StringClient(spec)
except cmemcache.InvalidServerError:
    print("InvalidServerError")
except TypeError:
    print("TypeError")
else:
    print("accepted")
"""

SUBPROCESS_CASES = (
    [(spec, "InvalidServerError") for spec in BAD_SERVERS]
    + [(list(spec), "InvalidServerError") for spec in BAD_WEIGHTED]
    + [(None, "TypeError"), (11211, "TypeError")]
)


@pytest.mark.parametrize("spec, expected", SUBPROCESS_CASES, ids=[repr(c[0])[:40] for c in SUBPROCESS_CASES])
def test_malformed_server_in_a_subprocess(spec, expected):
    """A crash (segfault, abort) would show as a signal exit code."""
    proc = run_python(SUBPROCESS_SPEC, json.dumps(spec), timeout=30)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert proc.stdout.strip() == expected, proc.stderr
