"""cmemcache.aio with several servers: every distribution, key hash and
failover policy puts each key on the server the blocking client puts it on
(checked by reading every key back from each server on its own), and a
failed server is held down and recovers as with the blocking client (first
retry about a second after the failure, doubling to dead_retry; see
test_recovery.py and test_holddown.py).

Each test runs on the default asyncio loop and on uvloop, or, where the
loop makes no difference to what is tested, on one of them in turn."""

from __future__ import annotations

import asyncio
import time

import pytest

import cmemcache
import cmemcache.aio
from cmemcache import StringClient
from conftest import free_port, memcached_servers
from test_aio_commands import LOOPS, alternate

pytestmark = pytest.mark.serial

SLACK = 0.6


def arun(loop: str, fn, *args, timeout: float = 60.0):
    """Runs fn(*args) (a coroutine function) on a fresh loop of that kind."""

    async def bounded():
        async with asyncio.timeout(timeout):
            return await fn(*args)

    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        return runner.run(bounded())


@pytest.fixture(scope="module")
def trio():
    """Three memcached servers for the module (flushed by ``servers``)."""
    with memcached_servers(3) as made:
        yield made


@pytest.fixture
def servers(trio):
    for s in trio:
        s.fresh()
    return trio


class Where:
    """Which server holds each key: one single-server blocking client per
    server reads every key."""

    def __init__(self, servers):
        self.probes = [StringClient([s.address], timeout=5) for s in servers]

    def __call__(self, wire_keys) -> dict:
        out = {}
        for i, p in enumerate(self.probes):
            for k in p.get_multi(wire_keys):
                assert k not in out, f"{k!r} on servers {out[k]} and {i}"
                out[k] = i
        return out

    def close(self):
        for p in self.probes:
            p.close()


@pytest.fixture
def where(servers):
    w = Where(servers)
    try:
        yield w
    finally:
        w.close()


def flush(servers):
    for s in servers:
        s.flush()


# -- placement -----------------------------------------------------------------------------

PLAIN_KEYS = ([b"key-%d" % i for i in range(250)] + ["clé-%d" % i for i in range(30)]
              + ["ключ", "日本語", "ob", "71", b"k" * 250, b"\x80\xff"])
TUPLE_KEYS = [(h, b"t%d" % h) for h in (0, 1, 5, 7, 12345, 2**40 + 3, 2**70)]


def wire(key) -> bytes:
    key = key[1] if isinstance(key, tuple) else key
    return key.encode() if isinstance(key, str) else key


def value_of(key) -> bytes:
    return b"v:" + wire(key)


# every distribution with every key hash it takes, and every failover it takes
CONFIGS = [
    {},
    {"failover": "rehash"},
    {"failover": "none"},
    {"key_hash": "python-memcached-1.59", "failover": "rehash"},
    {"key_hash": "crc"},
    {"key_hash": "crc32", "failover": "rehash"},
    {"distribution": "ketama"},
    {"distribution": "ketama", "key_hash": "md5", "failover": "next"},
    {"distribution": "libmemcached-ketama"},
    {"distribution": "libmemcached-ketama", "key_hash": "md5", "failover": "next"},
    {"distribution": "modula", "key_hash": "one_at_a_time"},
    {"distribution": "modula", "key_hash": "python-memcached", "failover": "next"},
    {"distribution": "modula", "key_hash": "md5"},
    {"distribution": "rendezvous", "failover": "none"},
    {"distribution": "rendezvous", "key_hash": "murmur3", "failover": "next"},
]
WEIGHTS = [(1, 1, 1), (1, 2, 3)]
PLACEMENT_CASES = alternate([(i, w) for i in range(len(CONFIGS)) for w in WEIGHTS])


def cfg_id(case):
    loop, (i, w) = case
    return f"{loop}-{'-'.join(f'{v}' for v in CONFIGS[i].values()) or 'default'}-{w}"


