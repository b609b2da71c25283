"""Key -> server mapping against the vectors recorded from the real clients
(python-memcached, pylibmc/libmemcached, twemproxy, pymemcache).

No server is needed for the mapping itself: ``server_index`` is the pure
mapping.  The dead-server configurations need a server that refuses
connections, which is a free loopback port with nothing listening.
"""

import json
import pathlib
import socket
import zlib

import pytest

import cmemcache
from cmemcache import StringClient

VECTORS = pathlib.Path(__file__).resolve().parent / "data" / "vectors"  # see its README.md


def load(name):
    path = VECTORS / name
    if not path.exists():
        pytest.fail(f"vector file {path} is missing")
    return json.loads(path.read_text())


def keys_of(v):
    return [k.encode("utf-8") for k in v["keys"]], [bytes.fromhex(h) for h in v["bytes_keys_hex"]]


def client_for(cfg, **kw):
    weights = cfg.get("weights") or [1] * len(cfg["servers"])
    servers = [(s, w) if w != 1 else s for s, w in zip(cfg["servers"], weights)]
    return StringClient(servers, **kw)


def mapping(client, keys):
    return [client.server_index(k) for k in keys]


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def listeners():
    """Sockets that take connections (the kernel completes the handshake)
    and never answer: servers that are alive but silent."""
    socks = []

    def make():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        socks.append(s)
        return s.getsockname()[1]

    yield make
    for s in socks:
        s.close()


# -- python-memcached -----------------------------------------------------------------------------

PM = load("python_memcached_servers.json")


def test_cmemcache_hash_matches_recorded_hashes():
    """The vectors were recorded with python-memcached 1.58/1.59, which read
    a hash of 0 as 1; cmemcache_hash follows 1.60 and later (0 stays 0)."""
    keys, bkeys = keys_of(PM)
    assert [cmemcache.cmemcache_hash(k) or 1 for k in keys] == PM["key_hashes"]["cmemcache_hash"]
    assert ([cmemcache.cmemcache_hash(k) or 1 for k in bkeys]
            == PM["key_hashes"]["cmemcache_hash_bytes_keys"])
    assert cmemcache.cmemcache_hash(b"crc0-4463") == 0
    assert ((zlib.crc32(b"crc0-4463") >> 16) & 0x7FFF) == 0


@pytest.mark.parametrize("cfg", [c for c in PM["configs"] if "dead_server_index" not in c],
                         ids=lambda c: c["name"])
def test_python_memcached_mapping(cfg):
    keys, bkeys = keys_of(PM)
    c = client_for(cfg, key_hash="python-memcached-1.59")
    assert mapping(c, keys) == cfg["server_index"]
    assert mapping(c, bkeys) == cfg["bytes_server_index"]
    # str keys map by their UTF-8 bytes
    assert mapping(c, PM["keys"]) == cfg["server_index"]
    tuple_keys = [(h, k) for h, k in PM["tuple_keys"]]
    assert mapping(c, tuple_keys) == cfg["tuple_server_index"]


@pytest.mark.parametrize("cfg", [c for c in PM["configs"] if "dead_server_index" in c],
                         ids=lambda c: c["name"])
def test_python_memcached_rehash_walk_around_a_dead_server(cfg, listeners):
    """python-memcached's rehash walk: the dead server's keys go where
    python-memcached sent them; a refused connect is what marks it dead."""
    keys, bkeys = keys_of(PM)
    dead = cfg["dead_server_index"]
    weights = cfg["weights"]
    servers = []
    for i, w in enumerate(weights):
        addr = f"127.0.0.1:{closed_port() if i == dead else listeners()}"
        servers.append((addr, w) if w != 1 else addr)
    c = StringClient(servers, failover="rehash", dead_retry=60, connect_timeout=2, timeout=0.2,
                     key_hash="python-memcached-1.59")
    victim = next(k for k, s in zip(keys, mapping(c, keys)) if s == dead)
    # the refused connect marks the server dead; the key then goes on to a
    # live (silent) server, which times out
    with pytest.raises(cmemcache.TimeoutError):
        c.get(victim)
    assert c.dead_servers() == [dead]
    assert mapping(c, keys) == cfg["server_index"]
    assert mapping(c, bkeys) == cfg["bytes_server_index"]
    assert mapping(c, [(h, k) for h, k in PM["tuple_keys"]]) == cfg["tuple_server_index"]


def test_python_memcached_160_hash_differs_only_on_zero_hash_keys():
    """The default follows python-memcached 1.60+: only the keys whose hash
    is 0 sit elsewhere than in the 1.59 vectors."""
    cfg = next(c for c in PM["configs"] if c["name"] == "3 servers, equal weights")
    keys, _ = keys_of(PM)
    old = mapping(client_for(cfg, key_hash="python-memcached-1.59"), keys)
    new = mapping(client_for(cfg), keys)
    differ = [k for k, a, b in zip(keys, old, new) if a != b]
    assert set(differ) <= {b"crc0-4463", b"crc0-63422"}
    assert differ, "the zero-hash keys move between the two rules"


