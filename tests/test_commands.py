"""Every method of StringClient against a real memcached, with edge cases."""

from __future__ import annotations

import os
import socket
import time
import zlib

import pytest

import cmemcache
from cmemcache import StringClient
from conftest import ipv6_available, wait_until

MiB = 1024 * 1024


def client_for(*servers, **kwargs) -> StringClient:
    kwargs.setdefault("timeout", 2)
    kwargs.setdefault("connect_timeout", 2)
    addrs = [s.address if hasattr(s, "address") else s for s in servers]
    return StringClient(addrs, **kwargs)


def curr_connections(server) -> int:
    # the raw command's own connection is counted too
    return int(server.stats()["curr_connections"]) - 1


# -- get / set basics --------------------------------------------------------------------


def test_set_get_roundtrip(mc, memcached):
    assert mc.set(b"greeting", b"hello") is True
    value = mc.get(b"greeting")
    assert value == b"hello"
    assert type(value) is bytes
    assert memcached.raw_get(b"greeting") == (b"hello", 0)


def test_get_miss_is_none(mc):
    assert mc.get(b"missing") is None
    assert mc.gets(b"missing") is None
    assert mc.get(b"missing", with_flags=True) is None
    assert mc.gets(b"missing", with_flags=True) is None


def test_str_key_is_the_same_as_its_bytes(mc):
    assert mc.set("plain", b"v1") is True
    assert mc.get(b"plain") == b"v1"
    assert mc.set(b"plain", b"v2") is True
    assert mc.get("plain") == b"v2"


@pytest.mark.parametrize("key", ["clé", "ключ", "🔑", "\u2028x", "日本語のキー"])
def test_non_ascii_str_key_is_stored_as_utf8(mc, memcached, key):
    value = ("value of " + key).encode()
    assert mc.set(key, value) is True
    assert memcached.raw_get(key.encode("utf-8")) == (value, 0)
    assert mc.get(key) == value
    assert mc.get(key.encode("utf-8")) == value
    assert mc.get_multi([key]) == {key: value}


def test_str_key_of_250_utf8_bytes(mc, memcached):
    ok = "é" * 125  # 250 bytes
    assert mc.set(ok, b"v") is True
    assert memcached.raw_get(ok.encode()) == (b"v", 0)
    with pytest.raises(cmemcache.InvalidKeyError):
        mc.set("é" * 125 + "x", b"v")  # 251 bytes


@pytest.mark.parametrize(
    "value", [bytearray(b"from a bytearray"), memoryview(b"from a memoryview"), b"plain bytes"]
)
def test_bytes_like_values(mc, value):
    assert mc.set(b"k", value) is True
    got = mc.get(b"k")
    assert got == bytes(value)
    assert type(got) is bytes


def test_memoryview_slice_value(mc):
    data = memoryview(b"0123456789")[2:7]
    assert mc.set(b"k", data) is True
    assert mc.get(b"k") == b"23456"


def test_empty_value(mc, memcached):
    assert mc.set(b"empty", b"") is True
    assert mc.get(b"empty") == b""
    assert mc.gets(b"empty")[0] == b""
    assert mc.get_multi([b"empty"]) == {b"empty": b""}
    assert memcached.raw_get(b"empty") == (b"", 0)


BINARY_VALUES = [
    b"\x00",
    b"\x00" * 10,
    b"a\r\nb",
    b"\r\n",
    b"END\r\n",
    b"\r\nEND\r\n",
    b"VALUE x 0 1\r\nx\r\nEND\r\n",
    b"\r\nflush_all\r\n",
    b"STORED\r\n",
    bytes(range(256)),
    bytes(range(256)) * 40,
]


@pytest.mark.parametrize("value", BINARY_VALUES, ids=range(len(BINARY_VALUES)))
def test_binary_values_round_trip(mc, memcached, value):
    assert mc.set(b"canary", b"still here") is True
    assert mc.set(b"bin", value) is True
    assert mc.get(b"bin") == value
    assert mc.get_multi([b"bin", b"canary"]) == {b"bin": value, b"canary": b"still here"}
    assert memcached.raw_get(b"bin") == (value, 0)
    assert mc.get(b"canary") == b"still here"


# -- value sizes ----------------------------------------------------------------------------


