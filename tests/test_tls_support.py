"""tests/tls_support.py works: certificates made with trustme, memcached -Z
servers started with them, round trips through Python's own ssl module
(cmemcache's own TLS clients are tests/test_tls.py's)."""

from __future__ import annotations

import socket
import ssl

import pytest
from cryptography import x509

from tls_support import (  # noqa: F401  (fixtures)
    CLIENT_KEY_PASSWORD,
    TLSCertificates,
    tls_certs,
    tls_memcached_factory,
)


def roundtrip(sock: ssl.SSLSocket, data: bytes, end: bytes) -> bytes:
    """Send ``data`` and read until the reply ends with ``end`` (bounded)."""
    sock.sendall(data)
    out = b""
    for _ in range(1000):
        if out.endswith(end):
            return out
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {out[-200:]!r}")
        out += chunk
    raise AssertionError(f"no end in {out[-200:]!r}")


def test_certificates(tls_certs: TLSCertificates):
    server = x509.load_pem_x509_certificate(open(tls_certs.server_cert, "rb").read())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    ca = x509.load_pem_x509_certificate(open(tls_certs.ca_file, "rb").read())
    assert server.issuer == ca.subject
    other = x509.load_pem_x509_certificate(open(tls_certs.other_cert, "rb").read())
    other_san = other.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert other_san.get_values_for_type(x509.DNSName) == ["other.example"]
    wrong = x509.load_pem_x509_certificate(open(tls_certs.wrong_ca_file, "rb").read())
    assert wrong.subject != ca.subject
    assert b"ENCRYPTED PRIVATE KEY" in open(tls_certs.client_key_encrypted, "rb").read()


def test_round_trip(tls_memcached_factory):
    server = tls_memcached_factory()
    with server.tls_connect(server.client_ssl_context) as s:
        assert s.version() == "TLSv1.3"
        assert roundtrip(s, b"set tls:k 3 0 5\r\nhello\r\n", b"\r\n") == b"STORED\r\n"
        assert roundtrip(s, b"get tls:k\r\n", b"END\r\n") == b"VALUE tls:k 3 5\r\nhello\r\nEND\r\n"
    # the server's own helpers speak TLS too
    assert server.raw_get(b"tls:k") == (b"hello", 3)
    server.raw_set(b"tls:big", b"x" * 300_000, flags=7)
    assert server.raw_get(b"tls:big") == (b"x" * 300_000, 7)
    assert server.stats(b"settings")["ssl_enabled"] == "yes"
    assert server.stats()["curr_items"] == "2"


def test_ip_literal_and_plain_tcp(tls_memcached_factory):
    server = tls_memcached_factory()
    with server.tls_connect(server.client_ssl_context, server_hostname="127.0.0.1") as s:
        assert roundtrip(s, b"version\r\n", b"\r\n").startswith(b"VERSION 1.6")
    # plain text on the TLS port: no reply, the handshake fails and memcached
    # closes with our bytes unread, so the connection is reset
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        raw.sendall(b"version\r\n")
        with pytest.raises(ConnectionResetError):
            raw.recv(100)


def test_verification_failures(tls_certs, tls_memcached_factory):
    server = tls_memcached_factory()
    wrong = tls_certs.client_context(ca_file=tls_certs.wrong_ca_file)
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        server.tls_connect(wrong)
    other = tls_memcached_factory(cert=tls_certs.other_cert, key=tls_certs.other_key)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        other.tls_connect(tls_certs.client_context(), server_hostname="localhost")
    with other.tls_connect(tls_certs.client_context(), server_hostname="other.example") as s:
        assert roundtrip(s, b"version\r\n", b"\r\n").startswith(b"VERSION ")


