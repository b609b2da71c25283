"""TLS end to end: cmemcache.StringClient and cmemcache.Client against real
``memcached -Z`` servers, with certificates made at test time
(tests/tls_support.py): round trips, verification failures, mutual TLS,
deadlines on a stopped server, reconnects, session resumption (counted
through a relay), threads, authentication over TLS, and the framework
backends' options (tests/test_backend_transport.py has them in full).
Loopback only."""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import threading
import time
import types

import pytest

import cmemcache
import cmemcache.aio
from conftest import TcpRelay, authenticate_socket, django_cache_class, made_by
from tls_support import (  # noqa: F401  (fixtures)
    CLIENT_KEY_PASSWORD,
    TLSCertificates,
    TLSMemcachedServer,
    no_tls_build,
    tls_certs,
    tls_memcached_factory,
)

SLACK = 0.6
MIB = 1024 * 1024
USER = "tlsuser"
PASSWORD = "tls-secret-pw"
KINDS = ["StringClient", "Client"]
AIO_KINDS = ["aio.StringClient", "aio.Client"]


pytestmark = pytest.mark.skipif(no_tls_build(), reason="cmemcache built without OpenSSL")


def make(kind: str, server: TLSMemcachedServer, certs: TLSCertificates, **kwargs):
    """A client of kind for server, trusting certs' CA, checking the name
    "localhost" (the certificate's) unless told otherwise; timeout is
    Client's socket_timeout."""
    kwargs.setdefault("tls", True)
    kwargs.setdefault("tls_ca_file", certs.ca_file)
    kwargs.setdefault("tls_server_hostname", "localhost")
    kwargs.setdefault("connect_timeout", 2)
    if kind in ("StringClient", "aio.StringClient"):
        kwargs.setdefault("timeout", 2)
        cls = cmemcache.StringClient if kind == "StringClient" else cmemcache.aio.StringClient
        return cls([server.address], **kwargs)
    kwargs.setdefault("socket_timeout", kwargs.pop("timeout", 2))
    kwargs.setdefault("strict", True)
    cls = cmemcache.Client if kind == "Client" else cmemcache.aio.Client
    return cls([server.address], **kwargs)


@pytest.fixture
def server(tls_memcached_factory):
    """memcached -Z taking values up to 2 MiB."""
    return tls_memcached_factory(extra_args=["-I", "2m"])


# -- round trips ---------------------------------------------------------------------------


def test_string_client_round_trips(server, tls_certs):
    c = make("StringClient", server, tls_certs, max_value_size=2 * MIB)
    assert c.set("k", b"hello", flags=3) is True
    assert c.get("k", with_flags=True) == (b"hello", 3)
    assert server.raw_get(b"k") == (b"hello", 3)
    assert c.set_multi({"a": b"1", "b": b"22", "c": b"333"}) == []
    assert c.get_multi(["a", "b", "c", "missing"]) == {"a": b"1", "b": b"22", "c": b"333"}
    assert c.delete("a") is True
    assert c.delete("a") is False
    assert c.get("a") is None
    assert c.set("n", b"41") is True
    assert c.incr("n") == 42
    assert c.decr("n", 2) == 40
    assert c.touch("n", 100) is True
    assert c.touch("nothing", 100) is False
    value, token = c.gets("n")
    assert value == b"40"
    assert c.cas("n", b"50", token) is True
    assert c.cas("n", b"60", token) is False
    assert c.get("n") == b"50"
    big = os.urandom(MIB)
    assert c.set("big", big) is True
    assert c.get("big") == big
    assert server.raw_get(b"big") == (big, 0)
    # a multi-key call with large values: each command ends its records
    many = {f"m{i}": os.urandom(100_000 + i) for i in range(12)}
    assert c.set_multi(many) == []
    assert c.get_multi(list(many)) == many
    # noreply commands and their fence
    assert c.set("nr", b"x" * 300_000, noreply=True) is True
    assert c.set("nr2", b"y", noreply=True) is True
    assert c.get_multi(["nr", "nr2"]) == {"nr": b"x" * 300_000, "nr2": b"y"}
    assert c.version() == {server.address: server.command(b"version\r\n").split()[1].decode()}
    c.close()


def test_client_round_trips(server, tls_certs):
    c = make("Client", server, tls_certs, server_max_value_length=2 * MIB)
    assert c.set("k", {"a": 1}) is True
    assert c.get("k") == {"a": 1}
    assert c.set_multi({"a": 1, "b": "two", "c": [3]}) == []
    assert c.get_multi(["a", "b", "c", "missing"]) == {"a": 1, "b": "two", "c": [3]}
    assert c.delete("a") == 1
    assert c.get("a") is None
    assert c.set("n", 41) is True
    assert c.incr("n") == 42
    assert c.touch("n", 100) == 1
    c.cache_cas = True
    assert c.gets("n") == 42
    assert c.cas("n", 50) is True
    assert c.get("n") == 50
    big = os.urandom(MIB)
    assert c.set("big", big) is True
    assert c.get("big") == big
    assert c.delete_multi(["b", "c"]) == 1
    assert c.get_multi(["b", "c"]) == {}
    c.disconnect_all()