def test_one_mebibyte_value(memcached_factory):
    server = memcached_factory(["-I", "2m"])
    big = os.urandom(MiB)
    bigger = os.urandom(MiB + MiB // 2)
    with client_for(server, max_value_size=2 * MiB) as c:
        assert c.set(b"big", big) is True
        assert c.set(b"bigger", bigger) is True
        assert c.get(b"big") == big
        assert c.get_multi([b"big", b"bigger"]) == {b"big": big, b"bigger": bigger}
    assert server.raw_get(b"big") == (big, 0)


def test_value_at_default_limit_is_refused_by_the_server(mc, memcached):
    """A 1 MiB value passes the client's default check (not over
    max_value_size) but memcached's 1 MiB item limit includes the item
    header, so the server answers SERVER_ERROR object too large."""
    assert mc.set(b"k", b"old") is True
    with pytest.raises(cmemcache.ServerError) as info:
        mc.set(b"k", b"x" * MiB)
    assert "too large" in str(info.value)
    assert not isinstance(info.value, cmemcache.ValueTooLargeError)
    # memcached drops the old value when it refuses a new one
    assert mc.get(b"k") is None
    # the client is still in sync
    assert mc.set(b"small", b"s") is True
    assert mc.get(b"small") == b"s"


def test_value_over_default_limit_is_refused_before_sending(mc, memcached):
    before = int(memcached.stats()["cmd_set"])
    with pytest.raises(cmemcache.ValueTooLargeError) as info:
        mc.set(b"k", b"x" * (MiB + 1))
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, cmemcache.Error)
    assert int(memcached.stats()["cmd_set"]) == before
    assert mc.get(b"k") is None


def test_max_value_size_is_inclusive(memcached_factory):
    server = memcached_factory()
    with client_for(server, max_value_size=1000) as c:
        assert c.set(b"k", b"x" * 1000) is True
        assert c.get(b"k") == b"x" * 1000
        with pytest.raises(cmemcache.ValueTooLargeError):
            c.set(b"k", b"y" * 1001)
        with pytest.raises(cmemcache.ValueTooLargeError):
            c.set_multi({b"a": b"ok", b"k": b"y" * 1001})
        with pytest.raises(cmemcache.ValueTooLargeError):
            c.append(b"k", b"y" * 1001)
    assert server.raw_get(b"k") == (b"x" * 1000, 0)
    assert server.raw_get(b"a") is None


def test_stored_value_larger_than_max_value_size_is_a_protocol_error(memcached_factory):
    server = memcached_factory()
    server.raw_set(b"big", b"b" * 2000)
    server.raw_set(b"small", b"s")
    with client_for(server, max_value_size=1000) as c:
        with pytest.raises(cmemcache.ProtocolError):
            c.get(b"big")
        assert c.get(b"small") == b"s"
        with pytest.raises(cmemcache.ProtocolError):
            c.get_multi([b"small", b"big"])
        assert c.get(b"small") == b"s"


# -- keys -----------------------------------------------------------------------------------


def test_key_of_250_bytes_ok_251_rejected(mc, memcached):
    k250 = b"k" * 250
    assert mc.set(k250, b"long key") is True
    assert mc.get(k250) == b"long key"
    assert mc.get_multi([k250]) == {k250: b"long key"}
    assert memcached.raw_get(k250) == (b"long key", 0)
    with pytest.raises(cmemcache.InvalidKeyError) as info:
        mc.set(b"k" * 251, b"x")
    assert isinstance(info.value, ValueError)
    with pytest.raises(cmemcache.InvalidKeyError):
        mc.get(b"k" * 251)
    assert mc.get(k250) == b"long key"


# -- flags and exptime ----------------------------------------------------------------------


@pytest.mark.parametrize("flags", [0, 1, 2**31, 2**32 - 1])
def test_flags_round_trip(mc, memcached, flags):
    assert mc.set(b"f", b"value", flags=flags) is True
    assert memcached.raw_get(b"f") == (b"value", flags)
    assert mc.get(b"f") == b"value"
    assert mc.get(b"f", with_flags=True) == (b"value", flags)
    value, got_flags, cas = mc.gets(b"f", with_flags=True)
    assert (value, got_flags) == (b"value", flags)
    assert isinstance(cas, int) and cas > 0
    assert mc.gets(b"f") == (b"value", cas)
    assert mc.gat(b"f", 0, with_flags=True) == (b"value", flags)
    assert mc.gats(b"f", 0, with_flags=True) == (b"value", flags, cas)
    assert mc.get_multi([b"f"], with_flags=True) == {b"f": (b"value", flags)}
    assert mc.gets_multi([b"f"], with_flags=True) == {b"f": (b"value", flags, cas)}


