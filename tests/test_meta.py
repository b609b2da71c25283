"""StringClient's meta commands (meta_get, meta_set, meta_delete,
meta_arithmetic) against a real memcached: every argument and return flag
with its value, text and meta calls on one client and one connection,
binary keys, the value limit, and bad input refused before anything is
sent."""

from __future__ import annotations

import pickle
import threading
import time

import pytest

import cmemcache
from cmemcache import MetaResult, StringClient
from conftest import run_python

NONE_ASKED = dict(value=None, flags=None, cas=None, ttl=None, size=None, last_access=None,
                  hit=None, win=False, stale=False, won=False)


def fields(r: MetaResult) -> dict:
    return {name: getattr(r, name) for name in NONE_ASKED}


# -- meta_get ----------------------------------------------------------------------------


def test_meta_get_miss_and_value(mc, server):
    assert mc.meta_get("absent") is None
    assert mc.meta_get("absent", cas=True, ttl=True, flags=True) is None
    server.raw_set(b"k", b"hello", flags=7, exptime=100)
    r = mc.meta_get("k")
    assert isinstance(r, MetaResult)
    assert fields(r) == dict(NONE_ASKED, value=b"hello")
    assert r == (b"hello", None, None, None, None, None, None, False, False, False)
    with pytest.raises(AttributeError):
        r.value = b"x"  # type: ignore[misc]


def test_meta_get_every_return_flag(mc, server):
    server.raw_set(b"k", b"hello", flags=7, exptime=100)
    cas = mc.gets("k")[1]
    r = mc.meta_get("k", cas=True, flags=True, ttl=True, size=True, last_access=True, hit=True)
    assert r.value == b"hello" and r.flags == 7 and r.cas == cas and r.size == 5
    assert 99 <= r.ttl <= 100
    assert r.hit is True  # gets above read it
    assert 0 <= r.last_access <= 2
    r = mc.meta_get("k", value=False, size=True)
    assert fields(r) == dict(NONE_ASKED, size=5)
    server.raw_set(b"forever", b"x")
    assert mc.meta_get("forever", value=False, ttl=True).ttl == -1


def test_meta_get_hit_and_last_access(mc, server):
    server.raw_set(b"k", b"v")
    # the first read of a fresh item: not hit before
    assert mc.meta_get("k", hit=True, no_bump=True).hit is False
    # no_bump: that read did not count
    assert mc.meta_get("k", hit=True).hit is False
    assert mc.meta_get("k", hit=True).hit is True
    time.sleep(1.1)
    r = mc.meta_get("k", last_access=True, value=False)
    assert r.last_access >= 1 and r.value is None


def test_meta_get_touch(mc, server):
    server.raw_set(b"k", b"v", exptime=100)
    r = mc.meta_get("k", touch=500, ttl=True)
    assert 499 <= r.ttl <= 500 and r.value == b"v"
    assert 499 <= server.raw_ttl(b"k") <= 500
    mc.meta_get("k", touch=0, value=False)
    assert server.raw_ttl(b"k") == -1


def test_meta_get_vivify_win_then_won(mc, server):
    first = mc.meta_get("v", vivify=30, ttl=True)
    assert first.win is True and first.won is False and first.value == b""
    other = StringClient([server.address])
    second = other.meta_get("v", vivify=30, ttl=True)
    assert second.win is False and second.won is True and second.value == b""
    assert 29 <= second.ttl <= 30
    # the winner recaches; then everyone sees the value, no flags
    assert mc.meta_set("v", b"fresh", ttl=60) is True
    assert fields(other.meta_get("v")) == dict(NONE_ASKED, value=b"fresh")
    other.disconnect_all()


def test_meta_get_recache(mc, server):
    assert mc.meta_set("k", b"old", ttl=100)
    # the TTL is below the recache threshold: this caller wins
    r = mc.meta_get("k", recache=200, ttl=True)
    assert r.win is True and r.value == b"old" and 99 <= r.ttl <= 100
    r = mc.meta_get("k", recache=200)
    assert r.win is False and r.won is True and r.value == b"old"
    # above the threshold: no win
    assert mc.meta_set("k2", b"new", ttl=1000)
    assert fields(mc.meta_get("k2", recache=200)) == dict(NONE_ASKED, value=b"new")


# -- meta_set ----------------------------------------------------------------------------