def test_every_distribution_and_failover_is_a_constructor_argument():
    """CONFIGS covers every distribution and failover value the engine takes."""
    dists = {c.get("distribution", "python-memcached") for c in CONFIGS}
    assert dists == {"python-memcached", "ketama", "libmemcached-ketama", "modula",
                     "rendezvous"}
    for c in CONFIGS:
        cmemcache.aio.StringClient(["127.0.0.1:1", "127.0.0.1:2"], **c)
    with pytest.raises(ValueError):
        cmemcache.aio.StringClient(["127.0.0.1:1"], distribution="nosuch")
    failovers = {(c.get("distribution", "python-memcached") == "python-memcached",
                  c.get("failover", "none")) for c in CONFIGS}
    assert failovers == {(True, "none"), (True, "rehash"), (False, "none"), (False, "next")}


@pytest.mark.parametrize("case", PLACEMENT_CASES, ids=[cfg_id(c) for c in PLACEMENT_CASES])
def test_keys_land_where_the_blocking_client_puts_them(servers, where, case):
    loop, (i, weights) = case
    cfg = CONFIGS[i]
    spec = [(s.address, w) for s, w in zip(servers, weights)]
    sync = StringClient(spec, **cfg)
    keys = PLAIN_KEYS + TUPLE_KEYS
    expected = {wire(k): sync.server_index(k) for k in keys}
    prefixed = {b"m%d" % i: b"p%d" % i for i in range(60)}
    # where the blocking client's set_multi with a prefix puts them
    assert sync.set_multi(prefixed, key_prefix=b"pre:") == []
    expected_prefixed = where([b"pre:" + k for k in prefixed])
    assert len(expected_prefixed) == len(prefixed)
    flush(servers)

    async def go():
        async with cmemcache.aio.StringClient(spec, **cfg) as c:
            assert [c.server_index(k) for k in keys] == [sync.server_index(k) for k in keys]
            assert c.servers == sync.servers
            for k in keys[::2]:
                assert await c.set(k, value_of(k)) is True
            assert await c.set_multi({k: value_of(k) for k in keys[1::2]}) == []
            assert await c.set_multi(prefixed, key_prefix=b"pre:") == []
            assert where([wire(k) for k in keys]) == expected
            assert where(list(expected_prefixed)) == expected_prefixed
            got = await c.get_multi(keys)
            assert got == {k: value_of(k) for k in keys}
            assert await c.get_multi(list(prefixed), key_prefix=b"pre:") == prefixed
            for k in keys[:40]:
                assert await c.get(k) == value_of(k)
            # the blocking client's writes are where the asyncio one reads
            flush(servers)
            assert sync.set_multi({k: b"s" + value_of(k) for k in keys}) == []
            assert await c.get_multi(keys) == {k: b"s" + value_of(k) for k in keys}
            assert await c.delete_multi(keys) is True
            assert where([wire(k) for k in keys]) == {}

    try:
        arun(loop, go)
    finally:
        sync.close()


@pytest.mark.parametrize("kind", ["sync", "aio"])
def test_rendezvous_key_prefix_places_by_the_whole_key(servers, where, kind):
    spec = [s.address for s in servers]
    keys = [b"m%d" % i for i in range(40)]
    sync = StringClient(spec, distribution="rendezvous")
    for k in keys:
        assert sync.set(b"pre:" + k, b"v") is True
    full = {b"pre:" + k: sync.server_index(b"pre:" + k) for k in keys}
    assert where(list(full)) == full
    if kind == "sync":
        found = sync.get_multi(keys, key_prefix=b"pre:")
    else:
        async def go():
            async with cmemcache.aio.StringClient(spec, distribution="rendezvous") as c:
                return await c.get_multi(keys, key_prefix=b"pre:")
        found = arun("asyncio", go)
    sync.close()
    assert found == {k: b"v" for k in keys}


# the distributions whose failover moves keys of a held-down server elsewhere
FAILOVER_CONFIGS = [c for c in CONFIGS if c.get("failover") in ("rehash", "next")] + [
    {"failover": "none"}, {"distribution": "ketama"}]


@pytest.mark.parametrize("case", alternate(range(len(FAILOVER_CONFIGS))),
                         ids=lambda c: f"{c[0]}-{FAILOVER_CONFIGS[c[1]]}")