def test_flags_are_set_by_every_store(mc, memcached):
    assert mc.add(b"k", b"a", flags=7) is True
    assert memcached.raw_get(b"k") == (b"a", 7)
    assert mc.replace(b"k", b"b", flags=8) is True
    assert memcached.raw_get(b"k") == (b"b", 8)
    _, cas = mc.gets(b"k")
    assert mc.cas(b"k", b"c", cas, flags=9) is True
    assert memcached.raw_get(b"k") == (b"c", 9)


def test_negative_exptime_expires_at_once(mc):
    assert mc.set(b"gone", b"v", exptime=-1) is True
    assert mc.get(b"gone") is None
    assert mc.set_multi({b"m1": b"v", b"m2": b"v"}, exptime=-1) == []
    assert mc.get_multi([b"m1", b"m2"]) == {}


def test_exptime_in_the_past_as_unix_time(mc):
    assert mc.set(b"past", b"v", exptime=int(time.time()) - 60) is True
    assert mc.get(b"past") is None


def test_exptime_thirty_days_is_relative(mc):
    assert mc.set(b"month", b"v", exptime=2_592_000) is True
    assert mc.get(b"month") == b"v"
    assert mc.set(b"abs", b"v", exptime=int(time.time()) + 3600) is True
    assert mc.get(b"abs") == b"v"


def test_expiry_touch_and_gat(mc):
    """One sleep covers every expiry check: exptime=1 items are gone after
    2.1 s (memcached's clock has one-second ticks), touch and gat move the
    expiry both ways."""
    assert mc.set(b"short", b"1", exptime=1) is True
    assert mc.set(b"touched-short", b"2") is True
    assert mc.touch(b"touched-short", 1) is True
    assert mc.set(b"gat-short", b"3") is True
    assert mc.gat(b"gat-short", 1) == b"3"
    assert mc.set(b"gats-short", b"3s") is True
    value, cas = mc.gats(b"gats-short", 1)
    assert value == b"3s" and isinstance(cas, int)
    assert mc.set(b"touched-long", b"4", exptime=1) is True
    assert mc.touch(b"touched-long", 100) is True
    assert mc.set(b"gat-long", b"5", exptime=1) is True
    assert mc.gat(b"gat-long", 100) == b"5"
    assert mc.set(b"forever", b"6") is True
    assert mc.get(b"short") == b"1"
    time.sleep(2.1)
    assert mc.get(b"short") is None
    assert mc.get(b"touched-short") is None
    assert mc.get(b"gat-short") is None
    assert mc.get(b"gats-short") is None
    assert mc.get(b"touched-long") == b"4"
    assert mc.get(b"gat-long") == b"5"
    assert mc.get(b"forever") == b"6"


# -- noreply --------------------------------------------------------------------------------


def test_noreply_stores_and_next_command_gets_its_own_reply(mc, memcached):
    for i in range(20):
        assert mc.set(b"nr%d" % i, b"value-%d" % i, noreply=True) is True
    assert mc.get(b"nr0") == b"value-0"
    assert mc.get_multi([b"nr%d" % i for i in range(20)]) == {
        b"nr%d" % i: b"value-%d" % i for i in range(20)
    }
    assert memcached.raw_get(b"nr19") == (b"value-19", 0)


def test_noreply_failures_never_become_a_later_reply(mc, memcached):
    assert mc.set(b"probe", b"probe-value") is True
    assert mc.set(b"text", b"not a number") is True
    assert mc.set(b"exists", b"e") is True
    # every one of these would answer something other than the success line
    assert mc.add(b"exists", b"x", noreply=True) is True  # NOT_STORED
    assert mc.replace(b"missing", b"x", noreply=True) is True  # NOT_STORED
    assert mc.append(b"missing", b"x", noreply=True) is True  # NOT_STORED
    assert mc.delete(b"missing", noreply=True) is True  # NOT_FOUND
    assert mc.touch(b"missing", 10, noreply=True) is True  # NOT_FOUND
    mc.incr(b"text", 1, noreply=True)  # CLIENT_ERROR non-numeric
    mc.incr(b"missing", 1, noreply=True)  # NOT_FOUND
    assert mc.get(b"probe") == b"probe-value"
    assert mc.get(b"exists") == b"e"
    assert mc.get(b"text") == b"not a number"
    assert mc.get(b"missing") is None


def test_noreply_value_too_large_for_server(memcached_factory):
    server = memcached_factory()  # default 1 MiB item limit
    server.raw_set(b"probe", b"probe-value")
    with client_for(server, max_value_size=4 * MiB) as c:
        assert c.set(b"huge", b"h" * (2 * MiB), noreply=True) is True
        assert c.get(b"probe") == b"probe-value"
        assert c.get(b"huge") is None
        assert c.set(b"after", b"a") is True
        assert c.get(b"after") == b"a"


