"""protocol="meta": every key command of StringClient and Client, blocking
and asyncio, goes to a real memcached as mg/ms/md/ma (and mn), and every
result, error and stored byte is the text protocol's."""

from __future__ import annotations

import asyncio
import re

import pytest

import cmemcache
import cmemcache.aio
from conftest import MemcachedServer, TcpRelay, made_by, memcached_servers
from fakeserver import expect, send

MiB = 1024 * 1024


@pytest.fixture
def relay_factory():
    """``make(target_port) -> TcpRelay``; all are stopped after the test."""
    with made_by(TcpRelay, TcpRelay.stop) as make:
        yield make


def commands(sent: bytes) -> list[bytes]:
    """The command words in what a client sent, data blocks skipped."""
    words = []
    rest = bytes(sent)
    while rest:
        line, _, rest = rest.partition(b"\r\n")
        parts = line.split(b" ")
        words.append(parts[0])
        if parts[0] in (b"ms", b"set", b"add", b"replace", b"append", b"prepend", b"cas"):
            n = int(parts[2] if parts[0] == b"ms" else parts[4])
            assert rest[n:n + 2] == b"\r\n", line
            rest = rest[n + 2:]
    return words


def normalized(script: list) -> list:
    """A script's results with the cas ids (which differ from run to run)
    replaced by the order they were first seen in."""
    seen: dict[int, int] = {}

    def walk(r):
        if isinstance(r, tuple):
            return (r[0], "cas%d" % seen.setdefault(r[1], len(seen)))
        if isinstance(r, dict):
            return {k: walk(v) for k, v in sorted(r.items())}
        return r

    return [(name, walk(r) if name in ("gets", "gats", "gets_multi") else r) for name, r in script]


def string_script(sc) -> list:
    """Every key command of StringClient, the failures included."""
    out = []

    def do(name, *args, **kwargs):
        try:
            out.append((name, getattr(sc, name)(*args, **kwargs)))
        except cmemcache.Error as exc:
            out.append((name, type(exc).__name__))

    do("set", b"a", b"hello", flags=16)
    do("get", b"a", with_flags=True)
    do("gets", b"a")
    do("add", b"a", b"x")
    do("add", b"new", b"x", exptime=100, flags=3)
    do("replace", b"missing", b"x")
    do("replace", b"new", b"y", flags=5)
    do("append", b"a", b"!")
    do("prepend", b"a", b"<")
    do("append", b"missing", b"!")
    do("get", b"a")
    token = sc.gets(b"a")[1]
    do("cas", b"a", b"swapped", token)
    do("cas", b"a", b"again", token)
    do("cas", b"missing", b"v", 12345)
    do("get", b"a")
    do("set", b"n", b"41")
    do("incr", b"n")
    do("incr", b"n", delta=100)
    do("decr", b"n", delta=1000)
    do("incr", b"missing")
    do("incr", b"a")  # not a number: the server's CLIENT_ERROR
    do("set", b"big", b"18446744073709551615")
    do("incr", b"big")  # wraps to 0
    do("touch", b"n", 100)
    do("touch", b"missing", 100)
    do("gat", b"n", 200)
    do("gats", b"n", 300)
    do("gat", b"missing", 200, with_flags=True)
    do("set", b"expired", b"x", exptime=-1)
    do("get", b"expired")
    do("delete", b"n")
    do("delete", b"n")
    do("get", b"n")
    do("set", b"empty", b"")
    do("get", b"empty", with_flags=True)
    do("set", b"crlf", b"a\r\nEND\r\nVALUE x 0 1\r\n")
    do("get", b"crlf")
    do("set_multi", {b"k1": b"1", b"k2": (b"22", 7), b"k3": b""}, exptime=100)
    do("get_multi", [b"k1", b"k2", b"k3", b"k4", b"k1"], with_flags=True)
    do("get_multi", [b"1", b"2"], key_prefix=b"k")
    do("gets_multi", [b"k1", b"nope", b"k2"])
    do("get_multi", [])
    do("delete_multi", [b"k1", b"k2"])
    do("delete_multi", [b"k3", b"nope"])
    do("get_multi", [b"k1", b"k2", b"k3"])
    # noreply: q and the fence; the failures among them are skipped, and
    # the call after them reads its own reply
    do("set", b"q1", b"v", noreply=True)
    do("add", b"q1", b"w", noreply=True)
    do("replace", b"nope", b"w", noreply=True)
    do("delete", b"nope", noreply=True)
    do("incr", b"nope", noreply=True)
    do("incr", b"q1", noreply=True)
    do("touch", b"nope", 5, noreply=True)
    do("set_multi", {b"q2": b"2", b"q3": b"3"}, noreply=True)
    do("delete_multi", [b"q3", b"nope"], noreply=True)
    do("get_multi", [b"q1", b"q2", b"q3"])
    do("get", b"q1")
    return out