@pytest.mark.parametrize("version", ["1.2", ssl.TLSVersion.TLSv1_2, "1.3", ssl.TLSVersion.TLSv1_3])
def test_protocol_versions(server, tls_certs, version):
    c = make("StringClient", server, tls_certs, tls_min_version=version, tls_max_version=version)
    assert c.set("v", b"1") is True
    assert c.get("v") == b"1"


def test_ip_literal_is_verified_against_the_certificate(server, tls_certs):
    # the certificate names 127.0.0.1: no server_hostname needed
    c = cmemcache.StringClient([server.address], tls=True, tls_ca_file=tls_certs.ca_file)
    assert c.set("ip", b"1") is True
    assert c.get("ip") == b"1"


# -- verification -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_ca_is_refused(server, tls_certs, kind):
    c = make(kind, server, tls_certs, tls_ca_file=tls_certs.wrong_ca_file)
    with pytest.raises(cmemcache.ConnectionError,
                       match="TLS failed: certificate verify failed: unable to get local issuer"):
        c.get("k")
    # a verification failure holds nothing down: the next call says why again
    with pytest.raises(cmemcache.ConnectionError, match="certificate verify failed"):
        c.set("k", b"1")
    assert server.raw_get(b"k") is None


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_hostname_is_refused(tls_memcached_factory, tls_certs, kind):
    other = tls_memcached_factory(cert=tls_certs.other_cert, key=tls_certs.other_key)
    c = make(kind, other, tls_certs)  # checks "localhost"; the certificate is other.example's
    with pytest.raises(cmemcache.ConnectionError, match="TLS failed: .*(hostname|Hostname)"):
        c.get("k")
    ok = make(kind, other, tls_certs, tls_server_hostname="other.example")
    assert ok.set("k", b"1" if kind == "StringClient" else 1) is True


@pytest.mark.parametrize("kind", KINDS)
def test_verify_false_connects_to_the_wrong_hostname(tls_memcached_factory, tls_certs, kind):
    other = tls_memcached_factory(cert=tls_certs.other_cert, key=tls_certs.other_key)
    c = make(kind, other, tls_certs, tls_ca_file=tls_certs.wrong_ca_file, tls_verify=False)
    assert c.set("k", b"v" if kind == "StringClient" else "v") is True
    assert other.raw_get(b"k")[0] == b"v"


# -- mutual TLS ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_mutual_tls(tls_memcached_factory, tls_certs, kind):
    server = tls_memcached_factory(verify_mode=2)
    val = b"m" if kind == "StringClient" else "m"
    with_cert = make(kind, server, tls_certs, tls_certfile=tls_certs.client_cert,
                     tls_keyfile=tls_certs.client_key)
    assert with_cert.set("m", val) is True
    assert with_cert.get("m") == val
    encrypted = make(kind, server, tls_certs, tls_certfile=tls_certs.client_cert,
                     tls_keyfile=tls_certs.client_key_encrypted,
                     tls_keyfile_password=CLIENT_KEY_PASSWORD)
    assert encrypted.get("m") == val
    as_str = make(kind, server, tls_certs, tls_certfile=tls_certs.client_cert,
                  tls_keyfile=tls_certs.client_key_encrypted,
                  tls_keyfile_password=CLIENT_KEY_PASSWORD.decode())
    assert as_str.get("m") == val
    # without a certificate: TLS 1.3 refuses after the handshake, in the
    # first reply (its alert, or a reset that discarded it: the message says
    # what is missing either way); TLS 1.2 in the handshake
    without = make(kind, server, tls_certs)
    with pytest.raises(cmemcache.ConnectionError,
                       match="TLS failed: .*(certificate required|asked for a client certificate"
                             " and none is configured)"):
        without.get("m")
    without12 = make(kind, server, tls_certs, tls_max_version="1.2")
    with pytest.raises(cmemcache.ConnectionError, match="TLS failed: .*handshake failure"):
        without12.get("m")
    stranger = make(kind, server, tls_certs, tls_certfile=tls_certs.wrong_client_cert,
                    tls_keyfile=tls_certs.wrong_client_key)
    with pytest.raises(cmemcache.ConnectionError,
                       match="TLS failed: .*(unknown ca|may have refused cert_file)"):
        stranger.get("m")