def test_meta_set_flags_ttl_and_text_reads(mc, server):
    assert mc.meta_set("k", b"hello", flags=16, ttl=100) is True
    assert mc.get("k", with_flags=True) == (b"hello", 16)
    assert server.raw_get(b"k") == (b"hello", 16)
    assert 99 <= server.raw_ttl(b"k") <= 100
    assert mc.meta_set("k", b"again") is True
    assert server.raw_get(b"k") == (b"again", 0)
    assert server.raw_ttl(b"k") == -1
    # text set, meta get
    assert mc.set("t", b"text", flags=4, exptime=50)
    r = mc.meta_get("t", flags=True, ttl=True)
    assert r.value == b"text" and r.flags == 4 and 49 <= r.ttl <= 50
    # python-memcached (and cmemcache.Client) read what meta_set wrote
    memcache = pytest.importorskip("memcache")
    for cl in (memcache.Client([server.address]), cmemcache.Client([server.address])):
        assert mc.meta_set("s", "text é".encode(), flags=16)
        assert mc.meta_set("i", b"42", flags=2)
        assert cl.get("s") == "text é" and cl.get("i") == 42
        # and meta_get reads what they wrote
        assert cl.set("p", {"a": 1})
        r = mc.meta_get("p", flags=True)
        assert r.flags == 1 and pickle.loads(r.value) == {"a": 1}
        cl.disconnect_all()


def test_meta_set_return_cas_and_compare(mc):
    cas = mc.meta_set("k", b"1", return_cas=True)
    assert type(cas) is int and cas == mc.gets("k")[1]
    assert mc.meta_set("k", b"2", cas=cas + 1) is False  # EX
    assert mc.get("k") == b"1"
    cas2 = mc.meta_set("k", b"2", cas=cas, return_cas=True)
    assert cas2 > cas and mc.gets("k") == (b"2", cas2)
    assert mc.meta_set("nokey", b"x", cas=5) is False  # NF
    assert mc.get("nokey") is None
    assert mc.meta_set("nokey", b"x", cas=5, return_cas=True) is False


def test_meta_set_modes(mc):
    assert mc.meta_set("k", b"a", mode="add") is True
    assert mc.meta_set("k", b"b", mode="add") is False
    assert mc.get("k") == b"a"
    assert mc.meta_set("k", b"c", mode="append") is True
    assert mc.meta_set("k", b"0", mode="prepend") is True
    assert mc.get("k") == b"0ac"
    assert mc.meta_set("k", b"r", mode="replace") is True
    assert mc.get("k") == b"r"
    assert mc.meta_set("none", b"r", mode="replace") is False
    assert mc.meta_set("none", b"r", mode="append") is False
    assert mc.meta_set("none", b"r", mode="prepend") is False
    assert mc.get("none") is None
    assert mc.meta_set("none", b"s", mode="set") is True
    assert mc.get("none") == b"s"


def test_meta_set_invalidate_marks_stale(mc):
    cas = mc.meta_set("k", b"v1", return_cas=True)
    assert mc.meta_delete("k", invalidate=True, cas=cas) is True
    r = mc.meta_get("k", cas=True)
    assert r.stale is True and r.win is True and r.value == b"v1"
    r2 = mc.meta_get("k")
    assert r2.stale is True and r2.won is True and r2.win is False
    # a set with invalidate and an older cas is taken, and stays stale
    assert mc.meta_set("k", b"v2", cas=cas, invalidate=True) is True
    r3 = mc.meta_get("k")
    assert r3.value == b"v2" and r3.stale is True
    # a plain set makes it fresh
    assert mc.meta_set("k", b"v3") is True
    assert fields(mc.meta_get("k")) == dict(NONE_ASKED, value=b"v3")