# -- libmemcached (pylibmc) -----------------------------------------------------------------------

def libmemcached_mode(behaviors):
    if behaviors.get("ketama_weighted"):
        return {"distribution": "ketama"}
    if behaviors.get("ketama") or behaviors.get("distribution") == "consistent":
        mode = {"distribution": "libmemcached-ketama"}
        if behaviors.get("hash") == "md5":
            mode["key_hash"] = "md5"
        return mode
    mode = {"distribution": "modula"}
    if behaviors.get("hash") == "crc":
        mode["key_hash"] = "crc"
    return mode


KETAMA = load("libmemcached_ketama.json")
MODULA = load("libmemcached_modula.json")


@pytest.mark.parametrize("cfg", KETAMA["configs"] + MODULA["configs"], ids=lambda c: c["name"])
def test_libmemcached_mapping(cfg):
    v = KETAMA if cfg in KETAMA["configs"] else MODULA
    keys, bkeys = keys_of(v)
    c = client_for(cfg, **libmemcached_mode(cfg["pylibmc_behaviors"]))
    got = mapping(c, keys)
    bad = [(k, e, g) for k, e, g in zip(v["keys"], cfg["server_index"], got) if e != g]
    assert not bad, f"{len(bad)} keys differ, first {bad[:3]}"
    assert mapping(c, bkeys) == cfg["bytes_server_index"]


def test_ketama_removal_moves_only_the_removed_servers_keys():
    five = next(c for c in KETAMA["configs"]
                if c["pylibmc_behaviors"] == {"ketama_weighted": True}
                and len(c["servers"]) == 5 and c["weights"] == [1] * 5
                and c["servers"][0].endswith(":22201"))
    keys, _ = keys_of(KETAMA)
    before = mapping(client_for(five, distribution="ketama"), keys)
    four = dict(five, servers=[s for i, s in enumerate(five["servers"]) if i != 2], weights=[1] * 4)
    after = mapping(client_for(four, distribution="ketama"), keys)
    names5 = five["servers"]
    names4 = four["servers"]
    moved = [k for k, a, b in zip(keys, before, after) if names5[a] != names4[b]]
    assert moved and all(names5[before[keys.index(k)]] == names5[2] for k in moved)


# -- twemproxy ------------------------------------------------------------------------------------

TW = load("twemproxy_ketama.json")


@pytest.mark.parametrize("cfg", [c for c in TW["configs"] if "named" not in c["name"]],
                         ids=lambda c: c["name"])
def test_twemproxy_mapping(cfg):
    keys, bkeys = keys_of(TW)
    c = client_for(cfg, distribution="ketama")
    assert mapping(c, keys) == cfg["server_index"]
    assert mapping(c, bkeys) == cfg["bytes_server_index"]


# -- pymemcache -----------------------------------------------------------------------------------

HC = load("pymemcache_hashclient.json")


@pytest.mark.parametrize("cfg", HC["configs"], ids=lambda c: c["name"])
def test_pymemcache_rendezvous_mapping(cfg):
    c = client_for(cfg, distribution="rendezvous")
    assert mapping(c, HC["keys"]) == cfg["server_index"]
    n = HC["n_bytes_keys"]
    as_bytes = [k.encode() for k in HC["keys"][:n]]
    assert mapping(c, as_bytes) == cfg["bytes_keys_server_index"]
    assert mapping(c, HC["unicode_keys"]) == cfg["unicode_keys_server_index"]


# -- dead servers under the ring and rendezvous ---------------------------------------------------

@pytest.mark.parametrize("distribution", ["ketama", "libmemcached-ketama", "rendezvous", "modula"])
def test_failover_next_moves_only_the_dead_servers_keys(distribution, listeners):
    ports = [closed_port() if i == 1 else listeners() for i in range(4)]
    servers = [f"127.0.0.1:{p}" for p in ports]
    c = StringClient(servers, distribution=distribution, failover="next", dead_retry=60,
                     connect_timeout=2, timeout=0.2)
    keys = [f"key:{i}" for i in range(2000)]
    before = mapping(c, keys)
    victim = next(k for k, s in zip(keys, before) if s == 1)
    with pytest.raises(cmemcache.TimeoutError):
        c.get(victim)
    assert c.dead_servers() == [1]
    after = mapping(c, keys)
    assert 1 not in after
    if distribution != "modula":  # modula reshuffles by design
        assert all(a == b for a, b in zip(before, after) if a != 1)
    c.forget_dead()
    assert mapping(c, keys) == before


def test_bad_distribution_arguments():
    with pytest.raises(ValueError):
        StringClient(["127.0.0.1:1"], distribution="nope")
    with pytest.raises(ValueError):
        StringClient(["127.0.0.1:1"], distribution="ketama", key_hash="crc")
    with pytest.raises(ValueError):
        StringClient(["127.0.0.1:1"], distribution="ketama", failover="rehash")
    with pytest.raises(ValueError):
        StringClient(["127.0.0.1:1"], failover="next")