def test_failover_moves_the_keys_of_a_held_down_server_alike(servers, where, case):
    """Server 1 held down in both clients: the keys go (or fail) alike."""
    loop, i = case
    cfg = FAILOVER_CONFIGS[i]
    spec = [(s.address, 1) for s in servers]
    keys = PLAIN_KEYS[:200] + TUPLE_KEYS

    def outcome(fn):
        try:
            return fn()
        except cmemcache.Error as e:
            return type(e).__name__

    sync = StringClient(spec, timeout=2, dead_retry=30, **cfg)
    sync.mark_dead(1, 30)
    sync_results = [outcome(lambda: sync.set(k, value_of(k))) for k in keys]
    sync_multi = outcome(lambda: sync.set_multi({b"m" + wire(k): b"m" for k in keys[:50]}))
    sync_where = where([wire(k) for k in keys] + [b"m" + wire(k) for k in keys[:50]])
    sync_gets = [outcome(lambda: sync.get(k)) for k in keys]
    sync.close()
    flush(servers)
    assert 1 not in sync_where.values()

    async def go():
        async with cmemcache.aio.StringClient(spec, timeout=2, dead_retry=30, **cfg) as c:
            c.mark_dead(1, 30)
            assert c.dead_servers() == [1]
            results = []
            for k in keys:
                try:
                    results.append(await c.set(k, value_of(k)))
                except cmemcache.Error as e:
                    results.append(type(e).__name__)
            try:
                multi = await c.set_multi({b"m" + wire(k): b"m" for k in keys[:50]})
            except cmemcache.Error as e:
                multi = type(e).__name__
            placed = where([wire(k) for k in keys] + [b"m" + wire(k) for k in keys[:50]])
            gets = []
            for k in keys:
                try:
                    gets.append(await c.get(k))
                except cmemcache.Error as e:
                    gets.append(type(e).__name__)
            return results, multi, placed, gets

    results, multi, placed, gets = arun(loop, go)
    assert results == sync_results
    assert multi == sync_multi
    assert placed == sync_where
    assert gets == sync_gets
    if cfg.get("failover", "none") != "none":
        assert set(results) == {True}
    else:
        assert "ConnectionError" in results and True in results


CLIENT_CONFIGS = [{}, {"distribution": "ketama"}, {"distribution": "rendezvous"},
                  {"distribution": "modula", "key_hash": "md5"},
                  {"key_hash": "crc32"}, {"distribution": "libmemcached-ketama",
                                          "failover": "none"}]


@pytest.mark.parametrize("case", alternate(range(len(CLIENT_CONFIGS))),
                         ids=lambda c: f"{c[0]}-{CLIENT_CONFIGS[c[1]]}")
def test_client_keys_land_where_the_blocking_client_puts_them(servers, where, case):
    loop, i = case
    cfg = CLIENT_CONFIGS[i]
    spec = [(s.address, w) for s, w in zip(servers, (1, 2, 3))]
    keys = [f"key:{i}" for i in range(200)] + ["ключ", "été", "ob", "71"]
    tuple_keys = {(h, f"t{h}"): h for h in range(0, 60, 7)}
    all_wire = [k.encode() for k in keys] + [k.encode() for _, k in tuple_keys] + \
        [b"pre:m%d" % i for i in range(50)]

    def write_sync():
        c = cmemcache.Client(spec, **cfg)
        for k in keys:
            assert c.set(k, k) is True
        assert c.set_multi(tuple_keys) == []
        assert c.set_multi({f"m{i}": i for i in range(50)}, key_prefix="pre:") == []
        c.disconnect_all()
        return where(all_wire)

    expected = write_sync()
    flush(servers)

    async def go():
        async with cmemcache.aio.Client(spec, **cfg) as c:
            for k in keys[:100]:
                assert await c.set(k, k) is True
            assert await c.set_multi({k: k for k in keys[100:]}) == []
            assert await c.set_multi(tuple_keys) == []
            assert await c.set_multi({f"m{i}": i for i in range(50)}, key_prefix="pre:") == []
            placed = where(all_wire)
            assert await c.get_multi(keys) == {k: k for k in keys}
            assert await c.get_multi(list(tuple_keys)) == tuple_keys
            for k in list(tuple_keys)[:3]:
                assert await c.get(k) == tuple_keys[k]
            return placed

    assert arun(loop, go) == expected