def test_meta_set_values_up_to_1mib_and_the_limit(memcached_factory):
    server = memcached_factory(["-I", "2m"])
    c = StringClient([server.address], max_value_size=1 << 20, timeout=5)
    for n in (0, 1, 1000, 100_000, (1 << 20) - 1, 1 << 20):
        value = bytes(range(256)) * (n // 256) + b"x" * (n % 256)
        assert c.meta_set("big", value) is True
        r = c.meta_get("big", size=True)
        assert r.value == value and r.size == n
        assert c.get("big") == value
    with pytest.raises(cmemcache.ValueTooLargeError):
        c.meta_set("big", b"x" * ((1 << 20) + 1))
    with pytest.raises(cmemcache.ValueTooLargeError):
        c.meta_set("big", bytearray((1 << 20) + 1))
    assert c.meta_set("big", memoryview(b"view")) is True
    # a value over the reader's limit, stored by another client
    small = StringClient([server.address], max_value_size=1000)
    assert c.meta_set("big", b"y" * 1001) is True
    # as for a text get: a ProtocolError, the connection closed
    with pytest.raises(cmemcache.ProtocolError, match="larger than max_value_size"):
        small.meta_get("big")
    with pytest.raises(cmemcache.ProtocolError, match="larger than max_value_size"):
        small.get("big")
    assert small.meta_get("big", value=False, size=True).size == 1001
    # the next call on a fresh connection is fine
    assert small.meta_set("big", b"ok") is True
    assert small.meta_get("big").value == b"ok"
    c.disconnect_all()
    small.disconnect_all()


# -- meta_delete -------------------------------------------------------------------------


def test_meta_delete(mc, server):
    assert mc.meta_delete("k") is False
    server.raw_set(b"k", b"v")
    assert mc.meta_delete("k") is True
    assert mc.get("k") is None
    cas = mc.meta_set("k", b"v", return_cas=True)
    assert mc.meta_delete("k", cas=cas + 1) is False  # EX
    assert mc.get("k") == b"v"
    assert mc.meta_delete("k", cas=cas) is True
    assert mc.get("k") is None


def test_meta_delete_invalidate_with_ttl(mc, server):
    assert mc.meta_set("k", b"v", ttl=1000)
    assert mc.meta_delete("k", invalidate=True, ttl=30) is True
    r = mc.meta_get("k", ttl=True)
    assert r.stale is True and r.value == b"v" and 29 <= r.ttl <= 30


# -- meta_arithmetic ---------------------------------------------------------------------


def test_meta_arithmetic(mc, server):
    assert mc.meta_arithmetic("n") is None
    assert mc.get("n") is None
    server.raw_set(b"n", b"10")
    assert mc.meta_arithmetic("n") == 11
    assert mc.meta_arithmetic("n", delta=5) == 16
    assert mc.meta_arithmetic("n", mode="decr", delta=6) == 10
    assert mc.meta_arithmetic("n", mode="decr", delta=100) == 0
    assert mc.meta_arithmetic("n", delta=2**64 - 1) == 2**64 - 1
    assert mc.meta_arithmetic("n") == 0  # wraps, as incr
    value, cas = mc.meta_arithmetic("n", cas=True)
    assert value == 1 and cas == mc.gets("n")[1]
    assert mc.incr("n") == 2  # text incr on the same item


def test_meta_arithmetic_initial_vivify_ttl(mc, server):
    assert mc.meta_arithmetic("n", vivify=100, initial=42) == 42
    assert 99 <= server.raw_ttl(b"n") <= 100
    assert mc.meta_arithmetic("n", vivify=100, initial=42) == 43
    assert mc.meta_arithmetic("m", vivify=0) == 0  # initial defaults to 0
    assert server.raw_ttl(b"m") == -1
    assert mc.meta_arithmetic("d", mode="decr", vivify=0, initial=7) == 7
    assert mc.meta_arithmetic("n", ttl=500) == 44
    assert 499 <= server.raw_ttl(b"n") <= 500


def test_meta_arithmetic_on_text_is_a_client_error(mc, server):
    server.raw_set(b"s", b"abc")
    with pytest.raises(cmemcache.ClientError, match="non-numeric"):
        mc.meta_arithmetic("s")
    # the connection stayed in sync
    assert mc.meta_get("s").value == b"abc"


# -- binary keys -------------------------------------------------------------------------

BINARY_KEYS = [b"a b", b"line\r\nbreak", b"nul\x00byte", bytes(range(256))[:186], b"\xff",
               b" ", "ключ с пробелом"]


@pytest.mark.parametrize("key", BINARY_KEYS, ids=range(len(BINARY_KEYS)))
def test_binary_keys_round_trip(mc, key):
    value = b"v" + (key if isinstance(key, bytes) else key.encode())
    assert mc.meta_set(key, value, flags=3, binary_key=True) is True
    r = mc.meta_get(key, binary_key=True, flags=True)
    assert r.value == value and r.flags == 3
    assert mc.meta_delete(key, binary_key=True) is True
    assert mc.meta_get(key, binary_key=True) is None
    assert mc.meta_arithmetic(key, binary_key=True, vivify=0, initial=9) == 9
    assert mc.meta_arithmetic(key, binary_key=True) == 10


def test_binary_key_is_the_same_item_as_a_text_key(mc):
    assert mc.set("plain", b"text")
    assert mc.meta_get(b"plain", binary_key=True).value == b"text"
    assert mc.meta_set(b"plain", b"meta", binary_key=True)
    assert mc.get("plain") == b"meta"


def test_binary_key_limits(mc, server):
    before = server.stats()
    with pytest.raises(cmemcache.InvalidKeyError, match="186"):
        mc.meta_get(b"k" * 187, binary_key=True)
    with pytest.raises(cmemcache.InvalidKeyError, match="empty"):
        mc.meta_set(b"", b"v", binary_key=True)
    with pytest.raises(cmemcache.InvalidKeyError):
        mc.meta_get(b"a b")  # text rules without binary_key
    with pytest.raises(cmemcache.InvalidKeyError):
        mc.meta_get(b"k" * 251)
    assert_nothing_read(server, before)
    assert mc.meta_set(b"k" * 186, b"v", binary_key=True) is True
    assert mc.meta_get(b"k" * 186, binary_key=True).value == b"v"
    assert mc.meta_get("k" * 250) is None


# -- text and meta on one client ---------------------------------------------------------


def test_text_and_meta_pipelined_on_one_connection(mc, server):
    for i in range(50):
        assert mc.meta_set(f"k{i}", b"m%d" % i, flags=i) is True
        assert mc.get(f"k{i}", with_flags=True) == (b"m%d" % i, i)
        assert mc.set(f"t{i}", b"t%d" % i)
        assert mc.meta_get(f"t{i}").value == b"t%d" % i
        assert mc.get_multi([f"k{i}", f"t{i}"]) == {f"k{i}": b"m%d" % i, f"t{i}": b"t%d" % i}
        assert mc.meta_delete(f"t{i}") is True
        assert mc.delete(f"t{i}") is False
    assert int(server.stats()["curr_connections"]) >= 1
    assert mc.call_counts()["meta_get"] == 50
    assert mc.call_counts()["meta_set"] == 50
    assert mc.call_counts()["meta_delete"] == 50


def test_eight_threads_mixing_text_and_meta(server):
    c = StringClient([server.address], timeout=5, pool_size=4)
    errors: list[str] = []
    start = threading.Barrier(8)

    def work(t: int) -> None:
        start.wait()
        for i in range(150):
            key = f"th{t}:{i % 10}"
            value = b"%d:%d:" % (t, i) + b"x" * (i * 7 % 300)
            op = i % 5
            if op == 0:
                ok = c.meta_set(key, value, flags=t) is True
                got = c.get(key, with_flags=True)
                ok = ok and got == (value, t)
            elif op == 1:
                ok = c.set(key, value, flags=t)
                r = c.meta_get(key, flags=True)
                ok = ok and r.value == value and r.flags == t
            elif op == 2:
                n = c.meta_arithmetic(f"ctr{t}", vivify=0)
                ok = n == i // 5 and c.get(f"ctr{t}") == b"%d" % (i // 5)
            elif op == 3:
                cas = c.meta_set(key, value, return_cas=True)
                ok = c.gets(key) == (value, cas)
            else:
                ok = c.meta_set(key, value) is True and c.meta_delete(key) is True
                ok = ok and c.meta_get(key) is None and c.get(key) is None
            if not ok:
                errors.append(f"thread {t} step {i} op {op}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert errors == []
    for t in range(8):
        assert c.get(f"ctr{t}") == b"%d" % (150 // 5 - 1)
    c.disconnect_all()


# -- bad input refused before sending ----------------------------------------------------


def assert_nothing_read(server, before: dict) -> None:
    """Only the stats request itself reached the server since ``before``."""
    after = server.stats()
    assert int(after["bytes_read"]) - int(before["bytes_read"]) == len(b"stats\r\nmn\r\n")
    for name in ("cmd_get", "cmd_set", "cmd_touch", "delete_misses", "incr_misses"):
        assert after[name] == before[name], name
    # the stats request's own connection, no other
    assert int(after["total_connections"]) - int(before["total_connections"]) == 1


BAD_CALLS = [
    ("meta_get", dict(key="a b"), cmemcache.InvalidKeyError),
    ("meta_get", dict(key=""), cmemcache.InvalidKeyError),
    ("meta_get", dict(key=b"\x00"), cmemcache.InvalidKeyError),
    ("meta_get", dict(key=1), TypeError),
    ("meta_get", dict(key="k", touch=2**31), ValueError),
    ("meta_get", dict(key="k", vivify=-(2**31) - 1), ValueError),
    ("meta_get", dict(key="k", recache="10"), TypeError),
    ("meta_get", dict(key="k", bogus=1), TypeError),
    ("meta_set", dict(key="k", value=b"v", mode="upsert"), ValueError),
    ("meta_set", dict(key="k", value=b"v", mode=1), TypeError),
    ("meta_set", dict(key="k", value=b"v", invalidate=True), ValueError),
    ("meta_set", dict(key="k", value=b"v", ttl=2**31), ValueError),
    ("meta_set", dict(key="k", value=b"v", flags=-1), ValueError),
    ("meta_set", dict(key="k", value=b"v", flags=2**32), ValueError),
    ("meta_set", dict(key="k", value=b"v", cas=-1), ValueError),
    ("meta_set", dict(key="k", value="text"), TypeError),
    ("meta_set", dict(key="k", value=b"x" * ((1 << 20) + 1)), cmemcache.ValueTooLargeError),
    ("meta_set", dict(key="a\nb", value=b"v"), cmemcache.InvalidKeyError),
    ("meta_delete", dict(key="k", ttl=30), ValueError),
    ("meta_delete", dict(key="k", cas="1"), TypeError),
    ("meta_delete", dict(key="k" * 251), cmemcache.InvalidKeyError),
    ("meta_arithmetic", dict(key="k", mode="mul"), ValueError),
    ("meta_arithmetic", dict(key="k", initial=1), ValueError),
    ("meta_arithmetic", dict(key="k", delta=-1), ValueError),
    ("meta_arithmetic", dict(key="k", delta=2**64), ValueError),
    ("meta_arithmetic", dict(key="k", ttl=2**31), ValueError),
    ("meta_arithmetic", dict(key="k k"), cmemcache.InvalidKeyError),
]


def test_bad_input_refused_before_sending(server):
    cold = StringClient([server.address])
    warm = StringClient([server.address])
    assert warm.meta_set("k", b"v") is True
    before = server.stats()
    wrong = []
    for client in (cold, warm):
        for name, kwargs, error in BAD_CALLS:
            kwargs = dict(kwargs)
            args = [kwargs.pop("key")] + ([kwargs.pop("value")] if "value" in kwargs else [])
            try:
                getattr(client, name)(*args, **kwargs)
            except error:
                pass
            except BaseException as exc:  # noqa: BLE001 - reported below
                wrong.append((name, kwargs, repr(exc)))
            else:
                wrong.append((name, kwargs, "no exception"))
    assert wrong == []
    assert_nothing_read(server, before)
    assert warm.meta_get("k").value == b"v"
    cold.disconnect_all()
    warm.disconnect_all()


def test_error_messages_name_the_arguments(mc):
    with pytest.raises(ValueError, match="invalidate=True needs cas="):
        mc.meta_set("k", b"v", invalidate=True)
    with pytest.raises(ValueError, match="ttl= needs invalidate=True"):
        mc.meta_delete("k", ttl=5)
    with pytest.raises(ValueError, match="initial= needs vivify="):
        mc.meta_arithmetic("k", initial=5)
    with pytest.raises(ValueError, match="unknown mode 'upsert'"):
        mc.meta_set("k", b"v", mode="upsert")
    with pytest.raises(ValueError, match="touch out of range"):
        mc.meta_get("k", touch=2**31)
    assert isinstance(cmemcache.InvalidKeyError("x"), ValueError)


# -- replies a real server never sends ---------------------------------------------------


def test_meta_replies_from_a_scripted_server(fake_server):
    from fakeserver import expect, send, send_chunks

    fake = fake_server([
        # a VA frame a byte at a time, then the next request on the same connection
        expect(rb"^mg k v f c t\r\n"), send_chunks(b"VA 5 f3 c9 t-1 s1 W\r\nhello\r\n", 1, 0.001),
        expect(rb"ms k 1 T5\r\nx\r\n$"), send_chunks(b"HD\r\n", 1, 0.001),
        expect(rb"md k\r\n$"), send(b"NF\r\n"),
    ])
    c = StringClient([fake.address], timeout=2)
    # s1 was not asked for: size stays None
    r = c.meta_get("k", flags=True, cas=True, ttl=True)
    assert fields(r) == dict(NONE_ASKED, value=b"hello", flags=3, cas=9, ttl=-1, win=True)
    assert c.meta_set("k", b"x", ttl=5) is True
    assert c.meta_delete("k") is False
    assert len(fake.connections) == 1
    c.disconnect_all()


@pytest.mark.parametrize("call, request_line, reply, error, match", [
    ("meta_get", rb"mg k v\r\n", b"SERVER_ERROR out of memory\r\n", cmemcache.ServerError,
     "out of memory"),
    ("meta_get", rb"mg k v\r\n", b"CLIENT_ERROR bad command line format\r\n",
     cmemcache.ClientError, "bad command line"),
    ("meta_arithmetic", rb"ma k v\r\n", b"VA 1\r\nx\r\n", cmemcache.ProtocolError,
     "not a number"),
    ("meta_get", rb"mg k v\r\n", b"END\r\n", cmemcache.ProtocolError, "unexpected bytes"),
    ("meta_get", rb"mg k v\r\n", b"NS\r\n", cmemcache.ProtocolError, "does not fit"),
    ("meta_delete", rb"md k\r\n", b"VA 1\r\nx\r\n", cmemcache.ProtocolError, "does not fit"),
    ("meta_get", rb"mg k v\r\n", b"VA 2000000\r\n", cmemcache.ProtocolError,
     "larger than max_value_size"),
])
def test_meta_bad_replies(fake_server, call, request_line, reply, error, match):
    from fakeserver import expect, send

    fake = fake_server([expect(b"^" + request_line + b"$"), send(reply)])
    c = StringClient([fake.address], timeout=2)
    with pytest.raises(error, match=match):
        getattr(c, call)("k")
    c.disconnect_all()


def test_meta_after_a_noreply_text_command(mc):
    mc.set("k", b"v", noreply=True)
    assert mc.meta_get("k").value == b"v"
    mc.delete("k", noreply=True)
    assert mc.meta_get("k") is None
    assert mc.meta_set("k", b"w") is True
    assert mc.get("k") == b"w"


# -- MetaResult's free list --------------------------------------------------------------


def test_results_freed_and_made_again_keep_their_own_fields(mc, server):
    """Freed MetaResults are reused (pymeta.c's free list): a result made
    after many were freed, and one made after a result of the type's own
    constructor was freed, holds exactly its reply's fields."""
    for i in range(40):
        assert mc.meta_set(b"k%d" % i, b"v%d" % i, flags=i, ttl=100 + i) is True
    held = [mc.meta_get(b"k%d" % i, flags=True, ttl=True) for i in range(40)]
    assert [(r.value, r.flags) for r in held] == [(b"v%d" % i, i) for i in range(40)]
    del held
    for i in range(40):
        r = mc.meta_get(b"k%d" % i)
        assert fields(r) == dict(NONE_ASKED, value=b"v%d" % i)
        r2 = mc.meta_get(b"k%d" % i, cas=True, value=False)
        assert r2.value is None and isinstance(r2.cas, int) and r2 is not r
    own = MetaResult((b"x", 1, 2, 3, 4, 5, True, True, True, True))
    del own
    assert fields(mc.meta_get(b"k0")) == dict(NONE_ASKED, value=b"v0")
    assert mc.meta_get(b"absent") is None


SUBINTERPRETER = """
import sys
import cmemcache
address = sys.argv[1]
code = '''
import cmemcache
c = cmemcache.StringClient([%r])
for i in range(50):
    r = c.meta_get(b"k", flags=True)
    assert (r.value, r.flags) == (b"sub", 7), r
c.close()
''' % address
if sys.version_info >= (3, 13):
    import _interpreters as si
    interp = si.create(si.new_config("legacy"))
    failed = si.exec(interp, code)
    assert failed is None, failed
else:
    import _xxsubinterpreters as si
    interp = si.create(isolated=False)
    si.run_string(interp, code)
main = cmemcache.StringClient([address])
kept = [main.meta_get(b"k") for _ in range(20)]
si.destroy(interp)
for _ in range(50):
    assert main.meta_get(b"k", flags=True)[:2] == (b"sub", 7)
del kept
print("ok")
"""


def test_results_of_a_subinterpreter_and_the_main_one(server):
    """A module made in a (legacy) subinterpreter has a MetaResult type of
    its own: its results never go to the main module's free list, and
    destroying the subinterpreter leaves the main one's results intact."""
    server.raw_set(b"k", b"sub", flags=7)
    done = run_python(SUBINTERPRETER, server.address, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