def test_noreply_delete_incr_touch_flush_are_applied(mc, memcached):
    assert mc.set(b"d", b"1") is True
    assert mc.set(b"n", b"10") is True
    assert mc.delete(b"d", noreply=True) is True
    mc.incr(b"n", 5, noreply=True)
    mc.decr(b"n", 2, noreply=True)
    assert mc.get(b"d") is None
    assert int(mc.get(b"n")) == 13
    assert mc.flush_all(noreply=True) is True
    assert mc.get(b"n") is None


# -- add / replace / append / prepend -------------------------------------------------------


def test_add(mc):
    assert mc.add(b"k", b"first") is True
    assert mc.add(b"k", b"second") is False
    assert mc.get(b"k") == b"first"


def test_replace(mc):
    assert mc.replace(b"k", b"v") is False
    assert mc.get(b"k") is None
    assert mc.set(b"k", b"old") is True
    assert mc.replace(b"k", b"new") is True
    assert mc.get(b"k") == b"new"


def test_append_prepend(mc):
    assert mc.append(b"k", b"x") is False
    assert mc.prepend(b"k", b"x") is False
    assert mc.get(b"k") is None
    assert mc.set(b"k", b"middle", flags=3) is True
    assert mc.append(b"k", b"-end") is True
    assert mc.prepend(b"k", b"start-") is True
    assert mc.get(b"k", with_flags=True) == (b"start-middle-end", 3)
    assert mc.append(b"k", b"\r\nEND\r\n") is True
    assert mc.get(b"k") == b"start-middle-end\r\nEND\r\n"


# -- cas --------------------------------------------------------------------------------------


def test_cas_conflict_missing_and_success(mc, memcached):
    assert mc.set(b"k", b"v1") is True
    value, token = mc.gets(b"k")
    assert value == b"v1"
    assert isinstance(token, int) and token > 0

    other = client_for(memcached)
    try:
        assert other.set(b"k", b"changed") is True
    finally:
        other.close()

    assert mc.cas(b"k", b"mine", token) is False
    assert mc.get(b"k") == b"changed"

    value, token2 = mc.gets(b"k")
    assert value == b"changed" and token2 != token
    assert mc.cas(b"k", b"mine", token2) is True
    assert mc.get(b"k") == b"mine"
    # a used token is stale
    assert mc.cas(b"k", b"again", token2) is False

    assert mc.delete(b"k") is True
    assert mc.cas(b"k", b"ghost", token2) is None
    assert mc.get(b"k") is None


def test_cas_from_gats_and_gets_multi(mc):
    assert mc.set(b"a", b"1") is True
    assert mc.set(b"b", b"2") is True
    got = mc.gets_multi([b"a", b"b", b"c"])
    assert set(got) == {b"a", b"b"}
    assert got[b"a"][0] == b"1" and got[b"b"][0] == b"2"
    assert mc.cas(b"a", b"1'", got[b"a"][1]) is True
    value, token = mc.gats(b"b", 0)
    assert value == b"2" and token == got[b"b"][1]
    assert mc.cas(b"b", b"2'", token) is True
    assert mc.get_multi([b"a", b"b"]) == {b"a": b"1'", b"b": b"2'"}


def test_cas_noreply(mc):
    assert mc.set(b"k", b"v") is True
    _, token = mc.gets(b"k")
    assert mc.cas(b"k", b"w", token, noreply=True) is True
    assert mc.get(b"k") == b"w"


# -- incr / decr ------------------------------------------------------------------------------


def test_incr_decr(mc):
    assert mc.incr(b"n") is None
    assert mc.decr(b"n") is None
    assert mc.set(b"n", b"5") is True
    result = mc.incr(b"n", 3)
    assert result == 8 and type(result) is int
    assert mc.incr(b"n") == 9
    assert mc.decr(b"n") == 8
    assert mc.decr(b"n", 100) == 0
    assert mc.decr(b"n", 1) == 0
    assert mc.incr(b"n", 0) == 0
    assert int(mc.get(b"n")) == 0


def test_decr_shorter_number_reads_back(mc):
    assert mc.set(b"n", b"10") is True
    assert mc.decr(b"n") == 9
    # memcached may space-pad the shorter number in place
    assert mc.get(b"n").rstrip(b" ") == b"9"


