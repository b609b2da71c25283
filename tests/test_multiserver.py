"""Four real memcached servers: where keys land compared with the clients cmemcache
shares a cache with (python-memcached, pylibmc, pymemcache), multi-key calls spread
over the servers, and dead servers under each failover policy.

Where a key landed is always read from the servers themselves (raw ``get`` on a
connection of the test's own), never through a client under test.
"""

from __future__ import annotations

import bisect
import hashlib
import time
import zlib

import memcache  # python-memcached
import pylibmc
import pytest
from pymemcache.client.hash import HashClient

import cmemcache
from cmemcache import StringClient
from conftest import TcpRelay, made_by, memcached_servers

N_SERVERS = 4


# -- servers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_servers():
    with memcached_servers(N_SERVERS) as servers:
        yield servers


@pytest.fixture
def cluster(cluster_servers):
    """The module's 4 servers, all running (a killed one comes back on its own
    port, so the server list keeps its meaning) and flushed."""
    for s in cluster_servers:
        s.fresh()
    try:
        yield cluster_servers
    finally:
        for s in cluster_servers:
            s.resume()


def addresses(servers):
    return [s.address for s in servers]


def scan(servers, keys, skip=()):
    """{key: {server index: value}} for every key one of the servers holds,
    asking each server directly.  ``keys`` are bytes (str is UTF-8 encoded)."""
    bkeys = [k.encode() if isinstance(k, str) else k for k in keys]
    found: dict[bytes, dict[int, bytes]] = {}
    for i, s in enumerate(servers):
        if i in skip:
            continue
        for key, value in s.raw_get_many(bkeys):
            assert key not in found or i not in found[key], key
            found.setdefault(key, {})[i] = value
    return found


def placement(servers, keys, skip=()):
    """{key: [indexes of the servers holding it]} for every key of ``keys``."""
    found = scan(servers, keys, skip)
    return {k: sorted(found.get(k.encode() if isinstance(k, str) else k, {})) for k in keys}


def values_on(servers, keys, skip=()):
    found = scan(servers, keys, skip)
    return {k: found.get(k.encode() if isinstance(k, str) else k, {}) for k in keys}


def sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# -- keys ----------------------------------------------------------------------------------------

# Keys whose 15-bit python-memcached hash is 0: python-memcached <= 1.59 reads
# it as 1, 1.60 and later (and libmemcached's "crc") keep the 0.
CRC0_KEYS = ["crc0-4463", "crc0-63422"]
assert all((zlib.crc32(k.encode()) >> 16) & 0x7FFF == 0 for k in CRC0_KEYS)

ASCII_KEYS = [
    f"{prefix}:{i}" for i in range(68) for prefix in ("user", "session/x", "a", "cache-entry-long-name")
][:268]
NON_ASCII_KEYS = [f"{word}-{i}" for i in range(10) for word in ("clé", "ключ", "鍵")]
KEYS_UTF8 = ASCII_KEYS + NON_ASCII_KEYS + CRC0_KEYS
KEYS_ASCII = ASCII_KEYS + [f"extra:{i}" for i in range(32)]
assert len(KEYS_UTF8) == len(KEYS_ASCII) == 300
assert len(set(KEYS_UTF8)) == len(set(KEYS_ASCII)) == 300

# The key_hash that matches the installed python-memcached (its rule for the 0 hash).
PM_KEY_HASH = (
    "python-memcached-1.59" if memcache.serverHashFunction(CRC0_KEYS[0].encode()) == 1 else "python-memcached"
)


# -- the other clients ---------------------------------------------------------------------------


class Peer:
    def __init__(self, set_, get, close):
        self.set, self.get, self.close = set_, get, close


def python_memcached_peer(addrs, weights):
    servers = addrs if weights is None else list(zip(addrs, weights))
    c = memcache.Client(servers, dead_retry=30, socket_timeout=2)
    return Peer(c.set, c.get, c.disconnect_all)


def pylibmc_peer(behaviors):
    def make(addrs, weights):
        assert weights is None
        c = pylibmc.Client(addrs, behaviors=dict(behaviors))
        return Peer(c.set, c.get, c.disconnect_all)

    return make