@pytest.mark.parametrize("servers", [1, 3])
def test_stringclient_results_are_the_text_protocols(servers):
    with memcached_servers(servers) as group:
        addrs = [s.address for s in group]
        text = cmemcache.StringClient(addrs, timeout=5)
        expected = normalized(string_script(text))
        for s in group:
            s.fresh()
        meta = cmemcache.StringClient(addrs, timeout=5, protocol="meta")
        assert normalized(string_script(meta)) == expected
        # and what is on the servers afterwards, read by the text protocol
        keys = [b"a", b"new", b"big", b"empty", b"crlf", b"q1", b"q2", b"q3"]
        assert text.get_multi(keys, with_flags=True) == meta.get_multi(keys, with_flags=True)
        text.disconnect_all()
        meta.disconnect_all()


def test_every_key_command_goes_as_meta(server, relay_factory):
    relay = relay_factory(server.port)
    sc = cmemcache.StringClient([relay.address], timeout=5, protocol="meta")
    string_script(sc)
    sc.disconnect_all()
    words = commands(relay.sent)
    assert set(words) == {b"mg", b"ms", b"md", b"ma", b"mn"}, set(words)
    # the text client of the same script speaks none of them
    relay.sent.clear()
    sc = cmemcache.StringClient([relay.address], timeout=5)
    string_script(sc)
    sc.disconnect_all()
    assert not set(commands(relay.sent)) & {b"mg", b"ms", b"md", b"ma"}


def test_multi_key_lines(server, relay_factory):
    """get_multi: one quiet mg per key, then one mn; set_multi and
    delete_multi: an opaque token per key, no q (each key answers)."""
    relay = relay_factory(server.port)
    sc = cmemcache.StringClient([relay.address], timeout=5, protocol="meta")
    assert sc.set_multi({b"a": b"1", b"b": (b"2", 9)}, exptime=30) == []
    assert sc.get_multi([b"a", b"b", b"c"], with_flags=True) == {b"a": (b"1", 0), b"b": (b"2", 9)}
    assert sc.delete_multi([b"a", b"c"]) is False
    sc.disconnect_all()
    assert bytes(relay.sent) == (
        b"ms a 1 T30 O0\r\n1\r\nms b 1 T30 F9 O1\r\n2\r\n"
        b"mg a v f O0 q\r\nmg b v f O1 q\r\nmg c v f O2 q\r\nmn\r\n"
        b"md a O0\r\nmd c O1\r\n")


def client_script(mc) -> list:
    """Client's commands: pickled, text, int and compressed values."""
    out = []
    big = "x" * 50_000
    out.append(mc.set("obj", {"a": [1, 2, 3]}))
    out.append(mc.set("text", "héllo"))
    out.append(mc.set("int", 42))
    out.append(mc.set("big", big, min_compress_len=100))
    out.append(mc.get("obj"))
    out.append(mc.get("text"))
    out.append(mc.get("big") == big)
    out.append(mc.get("missing"))
    out.append(mc.add("int", 1))
    out.append(mc.replace("missing", 1))
    out.append(mc.incr("int", 8))
    out.append(mc.decr("int", 100))
    out.append(mc.incr("missing"))
    out.append(mc.append("text", "!"))
    out.append(mc.get("text"))
    out.append(mc.gets("obj"))
    out.append(mc.cas("obj", {"b": 2}))
    out.append(mc.get("obj"))
    out.append(mc.set_multi({"m1": 1, "m2": "two", "m3": [3]}, key_prefix="p:"))
    out.append(mc.get_multi(["m1", "m2", "m3", "m4"], key_prefix="p:"))
    out.append(mc.touch("int", 100))
    out.append(mc.delete("obj"))
    out.append(mc.delete("obj"))
    out.append(mc.delete_multi(["m1", "m2"], key_prefix="p:"))
    out.append(mc.get_multi(["p:m1", "p:m2", "p:m3"]))
    return out


def test_client_results_are_the_text_protocols(server):
    text = cmemcache.Client([server.address], cache_cas=True)
    expected = client_script(text)
    server.fresh()
    meta = cmemcache.Client([server.address], cache_cas=True, protocol="meta")
    assert meta.protocol == "meta"
    assert client_script(meta) == expected
    # the bytes and flags stored are the text client's
    server.fresh()
    client_script(text)
    stored = {k: server.raw_get(k) for k in (b"text", b"int", b"big", b"p:m3")}
    server.fresh()
    client_script(meta)
    assert {k: server.raw_get(k) for k in stored} == stored
    text.disconnect_all()
    meta.disconnect_all()