def test_incr_wraps_at_2_64(mc):
    assert mc.set(b"n", b"18446744073709551615") is True
    assert mc.incr(b"n", 1) == 0
    assert mc.set(b"n", b"1") is True
    assert mc.incr(b"n", 2**64 - 1) == 0
    assert mc.set(b"n", b"2") is True
    assert mc.incr(b"n", 2**64 - 1) == 1
    assert mc.incr(b"n", 2**64 - 2) == 2**64 - 1


def test_incr_on_non_number_is_client_error(mc):
    assert mc.set(b"text", b"hello") is True
    with pytest.raises(cmemcache.ClientError) as info:
        mc.incr(b"text", 1)
    assert "non-numeric" in str(info.value)
    with pytest.raises(cmemcache.ClientError):
        mc.decr(b"text", 1)
    # the connection is still in sync
    assert mc.set(b"after", b"a") is True
    assert mc.get(b"after") == b"a"
    assert mc.get(b"text") == b"hello"


# -- touch / gat / gats ------------------------------------------------------------------------


def test_touch(mc):
    assert mc.touch(b"missing", 10) is False
    assert mc.set(b"k", b"v") is True
    assert mc.touch(b"k", 10) is True
    assert mc.touch(b"k", 0) is True
    assert mc.get(b"k") == b"v"


def test_gat_gats(mc):
    assert mc.gat(b"missing", 10) is None
    assert mc.gats(b"missing", 10) is None
    assert mc.set(b"k", b"v", flags=12) is True
    assert mc.gat(b"k", 10) == b"v"
    assert mc.gat(b"k", 10, with_flags=True) == (b"v", 12)
    value, token = mc.gats(b"k", 10)
    assert value == b"v" and isinstance(token, int)
    assert mc.gats(b"k", 10, with_flags=True) == (b"v", 12, token)
    assert mc.gets(b"k") == (b"v", token)


def test_gat_with_negative_exptime_expires(mc):
    assert mc.set(b"k", b"v") is True
    assert mc.gat(b"k", -1) == b"v"
    assert mc.get(b"k") is None


# -- multi-key ---------------------------------------------------------------------------------


def test_get_multi_basics(mc):
    assert mc.get_multi([]) == {}
    assert mc.gets_multi([]) == {}
    for i in range(10):
        assert mc.set(b"k%d" % i, b"v%d" % i) is True
    keys = [b"k%d" % i for i in range(0, 20, 2)]
    assert mc.get_multi(keys) == {b"k%d" % i: b"v%d" % i for i in range(0, 10, 2)}
    got = mc.get_multi(iter([b"k1", b"k3"]))  # any iterable of keys
    assert got == {b"k1": b"v1", b"k3": b"v3"}


def test_get_multi_keys_as_given(mc):
    assert mc.set(b"bytes-key", b"b") is True
    assert mc.set("str-key", b"s") is True
    assert mc.set("clé", b"c") is True
    got = mc.get_multi([b"bytes-key", "str-key", "clé"])
    assert got == {b"bytes-key": b"b", "str-key": b"s", "clé": b"c"}


def test_get_multi_duplicates(mc):
    assert mc.set(b"a", b"1") is True
    assert mc.get_multi([b"a", b"a", b"b", b"a"]) == {b"a": b"1"}
    assert mc.gets_multi([b"a", b"a"])[b"a"][0] == b"1"


def test_get_multi_key_prefix(mc, memcached):
    assert mc.set(b"pre:a", b"1") is True
    assert mc.set(b"pre:b", b"2") is True
    assert mc.set(b"a", b"unprefixed") is True
    assert mc.get_multi([b"a", b"b", b"c"], key_prefix=b"pre:") == {b"a": b"1", b"b": b"2"}
    assert mc.get_multi(["a", "b"], key_prefix=b"pre:") == {"a": b"1", "b": b"2"}
    got = mc.gets_multi([b"a"], key_prefix=b"pre:")
    assert list(got) == [b"a"] and got[b"a"][0] == b"1"
    assert mc.get_multi([b"a"], key_prefix=b"pre:", with_flags=True) == {b"a": (b"1", 0)}


def test_get_multi_many_keys(mc):
    mapping = {b"many-%05d" % i: b"value-%05d" % i for i in range(5000)}
    assert mc.set_multi(mapping) == []
    assert mc.get_multi(list(mapping)) == mapping
    assert mc.delete_multi(list(mapping)) is True
    assert mc.get_multi(list(mapping)) == {}


