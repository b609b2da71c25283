"""cmemcache through twemproxy (nutcracker) in front of 3 real memcached servers:
every command it forwards, the commands it would answer by closing the connection,
and its key routing compared with ``distribution="ketama"``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

import cmemcache
from cmemcache import StringClient
from conftest import TcpRelay, free_port, memcached_servers, wait_until

NUTCRACKER = shutil.which("nutcracker") or "/usr/sbin/nutcracker"

pytestmark = pytest.mark.skipif(
    not os.path.exists(NUTCRACKER), reason="nutcracker (twemproxy) is not installed"
)


# -- servers -------------------------------------------------------------------------------------


class Nutcracker:
    def __init__(self, backends, workdir):
        self.port = free_port()
        self.stats_port = free_port()
        self.config = workdir / "nutcracker.yml"
        self.log = workdir / "nutcracker.log"
        servers = "\n".join(f"   - {b.address}:1" for b in backends)
        self.config.write_text(
            "pool:\n"
            f"  listen: 127.0.0.1:{self.port}\n"
            "  hash: md5\n"
            "  distribution: ketama\n"
            "  timeout: 2000\n"
            "  auto_eject_hosts: false\n"
            "  servers:\n"
            f"{servers}\n"
        )
        self.proc = subprocess.Popen(
            [NUTCRACKER, "-c", str(self.config), "-o", str(self.log),
             "-s", str(self.stats_port), "-a", "127.0.0.1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_until(self._accepts, timeout=10.0, interval=0.02):
            self.stop()
            raise RuntimeError(f"nutcracker did not start: {self.log.read_text(errors='replace')[-2000:]}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accepts(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"nutcracker exited ({self.proc.returncode}): {self.log.read_text(errors='replace')[-2000:]}"
            )
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def backends():
    with memcached_servers(3) as servers:
        yield servers


@pytest.fixture(scope="module")
def nutcracker_proc(backends, tmp_path_factory):
    proxy = Nutcracker(backends, tmp_path_factory.mktemp("nutcracker"))
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def nut(nutcracker_proc, backends):
    """The running nutcracker, its 3 servers flushed."""
    assert nutcracker_proc.running(), nutcracker_proc.log.read_text(errors="replace")[-2000:]
    for b in backends:
        b.fresh()
    return nutcracker_proc


@pytest.fixture
def relay(nut):
    r = TcpRelay(nut.port)
    try:
        yield r
    finally:
        r.stop()


# -- reading the servers ---------------------------------------------------------------------


def placement(servers, keys):
    """{key: [indexes of the servers holding it]}, asking each server directly."""
    where = {k: [] for k in keys}
    for i, s in enumerate(servers):
        for key, _value in s.raw_get_many(keys):
            where[key].append(i)
    return where


def proxied(nut, **kw) -> StringClient:
    return StringClient([nut.address], proxy="twemproxy", timeout=3, connect_timeout=2, **kw)


# -- every forwarded command ---------------------------------------------------------------------


def test_stringclient_commands_through_nutcracker(nut, backends):
    sc = proxied(nut)
    assert sc.get(b"nokey") is None
    assert sc.set(b"a", b"one") is True
    assert sc.get(b"a") == b"one"
    assert sc.set(b"f", b"flagged", flags=0xDEADBEEF) is True
    assert sc.get(b"f", with_flags=True) == (b"flagged", 0xDEADBEEF)

    value, cas = sc.gets(b"a")
    assert value == b"one" and isinstance(cas, int)
    assert sc.gets(b"nokey") is None
    assert sc.cas(b"a", b"two", cas) is True
    assert sc.cas(b"a", b"three", cas) is False  # changed since gets
    assert sc.cas(b"nokey", b"x", cas) is None
    assert sc.get(b"a") == b"two"

    assert sc.add(b"a", b"x") is False
    assert sc.add(b"b", b"bee") is True
    assert sc.replace(b"b", b"B") is True
    assert sc.replace(b"nokey", b"x") is False
    assert sc.append(b"b", b">") is True
    assert sc.prepend(b"b", b"<") is True
    assert sc.append(b"nokey", b"x") is False
    assert sc.get(b"b") == b"<B>"

    assert sc.set(b"n", b"10") is True
    assert sc.incr(b"n") == 11
    assert sc.incr(b"n", 100) == 111
    assert sc.decr(b"n", 11) == 100
    assert sc.decr(b"n", 1000) == 0
    assert sc.incr(b"nokey") is None
    assert sc.decr(b"nokey") is None

    assert sc.touch(b"a", 300) is True
    assert sc.touch(b"nokey", 300) is False
    assert sc.delete(b"a") is True
    assert sc.delete(b"a") is False
    assert sc.get(b"a") is None

    assert sc.set(b"nr", b"no reply", noreply=True) is True
    assert sc.get(b"nr") == b"no reply"
    assert sc.delete(b"nr", noreply=True) is True
    assert sc.get(b"nr") is None

    versions = sc.version()
    assert list(versions) == [nut.address]
    assert isinstance(versions[nut.address], str) and versions[nut.address]

    # where the proxied keys are: on the servers behind it, nowhere else
    where = placement(backends, [b"b", b"f", b"n"])
    assert all(len(v) == 1 for v in where.values()), where


def test_stringclient_multi_commands_through_nutcracker(nut, backends):
    sc = proxied(nut)
    keys = [b"m:%d" % i for i in range(300)]
    values = {k: b"v-%d" % i for i, k in enumerate(keys)}
    assert sc.set_multi(values) == []
    where = placement(backends, keys)
    assert all(len(v) == 1 for v in where.values())
    assert {v[0] for v in where.values()} == {0, 1, 2}  # spread over the 3 servers
    assert sc.get_multi(keys) == values
    assert sc.get_multi(keys + [b"nokey"]) == values
    got = sc.gets_multi(keys[:50])
    assert {k: v for k, (v, _cas) in got.items()} == {k: values[k] for k in keys[:50]}
    assert sc.get_multi(keys[:10], key_prefix=b"m:") == {}
    assert sc.set_multi({b"1": b"p1", b"2": b"p2"}, key_prefix=b"pre:") == []
    assert sc.get(b"pre:1") == b"p1"
    assert sc.get_multi([b"1", b"2"], key_prefix=b"pre:") == {b"1": b"p1", b"2": b"p2"}
    assert sc.delete_multi(keys) is True
    assert sc.get_multi(keys) == {}
    assert placement(backends, keys) == {k: [] for k in keys}
    assert sc.delete_multi(keys[:5]) is False
    assert sc.set_multi({k: values[k] for k in keys[:20]}, noreply=True) == []
    assert sc.get_multi(keys[:20]) == {k: values[k] for k in keys[:20]}


def test_client_commands_through_nutcracker(nut, backends):
    client = cmemcache.Client([nut.address], proxy="twemproxy", socket_timeout=3)
    assert client.set("s", "text") is True
    assert client.get("s") == "text"
    assert client.set("obj", {"a": [1, 2]}) is True
    assert client.get("obj") == {"a": [1, 2]}
    assert client.set("i", 41) is True
    assert client.incr("i") == 42
    assert client.decr("i", 2) == 40
    assert client.get("i") == 40
    assert client.add("s", "x") is False
    assert client.add("new", "x") is True
    assert client.replace("new", "y") is True
    assert client.append("new", "z") is True
    assert client.prepend("new", "w") is True
    assert client.get("new") == "wyz"
    value, token = client.gets("new", with_token=True)
    assert value == "wyz" and token is not None
    assert client.cas("new", "v2", token=token) is True
    assert client.cas("new", "v3", token=token) is False
    assert client.get("new") == "v2"
    assert client.touch("new", 300) == 1
    assert client.delete("new") == 1
    assert client.delete("new") == 0
    assert client.get("new") is None

    mapping = {f"k{i}": f"value {i}" for i in range(200)}
    assert client.set_multi(mapping) == []
    assert client.get_multi(list(mapping)) == mapping
    assert client.delete_multi(list(mapping)) == 1
    assert client.get_multi(list(mapping)) == {}

    assert client.set("nr", "quiet", noreply=True) is True
    assert client.get("nr") == "quiet"
    assert client.error_counts == {}
    client.disconnect_all()


# -- commands twemproxy does not forward ---------------------------------------------------------

REFUSED = {
    "gat": lambda sc: sc.gat(b"k", 100),
    "gats": lambda sc: sc.gats(b"k", 100),
    "flush_all": lambda sc: sc.flush_all(),
    "get_stats": lambda sc: sc.get_stats(),
}


@pytest.mark.parametrize("command", list(REFUSED))
def test_refused_commands_raise_and_send_nothing(nut, relay, command):
    sc = StringClient([relay.address], proxy="twemproxy", timeout=3, connect_timeout=2, pool_size=1)
    assert sc.set(b"k", b"v") is True
    connections, sent = relay.counters()
    assert connections == 1

    with pytest.raises(cmemcache.ClientError) as info:
        REFUSED[command](sc)
    message = str(info.value)
    assert "twemproxy" in message
    assert (command if command != "get_stats" else "stats") in message

    assert sc.get(b"k") == b"v"  # the same connection is still usable
    assert relay.counters() == (1, sent + len(b"get k\r\n"))  # nothing but the get went out


def test_client_refused_commands(nut, relay):
    strict = cmemcache.Client([relay.address], proxy="twemproxy", socket_timeout=3, strict=True, pool_size=1)
    assert strict.set("k", "v") is True
    connections, sent = relay.counters()
    with pytest.raises(cmemcache.ClientError):
        strict.flush_all()
    with pytest.raises(cmemcache.ClientError):
        strict.get_stats()
    assert strict.get("k") == "v"
    assert relay.counters() == (connections, sent + len(b"get k\r\n"))

    # python-memcached's return values when not strict, nothing sent either
    lenient = cmemcache.Client([relay.address], proxy="twemproxy", socket_timeout=3, pool_size=1)
    assert lenient.get("k") == "v"
    connections, sent = relay.counters()
    assert lenient.flush_all() is None
    assert lenient.get_stats() == []
    assert lenient.error_counts["ClientError"] == 2
    assert lenient.get("k") == "v"
    assert relay.counters() == (connections, sent + len(b"get k\r\n"))
    assert strict.get("k") == "v"  # flush_all really was not sent


def test_gat_without_proxy_setting_loses_the_connection(nut, relay):
    """Without proxy="twemproxy" the gat is sent; twemproxy closes the
    connection on it: ConnectionError, and the next call opens a new one."""
    sc = StringClient([relay.address], timeout=3, connect_timeout=2, pool_size=1)
    assert sc.set(b"k", b"v") is True
    connections, sent = relay.counters()
    assert connections == 1
    with pytest.raises(cmemcache.ConnectionError):
        sc.gat(b"k", 100)
    connections, after_gat = relay.counters()
    assert after_gat >= sent + len(b"gat 100 k\r\n")  # it was sent
    assert sc.get(b"k") == b"v"
    assert relay.counters()[0] == connections + 1  # on a new connection
    assert sc.get(b"k") == b"v"
    assert relay.counters()[0] == connections + 1  # which stays open


# -- routing -------------------------------------------------------------------------------------

ROUTE_KEYS = [f"route:{i}" for i in range(270)] + [f"clé-{i}" for i in range(15)] + [f"鍵{i}" for i in range(15)]


def test_nutcracker_routes_like_distribution_ketama(nut, backends):
    keys = [k.encode() for k in ROUTE_KEYS]
    assert len(set(keys)) == 300
    sc = proxied(nut)
    assert sc.set_multi({k: b"via-proxy:" + k for k in keys}) == []
    direct = StringClient([b.address for b in backends], distribution="ketama", timeout=2, connect_timeout=2)
    where = placement(backends, keys)
    assert where == {k: [direct.server_index(k)] for k in keys}
    assert {v[0] for v in where.values()} == {0, 1, 2}

    # and the other way round: written straight to the servers, read through the proxy
    for b in backends:
        b.flush()
    assert direct.set_multi({k: b"direct:" + k for k in keys}) == []
    assert sc.get_multi(keys) == {k: b"direct:" + k for k in keys}
    assert {k: sc.get(k) for k in keys[:50]} == {k: b"direct:" + k for k in keys[:50]}

    client = cmemcache.Client([nut.address], proxy="twemproxy", socket_timeout=3)
    assert client.set_multi({k: b"client:" + k.encode() for k in ROUTE_KEYS}) == []
    where = placement(backends, keys)
    assert where == {k: [direct.server_index(k)] for k in keys}
    assert direct.get_multi(keys) == {k: b"client:" + k for k in keys}
    client.disconnect_all()