def test_noreply_failures_keep_the_connection_in_sync(server, relay_factory):
    relay = relay_factory(server.port)
    sc = cmemcache.StringClient([relay.address], timeout=5, protocol="meta", pool_size=1)
    assert sc.set(b"k", b"v") is True
    for i in range(200):
        # each answers NS, NF or EX although sent quiet: skipped before
        # the fence's MN, never read as a later call's reply
        sc.add(b"k", b"x%d" % i, noreply=True)
        sc.delete(b"nope%d" % i, noreply=True)
        sc.cas(b"k", b"y", 1, noreply=True)
        sc.incr(b"nope", noreply=True)
        assert sc.get(b"k") == b"v"
    assert relay.counters()[0] == 1  # one connection all along
    sc.disconnect_all()


def test_set_multi_item_the_server_refuses_is_reported_alone():
    """A value the server refuses ("SERVER_ERROR object too large", no
    token) answers its own key, as in the text protocol."""
    server = MemcachedServer(extra_args=["-I", "1m"])
    try:
        for protocol in ("text", "meta"):
            server.fresh()
            sc = cmemcache.StringClient([server.address], timeout=5, max_value_size=4 * MiB,
                                        protocol=protocol)
            big = b"x" * (2 * MiB)
            assert sc.set_multi({b"a": b"1", b"big": big, b"c": b"3"}) == [b"big"], protocol
            assert sc.get_multi([b"a", b"big", b"c"]) == {b"a": b"1", b"c": b"3"}
            with pytest.raises(cmemcache.ServerError):
                sc.set(b"big", big)
            assert sc.get(b"a") == b"1"
            sc.disconnect_all()
    finally:
        server.dispose()


def test_many_keys_over_three_servers():
    with memcached_servers(3) as group:
        addrs = [s.address for s in group]
        text = cmemcache.StringClient(addrs, timeout=5)
        meta = cmemcache.StringClient(addrs, timeout=5, protocol="meta")
        values = {b"key%d" % i: b"v%d" % i * (i % 7) for i in range(0, 3000, 2)}
        assert meta.set_multi(values) == []
        keys = [b"key%d" % i for i in range(3000)]
        assert meta.get_multi(keys) == text.get_multi(keys) == values
        got = meta.gets_multi(keys)
        assert {k: v for k, (v, _) in got.items()} == values
        assert all(text.gets(k)[1] == cas for k, (_, cas) in got.items())
        # each key on the server the text client puts it on
        assert all(meta.server_index(k) == text.server_index(k) for k in keys[:200])
        text.disconnect_all()
        meta.disconnect_all()