@pytest.mark.hang_timeout(120)
def test_huge_batches_do_not_deadlock(memcached_factory):
    """Batches larger than both socket buffers: the client must read
    replies while it is still writing."""
    server = memcached_factory(memory_mb=256)
    mapping = {b"batch-%06d" % i: b"value-%06d" % i for i in range(200_000)}
    keys = list(mapping)
    with client_for(server, timeout=60, connect_timeout=5) as c:
        assert c.set_multi(mapping) == []
        assert c.get_multi(keys) == mapping
        assert c.delete_multi(keys) is True
        assert c.get_multi(keys[:1000]) == {}
    assert server.raw_get(keys[-1]) is None


def test_set_multi(mc, memcached):
    assert mc.set_multi({}) == []
    result = mc.set_multi({b"a": b"1", "b": b"2", b"c": (b"3", 42), b"d": (b"", 2**32 - 1)})
    assert result == [] and type(result) is list
    assert memcached.raw_get(b"a") == (b"1", 0)
    assert memcached.raw_get(b"b") == (b"2", 0)
    assert memcached.raw_get(b"c") == (b"3", 42)
    assert memcached.raw_get(b"d") == (b"", 2**32 - 1)
    assert mc.get_multi([b"c", b"d"], with_flags=True) == {b"c": (b"3", 42), b"d": (b"", 2**32 - 1)}


def test_set_multi_default_flags_and_prefix(mc, memcached):
    assert mc.set_multi({b"a": b"1", b"b": (b"2", 5)}, flags=9, key_prefix=b"p:") == []
    assert memcached.raw_get(b"p:a") == (b"1", 9)
    assert memcached.raw_get(b"p:b") == (b"2", 5)
    assert memcached.raw_get(b"a") is None
    assert mc.get_multi([b"a", b"b"], key_prefix=b"p:") == {b"a": b"1", b"b": b"2"}


def test_set_multi_noreply(mc, memcached):
    mc.set_multi({b"x%d" % i: b"y%d" % i for i in range(50)}, noreply=True)
    assert mc.get(b"x49") == b"y49"
    assert mc.get_multi([b"x%d" % i for i in range(50)]) == {
        b"x%d" % i: b"y%d" % i for i in range(50)
    }


def test_set_multi_value_too_large_for_server(memcached_factory):
    """The server refuses one item (SERVER_ERROR object too large): that key
    is reported as not stored and the others are stored."""
    server = memcached_factory(["-I", "1m"])
    with client_for(server, max_value_size=4 * MiB) as c:
        result = c.set_multi({b"a": b"small-a", b"big": b"x" * (2 * MiB), b"c": b"small-c"})
        assert result == [b"big"]
        assert c.get_multi([b"a", b"big", b"c"]) == {b"a": b"small-a", b"c": b"small-c"}
    assert server.raw_get(b"a") == (b"small-a", 0)
    assert server.raw_get(b"c") == (b"small-c", 0)
    assert server.raw_get(b"big") is None


def test_delete(mc):
    assert mc.delete(b"k") is False
    assert mc.set(b"k", b"v") is True
    assert mc.delete(b"k") is True
    assert mc.delete(b"k") is False
    assert mc.get(b"k") is None


def test_delete_multi(mc, memcached):
    assert mc.delete_multi([]) is True
    assert mc.set_multi({b"a": b"1", b"b": b"2", b"c": b"3"}) == []
    assert mc.delete_multi([b"a", b"b"]) is True
    assert mc.get_multi([b"a", b"b", b"c"]) == {b"c": b"3"}
    assert mc.delete_multi([b"c", b"missing"]) is False
    assert mc.get(b"c") is None
    assert mc.set(b"p:x", b"1") is True
    assert mc.set(b"x", b"unprefixed") is True
    assert mc.delete_multi([b"x"], key_prefix=b"p:") is True
    assert memcached.raw_get(b"p:x") is None
    assert memcached.raw_get(b"x") == (b"unprefixed", 0)


# -- flush, version, stats ----------------------------------------------------------------------


def test_flush_all(mc):
    assert mc.set_multi({b"a": b"1", b"b": b"2"}) == []
    assert mc.flush_all() is True
    assert mc.get_multi([b"a", b"b"]) == {}
    assert mc.set(b"a", b"after") is True
    assert mc.get(b"a") == b"after"


def test_flush_all_with_delay(memcached_factory):
    server = memcached_factory()
    with client_for(server) as c:
        assert c.set(b"k", b"v") is True
        assert c.flush_all(4) is True
        # memcached invalidates a few seconds later on a one-second clock:
        # at least one more second is left for this read
        assert c.get(b"k") == b"v"
        assert wait_until(lambda: c.get(b"k") is None, timeout=10, interval=0.25)


