"""ElastiCache auto-discovery (``discovery="elasticache"``) on cmemcache.Client,
cmemcache.StringClient and their asyncio namesakes, and ``config_get`` on both
StringClients.

Real memcached does not answer ``config get cluster``, so the configuration
endpoint is a scripted server that replies as ElastiCache documents
(``CONFIG cluster 0 <bytes>``, the version line, the node line, ``END``);
the nodes it lists are real memcached servers.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import threading
import time

import pytest

import cmemcache
import cmemcache.aio
from cmemcache import _discovery
from cmemcache._discovery import parse_cluster
from fakeserver import expect, send


class ConfigEndpoint:
    """A scripted ElastiCache configuration endpoint on 127.0.0.1: answers
    every ``config get cluster`` with the current configuration (see
    ``publish``), anything else with ERROR; ``stall`` makes it read without
    answering.  Counts the config requests it answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.version = 0
        self.nodes_line = b""
        self.answer_none = False
        self.stall = False
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def publish(self, servers, version: int | None = None) -> None:
        """Lists the servers (MemcachedServer objects or 'host|ip|port' bytes)."""
        parts = []
        for s in servers:
            parts.append(s if isinstance(s, bytes) else b"localhost|127.0.0.1|%d" % s.port)
        with self._lock:
            self.version = self.version + 1 if version is None else version
            self.nodes_line = b" ".join(parts)

    def body(self) -> bytes:
        with self._lock:
            return b"%d\n%s\n" % (self.version, self.nodes_line)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while not self._stop.is_set():
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    if self.stall:
                        continue
                    if line == b"config get cluster":
                        with self._lock:
                            self.requests += 1
                        if self.answer_none:
                            conn.sendall(b"END\r\n")
                            continue
                        body = self.body()
                        conn.sendall(b"CONFIG cluster 0 %d\r\n%s\r\nEND\r\n" % (len(body), body))
                    else:
                        conn.sendall(b"ERROR\r\n")
        except OSError:
            return

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for c in self._conns:
            c.close()


@pytest.fixture(autouse=True)
def no_poller_left():
    """Every polling thread a test started is stopped after it: a client in
    a reference cycle lives (and polls) until a collection, and its thread's
    allocations would show in other tests' object counts."""
    yield
    for poller in list(_discovery._pollers):
        poller.stop()
        poller.thread.join(5)
        assert not poller.thread.is_alive()


@pytest.fixture
def endpoint():
    e = ConfigEndpoint()
    try:
        yield e
    finally:
        e.close()


def spec(server) -> str:
    return f"localhost:{server.port}"