def test_bad_files_fail_at_construction(tls_certs, tmp_path):
    addr = "127.0.0.1:1"  # nothing is connected to
    with pytest.raises(ValueError, match="no-such.pem"):
        cmemcache.StringClient(addr, tls=True, tls_ca_file=str(tmp_path / "no-such.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a certificate\n")
    with pytest.raises(ValueError, match="junk.pem"):
        cmemcache.StringClient(addr, tls=True, tls_ca_file=junk)
    with pytest.raises(ValueError, match="junk.pem"):
        cmemcache.Client([addr], tls=True, tls_certfile=junk)
    with pytest.raises(ValueError) as e:
        cmemcache.StringClient(addr, tls=True, tls_certfile=tls_certs.client_cert,
                               tls_keyfile=tls_certs.client_key_encrypted,
                               tls_keyfile_password="not-the-password-42")
    assert "not-the-password-42" not in str(e.value)
    assert "client-encrypted.key" in str(e.value)
    with pytest.raises(ValueError):
        cmemcache.StringClient(addr, tls=True, tls_certfile=tls_certs.client_cert,
                               tls_keyfile=tls_certs.client_key_encrypted)
    with pytest.raises(ValueError):  # the key of another certificate
        cmemcache.StringClient(addr, tls=True, tls_certfile=tls_certs.client_cert,
                               tls_keyfile=tls_certs.wrong_client_key)


def test_bad_arguments(tls_certs):
    addr = "127.0.0.1:1"
    for name, value in [("tls_ca_file", tls_certs.ca_file), ("tls_verify", False),
                        ("tls_server_hostname", "localhost"), ("tls_min_version", "1.2"),
                        ("tls_certfile", tls_certs.client_cert)]:
        with pytest.raises(ValueError, match=f"{name} needs tls=True"):
            cmemcache.StringClient(addr, **{name: value})
        with pytest.raises(ValueError, match=f"{name} needs tls=True"):
            cmemcache.Client([addr], **{name: value})
    for bad in ["1.1", "1.4", ssl.TLSVersion.TLSv1_1, 3, True]:
        with pytest.raises(ValueError, match="tls_min_version must be"):
            cmemcache.StringClient(addr, tls=True, tls_min_version=bad)
    with pytest.raises(ValueError, match="above"):
        cmemcache.StringClient(addr, tls=True, tls_min_version="1.3", tls_max_version="1.2")
    with pytest.raises(ValueError, match="unix socket"):
        cmemcache.StringClient("/tmp/memcached.sock", tls=True)
    with pytest.raises(ValueError, match="tls_keyfile needs tls_certfile"):
        cmemcache.StringClient(addr, tls=True, tls_keyfile=tls_certs.client_key)
    with pytest.raises(TypeError):
        cmemcache.StringClient(addr, tls=True, tls_server_hostname=5)
    with pytest.raises(ValueError, match="tls_ca_file needs tls=True"):
        cmemcache.aio.StringClient(addr, tls_ca_file=tls_certs.ca_file)
    with pytest.raises(ValueError, match="no-such"):
        cmemcache.aio.Client([addr], tls=True, tls_ca_file="/no-such/ca.pem")
    # the ssl module's names for "no bound"
    cmemcache.StringClient(addr, tls=True, tls_min_version=ssl.TLSVersion.MINIMUM_SUPPORTED,
                           tls_max_version=ssl.TLSVersion.MAXIMUM_SUPPORTED)
    cmemcache.StringClient(addr, tls=False)


# -- deadlines ----------------------------------------------------------------------------


def assert_stopped_times_out(server, client, connect_timeout: float) -> None:
    """With server SIGSTOPped before the first call, client's get raises
    TimeoutError by connect_timeout (and a margin)."""
    server.pause()
    try:
        start = time.monotonic()
        with pytest.raises(cmemcache.TimeoutError):
            client.get("k")
        took = time.monotonic() - start
    finally:
        server.resume()
    assert took < connect_timeout + SLACK


@pytest.mark.parametrize("kind", KINDS)
def test_server_stopped_before_the_handshake(server, tls_certs, kind):
    """SIGSTOP: the kernel completes the TCP connect, the handshake never
    does; the connect deadline ends it."""
    c = make(kind, server, tls_certs, connect_timeout=0.5, timeout=5)
    assert_stopped_times_out(server, c, 0.5)
    # once it runs again the client connects
    c2 = make(kind, server, tls_certs)
    assert c2.set("k", b"1" if kind == "StringClient" else 1) is True


def test_server_stopped_mid_value(tls_memcached_factory, tls_certs):
    """SIGSTOP while a large value is on its way: the request's deadline
    ends the call."""
    server = tls_memcached_factory(extra_args=["-I", "64m"], memory_mb=512)
    timeout = 1.0
    big = os.urandom(48 * MIB)
    setter = make("StringClient", server, tls_certs, max_value_size=64 * MIB, timeout=10)
    assert setter.set("big", big) is True
    outcomes = []
    for delay in (0.02, 0.005, 0.001, 0.0):
        c = make("StringClient", server, tls_certs, max_value_size=64 * MIB, timeout=timeout)
        assert c.set("warm", b"1") is True  # connected, handshake done
        result: list = []

        def reader():
            start = time.monotonic()
            try:
                result.append(c.get("big"))
            except Exception as e:  # noqa: BLE001  (asserted below)
                result.append(e)
            result.append(time.monotonic() - start)

        t = threading.Thread(target=reader)
        t.start()
        time.sleep(delay)
        server.pause()
        try:
            t.join(timeout + 5)
        finally:
            server.resume()
        assert not t.is_alive()
        value, took = result
        if isinstance(value, bytes):
            assert value == big  # it was all read before the pause
            outcomes.append("read")
            continue
        assert isinstance(value, cmemcache.TimeoutError), value
        assert took < timeout + SLACK
        outcomes.append("timed out")
        break
    assert "timed out" in outcomes, outcomes


# -- reconnects ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_reconnect_after_restart(server, tls_certs, kind):
    c = make(kind, server, tls_certs, dead_retry=0)
    val = b"1" if kind == "StringClient" else 1
    assert c.set("before", val) is True
    server.kill()
    server.start()
    # the pooled connection is found closed before anything is sent on it
    assert c.set("after", val) is True
    assert c.get("after") == val
    # that the reconnects resume the session (and that one after a restart,
    # whose ticket the new process cannot read, does a full handshake) is
    # test_session_resumption_after_restart's, counted through a relay;
    # here each reconnect must work
    for _ in range(3):
        c.disconnect_all()
        assert c.get("after") == val


# -- session resumption -------------------------------------------------------------------
#
# memcached 1.6 has no counter of resumed sessions, so a relay between the
# client and the server counts the bytes the server sends on each
# connection: a full handshake carries the server's certificate (and its
# signature), a resumed one only the hello, the finished message and a new
# ticket.  memcached -Z resumes from session tickets (TLS 1.2 and 1.3) in its
# default configuration; once it verifies client certificates
# (ssl_verify_mode) it refuses every resumption unless started with
# ``-o ssl_session_cache`` (tests/c/test_tls.c checks the refusal).


RESUME_KINDS = KINDS + AIO_KINDS


def server_cert_length(certs: TLSCertificates) -> int:
    """The DER length of the server's certificate (what a full handshake's
    Certificate message carries, with a few bytes of framing)."""
    with open(certs.server_cert) as f:
        pem = f.read()
    first = pem[: pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    return len(ssl.PEM_cert_to_DER_cert(first))


@pytest.fixture
def relay_factory():
    """``make(server) -> TcpRelay`` in front of server; stopped after the test."""
    with made_by(lambda server: TcpRelay(server.port), TcpRelay.stop) as make:
        yield make


class Resumption:
    """Clients of one kind talking to a server through a counting relay.

    ``first_reply(client)`` makes the client open one new connection (its
    previous ones closed) and answer one ``set``: the bytes the server sent
    on that connection up to and including the reply, i.e. the handshake,
    any session tickets (TLS 1.3 sends them before the reply) and one
    ``STORED`` record, the same for every connection but the handshake.
    """

    def __init__(self, kind: str, relay: TcpRelay, certs: TLSCertificates, **options):
        self.kind = kind
        self.relay = relay
        self.target = types.SimpleNamespace(address=relay.address)
        self.certs = certs
        self.options = options
        self.loop = asyncio.new_event_loop() if kind.startswith("aio.") else None

    def client(self):
        """A new client (with a session slot of its own)."""
        return make(self.kind, self.target, self.certs, **self.options)

    def _run(self, call):
        return self.loop.run_until_complete(call) if self.loop is not None else call

    def first_reply(self, client) -> int:
        self._run(client.disconnect_all())
        opened = len(self.relay.server_bytes())
        assert self._run(client.set("r", value_for(self.kind, "1"))) is True
        counts = self.relay.server_bytes()
        assert len(counts) == opened + 1, counts  # exactly one new connection
        return counts[-1]

    def close(self) -> None:
        if self.loop is not None:
            self.loop.close()


@pytest.fixture
def resumption(relay_factory, tls_certs):
    """``make(kind, server, **options) -> Resumption``."""
    made: list[Resumption] = []

    def new(kind: str, server: TLSMemcachedServer, **options) -> Resumption:
        made.append(Resumption(kind, relay_factory(server), tls_certs, **options))
        return made[-1]

    try:
        yield new
    finally:
        for r in made:
            r.close()


def assert_full(count: int, resumed: int, cert_length: int) -> None:
    """count is a full handshake's: the certificate more than resumed."""
    assert count - resumed >= cert_length, (count, resumed, cert_length)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("kind", RESUME_KINDS)
def test_session_resumption(server, tls_certs, resumption, kind, version):
    r = resumption(kind, server, tls_min_version=version, tls_max_version=version)
    cert_length = server_cert_length(tls_certs)
    c = r.client()
    full = r.first_reply(c)
    assert full > cert_length
    # the next connection of the same client resumes the saved session
    resumed = r.first_reply(c)
    assert resumed < full / 2, (full, resumed)
    assert_full(full, resumed, cert_length)
    assert r.first_reply(c) < full / 2  # and the one after it too
    # a new client has a slot of its own: a full handshake
    fresh = r.client()
    assert_full(r.first_reply(fresh), resumed, cert_length)
    assert r.first_reply(fresh) < full / 2
    # and the first client still resumes its own
    assert r.first_reply(c) < full / 2
    assert server.stats()["ssl_handshake_errors"] == "0"


@pytest.mark.parametrize("kind", KINDS)
def test_session_resumption_after_restart(server, tls_certs, resumption, kind):
    """A restarted memcached has new ticket keys: the saved session's
    ticket is not taken, the handshake is a full one (no error), and the
    session it makes resumes next time."""
    r = resumption(kind, server, dead_retry=0)
    cert_length = server_cert_length(tls_certs)
    c = r.client()
    full = r.first_reply(c)
    resumed = r.first_reply(c)
    assert resumed < full / 2
    r._run(c.disconnect_all())
    server.kill()
    server.start()
    assert_full(r.first_reply(c), resumed, cert_length)
    assert r.first_reply(c) < full / 2


@pytest.mark.parametrize("kind", KINDS + ["aio.StringClient"])
def test_session_resumption_with_client_certificates(tls_memcached_factory, tls_certs,
                                                     resumption, kind):
    """memcached requiring client certificates resumes with
    ``-o ssl_session_cache``."""
    server = tls_memcached_factory(verify_mode=2, session_cache=True)
    r = resumption(kind, server, tls_certfile=tls_certs.client_cert,
                   tls_keyfile=tls_certs.client_key)
    cert_length = server_cert_length(tls_certs)
    c = r.client()
    full = r.first_reply(c)
    resumed = r.first_reply(c)
    assert resumed < full / 2, (full, resumed)
    assert_full(full, resumed, cert_length)
    assert server.stats()["ssl_handshake_errors"] == "0"


@pytest.mark.parametrize("kind", RESUME_KINDS)
def test_a_refused_resumption_costs_no_call(tls_memcached_factory, tls_certs, relay_factory,
                                            kind):
    """memcached requiring client certificates without ``ssl_session_cache``
    refuses every resumption: the connection that offered one is made again
    with a full handshake, and the call never sees the refusal."""
    server = tls_memcached_factory(verify_mode=2)
    relay = relay_factory(server)
    target = types.SimpleNamespace(address=relay.address)
    loop = asyncio.new_event_loop() if kind.startswith("aio.") else None

    def run(call):
        return loop.run_until_complete(call) if loop is not None else call

    try:
        c = make(kind, target, tls_certs, tls_certfile=tls_certs.client_cert,
                 tls_keyfile=tls_certs.client_key)  # strict: a failure raises
        for i in range(3):
            assert run(c.set(f"rr{i}", value_for(kind, str(i)))) is True, i
            assert run(c.get(f"rr{i}")) == value_for(kind, str(i))
            run(c.disconnect_all())
        # one connection per round, and one more: the second round's first
        # offered the saved session and was refused; the third offers none
        assert relay.connections == 4
    finally:
        if loop is not None:
            loop.close()


# -- threads ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_threads_share_a_client(server, tls_certs, kind):
    c = make(kind, server, tls_certs, pool_size=4)
    errors: list = []
    crossed: list = []

    def worker(t: int) -> None:
        try:
            for i in range(150):
                key = f"t{t}:{i % 10}"
                value = (f"{t}:{i}:" * (1 + i % 40)).encode()
                if kind == "Client":
                    value = value.decode()
                if not c.set(key, value):
                    errors.append((t, i, "set"))
                got = c.get(key)
                if got != value:
                    crossed.append((t, i, got))
                if i % 25 == 0:
                    multi = c.get_multi([f"t{t}:{j}" for j in range(10)])
                    for k, v in multi.items():
                        if not (v.decode() if isinstance(v, bytes) else v).startswith(f"{t}:"):
                            crossed.append((t, i, k, v))
        except Exception as e:  # noqa: BLE001
            errors.append((t, e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not any(th.is_alive() for th in threads)
    assert errors == []
    assert crossed == []


# -- authentication over TLS --------------------------------------------------------------


class TLSAuthServer(TLSMemcachedServer):
    """memcached -Z -Y authfile; the harness authenticates over TLS."""

    def _connect(self, timeout: float):
        return authenticate_socket(super()._connect(timeout), USER, PASSWORD)


@pytest.fixture
def auth_server(tls_certs, tmp_path):
    authfile = tmp_path / "authfile"
    authfile.write_text(f"{USER}:{PASSWORD}\n")
    s = TLSAuthServer(tls_certs, extra_args=["-Y", str(authfile)])
    try:
        yield s
    finally:
        s.dispose()


@pytest.mark.parametrize("kind", KINDS)
def test_authentication_over_tls(auth_server, tls_certs, kind):
    val = b"secret" if kind == "StringClient" else "secret"
    c = make(kind, auth_server, tls_certs, username=USER, password=PASSWORD)
    assert c.set("a", val) is True
    assert c.get("a") == val
    assert c.get_multi(["a", "b"]) == {"a": val}
    assert auth_server.raw_get(b"a")[0] == b"secret"
    wrong = make(kind, auth_server, tls_certs, username=USER, password="not-it")
    with pytest.raises(cmemcache.AuthenticationError):
        wrong.get("a")
    missing = make(kind, auth_server, tls_certs)
    with pytest.raises(cmemcache.Error):
        missing.get("a")
    # a restart: a new handshake, then the credentials again
    auth_server.kill()
    auth_server.start()
    assert c.set("b", val) is True
    assert c.get("b") == val


def test_authentication_stopped_server_times_out(auth_server, tls_certs):
    c = make("StringClient", auth_server, tls_certs, username=USER, password=PASSWORD,
             connect_timeout=0.5, timeout=5)
    assert_stopped_times_out(auth_server, c, 0.5)


# -- set_servers and the backends ---------------------------------------------------------


def test_set_servers_keeps_the_tls_options(tls_memcached_factory, tls_certs):
    a = tls_memcached_factory()
    b = tls_memcached_factory()
    c = make("Client", a, tls_certs)
    assert c.set("k", 1) is True
    c.set_servers([b.address])
    assert c.set("k", 2) is True
    assert b.raw_get(b"k") is not None
    assert a.raw_get(b"k") is not None
    c.set_servers([b.address])
    assert c.get("k") == 2


def test_django_backend(server, tls_certs):
    CMemcacheCache = django_cache_class()

    options = {"tls": True, "tls_ca_file": tls_certs.ca_file, "tls_server_hostname": "localhost"}
    cache = CMemcacheCache(server.address, {"OPTIONS": options})
    cache.set("dj", {"a": 1})
    assert cache.get("dj") == {"a": 1}
    assert server.raw_get(b":1:dj") is not None

    async def main():  # the async methods: cmemcache.aio over TLS
        await cache.aset("dj2", 5)
        return await cache.aget("dj2")

    assert asyncio.run(main()) == 5
    cache.close()
    bad = CMemcacheCache(server.address, {"OPTIONS": {**options, "tls_ca_file": tls_certs.wrong_ca_file,
                                                      "strict": True}})
    with pytest.raises(cmemcache.ConnectionError, match="certificate verify failed"):
        bad.get("dj")


def test_cachelib_backend(server, tls_certs):
    cachelib = pytest.importorskip("cachelib")
    client = make("Client", server, tls_certs, strict=False)
    cache = cachelib.MemcachedCache(servers=client)
    assert cache.set("cl", [1, 2])
    assert cache.get("cl") == [1, 2]
    assert server.raw_get(b"cl") is not None


def test_aiocache_backend(server, tls_certs):
    pytest.importorskip("aiocache")
    from cmemcache.aiocache import CMemcacheCache

    host, port = server.address.rsplit(":", 1)
    options = {"tls": True, "tls_ca_file": tls_certs.ca_file, "tls_server_hostname": "localhost"}

    async def main():
        cache = CMemcacheCache(endpoint=host, port=int(port), client_options=options)
        await cache.set("ac", {"c": 3})
        value = await cache.get("ac")
        await cache.close()
        return value

    assert asyncio.run(main()) == {"c": 3}
    assert server.raw_get(b"ac") is not None


def test_dogpile_backend(server, tls_certs):
    pytest.importorskip("dogpile.cache")
    from dogpile.cache import make_region

    region = make_region().configure(
        "cmemcache",
        arguments={"url": [server.address], "tls": True, "tls_ca_file": tls_certs.ca_file,
                   "tls_server_hostname": "localhost"},
    )
    region.set("dp", {"d": 4})
    assert region.get("dp") == {"d": 4}
    with pytest.raises(ValueError, match="tls_ca_file needs tls=True"):
        make_region().configure("cmemcache", arguments={"url": [server.address],
                                                        "tls_ca_file": tls_certs.ca_file})


# -- cmemcache.aio ------------------------------------------------------------------------


def value_for(kind: str, text: str):
    """text as the kind's value: bytes for the StringClients."""
    return text.encode() if "StringClient" in kind else text


async def outcome(coro):
    """The result of coro, or the exception it raised."""
    try:
        return await coro
    except Exception as e:  # noqa: BLE001  (the callers assert on it)
        return e


async def assert_stopped_times_out_async(server, client, connect_timeout: float) -> None:
    """assert_stopped_times_out for an asyncio client."""
    server.pause()
    try:
        start = time.monotonic()
        e = await outcome(client.get("k"))
        took = time.monotonic() - start
    finally:
        server.resume()
    assert isinstance(e, cmemcache.TimeoutError), e
    assert took < connect_timeout + SLACK


def test_aio_string_client_round_trips(server, tls_certs):
    async def main():
        c = make("aio.StringClient", server, tls_certs, max_value_size=2 * MIB)
        assert await c.set("k", b"hello", flags=3) is True
        assert await c.get("k", with_flags=True) == (b"hello", 3)
        assert await c.set_multi({"a": b"1", "b": b"22"}) == []
        assert await c.get_multi(["a", "b", "missing"]) == {"a": b"1", "b": b"22"}
        assert await c.delete("a") is True
        assert await c.get("a") is None
        assert await c.set("n", b"41") is True
        assert await c.incr("n") == 42
        assert await c.touch("n", 100) is True
        value, token = await c.gets("n")
        assert value == b"42"
        assert await c.cas("n", b"50", token) is True
        assert await c.cas("n", b"60", token) is False
        big = os.urandom(MIB)
        assert await c.set("big", big) is True
        assert await c.get("big") == big
        many = {f"m{i}": os.urandom(100_000 + i) for i in range(12)}
        assert await c.set_multi(many) == []
        assert await c.get_multi(list(many)) == many
        assert await c.set("nr", b"x" * 300_000, noreply=True) is True
        assert await c.get("nr") == b"x" * 300_000
        # 64 tasks at once, each checking its own value: no crossed reply
        async def task(t: int):
            value = (b"%d:" % t) * (1 + t * 97)
            assert await c.set(f"t{t}", value) is True
            return await c.get(f"t{t}") == value

        assert await asyncio.gather(*[task(t) for t in range(64)]) == [True] * 64
        await c.close()
        assert server.raw_get(b"big") == (big, 0)

    asyncio.run(main())


@pytest.mark.parametrize("kind", AIO_KINDS)
def test_aio_256_tasks_share_a_tls_client(server, tls_certs, kind):
    """256 tasks, 20 calls each, on one client over TLS (pipelined on its
    few connections): every reply is the task's own."""
    stringclient = kind == "aio.StringClient"

    async def main():
        c = make(kind, server, tls_certs, timeout=10)
        wrong: list = []

        async def task(t: int) -> None:
            for i in range(10):
                key = f"t{t}-{i % 3}"
                value = (b"%d/%d:" % (t, i)) * (1 + (t * 31 + i) % 200)
                if not stringclient:
                    value = value.decode()
                if await c.set(key, value) is not True:
                    wrong.append((t, i, "set"))
                got = await (c.get_multi([key, f"t{t}-x"]) if i % 2 else c.get(key))
                want = {key: value} if i % 2 else value
                if got != want:
                    wrong.append((t, i, got))

        await asyncio.wait_for(asyncio.gather(*[task(t) for t in range(256)]), 120)
        assert wrong == []
        assert await c.get("t255-0") == ((b"255/9:" if stringclient else "255/9:")
                                        * (1 + (255 * 31 + 9) % 200))
        await c.close()

    asyncio.run(main())


def test_aio_client_round_trips(server, tls_certs):
    async def main():
        c = make("aio.Client", server, tls_certs, server_max_value_length=2 * MIB)
        assert await c.set("k", {"a": 1}) is True
        assert await c.get("k") == {"a": 1}
        assert await c.set_multi({"a": 1, "b": "two"}) == []
        assert await c.get_multi(["a", "b", "missing"]) == {"a": 1, "b": "two"}
        assert await c.delete("a") == 1
        assert await c.incr("n") is None
        assert await c.set("n", 41) is True
        assert await c.incr("n") == 42
        assert await c.touch("n", 100) == 1
        big = os.urandom(MIB)
        assert await c.set("big", big) is True
        assert await c.get("big") == big
        await c.disconnect_all()

    asyncio.run(main())


@pytest.mark.parametrize("kind", AIO_KINDS)
def test_aio_verification_failures(tls_memcached_factory, tls_certs, kind):
    server = tls_memcached_factory()
    other = tls_memcached_factory(cert=tls_certs.other_cert, key=tls_certs.other_key)

    async def main():
        wrong_ca = make(kind, server, tls_certs, tls_ca_file=tls_certs.wrong_ca_file)
        e = await outcome(wrong_ca.get("k"))
        assert isinstance(e, cmemcache.ConnectionError), e
        assert "TLS failed: certificate verify failed: unable to get local issuer" in str(e)
        # nothing held down: the next call says why again
        e = await outcome(wrong_ca.get("k"))
        assert "certificate verify failed" in str(e)
        wrong_name = make(kind, other, tls_certs)
        e = await outcome(wrong_name.get("k"))
        assert isinstance(e, cmemcache.ConnectionError), e
        assert "TLS failed: " in str(e) and "not valid for 'localhost'" in str(e), e
        unverified = make(kind, other, tls_certs, tls_verify=False)
        assert await unverified.set("k", value_for(kind, "v")) is True
        named = make(kind, other, tls_certs, tls_server_hostname="other.example")
        assert await named.get("k") == value_for(kind, "v")

    asyncio.run(main())


@pytest.mark.parametrize("kind", AIO_KINDS)
def test_aio_mutual_tls(tls_memcached_factory, tls_certs, kind):
    server = tls_memcached_factory(verify_mode=2)

    async def main():
        encrypted = make(kind, server, tls_certs, tls_certfile=tls_certs.client_cert,
                         tls_keyfile=tls_certs.client_key_encrypted,
                         tls_keyfile_password=CLIENT_KEY_PASSWORD)
        assert await encrypted.set("m", value_for(kind, "m")) is True
        assert await encrypted.get("m") == value_for(kind, "m")
        without = make(kind, server, tls_certs)
        e = await outcome(without.get("m"))
        assert isinstance(e, cmemcache.ConnectionError), e
        assert re.search("TLS failed: .*(certificate required|asked for a client certificate"
                         " and none is configured)", str(e)), e
        without12 = make(kind, server, tls_certs, tls_max_version="1.2")
        e = await outcome(without12.get("m"))
        assert isinstance(e, cmemcache.ConnectionError), e
        assert "handshake failure" in str(e), e

    asyncio.run(main())


@pytest.mark.parametrize("kind", AIO_KINDS)
def test_aio_server_stopped_before_the_handshake(server, tls_certs, kind):
    async def main():
        c = make(kind, server, tls_certs, connect_timeout=0.5, timeout=5)
        await assert_stopped_times_out_async(server, c, 0.5)
        c2 = make(kind, server, tls_certs)
        assert await c2.set("k", value_for(kind, "1")) is True

    asyncio.run(main())


def test_aio_server_stopped_mid_value(tls_memcached_factory, tls_certs):
    server = tls_memcached_factory(extra_args=["-I", "64m"], memory_mb=512)
    big = os.urandom(48 * MIB)
    timeout = 1.0

    async def main():
        setter = make("aio.StringClient", server, tls_certs, max_value_size=64 * MIB, timeout=10)
        assert await setter.set("big", big) is True
        loop = asyncio.get_running_loop()
        outcomes = []
        for delay in (0.02, 0.005, 0.001, 0.0):
            c = make("aio.StringClient", server, tls_certs, max_value_size=64 * MIB,
                     timeout=timeout)
            assert await c.set("warm", b"1") is True
            start = time.monotonic()
            task = asyncio.ensure_future(outcome(c.get("big")))
            await asyncio.sleep(0)  # the request goes out
            # the pause runs in a thread: the loop keeps reading meanwhile
            await loop.run_in_executor(None, lambda: (time.sleep(delay), server.pause()))
            try:
                value = await asyncio.wait_for(task, timeout + 5)
            finally:
                server.resume()
            took = time.monotonic() - start
            await c.close()
            if isinstance(value, bytes):
                assert value == big
                outcomes.append("read")
                continue
            assert isinstance(value, cmemcache.TimeoutError), value
            assert took < timeout + SLACK + delay + 0.5
            outcomes.append("timed out")
            break
        assert "timed out" in outcomes, outcomes

    asyncio.run(main())


@pytest.mark.parametrize("kind", AIO_KINDS)
def test_aio_reconnect_after_restart(server, tls_certs, kind):
    async def main():
        c = make(kind, server, tls_certs, dead_retry=0)
        val = value_for(kind, "1")
        assert await c.set("before", val) is True
        server.kill()
        server.start()
        # the first call may find the old connection closed; then it works
        for _ in range(20):
            if await outcome(c.set("after", val)) is True:
                break
            await asyncio.sleep(0.05)
        assert await c.get("after") == val

    asyncio.run(main())


@pytest.mark.parametrize("kind", AIO_KINDS)
def test_aio_authentication_over_tls(auth_server, tls_certs, kind):
    async def main():
        val = value_for(kind, "secret")
        c = make(kind, auth_server, tls_certs, username=USER, password=PASSWORD)
        assert await c.set("a", val) is True
        assert await c.get("a") == val
        assert await c.get_multi(["a", "b"]) == {"a": val}
        wrong = make(kind, auth_server, tls_certs, username=USER, password="not-it")
        e = await outcome(wrong.get("a"))
        assert isinstance(e, cmemcache.AuthenticationError), e
        stopped = make(kind, auth_server, tls_certs, username=USER, password=PASSWORD,
                       connect_timeout=0.5, timeout=5)
        await assert_stopped_times_out_async(auth_server, stopped, 0.5)
        return auth_server.raw_get(b"a")[0]

    assert asyncio.run(main()) == b"secret"


# -- fork ---------------------------------------------------------------------------------


def test_fork_child_leaves_the_parents_tls_connections_alone(server, tls_certs):
    """The child drops the parent's pooled TLS connections without a
    close_notify (it would end the parent's session on the shared socket)
    and opens its own; the parent's connection still works afterwards."""
    c = make("StringClient", server, tls_certs)
    assert c.set("k", b"parent") is True
    pid = os.fork()
    if pid == 0:  # the child
        ok = False
        try:
            ok = c.get("k") == b"parent" and c.set("child", b"1") is True
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    before = int(server.stats()["total_connections"])
    assert c.get("child") == b"1"
    assert c.get("k") == b"parent"
    # the parent's pooled connection served both: the only connection
    # opened since is the harness's own stats connection
    assert int(server.stats()["total_connections"]) == before + 1
    assert server.stats()["ssl_handshake_errors"] == "0"


def test_no_password_in_repr(tls_certs):
    c = cmemcache.Client(["127.0.0.1:1"], tls=True, tls_certfile=tls_certs.client_cert,
                         tls_keyfile=tls_certs.client_key_encrypted,
                         tls_keyfile_password=CLIENT_KEY_PASSWORD)
    assert CLIENT_KEY_PASSWORD.decode() not in repr(c) + str(c) + repr(c._sc)