def test_flush_all_delay_keyword(memcached_factory):
    server = memcached_factory()
    with client_for(server) as c:
        assert c.set(b"k", b"v") is True
        assert c.flush_all(delay=600) is True
        assert c.get(b"k") == b"v"
        assert c.flush_all(delay=0) is True
        assert c.get(b"k") is None


def test_version(mc, memcached):
    versions = mc.version()
    assert isinstance(versions, dict)
    assert list(versions) == list(mc.servers)
    (version,) = versions.values()
    assert isinstance(version, str)
    assert version.startswith("1.6")
    assert version == memcached.stats()["version"]


def test_get_stats(mc, memcached):
    stats = mc.get_stats()
    assert isinstance(stats, list) and len(stats) == 1
    name, values = stats[0]
    assert name == mc.servers[0]
    assert isinstance(values, dict)
    assert values["pid"] == str(memcached.pid)
    assert values["version"].startswith("1.6")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())
    assert int(values["curr_connections"]) >= 1


def test_get_stats_args(mc):
    ((name, settings),) = mc.get_stats("settings")
    assert name == mc.servers[0]
    assert settings["item_size_max"] == str(MiB)
    assert settings["maxbytes"] == str(64 * MiB)
    assert settings["num_threads"] == "1"
    assert mc.set(b"k", b"v") is True
    ((_, items),) = mc.get_stats("items")
    assert any(k.endswith(":number") for k in items)
    ((_, slabs),) = mc.get_stats("slabs")
    assert "active_slabs" in slabs
    # the client is in sync after multi-line replies
    assert mc.get(b"k") == b"v"


def test_servers_and_server_index_single(mc, memcached):
    assert isinstance(mc.servers, tuple)
    assert len(mc.servers) == 1
    assert isinstance(mc.servers[0], str)
    assert str(memcached.port) in mc.servers[0]
    assert mc.server_index(b"anything") == 0
    assert mc.server_index("clé") == 0


# -- connection management ------------------------------------------------------------------------


def test_disconnect_all_closes_and_reconnects(memcached_factory):
    server = memcached_factory()
    c = client_for(server)
    assert c.set(b"k", b"v") is True
    assert wait_until(lambda: curr_connections(server) == 1)
    total_before = int(server.stats()["total_connections"])
    c.disconnect_all()
    assert wait_until(lambda: curr_connections(server) == 0)
    assert c.get(b"k") == b"v"
    assert wait_until(lambda: curr_connections(server) == 1)
    assert int(server.stats()["total_connections"]) > total_before
    c.close()
    assert wait_until(lambda: curr_connections(server) == 0)
    # close() leaves the client usable
    assert c.get(b"k") == b"v"
    c.close()
    c.close()  # twice is fine
    assert wait_until(lambda: curr_connections(server) == 0)


def test_context_manager(memcached_factory):
    server = memcached_factory()
    with StringClient([server.address], timeout=2) as c:
        assert isinstance(c, StringClient)
        assert c.set(b"k", b"v") is True
        assert wait_until(lambda: curr_connections(server) == 1)
    assert wait_until(lambda: curr_connections(server) == 0)
    assert server.raw_get(b"k") == (b"v", 0)


def test_connections_are_reused(memcached_factory):
    server = memcached_factory()
    with client_for(server) as c:
        assert c.set(b"k", b"v") is True
        total = int(server.stats()["total_connections"])
        for _ in range(50):
            assert c.get(b"k") == b"v"
        # the raw stats command opens one connection of its own
        assert int(server.stats()["total_connections"]) == total + 1


# -- addresses ---------------------------------------------------------------------------------


def test_unix_socket_server(memcached_factory, tmp_socket_dir):
    path = os.path.join(tmp_socket_dir, "mc.sock")
    server = memcached_factory(unix_path=path)
    assert server.address == f"unix:{path}"
    with StringClient([f"unix:{path}"], timeout=2) as c:
        assert c.set(b"k", b"over a unix socket") is True
        assert c.get(b"k") == b"over a unix socket"
        assert c.get_multi([b"k", b"x"]) == {b"k": b"over a unix socket"}
        assert c.version()[c.servers[0]].startswith("1.6")
        assert c.get_stats()[0][1]["pid"] == str(server.pid)
    assert server.raw_get(b"k") == (b"over a unix socket", 0)