def wait_until(pred, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


# -- the node list ---------------------------------------------------------------------------


def test_parse_cluster():
    assert parse_cluster(b"12\nnode1.cache.example|10.0.0.1|11211 node2.cache.example|10.0.0.2|11212\n") == (
        12, ["node1.cache.example:11211", "node2.cache.example:11212"])
    # the IP address when the hostname is empty; IPv6 in brackets; no duplicates
    assert parse_cluster(b"1\n|10.0.0.1|11211 |::1|11212 |10.0.0.1|11211\n") == (
        1, ["10.0.0.1:11211", "[::1]:11212"])
    assert parse_cluster(b"3\r\nh|1.2.3.4|1\r\n") == (3, ["h:1"])


@pytest.mark.parametrize("body", [
    b"", b"12", b"x\nh|1.2.3.4|11211\n", b"12\n\n", b"12\nh|1.2.3.4\n", b"12\nh|1.2.3.4|0\n",
    b"12\nh|1.2.3.4|65536\n", b"12\nh|1.2.3.4|port\n", b"12\n||11211\n", b"12\nh h|1.2.3.4|1\n",
    b"12\nh|1.2.3.4|1  h2|1.2.3.5|1\n", b"12\nh|1.2.3.4|1\nextra\n", b"12\nh\x00|1.2.3.4|1\n",
])
def test_parse_cluster_refuses(body):
    with pytest.raises(cmemcache.ProtocolError):
        parse_cluster(body)


# -- config_get on the engines ---------------------------------------------------------------


def test_config_get(endpoint, memcached_factory):
    a = memcached_factory()
    endpoint.publish([a], version=7)
    sc = cmemcache.StringClient([endpoint.address], timeout=2)
    assert sc.config_get("cluster") == {endpoint.address: endpoint.body()}
    assert sc.config_get(b"cluster") == {endpoint.address: endpoint.body()}
    endpoint.answer_none = True
    assert sc.config_get("cluster") == {endpoint.address: None}
    for bad in ("", "a b", "a\r\n", "k" * 251):
        with pytest.raises(ValueError):
            sc.config_get(bad)
    with pytest.raises(TypeError):
        sc.config_get(5)
    # real memcached does not know the command: an error, the connection usable
    real = cmemcache.StringClient([a.address], timeout=2)
    with pytest.raises(cmemcache.ClientError):
        real.config_get("cluster")
    assert real.set(b"k", b"v") and real.get(b"k") == b"v"
    sc.close()
    real.close()


def test_config_get_with_the_longest_key(fake_server):
    key = b"k" * 250
    server = fake_server([expect(rb"^config get " + key + rb"\r\n$"),
                          send(b"CONFIG %s 0 2\r\nab\r\nEND\r\n" % key)])
    sc = cmemcache.StringClient([server.address], timeout=2)
    assert sc.config_get(key) == {server.address: b"ab"}
    assert server.received(0) == b"config get " + key + b"\r\n"
    sc.close()


def test_config_get_aio(endpoint, memcached_factory):
    a = memcached_factory()
    endpoint.publish([a], version=3)

    async def main():
        sc = cmemcache.aio.StringClient([endpoint.address], timeout=2)
        try:
            assert await sc.config_get("cluster") == {endpoint.address: endpoint.body()}
            with pytest.raises(ValueError):
                await sc.config_get("a b")
        finally:
            await sc.close()

    asyncio.run(main())


def test_config_get_is_bounded_by_the_timeout(endpoint):
    endpoint.stall = True
    sc = cmemcache.StringClient([endpoint.address], timeout=0.3)
    start = time.monotonic()
    with pytest.raises(cmemcache.TimeoutError):
        sc.config_get("cluster")
    assert time.monotonic() - start < 3


# -- the blocking client ---------------------------------------------------------------------


def test_client_uses_the_nodes_listed(endpoint, memcached_factory):
    a, b = memcached_factory(), memcached_factory()
    endpoint.publish([a, b], version=12)
    c = cmemcache.Client([endpoint.address], discovery="elasticache", socket_timeout=2,
                         strict=True)
    assert [h.spec for h in c.servers] == [spec(a), spec(b)]
    assert c.discovered_version == 12
    # the same distribution as a client given the node list
    plain = cmemcache.Client([spec(a), spec(b)])
    keys = [f"key{i}" for i in range(200)]
    for k in keys:
        assert c.set(k, k) is True
    assert c.get_multi(keys) == {k: k for k in keys}
    assert plain.get_multi(keys) == {k: k for k in keys}
    held = [sum(1 for k in keys if srv.raw_get(k.encode()) is not None) for srv in (a, b)]
    assert sum(held) == 200 and min(held) > 40
    for k in keys[:50]:
        assert c._sc.server_index(k) == plain._sc.server_index(k)
    c.disconnect_all()
    plain.disconnect_all()


def test_client_follows_a_changed_node_list(endpoint, memcached_factory):
    a, b, d = memcached_factory(), memcached_factory(), memcached_factory()
    endpoint.publish([a])
    c = cmemcache.Client([endpoint.address], discovery="elasticache", socket_timeout=2,
                         strict=True)
    assert c.set("x", 1) is True and a.raw_get(b"x") == (b"1", 2)
    endpoint.publish([a, b, d], version=20)
    assert c.discover() == [spec(a), spec(b), spec(d)]
    assert c.discovered_version == 20
    assert [h.spec for h in c.servers] == [spec(a), spec(b), spec(d)]
    for i in range(60):
        assert c.set(f"n{i}", i) is True
    assert all(c.get(f"n{i}") == i for i in range(60))
    assert all(srv.raw_get_many([f"n{i}".encode() for i in range(60)]) for srv in (a, b, d))
    # an unchanged list keeps the engine; a node removed is dropped
    engine = c._sc
    assert c.discover() == [spec(a), spec(b), spec(d)]
    assert c._sc is engine
    endpoint.publish([b])
    c.discover()
    assert [h.spec for h in c.servers] == [spec(b)]
    c.disconnect_all()


@pytest.mark.parametrize("kind", ["Client", "StringClient"])
def test_a_changed_node_list_drops_no_call_in_flight(endpoint, memcached_factory, kind):
    a, b = memcached_factory(), memcached_factory()
    for srv in (a, b):
        cmemcache.StringClient([srv.address]).set_multi({b"k%d" % i: b"v%d" % i for i in range(20)})
    endpoint.publish([a])
    if kind == "Client":
        c = cmemcache.Client([endpoint.address], discovery="elasticache", socket_timeout=5,
                             strict=True)
    else:
        c = cmemcache.StringClient([endpoint.address], discovery="elasticache", timeout=5,
                                   discovery_interval=3600)
    errors: list = []
    wrong: list = []
    done = threading.Event()
    calls = [0]

    def reader(t: int) -> None:
        try:
            while not done.is_set():
                for i in range(20):
                    got = c.get(f"k{i}") if i % 2 else c.get_multi([f"k{i}"])
                    want = b"v%d" % i if i % 2 else {f"k{i}": b"v%d" % i}
                    if got != want:
                        wrong.append((t, i, got))
                    calls[0] += 1
        except BaseException as exc:  # reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=reader, args=(t,), daemon=True) for t in range(4)]
    for th in threads:
        th.start()
    assert wait_until(lambda: calls[0] > 0)
    # at least 100 swaps, and on until the readers made 400 calls meanwhile
    # (a loaded machine gives them little time; bounded)
    end = time.monotonic() + 30
    n = 0
    while n < 100 or (calls[0] < 400 and time.monotonic() < end):
        endpoint.publish([a, b] if n % 2 == 0 else [b])
        c.discover()
        n += 1
    done.set()
    for th in threads:
        th.join(60)
    assert not any(th.is_alive() for th in threads)
    assert errors == [] and wrong == []
    assert calls[0] >= 400
    c.disconnect_all()


def test_the_poller_thread_picks_up_a_change(endpoint, memcached_factory):
    a, b = memcached_factory(), memcached_factory()
    endpoint.publish([a])
    c = cmemcache.Client([endpoint.address], discovery="elasticache",
                         discovery_interval=0.05, socket_timeout=2)
    assert [h.spec for h in c.servers] == [spec(a)]
    assert c._poller.thread.is_alive()
    endpoint.publish([a, b])
    assert wait_until(lambda: [h.spec for h in c.servers] == [spec(a), spec(b)])
    # the poller ends with its client
    thread = c._poller.thread
    del c
    import gc

    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


def test_a_forked_child_polls_for_itself(endpoint, memcached_factory):
    a, b = memcached_factory(), memcached_factory()
    endpoint.publish([a])
    c = cmemcache.Client([endpoint.address], discovery="elasticache",
                         discovery_interval=0.05, socket_timeout=2)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its poller runs, and sees the change the parent makes
        try:
            os.close(r)
            ok = c._poller.thread.is_alive()
            os.write(w, b"1")
            ok = ok and wait_until(lambda: [h.spec for h in c.servers] == [spec(a), spec(b)])
            ok = ok and c.set("child", 5) is True and c.get("child") == 5
            os.write(w, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    endpoint.publish([a, b])
    with os.fdopen(r, "rb") as f:
        out = f.read()  # until the child exits
    os.waitpid(pid, 0)
    assert out == b"ok"
    del c


def test_an_endpoint_that_is_not_elasticache(memcached_factory, caplog):
    a = memcached_factory()
    with caplog.at_level(logging.WARNING, logger="cmemcache"):
        c = cmemcache.Client([a.address], discovery="elasticache", socket_timeout=2,
                             discovery_interval=3600)
    assert "discovery failed" in caplog.text
    # the endpoint serves meanwhile
    assert [h.spec for h in c.servers] == [a.address]
    assert c.set("k", "v") is True and c.get("k") == "v"
    with pytest.raises(cmemcache.ClientError):
        c.discover()
    c.disconnect_all()


def test_an_endpoint_without_a_cluster_configuration(endpoint):
    endpoint.answer_none = True
    c = cmemcache.Client([endpoint.address], discovery="elasticache", socket_timeout=2,
                         discovery_interval=3600)
    with pytest.raises(cmemcache.ProtocolError, match="no cluster configuration"):
        c.discover()
    endpoint.answer_none = False
    endpoint.nodes_line = b"bad"
    with pytest.raises(cmemcache.ProtocolError, match="bad node"):
        c.discover()
    assert [h.spec for h in c.servers] == [endpoint.address]


def test_a_stalled_endpoint_times_out(endpoint):
    endpoint.stall = True
    start = time.monotonic()
    c = cmemcache.Client([endpoint.address], discovery="elasticache", socket_timeout=0.3,
                         discovery_interval=3600)
    with pytest.raises(cmemcache.TimeoutError):
        c.discover()
    assert time.monotonic() - start < 5


def test_bad_discovery_arguments(endpoint, memcached_factory):
    a = memcached_factory()
    with pytest.raises(ValueError, match="discovery must be"):
        cmemcache.Client([endpoint.address], discovery="consul")
    with pytest.raises(ValueError, match="only server"):
        cmemcache.Client([endpoint.address, a.address], discovery="elasticache")
    for interval in (0, -1, "60", True, float("nan")):
        with pytest.raises(ValueError, match="discovery_interval"):
            cmemcache.Client([endpoint.address], discovery="elasticache",
                             discovery_interval=interval)
    assert endpoint.requests == 0  # nothing was sent
    with pytest.raises(ValueError, match="without discovery"):
        cmemcache.Client([a.address]).discover()
    with pytest.raises(ValueError, match="only server"):
        cmemcache.aio.Client([endpoint.address, a.address], discovery="elasticache")


# -- the asyncio client ----------------------------------------------------------------------


def test_aio_client_discovers_and_polls(endpoint, memcached_factory):
    a, b = memcached_factory(), memcached_factory()
    endpoint.publish([a], version=4)

    async def main():
        c = cmemcache.aio.Client([endpoint.address], discovery="elasticache",
                                 discovery_interval=0.05, socket_timeout=2, strict=True)
        # before discover(), the endpoint is the only server
        assert [h.spec for h in c.servers] == [endpoint.address]
        async with c:
            assert [h.spec for h in c.servers] == [spec(a)]
            assert c.discovered_version == 4
            assert await c.set("k", "v") is True and a.raw_get(b"k") == (b"v", 16)
            endpoint.publish([a, b], version=5)
            for _ in range(200):
                if [h.spec for h in c.servers] == [spec(a), spec(b)]:
                    break
                await asyncio.sleep(0.02)
            assert [h.spec for h in c.servers] == [spec(a), spec(b)]
            assert c.discovered_version == 5
            for i in range(40):
                assert await c.set(f"n{i}", i) is True
            assert await c.get_multi([f"n{i}" for i in range(40)]) == {f"n{i}": i for i in range(40)}
            task = c._poll_task
            assert task is not None and not task.done()
        # close() stops the polling
        await asyncio.sleep(0)
        assert task.cancelled() or task.done()
        assert c._poll_task is None

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["Client", "StringClient"])
def test_aio_polling_moves_to_the_next_loop(endpoint, memcached_factory, kind):
    """discover() on a new loop, once the loop that polled was closed
    without ending its polling task, polls there."""
    a, b = memcached_factory(), memcached_factory()
    endpoint.publish([a], version=1)
    opts = {"socket_timeout": 2} if kind == "Client" else {"timeout": 2}
    c = getattr(cmemcache.aio, kind)([endpoint.address], discovery="elasticache",
                                     discovery_interval=0.05, **opts)
    old = asyncio.new_event_loop()
    old.run_until_complete(c.discover())
    first = c._poll_task
    assert first is not None and first.get_loop() is old and not first.done()
    old.close()                 # its polling task left pending

    async def main():
        await c.discover()
        assert c._poll_task is not first
        assert c._poll_task.get_loop() is asyncio.get_running_loop()
        endpoint.publish([a, b], version=2)
        for _ in range(250):
            if c.discovered_version == 2:
                break
            await asyncio.sleep(0.02)
        assert c.discovered_version == 2
        assert await c.set("k" if kind == "Client" else b"k", b"1") is True
        await c.close()

    asyncio.run(main())
    del first
    gc.collect()


def test_aio_client_made_in_a_running_loop_discovers_by_itself(endpoint, memcached_factory):
    a = memcached_factory()
    endpoint.publish([a], version=9)

    async def main():
        c = cmemcache.aio.Client([endpoint.address], discovery="elasticache",
                                 discovery_interval=3600, socket_timeout=2)
        for _ in range(250):
            if c.discovered_version == 9:
                break
            await asyncio.sleep(0.02)
        assert [h.spec for h in c.servers] == [spec(a)]
        assert await c.set("k", 3) is True and a.raw_get(b"k") == (b"3", 2)
        await c.close()

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["Client", "StringClient"])
def test_aio_a_changed_node_list_drops_no_call_in_flight(endpoint, memcached_factory, kind):
    a, b = memcached_factory(), memcached_factory()
    for srv in (a, b):
        cmemcache.StringClient([srv.address]).set_multi({b"k%d" % i: b"v%d" % i for i in range(20)})
    endpoint.publish([a])
    if kind == "Client":
        def make():
            return cmemcache.aio.Client([endpoint.address], discovery="elasticache",
                                        discovery_interval=3600, socket_timeout=5, strict=True)

        def engine(c):
            return c._sc  # bytes back; read each time: discovery replaces it
    else:
        def make():
            return cmemcache.aio.StringClient([endpoint.address], discovery="elasticache",
                                              discovery_interval=3600, timeout=5)

        def engine(c):
            return c

    async def main():
        async with make() as c:
            stop = asyncio.Event()
            wrong: list = []
            calls = [0]

            async def reader(t: int) -> None:
                while not stop.is_set():
                    i = (t + calls[0]) % 20
                    got = await engine(c).get(b"k%d" % i)
                    if got != b"v%d" % i:
                        wrong.append((t, i, got))
                    calls[0] += 1

            tasks = [asyncio.create_task(reader(t)) for t in range(64)]
            for n in range(60):
                endpoint.publish([a, b] if n % 2 == 0 else [b])
                await c.discover()
                await asyncio.sleep(0)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            assert wrong == []
            assert calls[0] > 60
            assert len(c._retired) > 0  # the replaced clients close after the timeout
        assert c._retired == []

    asyncio.run(main())