def test_mutual_tls(tls_certs, tls_memcached_factory):
    server = tls_memcached_factory(verify_mode=2)
    assert server.stats(b"settings")["ssl_verify_mode"] == "3"  # SSL_VERIFY_PEER | FAIL_IF_NO_PEER_CERT
    with server.tls_connect(tls_certs.client_context(client_cert=True)) as s:
        assert roundtrip(s, b"set m 0 0 2\r\nok\r\n", b"\r\n") == b"STORED\r\n"
    assert server.raw_get(b"m") == (b"ok", 0)

    encrypted = tls_certs.client_context()
    encrypted.load_cert_chain(tls_certs.client_cert, tls_certs.client_key_encrypted, password=CLIENT_KEY_PASSWORD)
    with server.tls_connect(encrypted) as s:
        assert roundtrip(s, b"get m\r\n", b"END\r\n") == b"VALUE m 0 2\r\nok\r\nEND\r\n"

    # Without a client certificate: TLS 1.3's handshake completes on the
    # client's side, and the server's refusal is the first thing read.
    with server.tls_connect(tls_certs.client_context()) as s:
        with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
            s.recv(100)
    # TLS 1.2 refuses in the handshake
    ctx12 = tls_certs.client_context()
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):
        server.tls_connect(ctx12)
    # a client certificate from another CA
    stranger = tls_certs.client_context()
    stranger.load_cert_chain(tls_certs.wrong_client_cert, tls_certs.wrong_client_key)
    with server.tls_connect(stranger) as s:
        with pytest.raises(ssl.SSLError, match="UNKNOWN_CA"):
            s.recv(100)


def test_value_tail_and_next_command_in_one_record(tls_memcached_factory):
    """Why ``command`` sends ``mn`` apart: memcached before 1.6.39 leaves a
    command that shares a record with a value's tail (read straight from
    OpenSSL) unseen until more bytes arrive."""
    server = tls_memcached_factory()
    version_line = server.command(b"version\r\n")
    version = tuple(int(x) for x in version_line.split()[1].split(b".")[:3])
    value = b"t" * 300_000
    with server.tls_connect(server.client_ssl_context, timeout=1.0) as s:
        s.sendall(b"set tail 0 0 %d\r\n%s\r\nmn\r\n" % (len(value), value))
        if version < (1, 6, 39):
            reply = b""
            with pytest.raises(TimeoutError):
                for _ in range(100):
                    reply += s.recv(100)
            assert reply == b"STORED\r\n"  # the mn is not answered
            s.sendall(b"version\r\n")  # more bytes: the waiting mn is seen
            assert roundtrip(s, b"", version_line) == b"MN\r\n" + version_line
        else:
            assert roundtrip(s, b"", b"MN\r\n") == b"STORED\r\nMN\r\n"
    assert server.raw_get(b"tail") == (value, 0)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_session_resumption(tls_certs, tls_memcached_factory, version):
    server = tls_memcached_factory()
    ctx = tls_certs.client_context()
    ctx.maximum_version = version
    with server.tls_connect(ctx) as s:
        assert roundtrip(s, b"version\r\n", b"\r\n").startswith(b"VERSION ")  # TLS 1.3 tickets come with it
        session = s.session
        assert not s.session_reused
    assert session is not None and session.has_ticket
    with server.tls_connect(ctx, session=session) as s:
        assert s.session_reused
        assert s.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
        assert roundtrip(s, b"version\r\n", b"\r\n").startswith(b"VERSION ")


def test_resumption_with_client_certificates_needs_session_cache(tls_certs, tls_memcached_factory):
    """memcached 1.6.18 with ssl_verify_mode >= 1 fails a resumption with an
    internal_error alert unless ssl_session_cache is on (no session id
    context is set otherwise)."""
    ctx = tls_certs.client_context(client_cert=True)
    for session_cache, resumes in ((False, False), (True, True)):
        server = tls_memcached_factory(verify_mode=2, session_cache=session_cache)
        with server.tls_connect(ctx) as s:
            assert roundtrip(s, b"version\r\n", b"\r\n").startswith(b"VERSION ")
            session = s.session
        if resumes:
            with server.tls_connect(ctx, session=session) as s:
                assert s.session_reused
                assert roundtrip(s, b"version\r\n", b"\r\n").startswith(b"VERSION ")
        else:
            with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_INTERNAL_ERROR"):
                server.tls_connect(ctx, session=session)