def pymemcache_peer(addrs, weights):
    assert weights is None
    nodes = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in addrs]
    c = HashClient(nodes, connect_timeout=2, timeout=2, default_noreply=False)
    return Peer(c.set, c.get, c.close)


# id: (cmemcache arguments, weights, peer factory, keys)
MODES = {
    "python-memcached": (
        {"distribution": "python-memcached", "key_hash": PM_KEY_HASH}, None, python_memcached_peer, KEYS_UTF8,
    ),
    "python-memcached-weights-1-2-3-1": (
        {"distribution": "python-memcached", "key_hash": PM_KEY_HASH}, (1, 2, 3, 1), python_memcached_peer,
        KEYS_UTF8,
    ),
    "ketama-vs-pylibmc-ketama_weighted": (
        {"distribution": "ketama"}, None, pylibmc_peer({"ketama_weighted": True}), KEYS_UTF8,
    ),
    "libmemcached-ketama-vs-pylibmc-ketama": (
        {"distribution": "libmemcached-ketama"}, None, pylibmc_peer({"ketama": True}), KEYS_UTF8,
    ),
    "libmemcached-ketama-md5-vs-pylibmc-ketama-md5": (
        {"distribution": "libmemcached-ketama", "key_hash": "md5"}, None,
        pylibmc_peer({"ketama": True, "hash": "md5"}), KEYS_UTF8,
    ),
    "modula-vs-pylibmc-default": ({"distribution": "modula"}, None, pylibmc_peer({}), KEYS_UTF8),
    "modula-crc-vs-pylibmc-crc": (
        {"distribution": "modula", "key_hash": "crc"}, None, pylibmc_peer({"hash": "crc"}), KEYS_UTF8,
    ),
    "rendezvous-vs-pymemcache-HashClient": ({"distribution": "rendezvous"}, None, pymemcache_peer, KEYS_ASCII),
}


def server_arg(addrs, weights):
    return addrs if weights is None else list(zip(addrs, weights))


def single_server(where):
    """{key: index} from placement(); fails when a key is on 0 or 2+ servers."""
    bad = {k: v for k, v in where.items() if len(v) != 1}
    assert bad == {}, f"keys not on exactly one server: {dict(list(bad.items())[:10])}"
    return {k: v[0] for k, v in where.items()}


# -- placement against the other clients ---------------------------------------------------------


@pytest.mark.parametrize("writer", ["StringClient", "Client"])
@pytest.mark.parametrize("mode", list(MODES))
def test_cmemcache_writes_land_where_the_other_client_reads(cluster, mode, writer):
    kwargs, weights, peer_factory, keys = MODES[mode]
    addrs = addresses(cluster)
    sc = StringClient(server_arg(addrs, weights), timeout=2, connect_timeout=2, **kwargs)
    values = {k: f"{writer}-{i}".encode() for i, k in enumerate(keys)}
    if writer == "StringClient":
        stored = {k: sc.set(k, v) for k, v in values.items()}
    else:
        client = cmemcache.Client(server_arg(addrs, weights), socket_timeout=2, strict=True, **kwargs)
        stored = {k: client.set(k, v) for k, v in values.items()}
        client.disconnect_all()
    assert stored == {k: True for k in keys}

    landed = single_server(placement(cluster, keys))
    assert landed == {k: sc.server_index(k) for k in keys}
    assert set(landed.values()) == set(range(N_SERVERS))  # the keys really are spread

    peer = peer_factory(addrs, weights)
    try:
        assert {k: peer.get(k) for k in keys} == values
    finally:
        peer.close()
    sc.close()


@pytest.mark.parametrize("mode", list(MODES))
def test_other_client_writes_are_found_by_cmemcache(cluster, mode):
    kwargs, weights, peer_factory, keys = MODES[mode]
    addrs = addresses(cluster)
    values = {k: f"peer-{i}".encode() for i, k in enumerate(keys)}
    peer = peer_factory(addrs, weights)
    try:
        for k, v in values.items():
            assert peer.set(k, v)
    finally:
        peer.close()

    sc = StringClient(server_arg(addrs, weights), timeout=2, connect_timeout=2, **kwargs)
    landed = single_server(placement(cluster, keys))
    assert {k: sc.server_index(k) for k in keys} == landed
    assert set(landed.values()) == set(range(N_SERVERS))
    assert {k: sc.get(k) for k in keys} == values
    assert sc.get_multi(keys) == values

    client = cmemcache.Client(server_arg(addrs, weights), socket_timeout=2, strict=True, **kwargs)
    assert {k: client.get(k) for k in keys} == values
    assert client.get_multi(keys) == values
    client.disconnect_all()
    sc.close()