@pytest.mark.skipif(not ipv6_available(), reason="::1 cannot be bound")
@pytest.mark.parametrize("form", ["inet6:[::1]:{port}", "[::1]:{port}"])
def test_ipv6_server(memcached_factory, form):
    server = memcached_factory(host="::1")
    with StringClient([form.format(port=server.port)], timeout=2) as c:
        assert c.set(b"k", b"over ipv6") is True
        assert c.get(b"k") == b"over ipv6"
        assert c.get_stats()[0][1]["pid"] == str(server.pid)
    assert server.raw_get(b"k") == (b"over ipv6", 0)


def test_host_name_is_resolved(memcached_factory):
    try:
        infos = socket.getaddrinfo("localhost", None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror:
        pytest.skip("localhost does not resolve")
    if not any(info[4][0] == "127.0.0.1" for info in infos):
        pytest.skip("localhost is not 127.0.0.1 here")
    server = memcached_factory()
    with StringClient([f"localhost:{server.port}"], timeout=2) as c:
        assert c.set(b"k", b"by name") is True
        assert c.get(b"k") == b"by name"
    assert server.raw_get(b"k") == (b"by name", 0)


def test_single_server_string_instead_of_list(memcached_factory):
    server = memcached_factory()
    with StringClient(server.address, timeout=2) as c:
        assert len(c.servers) == 1
        assert c.set(b"k", b"v") is True
        assert c.get(b"k") == b"v"


# -- several servers ---------------------------------------------------------------------------


def python_memcached_index(key: bytes, weights) -> int:
    """python-memcached's (1.60+) server choice: 15-bit crc32 hash into
    weighted buckets."""
    h = ((zlib.crc32(key) & 0xFFFFFFFF) >> 16) & 0x7FFF
    buckets = [i for i, w in enumerate(weights) for _ in range(w)]
    return buckets[h % len(buckets)]


def test_several_servers_with_weights(memcached_factory):
    servers = [memcached_factory() for _ in range(3)]
    weights = [1, 2, 3]
    spec = [(s.address, w) for s, w in zip(servers, weights)]
    keys = [b"key-%d" % i for i in range(150)] + ["clé-%d" % i for i in range(30)]
    with StringClient(spec, timeout=2) as c:
        assert len(c.servers) == 3
        for i, s in enumerate(servers):
            assert str(s.port) in c.servers[i]
        placed = [0, 0, 0]
        for key in keys:
            raw = key.encode() if isinstance(key, str) else key
            idx = c.server_index(key)
            assert idx == python_memcached_index(raw, weights), key
            placed[idx] += 1
            assert c.set(key, b"v:" + raw) is True
            for j, s in enumerate(servers):
                expected = (b"v:" + raw, 0) if j == idx else None
                assert s.raw_get(raw) == expected, (key, j, idx)
        assert all(placed), placed  # every server got some keys

        expected = {k: b"v:" + (k.encode() if isinstance(k, str) else k) for k in keys}
        assert c.get_multi(keys) == expected
        assert set(c.gets_multi(keys)) == set(keys)

        versions = c.version()
        assert set(versions) == set(c.servers)
        assert all(v.startswith("1.6") for v in versions.values())
        stats = c.get_stats()
        assert [name for name, _ in stats] == list(c.servers)
        assert [d["pid"] for _, d in stats] == [str(s.pid) for s in servers]

        assert c.delete_multi(keys[:60]) is True
        assert c.get_multi(keys[:60]) == {}
        assert c.flush_all() is True
        for s in servers:
            assert s.raw_get(keys[100]) is None


def test_several_servers_key_prefix_hashes_full_key(memcached_factory):
    servers = [memcached_factory() for _ in range(2)]
    with StringClient([s.address for s in servers], timeout=2) as c:
        keys = [b"k%d" % i for i in range(40)]
        assert c.set_multi({k: b"v" + k for k in keys}, key_prefix=b"pfx:") == []
        for k in keys:
            full = b"pfx:" + k
            idx = c.server_index(full)
            assert idx == python_memcached_index(full, [1, 1])
            assert servers[idx].raw_get(full) == (b"v" + k, 0)
            assert servers[1 - idx].raw_get(full) is None
        assert c.get_multi(keys, key_prefix=b"pfx:") == {k: b"v" + k for k in keys}


def test_equal_weights_tuple_and_string(memcached_factory):
    servers = [memcached_factory() for _ in range(2)]
    with StringClient([servers[0].address, (servers[1].address, 1)], timeout=2) as c:
        for i in range(50):
            key = b"w%d" % i
            assert c.server_index(key) == python_memcached_index(key, [1, 1])