# -- StringClient and aio.StringClient -------------------------------------------------------


def test_string_client_uses_the_nodes_listed(endpoint, memcached_factory):
    a, b = memcached_factory(), memcached_factory()
    endpoint.publish([a, b], version=12)
    sc = cmemcache.StringClient([endpoint.address], discovery="elasticache", timeout=2)
    assert isinstance(sc, cmemcache.StringClient)
    assert sc.discovery == "elasticache" and sc.discovered_version == 12
    assert sc.discovery_interval == 60.0
    assert sc.servers == (spec(a), spec(b))
    assert endpoint.requests == 1
    # the same distribution, and the same replies, as a client given the nodes
    plain = cmemcache.StringClient([spec(a), spec(b)])
    keys = [b"key%d" % i for i in range(200)]
    assert sc.set_multi({k: k for k in keys}) == []
    assert sc.get_multi(keys) == plain.get_multi(keys) == {k: k for k in keys}
    held = [sum(1 for k in keys if srv.raw_get(k) is not None) for srv in (a, b)]
    assert sum(held) == 200 and min(held) > 40
    assert [sc.server_index(k) for k in keys[:50]] == [plain.server_index(k) for k in keys[:50]]
    assert sc.set(b"one", b"1", flags=3) is True
    assert sc.get(b"one", with_flags=True) == (b"1", 3)
    assert sc.incr(b"one", 4) == 5 and sc.delete(b"one") is True and sc.get(b"one") is None
    assert sc.meta_get(b"key1").value == b"key1"
    assert set(sc.version()) == {spec(a), spec(b)}
    assert sc.hold_downs() == (0.0, 0.0) and sc.call_counts()["get_multi"] == 1
    # nothing but config get went to the endpoint
    assert endpoint.requests == 1
    sc.close()
    plain.close()