def test_client_replaced_server_hash_function_is_used(servers, where, monkeypatch):
    def everything_on_bucket_5(key):
        return 5

    monkeypatch.setattr(cmemcache, "serverHashFunction", everything_on_bucket_5)
    spec = [(s.address, w) for s, w in zip(servers, (1, 2, 3))]
    keys = [f"r{i}" for i in range(30)]

    async def go():
        async with cmemcache.aio.Client(spec) as c:
            assert await c.set_multi({k: 1 for k in keys}) == []
            assert await c.set("single", 2) is True
            assert await c.get_multi(keys) == {k: 1 for k in keys}

    arun("asyncio", go)
    assert where([k.encode() for k in keys] + [b"single"]) == {
        **{k.encode(): 2 for k in keys}, b"single": 2}


# -- hold-down and recovery --------------------------------------------------------------------

BOTH = sorted(LOOPS)


@pytest.mark.parametrize("loop", BOTH)
def test_first_failure_holds_down_for_one_second(loop):
    async def go():
        c = cmemcache.aio.StringClient(["127.0.0.1:%d" % free_port()], dead_retry=30)
        with pytest.raises(cmemcache.ConnectionError, match="refused"):
            await c.get(b"k")
        (hold,) = c.hold_downs()
        assert 0.8 < hold <= 1.0
        assert c.dead_servers() == [0]
        for call in (c.get(b"k"), c.set(b"k", b"v"), c.get_multi([b"a", b"b"]), c.delete(b"k"),
                     c.incr(b"n"), c.touch(b"k", 1), c.version(), c.get_stats()):
            with pytest.raises(cmemcache.ConnectionError, match="marked dead"):
                await call
        c2 = cmemcache.aio.StringClient(["127.0.0.1:%d" % free_port()], dead_retry=0.25)
        with pytest.raises(cmemcache.ConnectionError):
            await c2.get(b"k")
        (hold,) = c2.hold_downs()
        assert 0.1 < hold <= 0.25
        await c.close()
        await c2.close()

    arun(loop, go)


@pytest.mark.parametrize("loop", BOTH)
def test_failed_probes_double_the_hold_down_up_to_dead_retry(loop):
    async def go():
        c = cmemcache.aio.StringClient(["127.0.0.1:%d" % free_port()], dead_retry=0.5)
        c.mark_dead(0, 0.04)
        seen = []
        for _ in range(5):
            deadline = time.monotonic() + 2
            while c.hold_downs() != (0.0,) and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            with pytest.raises(cmemcache.ConnectionError, match="refused"):
                await c.get(b"k")  # the probe
            seen.append(c.hold_downs()[0])
        await c.close()
        return seen

    seen = arun(loop, go)
    for got, want in zip(seen, [0.08, 0.16, 0.32, 0.5, 0.5]):
        assert want - 0.05 < got <= want, seen


def test_forget_dead_and_dead_retry_zero(fake_server):
    async def go():
        port = free_port()
        c = cmemcache.aio.StringClient(["127.0.0.1:%d" % port], dead_retry=30)
        with pytest.raises(cmemcache.ConnectionError):
            await c.get(b"k")
        assert c.hold_downs()[0] > 0
        c.forget_dead()
        assert c.hold_downs() == (0.0,)
        with pytest.raises(cmemcache.ConnectionError, match="refused"):
            await c.get(b"k")  # tried again at once
        assert 0.8 < c.hold_downs()[0] <= 1.0
        await c.close()
        port = free_port()
        c = cmemcache.aio.StringClient(["127.0.0.1:%d" % port], dead_retry=0)
        with pytest.raises(cmemcache.ConnectionError):
            await c.get(b"k")
        fake = fake_server(port=port)
        assert await c.get(b"probe") == b"probe"
        assert fake.connection_count == 1
        await c.close()

    arun("uvloop", go)