# -- multi-key calls over 4 servers --------------------------------------------------------------

MULTI_KEYS = [b"multi:%d" % i for i in range(500)]
MULTI_VALUES = {k: b"value-%d-" % i + b"x" * (i % 97) for i, k in enumerate(MULTI_KEYS)}


def test_multi_calls_over_four_servers_stringclient(cluster):
    sc = StringClient(addresses(cluster), timeout=2, connect_timeout=2)
    home = {k: sc.server_index(k) for k in MULTI_KEYS}
    assert set(home.values()) == set(range(N_SERVERS))

    assert sc.set_multi(MULTI_VALUES) == []
    assert single_server(placement(cluster, MULTI_KEYS)) == home
    assert {k: next(iter(v.values())) for k, v in values_on(cluster, MULTI_KEYS).items()} == MULTI_VALUES

    assert sc.get_multi(MULTI_KEYS) == MULTI_VALUES
    missing = [b"missing:%d" % i for i in range(50)]
    assert sc.get_multi(missing + MULTI_KEYS) == MULTI_VALUES
    got = sc.gets_multi(MULTI_KEYS)
    assert {k: v for k, (v, _cas) in got.items()} == MULTI_VALUES
    assert all(isinstance(cas, int) and cas > 0 for _v, cas in got.values())

    assert sc.delete_multi(MULTI_KEYS) is True
    assert placement(cluster, MULTI_KEYS) == {k: [] for k in MULTI_KEYS}
    assert sc.get_multi(MULTI_KEYS) == {}
    assert sc.delete_multi(MULTI_KEYS[:20]) is False  # none of them exists any more


@pytest.mark.parametrize("distribution", ["python-memcached", "ketama", "libmemcached-ketama",
                                          "modula", "rendezvous"])
@pytest.mark.parametrize("as_text", [False, True], ids=["bytes", "str"])
def test_multi_calls_with_key_prefix_hash_the_prefixed_key(cluster, distribution, as_text):
    """A multi-key call's key lands where the single-key call of the whole
    key puts it, for every distribution (rendezvous hashes the key's text:
    the whole key's, as get(prefix + key) would)."""
    sc = StringClient(addresses(cluster), timeout=2, connect_timeout=2, distribution=distribution)
    keys = MULTI_KEYS[:200]
    values = {k: MULTI_VALUES[k] for k in keys}
    prefix = b"pfx:"
    if as_text:
        keys = [k.decode() for k in keys]
        values = {k.decode(): v for k, v in values.items()}
        prefix = "pfx:"
    assert sc.set_multi(values, key_prefix=prefix) == []
    wire = [b"pfx:" + (k.encode() if as_text else k) for k in keys]
    whole = [prefix + k for k in keys]
    landed = single_server(placement(cluster, wire))
    assert landed == {w: sc.server_index(k) for w, k in zip(wire, whole)}
    assert {sc.server_index(k) for k in whole} == set(range(len(cluster)))
    raw = [k.encode() for k in keys] if as_text else keys
    assert placement(cluster, raw) == {k: [] for k in raw}  # only the prefixed keys were stored
    assert sc.get_multi(keys, key_prefix=prefix) == values
    assert sc.delete_multi(keys, key_prefix=prefix) is True
    assert placement(cluster, wire) == {w: [] for w in wire}


def test_multi_calls_over_four_servers_client(cluster):
    client = cmemcache.Client(addresses(cluster), socket_timeout=2, strict=True)
    sc = StringClient(addresses(cluster))
    assert client.set_multi(MULTI_VALUES) == []
    assert single_server(placement(cluster, MULTI_KEYS)) == {k: sc.server_index(k) for k in MULTI_KEYS}
    assert client.get_multi(MULTI_KEYS) == MULTI_VALUES
    assert client.get_multi([b"missing:1"] + MULTI_KEYS) == MULTI_VALUES
    assert client.delete_multi(MULTI_KEYS) == 1
    assert client.get_multi(MULTI_KEYS) == {}
    assert placement(cluster, MULTI_KEYS) == {k: [] for k in MULTI_KEYS}
    client.disconnect_all()