def test_string_client_follows_a_changed_node_list(endpoint, memcached_factory):
    a, b = memcached_factory(), memcached_factory()
    endpoint.publish([a])
    sc = cmemcache.StringClient([endpoint.address], discovery="elasticache", timeout=2,
                                discovery_interval=3600)
    assert sc.set(b"x", b"1") is True and a.raw_get(b"x") == (b"1", 0)
    nodes = sc._nodes
    assert sc.discover() == [spec(a)] and sc._nodes is nodes  # unchanged: kept
    endpoint.publish([b], version=30)
    assert sc.discover() == [spec(b)]
    assert sc.discovered_version == 30 and sc.servers == (spec(b),)
    assert sc.get(b"x") is None
    assert sc.set(b"y", b"2") is True and b.raw_get(b"y") == (b"2", 0)
    assert a.raw_get(b"y") is None
    sc.close()


def test_string_client_poller_and_its_end(endpoint, memcached_factory):
    a, b = memcached_factory(), memcached_factory()
    endpoint.publish([a])
    sc = cmemcache.StringClient([endpoint.address], discovery="elasticache",
                                discovery_interval=0.05, timeout=2)
    assert sc.discovery_interval == 0.05 and sc._poller.thread.is_alive()
    endpoint.publish([a, b])
    assert wait_until(lambda: sc.servers == (spec(a), spec(b)))
    thread = sc._poller.thread
    del sc
    import gc

    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