@pytest.mark.parametrize("loop", BOTH)
def test_restarted_server_serves_again_about_a_second_later(memcached_factory, loop):
    server = memcached_factory(port=free_port())

    async def go():
        c = cmemcache.aio.StringClient([server.address], dead_retry=30, timeout=1)
        assert await c.set(b"k", b"v") is True
        server.kill()
        with pytest.raises(cmemcache.ConnectionError):
            await c.get(b"k")
        failed_at = time.monotonic()
        server.start()
        served_at = None
        while time.monotonic() < failed_at + 5:
            try:
                if await c.set(b"k", b"back") is True:
                    served_at = time.monotonic()
                    break
            except cmemcache.ConnectionError as e:
                assert "marked dead" in str(e)
            await asyncio.sleep(0.02)
        assert served_at is not None
        assert served_at - failed_at < 1.0 + SLACK
        assert await c.get(b"k") == b"back"
        assert c.hold_downs() == (0.0,)
        await c.close()

    arun(loop, go)


@pytest.mark.parametrize("loop", BOTH)
def test_restart_recovery_through_the_client(memcached_factory, loop):
    server = memcached_factory(port=free_port())

    async def go():
        mc = cmemcache.aio.Client([server.address])  # dead_retry: 30 s
        assert await mc.set("k", {"v": 1}) is True
        server.kill()
        assert await mc.get("k") is None  # down: a miss, logged
        assert await mc.get_multi(["k"]) == {}
        assert await mc.set("k", 1) == 0
        server.start()
        deadline = time.monotonic() + 1.0 + SLACK
        while await mc.set("k", {"v": 2}) is not True:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert await mc.get("k") == {"v": 2}
        assert mc.error_counts["ConnectionError"] >= 3
        await mc.close()

    arun(loop, go)


def test_multi_key_calls_probe_too(memcached_factory):
    server = memcached_factory(port=free_port())
    server.stop()

    async def go():
        c = cmemcache.aio.StringClient([server.address], dead_retry=30)
        with pytest.raises(cmemcache.ConnectionError):
            await c.get_multi([b"a", b"b"])
        server.start()
        deadline = time.monotonic() + 1.0 + SLACK
        while True:
            try:
                if await c.set_multi({b"a": b"1", b"b": b"2"}) == []:
                    break
            except cmemcache.ConnectionError:
                pass
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert await c.get_multi([b"a", b"b"]) == {b"a": b"1", b"b": b"2"}
        await c.close()

    arun("asyncio", go)


@pytest.mark.parametrize("loop", BOTH)
def test_timeouts_in_a_row_hold_a_stalled_server_down(memcached_factory, loop):
    server = memcached_factory()

    async def go():
        c = cmemcache.aio.StringClient([server.address], timeout=0.2, dead_retry=0.6,
                                       timeout_limit=2)
        assert await c.set(b"k", b"v") is True
        server.pause()
        try:
            for _ in range(2):
                started = time.monotonic()
                with pytest.raises(cmemcache.TimeoutError):
                    await c.get(b"k")
                assert time.monotonic() - started < 2
            assert c.dead_servers() == [0]
            with pytest.raises(cmemcache.ConnectionError, match="marked dead"):
                await c.get(b"k")
        finally:
            server.resume()
        deadline = time.monotonic() + 5
        while c.dead_servers() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert c.dead_servers() == []
        assert await c.get(b"k") == b"v"
        await c.close()

    arun(loop, go)


@pytest.mark.parametrize("loop", BOTH)
def test_a_success_between_timeouts_resets_the_count(memcached_factory, loop):
    """A regression: the asyncio driver counted every timeout since the
    client started, so timeout_limit timeouts far apart held the server
    down."""
    server = memcached_factory()

    async def go():
        c = cmemcache.aio.StringClient([server.address], timeout=0.2, dead_retry=30,
                                       timeout_limit=2)
        assert await c.set(b"k", b"v") is True
        for call in (lambda: c.get(b"k"), lambda: c.get_multi([b"k", b"j"]),
                     lambda: c.set(b"k", b"v")):
            server.pause()
            try:
                with pytest.raises(cmemcache.TimeoutError):
                    await call()
            finally:
                server.resume()
            assert c.dead_servers() == []
            assert await c.get_multi([b"k"]) == {b"k": b"v"}
            assert await c.get(b"k") == b"v"
        assert c.hold_downs() == (0.0,)
        await c.close()

    arun(loop, go)