@pytest.mark.parametrize("kwargs, message", [
    ({"protocol": "binary"}, "protocol must be 'text' or 'meta'"),
    ({"protocol": "meta", "proxy": "twemproxy"}, "does not go through twemproxy"),
    ({"protocol": "meta", "noreply_fence": False}, "needs noreply_fence=True"),
])
@pytest.mark.parametrize("cls", [cmemcache.StringClient, cmemcache.aio.StringClient])
def test_bad_protocol_arguments(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(["127.0.0.1:1"], **kwargs)


def test_client_bad_protocol_is_refused():
    with pytest.raises(ValueError, match="protocol must be"):
        cmemcache.Client(["127.0.0.1:1"], protocol="binary")
    with pytest.raises(TypeError):
        cmemcache.StringClient(["127.0.0.1:1"], protocol=1)


# -- the asyncio clients -----------------------------------------------------------------


def test_aio_stringclient_results_are_the_text_protocols(server):
    """The same script, awaited: each call through aio.StringClient (whose
    meta requests carry opaque tokens)."""

    class Awaited:
        def __init__(self, client):
            self.client = client
            self.loop = asyncio.new_event_loop()

        def __getattr__(self, name):
            method = getattr(self.client, name)
            return lambda *a, **k: self.loop.run_until_complete(method(*a, **k))

    text = cmemcache.StringClient([server.address], timeout=5)
    expected = normalized(string_script(text))
    text.disconnect_all()
    server.fresh()
    meta = Awaited(cmemcache.aio.StringClient([server.address], timeout=5, protocol="meta"))
    try:
        assert normalized(string_script(meta)) == expected
    finally:
        meta.close()
        meta.loop.close()


def test_aio_many_tasks_each_read_their_own(server):
    async def go():
        async with cmemcache.aio.Client([server.address], protocol="meta") as mc:
            async def task(i):
                mine = {"t%d-%d" % (i, j): [i, j] for j in range(5)}
                assert await mc.set_multi(mine) == []
                for _ in range(10):
                    assert await mc.get("t%d-0" % i) == [i, 0]
                    assert await mc.get_multi(list(mine) + ["none%d" % i]) == mine
                    assert await mc.incr("n%d" % i) is None
                    assert await mc.add("t%d-1" % i, 0) is False
                return i

            assert sorted(await asyncio.gather(*(task(i) for i in range(256)))) == list(range(256))

    asyncio.run(go())


# -- replies a real server never sends ---------------------------------------------------


def test_a_quiet_reply_with_a_token_not_asked_for_breaks_the_connection(fake_server):
    fake = fake_server([
        expect(rb"^mg a v f O0 q\r\nmg b v f O1 q\r\nmn\r\n"),
        send(b"VA 1 f0 O5\r\nx\r\nMN\r\n"),
    ])
    sc = cmemcache.StringClient([fake.address], timeout=5, protocol="meta")
    with pytest.raises(cmemcache.ProtocolError, match="opaque token"):
        sc.get_multi([b"a", b"b"])
    sc.disconnect_all()


def test_an_error_inside_a_quiet_reply_fails_the_call_in_sync(fake_server):
    fake = fake_server([
        expect(rb"^mg a v f O0 q\r\nmg b v f O1 q\r\nmn\r\n"),
        send(b"VA 1 f0 O0\r\nx\r\nSERVER_ERROR out of memory\r\nMN\r\n"),
    ])
    sc = cmemcache.StringClient([fake.address], timeout=5, protocol="meta")
    with pytest.raises(cmemcache.ServerError, match="out of memory") as info:
        sc.get_multi([b"a", b"b"])
    # the value its token names is found; the error answered another key
    assert info.value.partial == {b"a": b"x"}
    sc.disconnect_all()


def test_a_reply_of_the_wrong_kind_breaks_the_connection(fake_server):
    fake = fake_server([expect(rb"^ms k 1\r\nv\r\n"), send(b"VA 1 f0\r\nx\r\n")])
    sc = cmemcache.StringClient([fake.address], timeout=5, protocol="meta")
    with pytest.raises(cmemcache.ProtocolError, match="does not fit"):
        sc.set(b"k", b"v")
    sc.disconnect_all()
    assert re.match(rb"^ms k 1\r\nv\r\n$", fake.connections[0].received)


# -- binary keys (binary_keys=True) ------------------------------------------------------

BINARY_KEYS = [b"a key", b"line\r\nEND\r\n", b"nul\x00byte", b"del\x7f", b"\t", b" ",
               "ключ с пробелом".encode(), b"x" * 185 + b" "]


def test_binary_keys_every_command(server, relay_factory):
    relay = relay_factory(server.port)
    sc = cmemcache.StringClient([relay.address], timeout=5, protocol="meta", binary_keys=True)
    plain = cmemcache.StringClient([server.address], timeout=5, protocol="meta")
    for i, key in enumerate(BINARY_KEYS):
        assert sc.set(key, b"v%d" % i, flags=i) is True
        assert sc.get(key, with_flags=True) == (b"v%d" % i, i)
        # stored under the raw bytes: what meta_get(binary_key=True) reads
        assert plain.meta_get(key, binary_key=True, flags=True)[:2] == (b"v%d" % i, i)
        value, token = sc.gets(key)
        assert sc.cas(key, b"c", token) is True and sc.cas(key, b"d", token) is False
        assert sc.add(key, b"x") is False and sc.append(key, b"+") is True
        assert sc.touch(key, 100) is True and sc.gat(key, 200) == b"c+"
        assert sc.delete(key) is True and sc.get(key) is None
        assert sc.set(key, b"10") and sc.incr(key, 5) == 15 and sc.decr(key) == 14
    assert sc.set_multi({k: b"m" + k for k in BINARY_KEYS}) == []
    assert sc.get_multi(BINARY_KEYS + [b"no such key"]) == {k: b"m" + k for k in BINARY_KEYS}
    assert sc.delete_multi(BINARY_KEYS) is True
    assert sc.get_multi(BINARY_KEYS) == {}
    # with a prefix: the prefix and the key joined, then encoded
    assert sc.set_multi({b"1 2": b"p"}, key_prefix=b"pre") == []
    assert sc.get_multi([b"1 2"], key_prefix=b"pre") == {b"1 2": b"p"}
    assert plain.meta_get(b"pre1 2", binary_key=True).value == b"p"
    # a key the text protocol takes is sent as it is, readable by text clients
    assert sc.set(b"plain", b"text") is True
    assert cmemcache.StringClient([server.address]).get(b"plain") == b"text"
    sc.disconnect_all()
    assert b"ms plain 4\r\n" in relay.sent
    assert b"ms YSBrZXk= 2 b\r\n" in relay.sent  # base64 of b"a key"
    assert not re.search(rb"^m[gsda] (a key|nul\x00)", relay.sent, re.M)
    plain.disconnect_all()


def test_binary_keys_limits_are_checked_before_sending(server, relay_factory):
    relay = relay_factory(server.port)
    sc = cmemcache.StringClient([relay.address], timeout=5, protocol="meta", binary_keys=True)
    for key in (b" " * 187, b"x" * 180 + b"\n" * 7):
        with pytest.raises(cmemcache.InvalidKeyError, match="at most 186 bytes"):
            sc.set(key, b"v")
        with pytest.raises(cmemcache.InvalidKeyError, match="at most 186 bytes"):
            sc.get_multi([b"ok", key])
    with pytest.raises(cmemcache.InvalidKeyError, match="at most 186 bytes"):
        sc.get_multi([b" " * 180], key_prefix=b"p" * 7)
    with pytest.raises(cmemcache.InvalidKeyError, match="at most 186 bytes"):
        sc.get_multi([b"p" * 180], key_prefix=b" " * 7)  # a binary prefix
    with pytest.raises(cmemcache.InvalidKeyError, match="empty"):
        sc.get(b"")
    assert sc.set(b"x" * 250, b"v") is True  # a text key keeps the text limit
    with pytest.raises(cmemcache.InvalidKeyError, match="longer than 250"):
        sc.set(b"x" * 251, b"v")
    sc.disconnect_all()
    assert commands(relay.sent) == [b"ms"]  # only the one that was valid


@pytest.mark.parametrize("cls", [cmemcache.StringClient, cmemcache.aio.StringClient, cmemcache.Client])
def test_binary_keys_need_the_meta_protocol(cls):
    with pytest.raises(ValueError, match="binary_keys=True needs protocol='meta'"):
        cls(["127.0.0.1:1"], binary_keys=True)


def test_binary_keys_on_three_servers_are_placed_by_their_bytes():
    with memcached_servers(3) as group:
        addrs = [s.address for s in group]
        sc = cmemcache.StringClient(addrs, timeout=5, protocol="meta", binary_keys=True)
        keys = [b"k %d\n" % i for i in range(60)]
        assert sc.set_multi({k: k for k in keys}) == []
        for k in keys:
            one = cmemcache.StringClient([addrs[sc.server_index(k)]], protocol="meta")
            assert one.meta_get(k, binary_key=True).value == k
        assert len({sc.server_index(k) for k in keys}) == 3
        assert sc.get_multi(keys) == {k: k for k in keys}


def test_client_binary_keys(server):
    mc = cmemcache.Client([server.address], protocol="meta", binary_keys=True)
    key = "ключ с пробелом\n"
    assert mc.set(key, {"v": 1}) is True
    assert mc.get(key) == {"v": 1}
    assert mc.get_multi([key, "a b", "plain"]) == {key: {"v": 1}}
    assert mc.set_multi({"a b": 1, "c\td": "two"}, key_prefix="p ") == []
    assert mc.get_multi(["a b", "c\td"], key_prefix="p ") == {"a b": 1, "c\td": "two"}
    assert mc.incr("p a b", 2) == 3
    assert mc.delete(key) == 1 and mc.get(key) is None
    with pytest.raises(cmemcache.Client.MemcachedKeyLengthError, match="> 186"):
        mc.set("x" * 180 + " " * 10, 1)
    with pytest.raises(cmemcache.Client.MemcachedKeyNoneError):
        mc.set(None, 1)
    text = cmemcache.Client([server.address])
    with pytest.raises(cmemcache.Client.MemcachedKeyCharacterError):
        text.set("a b", 1)

    async def go():
        async with cmemcache.aio.Client([server.address], protocol="meta", binary_keys=True) as a:
            assert await a.set("a b", 5) is True
            assert await a.get_multi(["a b", "x y"]) == {"a b": 5}
            assert await a.get_or_set("lease key\n", lambda: 42) == 42
            assert await a.get("lease key\n") == 42

    asyncio.run(go())