def test_string_client_endpoint_serves_until_discovery_works(memcached_factory, caplog):
    a = memcached_factory()
    with caplog.at_level(logging.WARNING, logger="cmemcache"):
        sc = cmemcache.StringClient([a.address], discovery="elasticache", timeout=2,
                                    discovery_interval=3600)
    assert "discovery failed" in caplog.text
    assert sc.servers == (a.address,) and sc.discovered_version is None
    assert sc.set(b"k", b"v") is True and sc.get(b"k") == b"v"
    with pytest.raises(cmemcache.ClientError):
        sc.discover()
    sc.close()


def test_string_client_disconnect_all_closes_both(endpoint, memcached_factory):
    a = memcached_factory()
    endpoint.publish([a])
    with cmemcache.StringClient([endpoint.address], discovery="elasticache", timeout=2,
                                discovery_interval=3600) as sc:
        assert sc.set(b"k", b"v") is True
        assert wait_until(lambda: len(endpoint._conns) == 1)
        assert a.stats()["curr_connections"] != "0"
        before = int(a.stats()["curr_connections"])
    # __exit__: the node's connection and the endpoint's are closed
    assert wait_until(lambda: int(a.stats()["curr_connections"]) == before - 1)
    peer = endpoint._conns[0]
    peer.settimeout(5)
    assert peer.recv(1) == b""