def test_timeout_limit_zero_never_holds_down(memcached_factory):
    server = memcached_factory()

    async def go():
        c = cmemcache.aio.StringClient([server.address], timeout=0.2, dead_retry=30,
                                       timeout_limit=0)
        server.pause()
        try:
            for _ in range(3):
                with pytest.raises(cmemcache.TimeoutError):
                    await c.get(b"k")
            assert c.dead_servers() == []
        finally:
            server.resume()
        assert await c.get(b"k") is None
        await c.close()

    arun("uvloop", go)


def keys_for(index_of, index, n, prefix=b"key"):
    out = []
    for i in range(10_000):
        key = prefix + b"-%d" % i
        if index_of(key) == index:
            out.append(key)
            if len(out) == n:
                return out
    raise AssertionError("not enough keys for the server")


@pytest.mark.parametrize("loop", BOTH)
def test_get_multi_with_one_stalled_server(servers, loop):
    async def go():
        c = cmemcache.aio.StringClient([s.address for s in servers], timeout=0.3,
                                       dead_retry=30, timeout_limit=3)
        keys = [b"key%d" % i for i in range(60)]
        assert await c.set_multi({k: k for k in keys}) == []
        stalled = 1
        live = {k: k for k in keys if c.server_index(k) != stalled}
        servers[stalled].pause()
        try:
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(cmemcache.TimeoutError) as e:
                    await c.get_multi(keys)
                assert time.monotonic() - started < 2.3
                assert e.value.partial == live
            assert c.dead_servers() == [stalled]
            with pytest.raises(cmemcache.ConnectionError, match="marked dead") as e:
                await c.get_multi(keys)
            assert e.value.partial == live
        finally:
            servers[stalled].resume()
        await c.close()

    arun(loop, go)


@pytest.mark.parametrize("loop", BOTH)
def test_multi_key_calls_with_one_server_down(memcached_factory, loop):
    live = memcached_factory()
    spec = [live.address, f"127.0.0.1:{free_port()}"]
    sc = StringClient(spec)
    live_keys = keys_for(sc.server_index, 0, 5)
    dead_keys = keys_for(sc.server_index, 1, 5)
    for k in live_keys:
        live.raw_set(k, b"v:" + k)

    async def go():
        c = cmemcache.aio.StringClient(spec, timeout=1, connect_timeout=1, dead_retry=30)
        with pytest.raises(cmemcache.ConnectionError) as info:
            await c.get_multi(live_keys + dead_keys)
        assert info.value.partial == {k: b"v:" + k for k in live_keys}
        assert await c.get(live_keys[0]) == b"v:" + live_keys[0]
        with pytest.raises(cmemcache.ConnectionError):
            await c.get(dead_keys[0])
        with pytest.raises(cmemcache.ConnectionError) as info:
            await c.set_multi({k: b"new:" + k for k in live_keys + dead_keys})
        assert isinstance(info.value.partial, list)
        assert not set(info.value.partial) & set(live_keys)
        for k in live_keys:
            assert live.raw_get(k) == (b"new:" + k, 0)
        with pytest.raises(cmemcache.ConnectionError) as info:
            await c.delete_multi(live_keys + dead_keys)
        assert isinstance(info.value.partial, bool)
        for k in live_keys:
            assert live.raw_get(k) is None
        with pytest.raises(cmemcache.ConnectionError) as info:
            await c.gets_multi(live_keys[:1] + dead_keys)
        assert info.value.partial == {}
        with pytest.raises(cmemcache.ConnectionError) as info:
            await c.version()
        assert list(info.value.partial) == [c.servers[0]]
        with pytest.raises(cmemcache.ConnectionError) as info:
            await c.get_stats()
        assert [name for name, _ in info.value.partial] == [c.servers[0]]
        with pytest.raises(cmemcache.ConnectionError):
            await c.flush_all()
        await c.close()

    arun(loop, go)