@pytest.mark.hang_timeout(30)
def test_get_multi_with_one_server_stopped(cluster):
    addrs = addresses(cluster)
    sc = StringClient(addrs, timeout=0.5, connect_timeout=0.5)
    assert sc.set_multi(MULTI_VALUES) == []
    stopped = 2
    live = {k: v for k, v in MULTI_VALUES.items() if sc.server_index(k) != stopped}
    assert 0 < len(live) < len(MULTI_VALUES)

    cluster[stopped].pause()
    try:
        t0 = time.monotonic()
        with pytest.raises(cmemcache.TimeoutError) as info:
            sc.get_multi(MULTI_KEYS)
        elapsed = time.monotonic() - t0
        assert info.value.partial == live
        assert elapsed < 3.0, f"get_multi took {elapsed:.2f} s with timeout=0.5"

        client = cmemcache.Client(addrs, socket_timeout=0.5)
        t0 = time.monotonic()
        got = client.get_multi(MULTI_KEYS)
        elapsed = time.monotonic() - t0
        assert got == live
        assert elapsed < 3.0, f"Client.get_multi took {elapsed:.2f} s with socket_timeout=0.5"
        assert client.error_counts["TimeoutError"] == 1
    finally:
        cluster[stopped].resume()
    # the stopped server's connection was dropped; the next call is whole again
    assert sc.get_multi(MULTI_KEYS) == MULTI_VALUES


@pytest.mark.hang_timeout(30)
def test_get_multi_with_three_servers_stopped_waits_one_timeout_not_three(cluster):
    addrs = addresses(cluster)
    sc = StringClient(addrs, timeout=1.0, connect_timeout=1.0)
    assert sc.set_multi(MULTI_VALUES) == []
    stopped = [0, 1, 3]
    live = {k: v for k, v in MULTI_VALUES.items() if sc.server_index(k) not in stopped}
    assert 0 < len(live)
    for i in stopped:
        cluster[i].pause()
    try:
        t0 = time.monotonic()
        with pytest.raises(cmemcache.TimeoutError) as info:
            sc.get_multi(MULTI_KEYS)
        elapsed = time.monotonic() - t0
        assert info.value.partial == live
        # the servers are waited for together: one timeout (1 s), not one per server (3 s)
        assert elapsed < 2.5, f"get_multi took {elapsed:.2f} s with timeout=1.0 and 3 servers stopped"
    finally:
        for i in stopped:
            cluster[i].resume()


# -- dead servers: failover "none" ---------------------------------------------------------------

DEAD_KEYS = [b"dead:%d" % i for i in range(200)]