def test_string_client_bad_discovery_arguments(endpoint, memcached_factory):
    a = memcached_factory()
    with pytest.raises(ValueError, match="discovery must be"):
        cmemcache.StringClient([endpoint.address], discovery="consul")
    with pytest.raises(ValueError, match="only server"):
        cmemcache.StringClient([endpoint.address, a.address], discovery="elasticache")
    for interval in (0, -1, "60", True, float("nan")):
        with pytest.raises(ValueError, match="discovery_interval"):
            cmemcache.StringClient(endpoint.address, discovery="elasticache",
                                   discovery_interval=interval)
    with pytest.raises(ValueError, match="discovery_interval"):
        cmemcache.aio.StringClient([endpoint.address], discovery="elasticache",
                                   discovery_interval=0)
    with pytest.raises(TypeError):
        cmemcache.StringClient(discovery="elasticache")
    with pytest.raises(TypeError, match="not a Mine"):
        type("Mine", (cmemcache.StringClient,), {})([endpoint.address],
                                                    discovery="elasticache")
    with pytest.raises(TypeError, match="real number"):  # the engine's own checks
        cmemcache.StringClient([endpoint.address], discovery="elasticache", timeout="x")
    assert endpoint.requests == 0  # nothing was sent
    # discovery=None: a plain client
    plain = cmemcache.StringClient(servers=[a.address], discovery=None)
    assert type(plain) is cmemcache.StringClient and plain.discovery is None
    assert plain.discovered_version is None and plain.discovery_interval is None
    with pytest.raises(ValueError, match="without discovery"):
        plain.discover()

    async def aio_plain():
        c = cmemcache.aio.StringClient([a.address], discovery=None)
        assert type(c) is cmemcache.aio.StringClient and c.discovery is None
        with pytest.raises(ValueError, match="without discovery"):
            await c.discover()
        await c.close()

    asyncio.run(aio_plain())