@pytest.mark.parametrize("loop", BOTH)
def test_black_holed_server_costs_one_connect_timeout_per_hold_down(black_hole, loop):
    async def go():
        c = cmemcache.aio.StringClient(["127.0.0.1:%d" % black_hole.port], connect_timeout=0.4,
                                       dead_retry=30)
        start = time.monotonic()
        with pytest.raises(cmemcache.TimeoutError):
            await c.get(b"k")
        assert 0.35 < time.monotonic() - start < 0.4 + SLACK
        start = time.monotonic()
        for _ in range(20):
            with pytest.raises(cmemcache.ConnectionError, match="marked dead"):
                await c.get(b"k")
        assert time.monotonic() - start < 0.2
        await c.close()

    arun(loop, go)


@pytest.mark.parametrize("loop", BOTH)
def test_one_connect_at_a_time_while_tasks_wait(black_hole, loop):
    """Eight tasks call at once while the server's probe connect hangs: one
    connect is made, and every task ends with its failure within the
    connect timeout (the probe's own timeout, or the hold-down it leaves)."""
    async def go():
        c = cmemcache.aio.StringClient(["127.0.0.1:%d" % black_hole.port], connect_timeout=0.5,
                                       dead_retry=30)
        c.mark_dead(0, 0.01)
        await asyncio.sleep(0.05)
        assert c.hold_downs() == (0.0,)
        start = time.monotonic()

        async def call():
            try:
                await c.get(b"k")
                return "returned", time.monotonic() - start
            except cmemcache.TimeoutError:
                return "timeout", time.monotonic() - start
            except cmemcache.ConnectionError as e:
                return ("dead" if "marked dead" in str(e) else repr(e)), time.monotonic() - start

        results = await asyncio.gather(*(call() for _ in range(8)))
        await c.close()
        return results

    results = arun(loop, go)
    assert {o for o, _ in results} <= {"timeout", "dead"}, results
    assert "timeout" in {o for o, _ in results}
    for _, took in results:
        assert took < 0.5 + SLACK, results


@pytest.mark.parametrize("loop", BOTH)
def test_server_killed_and_restarted_on_the_same_port(memcached_factory, loop):
    """SIGKILL while requests are in flight, then a new server on the same
    port: every call fails with ConnectionError or returns its own value."""
    server = memcached_factory(port=free_port())
    values = {b"k%d" % i: b"v%d-" % i + bytes(range(256)) * (i + 1) for i in range(30)}

    async def go():
        c = cmemcache.aio.StringClient([server.address], timeout=2, connect_timeout=2,
                                       dead_retry=0)
        for round_ in range(3):
            assert await c.set_multi(values) == []
            gets = [asyncio.ensure_future(c.get(k)) for k in values]
            await asyncio.sleep(0)
            server.kill()
            server.start()
            for k, v in values.items():
                server.raw_set(k, v)
            for k, t in zip(values, gets):
                try:
                    assert await t == values[k]
                except cmemcache.ConnectionError:
                    pass
            failures = 0
            for k, v in values.items():
                try:
                    assert await c.get(k) == v
                except cmemcache.ConnectionError:
                    failures += 1
            assert failures <= 1, (round_, failures)
            assert await c.get_multi(list(values)) == values
        await c.close()

    arun(loop, go)


def test_the_connector_methods_check_server_and_fd():
    """_attach and _tls_new (what the connector hands a new socket to) refuse
    a server index or a descriptor that cannot be one, before using it."""
    c = cmemcache.aio.StringClient(["127.0.0.1:11211", "127.0.0.1:11212"])
    for method in (c._attach, c._tls_new):
        with pytest.raises(TypeError):
            method(0)
        with pytest.raises(TypeError):
            method("0", 5)
        for server, fd in ((2, 5), (-1, 5), (0, -1), (1, 2**31)):
            with pytest.raises(ValueError, match="no such server, or a bad fd"):
                method(server, fd)
    assert c._tls_new(1, 5) is None        # no TLS: nothing to set up
    assert c.connections() == (0, 0)