@pytest.mark.hang_timeout(30)
def test_failover_none_dead_server_fails_fast_and_is_held_down(cluster):
    addrs = addresses(cluster)
    victim = 1
    sc = StringClient(addrs, failover="none", dead_retry=1.0, timeout=2, connect_timeout=2)
    assert sc.set_multi({k: b"v:" + k for k in DEAD_KEYS}) == []
    home = {k: sc.server_index(k) for k in DEAD_KEYS}
    dead_keys = [k for k in DEAD_KEYS if home[k] == victim]
    live_keys = [k for k in DEAD_KEYS if home[k] != victim]
    assert dead_keys and live_keys

    cluster[victim].kill()
    t_fail = time.monotonic()  # the hold-down starts after this moment
    with pytest.raises(cmemcache.ConnectionError):
        sc.get(dead_keys[0])
    t_marked = time.monotonic()  # ... and before this one
    assert sc.dead_servers() == [victim]

    t0 = time.monotonic()
    for k in dead_keys:
        with pytest.raises(cmemcache.ConnectionError):
            sc.get(k)
    with pytest.raises(cmemcache.ConnectionError):
        sc.set(dead_keys[0], b"x")
    with pytest.raises(cmemcache.ConnectionError):
        sc.delete(dead_keys[0])
    assert time.monotonic() - t0 < 2.0  # hang guard: no connect, no timeout
    assert {k: sc.get(k) for k in live_keys} == {k: b"v:" + k for k in live_keys}
    assert {k: sc.server_index(k) for k in DEAD_KEYS} == home  # nothing moves under "none"
    assert sc.dead_servers() == [victim]

    # The server comes back on its port within the hold-down: the client does
    # not try it (its accepted-connection counter shows no connect) until
    # dead_retry has passed.
    cluster[victim].restart()
    before = int(cluster[victim].stats()["total_connections"])
    for k in dead_keys[:20]:
        with pytest.raises(cmemcache.ConnectionError):
            sc.get(k)
    with pytest.raises(cmemcache.ConnectionError):
        sc.set(dead_keys[0], b"x")
    still_held_down = time.monotonic() < t_fail + 1.0
    after = int(cluster[victim].stats()["total_connections"])
    assert still_held_down, "the restart took longer than dead_retry: the check above proves nothing"
    assert after == before + 1  # the stats connection itself, nothing from the client

    sleep_until(t_marked + 1.05)
    assert sc.get(dead_keys[0]) is None  # reached again (restarted empty), no forget_dead needed
    assert sc.dead_servers() == []
    assert sc.set(dead_keys[0], b"back") is True
    assert cluster[victim].raw_get(dead_keys[0]) == (b"back", 0)
    assert {k: sc.get(k) for k in live_keys} == {k: b"v:" + k for k in live_keys}


def test_failover_none_client_returns_none_for_the_dead_servers_keys(cluster):
    addrs = addresses(cluster)
    victim = 1
    client = cmemcache.Client(addrs, failover="none", dead_retry=30, socket_timeout=2)
    assert client.set_multi({k: b"v:" + k for k in DEAD_KEYS}) == []
    sc = StringClient(addrs)
    home = {k: sc.server_index(k) for k in DEAD_KEYS}
    cluster[victim].kill()

    got = {k: client.get(k) for k in DEAD_KEYS}
    assert got == {k: None if home[k] == victim else b"v:" + k for k in DEAD_KEYS}
    assert [bool(h.deaduntil) for h in client.servers] == [i == victim for i in range(N_SERVERS)]
    dead_key = next(k for k in DEAD_KEYS if home[k] == victim)
    assert client.set(dead_key, b"x") == 0
    assert client.get_multi(DEAD_KEYS) == {k: b"v:" + k for k in DEAD_KEYS if home[k] != victim}
    client.disconnect_all()


# -- dead servers: failover "rehash" (python-memcached's walk) -----------------------------------


@pytest.mark.parametrize("weights", [None, (1, 2, 3, 1)], ids=["equal", "weights-1-2-3-1"])
def test_failover_rehash_goes_where_python_memcached_goes(cluster, weights):
    addrs = addresses(cluster)
    victim = 2
    keys = KEYS_UTF8
    servers = server_arg(addrs, weights)
    kwargs = {"distribution": "python-memcached", "key_hash": PM_KEY_HASH}
    home = {k: StringClient(servers, **kwargs).server_index(k) for k in keys}
    moved = [k for k in keys if home[k] == victim]
    assert moved

    cluster[victim].kill()
    skip = {victim}

    # python-memcached marks the server dead on its first failed connect and
    # walks on for that key and the following ones
    pm = memcache.Client(servers, dead_retry=30, socket_timeout=2)
    for k in keys:
        assert pm.set(k, b"pm"), k
    assert [bool(s.deaduntil) for s in pm.servers] == [i == victim for i in range(N_SERVERS)]
    pm_where = single_server(placement(cluster, keys, skip))
    assert {k: pm_where[k] for k in keys if home[k] != victim} == {k: home[k] for k in keys if home[k] != victim}
    assert all(pm_where[k] != victim for k in moved)
    for i, s in enumerate(cluster):
        if i != victim:
            s.flush()

    sc = StringClient(servers, failover="rehash", dead_retry=30, timeout=2, connect_timeout=2, **kwargs)
    assert {k: sc.set(k, b"sc") for k in keys} == {k: True for k in keys}
    assert sc.dead_servers() == [victim]
    assert single_server(placement(cluster, keys, skip)) == pm_where
    assert {k: sc.server_index(k) for k in keys} == pm_where
    assert {k: sc.get(k) for k in keys} == {k: b"sc" for k in keys}
    assert {k: pm.get(k) for k in keys} == {k: b"sc" for k in keys}
    for i, s in enumerate(cluster):
        if i != victim:
            s.flush()

    # cmemcache.Client uses "rehash" by default with the python-memcached distribution
    client = cmemcache.Client(servers, dead_retry=30, socket_timeout=2, key_hash=PM_KEY_HASH)
    assert {k: client.set(k, b"cl") for k in keys} == {k: True for k in keys}
    assert single_server(placement(cluster, keys, skip)) == pm_where
    assert {k: pm.get(k) for k in keys} == {k: b"cl" for k in keys}
    assert client.get_multi(keys) == {k: b"cl" for k in keys}
    client.disconnect_all()
    pm.disconnect_all()