def test_aio_string_client_discovers_and_polls(endpoint, memcached_factory):
    a, b = memcached_factory(), memcached_factory()
    endpoint.publish([a], version=4)

    async def main():
        c = cmemcache.aio.StringClient([endpoint.address], discovery="elasticache",
                                       discovery_interval=0.05, timeout=2)
        assert isinstance(c, cmemcache.aio.StringClient)
        # made outside a running loop: the endpoint serves until discover()
        assert c.servers == (endpoint.address,) and c.discovered_version is None
        async with c:
            assert c.servers == (spec(a),) and c.discovered_version == 4
            assert await c.set(b"k", b"v") is True and a.raw_get(b"k") == (b"v", 0)
            assert await c.get_multi([b"k"]) == {b"k": b"v"}
            endpoint.publish([a, b], version=5)
            for _ in range(250):
                if c.discovered_version == 5:
                    break
                await asyncio.sleep(0.02)
            assert c.servers == (spec(a), spec(b))
            plain = cmemcache.StringClient([spec(a), spec(b)])
            keys = [b"n%d" % i for i in range(40)]
            assert [c.server_index(k) for k in keys] == [plain.server_index(k) for k in keys]
            assert await c.set_multi({k: k for k in keys}) == []
            assert plain.get_multi(keys) == {k: k for k in keys}
            plain.close()
        assert c._poll_task is None  # close() stopped the polling

    asyncio.run(main())


def test_aio_string_client_made_in_a_running_loop_discovers_by_itself(endpoint,
                                                                     memcached_factory):
    a = memcached_factory()
    endpoint.publish([a], version=9)

    async def main():
        c = cmemcache.aio.StringClient([endpoint.address], discovery="elasticache",
                                       discovery_interval=3600, timeout=2)
        for _ in range(250):
            if c.discovered_version == 9:
                break
            await asyncio.sleep(0.02)
        assert c.servers == (spec(a),)
        assert await c.set(b"k", b"3") is True and a.raw_get(b"k") == (b"3", 0)
        await c.close()

    asyncio.run(main())


# -- the backends pass the options through ---------------------------------------------------


def test_django_backend_discovers(endpoint, memcached_factory):
    pytest.importorskip("django")
    from cmemcache.django import CMemcacheCache

    a, b = memcached_factory(), memcached_factory()
    endpoint.publish([a, b], version=2)
    cache = CMemcacheCache(endpoint.address, {"OPTIONS": {
        "discovery": "elasticache", "discovery_interval": 3600, "socket_timeout": 2}})
    assert [h.spec for h in cache._cache.servers] == [spec(a), spec(b)]
    cache.set("dj", 5)
    assert cache.get("dj") == 5

    async def main():
        aclient = cache._aclient()
        for _ in range(250):
            if aclient.discovered_version == 2:
                break
            await asyncio.sleep(0.02)
        assert [h.spec for h in aclient.servers] == [spec(a), spec(b)]
        assert await cache.aget("dj") == 5
        await aclient.close()

    asyncio.run(main())
    cache.close()


def test_dogpile_backend_discovers(endpoint, memcached_factory):
    pytest.importorskip("dogpile.cache")
    from dogpile.cache import make_region

    a = memcached_factory()
    endpoint.publish([a], version=6)
    region = make_region().configure("cmemcache", arguments={
        "url": endpoint.address, "discovery": "elasticache", "discovery_interval": 3600})
    client = region.backend.client
    assert client.discovery == "elasticache" and client.discovered_version == 6
    assert [h.spec for h in client.servers] == [spec(a)]
    region.set("dp", [1, 2])
    assert region.get("dp") == [1, 2]


def test_aiocache_backend_discovers(endpoint, memcached_factory):
    pytest.importorskip("aiocache")
    from cmemcache.aiocache import CMemcacheCache

    a = memcached_factory()
    endpoint.publish([a], version=8)

    async def main():
        cache = CMemcacheCache(endpoint="127.0.0.1", port=endpoint.port, client_options={
            "discovery": "elasticache", "discovery_interval": 3600})
        client = cache._clients.client()  # made on the running loop: discovers by itself
        assert client.discovery == "elasticache"
        for _ in range(250):
            if client.discovered_version == 8:
                break
            await asyncio.sleep(0.02)
        assert [h.spec for h in client.servers] == [spec(a)]
        assert await cache.set("ac", "v") is True
        assert a.raw_get(b"ac") is not None
        assert await cache.get("ac") == "v"
        await cache.close()

    asyncio.run(main())
