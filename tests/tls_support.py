"""TLS test support: certificates made at test time with trustme, and real
``memcached -Z`` servers on free loopback ports that use them.

``TLSCertificates(directory)`` writes PEM files: a CA, a server certificate
for localhost, 127.0.0.1 and ::1, a certificate (and key) for another host
name, a client certificate, its key encrypted with a password, and a second
CA that signed nothing the servers use.

``TLSMemcachedServer(certs, ...)`` is conftest's ``MemcachedServer`` started
with ``-Z -o ssl_chain_cert=...,ssl_key=...[,ssl_ca_cert=...,
ssl_verify_mode=N][,ssl_session_cache]``; its own readiness check and raw
helpers (``command``, ``raw_get``, ``stats``, ...) speak TLS with Python's
``ssl`` module, so a test can check what a client under test stored.
(``command`` sends its closing ``mn`` in a record of its own: memcached
1.6.18 stalls on a record holding a value's tail and the next command.)

Fixtures (import them into a test module): ``tls_certs`` (one set per
session) and ``tls_memcached_factory`` (servers stopped after the test).
"""

from __future__ import annotations

import functools
import os
import socket
import ssl

import pytest
import trustme

from conftest import MemcachedServer, made_by

#: the password of ``TLSCertificates.client_key_encrypted``
CLIENT_KEY_PASSWORD = b"cmemcache-test-password"


class TLSCertificates:
    """PEM files for a CA, servers and a client, in ``directory``."""

    def __init__(self, directory: str):
        self.directory = str(directory)
        if "," in self.directory:
            raise ValueError("memcached's -o cannot take a path with a comma")
        self.ca = trustme.CA(organization_name="cmemcache tests")
        self.wrong_ca = trustme.CA(organization_name="cmemcache tests, another CA")
        server = self.ca.issue_cert("localhost", "127.0.0.1", "::1")
        other = self.ca.issue_cert("other.example")
        client = self.ca.issue_cert("client.cmemcache.test")
        wrong_client = self.wrong_ca.issue_cert("client.cmemcache.test")

        self.ca_file = self._write("ca.pem", self.ca.cert_pem.bytes())
        self.wrong_ca_file = self._write("wrong-ca.pem", self.wrong_ca.cert_pem.bytes())
        self.server_cert, self.server_key = self._write_pair("server", server)
        self.other_cert, self.other_key = self._write_pair("other", other)
        self.client_cert, self.client_key = self._write_pair("client", client)
        self.wrong_client_cert, self.wrong_client_key = self._write_pair("wrong-client", wrong_client)
        self.client_key_encrypted = self._write("client-encrypted.key", _encrypted_pem(client))

    def _write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def _write_pair(self, name: str, cert: trustme.LeafCert) -> tuple[str, str]:
        chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        return (
            self._write(f"{name}.pem", chain),
            self._write(f"{name}.key", cert.private_key_pem.bytes()),
        )

    def client_context(self, *, client_cert: bool = False, ca_file: str | None = None) -> ssl.SSLContext:
        """A verifying ``ssl.SSLContext`` trusting this CA (or ``ca_file``),
        with the client certificate when ``client_cert``."""
        ctx = ssl.create_default_context(cafile=ca_file or self.ca_file)
        if client_cert:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx


def no_tls_build() -> bool:
    """True when cmemcache was built without OpenSSL (tls=True raises
    NotImplementedError)."""
    import cmemcache

    try:
        cmemcache.StringClient("127.0.0.1:1", tls=True)
    except NotImplementedError:
        return True
    return False


def _encrypted_pem(cert: trustme.LeafCert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(CLIENT_KEY_PASSWORD),
    )


class TLSMemcachedServer(MemcachedServer):
    """``memcached -Z`` with ``certs``' server certificate (or ``cert``/``key``).

    ``verify_mode`` is memcached's ``ssl_verify_mode``: 0 none, 1 request a
    client certificate, 2 require one, 3 require one once (a renegotiation
    does not ask again); with 1-3 the client certificate must come from
    ``certs``' CA.  ``session_cache`` turns on ``ssl_session_cache`` (needed
    for resumption once client certificates are verified).
    """

    def __init__(
        self,
        certs: TLSCertificates,
        *,
        verify_mode: int = 0,
        session_cache: bool = False,
        cert: str | None = None,
        key: str | None = None,
        extra_args=(),
        **kwargs,
    ):
        self.certs = certs
        opts = [f"ssl_chain_cert={cert or certs.server_cert}", f"ssl_key={key or certs.server_key}"]
        if verify_mode:
            opts += [f"ssl_ca_cert={certs.ca_file}", f"ssl_verify_mode={verify_mode}"]
        if session_cache:
            opts.append("ssl_session_cache")
        self.verify_mode = verify_mode
        self.server_hostname = "localhost" if cert is None else None
        #: what the raw helpers connect with; checks the name only with the
        #: default certificate (another one is for a name test's own use)
        self.client_ssl_context = certs.client_context(client_cert=verify_mode >= 2)
        if cert is not None:
            self.client_ssl_context.check_hostname = False
        super().__init__(["-Z", "-o", ",".join(opts), *extra_args], **kwargs)

    def _connect(self, timeout: float) -> socket.socket:
        raw = super()._connect(timeout)
        try:
            return self.client_ssl_context.wrap_socket(raw, server_hostname=self.server_hostname)
        except BaseException:
            raw.close()
            raise

    def _send_with_mn(self, s: socket.socket, data: bytes) -> None:
        """The trailing ``mn`` of ``command`` goes in a TLS record of its
        own: memcached before 1.6.39 reads the tail of a value straight
        from OpenSSL and leaves whatever shares its record unseen until
        more bytes arrive (so ``data + mn`` in one write can stall)."""
        s.sendall(data)
        s.sendall(b"mn\r\n")

    def tls_connect(
        self,
        context: ssl.SSLContext,
        *,
        server_hostname: str | None = "localhost",
        timeout: float = 5.0,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        """A TLS connection made with ``context`` (handshake done)."""
        raw = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            return context.wrap_socket(raw, server_hostname=server_hostname, session=session)
        except BaseException:
            raw.close()
            raise


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory) -> TLSCertificates:
    """One set of certificates for the whole run."""
    return TLSCertificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_memcached_factory(tls_certs):
    """``make(**kwargs) -> TLSMemcachedServer``; all are stopped after the test."""
    new = functools.partial(TLSMemcachedServer, tls_certs)
    with made_by(new, TLSMemcachedServer.dispose) as make:
        yield make