# -- dead servers: ketama with failover "next" ---------------------------------------------------


def ketama_ring(names):
    """libketama's weighted ring at equal weights: 40 MD5 digests of
    "name-i" per server, 4 little-endian 32-bit points each."""
    points = []
    for idx, name in enumerate(names):
        for i in range(40):
            d = hashlib.md5(f"{name}-{i}".encode()).digest()
            for j in range(4):
                points.append((int.from_bytes(d[4 * j : 4 * j + 4], "little"), idx))
    points.sort()
    return points


def ketama_pick(ring, key: bytes, dead=()):
    """The first point >= md5_32(key) (wrapping), skipping dead servers."""
    h = int.from_bytes(hashlib.md5(key).digest()[:4], "little")
    start = bisect.bisect_left(ring, (h, -1))
    for step in range(len(ring)):
        _value, idx = ring[(start + step) % len(ring)]
        if idx not in dead:
            return idx
    return None


RING_KEYS = [b"ring:%d" % i for i in range(300)]


@pytest.mark.hang_timeout(30)
def test_ketama_failover_next_moves_only_the_dead_servers_keys(cluster):
    addrs = addresses(cluster)
    victim = 1
    ring = ketama_ring(addrs)
    sc = StringClient(addrs, distribution="ketama", failover="next", dead_retry=1.0, timeout=2, connect_timeout=2)
    home = {k: sc.server_index(k) for k in RING_KEYS}
    assert home == {k: ketama_pick(ring, k) for k in RING_KEYS}
    dead_keys = [k for k in RING_KEYS if home[k] == victim]
    assert dead_keys
    assert sc.set_multi({k: b"v1:" + k for k in RING_KEYS}) == []

    cluster[victim].kill()
    assert {k: sc.set(k, b"v2:" + k) for k in RING_KEYS} == {k: True for k in RING_KEYS}
    t_marked = time.monotonic()
    assert sc.dead_servers() == [victim]

    expected = {k: ketama_pick(ring, k, dead={victim}) for k in RING_KEYS}
    assert {k: expected[k] for k in RING_KEYS if home[k] != victim} == {
        k: home[k] for k in RING_KEYS if home[k] != victim
    }
    assert {k: sc.server_index(k) for k in RING_KEYS} == expected
    assert single_server(placement(cluster, RING_KEYS, skip={victim})) == expected
    assert sc.get_multi(RING_KEYS) == {k: b"v2:" + k for k in RING_KEYS}
    assert len(set(expected[k] for k in dead_keys)) >= 2  # the dead server's keys spread over the ring

    # back on its port, and after dead_retry the keys go home again
    cluster[victim].restart()
    sleep_until(t_marked + 1.05)
    assert {k: sc.server_index(k) for k in RING_KEYS} == home
    assert {k: sc.get(k) for k in dead_keys} == {k: None for k in dead_keys}  # home is empty after the restart
    assert sc.dead_servers() == []
    assert sc.set_multi({k: b"v3:" + k for k in dead_keys}) == []
    on = values_on(cluster, dead_keys)
    assert {k: on[k].get(victim) for k in dead_keys} == {k: b"v3:" + k for k in dead_keys}
    assert sc.get_multi(RING_KEYS) == {k: (b"v3:" if home[k] == victim else b"v2:") + k for k in RING_KEYS}


