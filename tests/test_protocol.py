"""Valid replies in every chunking, and property-based round trips."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cmemcache
from cmemcache import StringClient
from fakeserver import FakeConnection

# (request regex, reply, call, expected result)
CATALOGUE = [
    (rb"get k\r\n", b"VALUE k 0 5\r\nhello\r\nEND\r\n", lambda c: c.get(b"k"), b"hello"),
    (rb"get k\r\n", b"VALUE k 0 0\r\n\r\nEND\r\n", lambda c: c.get(b"k"), b""),
    (rb"get k\r\n", b"VALUE k 0 7\r\n\r\nEND\r\n\r\nEND\r\n", lambda c: c.get(b"k"), b"\r\nEND\r\n"),
    (rb"get k\r\n", b"VALUE k 0 3\r\n\x00\r\x00\r\nEND\r\n", lambda c: c.get(b"k"), b"\x00\r\x00"),
    (rb"get k\r\n", b"END\r\n", lambda c: c.get(b"k"), None),
    (
        rb"get k\r\n",
        b"VALUE k 4294967295 2\r\nhi\r\nEND\r\n",
        lambda c: c.get(b"k", with_flags=True),
        (b"hi", 2**32 - 1),
    ),
    (rb"gets k\r\n", b"VALUE k 3 2 99\r\nhi\r\nEND\r\n", lambda c: c.gets(b"k"), (b"hi", 99)),
    (rb"gat 10 k\r\n", b"VALUE k 0 2\r\nhi\r\nEND\r\n", lambda c: c.gat(b"k", 10), b"hi"),
    (
        rb"gats 10 k\r\n",
        b"VALUE k 1 2 18446744073709551615\r\nhi\r\nEND\r\n",
        lambda c: c.gats(b"k", 10, with_flags=True),
        (b"hi", 1, 2**64 - 1),
    ),
    (
        rb"get a b c\r\n",
        b"VALUE a 0 1\r\n1\r\nVALUE c 5 3\r\n333\r\nEND\r\n",
        lambda c: c.get_multi([b"a", b"b", b"c"]),
        {b"a": b"1", b"c": b"333"},
    ),
    (rb"set k 0 0 1\r\nv\r\n", b"STORED\r\n", lambda c: c.set(b"k", b"v"), True),
    (rb"set k 0 0 1\r\nv\r\n", b"NOT_STORED\r\n", lambda c: c.set(b"k", b"v"), False),
    (rb"add k 0 0 1\r\nv\r\n", b"NOT_STORED\r\n", lambda c: c.add(b"k", b"v"), False),
    (rb"cas k 0 0 1 5\r\nv\r\n", b"EXISTS\r\n", lambda c: c.cas(b"k", b"v", 5), False),
    (rb"cas k 0 0 1 5\r\nv\r\n", b"NOT_FOUND\r\n", lambda c: c.cas(b"k", b"v", 5), None),
    (rb"cas k 0 0 1 5\r\nv\r\n", b"STORED\r\n", lambda c: c.cas(b"k", b"v", 5), True),
    (rb"delete k\r\n", b"DELETED\r\n", lambda c: c.delete(b"k"), True),
    (rb"delete k\r\n", b"NOT_FOUND\r\n", lambda c: c.delete(b"k"), False),
    (rb"incr k 1\r\n", b"18446744073709551615\r\n", lambda c: c.incr(b"k", 1), 2**64 - 1),
    (rb"decr k 1\r\n", b"0\r\n", lambda c: c.decr(b"k", 1), 0),
    (rb"incr k 1\r\n", b"NOT_FOUND\r\n", lambda c: c.incr(b"k", 1), None),
    (rb"touch k 10\r\n", b"TOUCHED\r\n", lambda c: c.touch(b"k", 10), True),
    (rb"touch k 10\r\n", b"NOT_FOUND\r\n", lambda c: c.touch(b"k", 10), False),
    (rb"version\r\n", b"VERSION 1.6.18\r\n", lambda c: list(c.version().values()), ["1.6.18"]),
    (
        rb"stats\r\n",
        b"STAT pid 12\r\nSTAT version 1.6.18\r\nEND\r\n",
        lambda c: c.get_stats()[0][1],
        {"pid": "12", "version": "1.6.18"},
    ),
]


@pytest.mark.parametrize("entry", CATALOGUE, ids=[repr(e[1][:24]) for e in CATALOGUE])
def test_every_two_piece_split_of_a_valid_reply(fake_server, entry):
    pattern, reply, call, expected = entry

    def script(conn: FakeConnection):
        for cut in range(1, len(reply)):
            conn.expect(pattern)
            conn.send(reply[:cut])
            conn.sleep(0.002)
            conn.send(reply[cut:])
        conn.echo()

    fake = fake_server(script)
    c = StringClient([fake.address], timeout=2, connect_timeout=2)
    results = [call(c) for _ in range(1, len(reply))]
    assert results == [expected] * (len(reply) - 1)
    assert c.get(b"probe") == b"probe"
    assert fake.connection_count == 1


def test_reply_one_byte_per_packet(fake_server):
    reply = b"VALUE a 0 3\r\nabc\r\nVALUE b 7 0\r\n\r\nEND\r\n"

    def script(conn: FakeConnection):
        conn.expect(rb"get a b\r\n")
        for i in range(len(reply)):
            conn.send(reply[i : i + 1])
            conn.sleep(0.001)
        conn.echo()

    fake = fake_server(script)
    c = StringClient([fake.address], timeout=5, connect_timeout=2)
    assert c.get_multi([b"a", b"b"], with_flags=True) == {b"a": (b"abc", 0), b"b": (b"", 7)}
    assert c.get(b"probe") == b"probe"


# -- property-based round trips against real memcached ---------------------------------------------

KEY_BYTES = st.binary(min_size=1, max_size=250).filter(
    lambda b: all(0x20 < x != 0x7F for x in b)
)
VALUES = st.binary(max_size=4096) | st.sampled_from(
    [b"", b"\r\n", b"END\r\n", b"\r\nEND\r\n", b"VALUE k 0 1\r\n", b"\x00" * 64]
)
FLAGS = st.integers(min_value=0, max_value=2**32 - 1)
# the characters of a str key: printable ASCII, or any code point above it
# (lone surrogates included); drawn from code points, not st.characters(),
# whose first use builds Hypothesis's Unicode table (a minute under ASan)
KEY_CHARS = st.one_of(st.integers(0x21, 0x7E), st.integers(0x80, 0x10FFFF)).map(chr)


@pytest.fixture(scope="module")
def shared_client(memcached):
    c = StringClient([memcached.address], timeout=5, connect_timeout=5)
    yield c
    c.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=KEY_BYTES, value=VALUES, flags=FLAGS)
def test_round_trip_any_valid_key_value_flags(memcached, shared_client, key, value, flags):
    c = shared_client
    assert c.set(key, value, flags=flags) is True
    assert c.get(key, with_flags=True) == (value, flags)
    assert memcached.raw_get(key) == (value, flags)
    assert c.get_multi([key]) == {key: value}
    assert c.delete(key) is True


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=KEY_CHARS, min_size=1, max_size=60))
def test_round_trip_str_keys(memcached, shared_client, text):
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be keys
        with pytest.raises((cmemcache.InvalidKeyError, UnicodeEncodeError, ValueError)):
            shared_client.set(text, b"v")
        return
    value = b"value of " + raw
    assert shared_client.set(text, value) is True
    assert memcached.raw_get(raw) == (value, 0)
    assert shared_client.get_multi([text]) == {text: value}
    assert shared_client.delete(text) is True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    good=st.binary(min_size=0, max_size=120).filter(lambda b: all(0x20 < x != 0x7F for x in b)),
    bad=st.sampled_from(list(range(0x00, 0x21)) + [0x7F]),
    tail=st.binary(max_size=40),
)
def test_any_key_with_a_forbidden_byte_is_rejected(shared_client, memcached, good, bad, tail):
    key = good + bytes([bad]) + tail
    before = memcached.stats()
    for call in (
        lambda: shared_client.get(key),
        lambda: shared_client.set(key, b"v"),
        lambda: shared_client.delete(key),
        lambda: shared_client.get_multi([b"ok", key]),
    ):
        with pytest.raises(cmemcache.InvalidKeyError):
            call()
    after = memcached.stats()
    for counter in ("cmd_get", "cmd_set", "delete_misses", "delete_hits"):
        assert after[counter] == before[counter], counter