def _call_after_kill(name, sc, key):
    """One command for ``key`` and the value it should return when it ran on
    a server holding ``key`` = b"10"."""
    if name == "get":
        return sc.get(key), b"10"
    if name == "gets":
        r = sc.gets(key)
        return (r[0] if r else r), b"10"
    if name == "set":
        return sc.set(key, b"20"), True
    if name == "add":
        return sc.add(key, b"20"), False
    if name == "replace":
        return sc.replace(key, b"20"), True
    if name == "append":
        return sc.append(key, b"5"), True
    if name == "prepend":
        return sc.prepend(key, b"5"), True
    if name == "cas":
        return sc.cas(key, b"20", 1 << 62), False  # a cas id that does not match
    if name == "incr":
        return sc.incr(key, 5), 15
    if name == "decr":
        return sc.decr(key, 3), 7
    if name == "delete":
        return sc.delete(key), True
    if name == "touch":
        return sc.touch(key, 100), True
    raise AssertionError(name)


COMMANDS_AFTER_KILL = ["get", "gets", "set", "add", "replace", "append", "prepend", "cas", "incr", "decr",
                       "delete", "touch"]


@pytest.mark.parametrize("command", COMMANDS_AFTER_KILL)
@pytest.mark.parametrize(
    "policy", ["ketama-next", "python-memcached-rehash"],
)
def test_first_command_after_a_kill_fails_over(cluster, policy, command):
    """The client holds pooled connections to every server when one dies; the
    very first command for one of its keys already goes to the failover
    server, whatever the command."""
    addrs = addresses(cluster)
    victim = 3
    if policy == "ketama-next":
        kwargs = {"distribution": "ketama", "failover": "next"}
    else:
        kwargs = {"distribution": "python-memcached", "failover": "rehash", "key_hash": PM_KEY_HASH}
    sc = StringClient(addrs, dead_retry=30, timeout=2, connect_timeout=2, **kwargs)
    keys = [b"pool:%d" % i for i in range(100)]
    assert sc.set_multi({k: b"x" for k in keys}) == []  # a pooled connection to each server
    key = next(k for k in keys if sc.server_index(k) == victim)
    if policy == "ketama-next":
        target = ketama_pick(ketama_ring(addrs), key, dead={victim})
    else:
        pm = memcache.Client(addrs, dead_retry=30, socket_timeout=2)
        cluster[victim].kill()
        server, _ = pm._get_server(key)
        target = pm.servers.index(server)
        pm.disconnect_all()
    assert target != victim
    cluster[target].raw_set(key, b"10")
    cluster[victim].kill()

    got, expected = _call_after_kill(command, sc, key)
    assert got == expected
    assert sc.dead_servers() == [victim]
    assert sc.server_index(key) == target


@pytest.mark.hang_timeout(30)
def test_a_timeout_does_not_hold_a_server_down(cluster):
    """Only a failed connect holds a server down: a stopped (SIGSTOP) server
    still accepts connections, so its keys time out and stay where they are."""
    addrs = addresses(cluster)
    victim = 2
    sc = StringClient(addrs, distribution="ketama", failover="next", dead_retry=30, timeout=0.5,
                      connect_timeout=0.5)
    home = {k: sc.server_index(k) for k in RING_KEYS}
    key = next(k for k in RING_KEYS if home[k] == victim)
    assert sc.set(key, b"kept") is True
    cluster[victim].pause()
    try:
        t0 = time.monotonic()
        with pytest.raises(cmemcache.TimeoutError):
            sc.get(key)
        assert time.monotonic() - t0 < 3.0
        assert sc.dead_servers() == []
        assert {k: sc.server_index(k) for k in RING_KEYS} == home
    finally:
        cluster[victim].resume()
    assert sc.get(key) == b"kept"


# -- flush_on_reconnect --------------------------------------------------------------------------


@pytest.fixture
def relay_factory():
    """``make(target_port) -> TcpRelay``; all are stopped after the test."""
    with made_by(TcpRelay, TcpRelay.stop) as make:
        yield make


def _flushes(server) -> int:
    return int(server.stats()["cmd_flush"])


@pytest.mark.hang_timeout(30)
@pytest.mark.parametrize(
    "api,flush_on_reconnect",
    [("StringClient", True), ("Client", True), ("StringClient", False)],
)
def test_flush_on_reconnect_no_stale_read_after_a_partition(cluster, relay_factory, api, flush_on_reconnect):
    """K lives on S; S becomes unreachable (its memcached keeps running, with
    K's old value); K is written to its failover server; S is reachable again.
    Without flush_on_reconnect the old value is read back from S (stale);
    with it S is flushed before it serves again."""
    behind = cluster[2]
    relay = relay_factory(behind.port)
    addrs = addresses(cluster)
    addrs[2] = relay.address
    dead_retry = 0.5
    kwargs = {"distribution": "ketama", "failover": "next", "dead_retry": dead_retry}
    sc = StringClient(addrs, timeout=2, connect_timeout=2, flush_on_reconnect=flush_on_reconnect, **kwargs)
    if api == "StringClient":
        get, set_ = sc.get, sc.set
    else:
        client = cmemcache.Client(addrs, socket_timeout=2, strict=True, flush_on_reconnect=int(flush_on_reconnect),
                                  **kwargs)
        get, set_ = client.get, client.set
    key = next(k for k in (b"stale:%d" % i for i in range(1000)) if sc.server_index(k) == 2)

    assert set_(key, b"old") is True
    assert behind.raw_get(key) == (b"old", 0)
    flushes = _flushes(behind)

    relay.stop()
    assert relay.refuses()
    assert set_(key, b"new") is True
    t_marked = time.monotonic()
    failover = ketama_pick(ketama_ring(addrs), key, dead={2})
    if api == "StringClient":
        assert sc.dead_servers() == [2]
        assert sc.server_index(key) == failover
    else:
        assert [bool(h.deaduntil) for h in client.servers] == [False, False, True, False]
    assert cluster[failover].raw_get(key) == (b"new", 0)
    assert behind.raw_get(key) == (b"old", 0)  # S kept its data
    assert get(key) == b"new"

    relay.start()
    sleep_until(t_marked + dead_retry + 0.05)
    got = get(key)
    if flush_on_reconnect:
        assert got is None  # not the stale b"old"
        assert _flushes(behind) == flushes + 1
        assert behind.raw_get(key) is None
        assert set_(key, b"newest") is True
        assert get(key) == b"newest"
        assert _flushes(behind) == flushes + 1  # once per outage, not per connection
    else:
        assert got == b"old"  # the stale read flush_on_reconnect is there to prevent
        assert _flushes(behind) == flushes
    if api == "StringClient":
        assert sc.dead_servers() == []
    else:
        assert [bool(h.deaduntil) for h in client.servers] == [False] * 4


@pytest.mark.hang_timeout(30)
@pytest.mark.parametrize("flush_on_reconnect", [True, False])
def test_flush_on_reconnect_restarted_server_is_flushed_before_the_first_request(cluster, flush_on_reconnect):
    addrs = addresses(cluster)
    victim = 0
    dead_retry = 0.5
    sc = StringClient(addrs, distribution="ketama", failover="next", dead_retry=dead_retry, timeout=2,
                      connect_timeout=2, flush_on_reconnect=flush_on_reconnect)
    key = next(k for k in RING_KEYS if sc.server_index(k) == victim)
    assert sc.set(key, b"before") is True

    cluster[victim].kill()
    assert sc.set(key, b"during") is True  # on the failover server
    t_marked = time.monotonic()
    assert sc.dead_servers() == [victim]
    cluster[victim].restart()
    assert _flushes(cluster[victim]) == 0

    sleep_until(t_marked + dead_retry + 0.05)
    assert sc.set(key, b"after") is True  # the reconnect
    assert _flushes(cluster[victim]) == (1 if flush_on_reconnect else 0)
    # the flush went ahead of the request: the value just stored is there
    assert cluster[victim].raw_get(key) == (b"after", 0)
    assert sc.get(key) == b"after"
    sc.disconnect_all()
    assert sc.get(key) == b"after"  # a later new connection does not flush again
    assert _flushes(cluster[victim]) == (1 if flush_on_reconnect else 0)
