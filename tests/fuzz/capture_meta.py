#!/usr/bin/env python3
"""Captures raw meta-protocol replies of a real memcached as seed files.

Usage: tests/fuzz/capture_meta.py [OUT_DIR] [MEMCACHED] [--requests FILE]

Starts MEMCACHED (default /usr/bin/memcached) on a free loopback port, sends
a fixed list of meta commands over a plain socket, and writes each reply's
exact bytes to OUT_DIR/real-<name> (default tests/fuzz/corpus-meta), prefixed
with fuzz_meta.c's control byte.  The server is stopped afterwards.

With --requests FILE (written by `test_meta --dump-requests FILE`), every
request line mc_meta_fmt() produced for the C tests is also sent, each
followed by "mn" (an ms line with a data block of its length); the replies
go to OUT_DIR/real-fmt-NN, and the script exits with status 1 if memcached
answered any of them with an error line.
"""

import base64
import os
import socket
import subprocess
import sys
import time

from capture_replies import free_port, read_reply

# Control byte for fuzz_meta.c: low 3 bits 6 = max_value 1 MiB; bits 3-5
# vary the chunking.
MAX_VALUE_1MIB = 6


def b64(raw):
    return base64.b64encode(raw)


BIN = b64(b"\x00bin key\r\n")  # AGJpbiBrZXkNCg==
CRLF_KEY = b64(b"a b\r\nc")  # YSBiDQpj
VIV_KEY = b64(b"viv\x00")  # dml2AA==
MAX_FLAGS = b"v f c t s k l h O1 q u N1 R1 T1 Pa Lb C1"

# (name, request bytes); requests run in this order on one connection.
COMMANDS = [
    ("mn", b"mn\r\n"),
    ("ms-T-F-c-k-O", b"ms foo 3 T0 F5 c k O1\r\nbar\r\n"),
    ("mg-all-flags", b"mg foo v f c t s k l h O99\r\n"),
    ("mg-s-v", b"mg foo s v\r\n"),
    ("mg-u-h-l", b"mg foo u h l v\r\nmg foo h l\r\n"),
    ("mg-P-L-ignored", b"mg foo Pxx Lyy s\r\n"),
    ("mg-miss-O-k", b"mg nope v O5 k\r\n"),
    ("mg-miss-q-fence", b"mg nope v O5 k q\r\nmn\r\n"),
    ("mg-hit-v-q-fence", b"mg foo v q\r\nmn\r\n"),
    ("mg-hit-q-fence", b"mg foo q\r\nmn\r\n"),
    ("mg-t-before-T", b"mg foo t T30\r\n"),
    ("mg-T-before-t", b"mg foo T40 t\r\n"),
    ("mg-vivify-t-before-N", b"mg viv t N30\r\n"),
    ("mg-vivify-N-before-t", b"mg viv2 N30 t\r\n"),
    ("mg-vivified-again", b"mg viv t v c\r\n"),
    ("ms-b64-key", b"ms " + BIN + b" 2 b k c\r\nhi\r\n"),
    ("mg-b64-key", b"mg " + BIN + b" b k v\r\n"),
    ("mg-b64-text-lookup", b"mg " + BIN + b" k v\r\n"),
    ("me-b64", b"me " + BIN + b" b\r\n"),
    ("me-text", b"me foo\r\n"),
    ("me-miss", b"me nope\r\n"),
    ("mg-b64-186", b"mg " + b64(b"\xff" * 186) + b" b s\r\n"),
    ("mg-b64-187", b"mg " + b64(b"\xff" * 187) + b" b s\r\n"),
    ("mg-key-250", b"mg " + b"k" * 250 + b" s\r\n"),
    ("mg-key-251", b"mg " + b"k" * 251 + b" s\r\n"),
    ("mg-opaque-31", b"mg foo O" + b"1" * 31 + b"\r\n"),
    ("mg-opaque-32", b"mg foo O" + b"1" * 32 + b"\r\n"),
    ("mg-opaque-empty", b"mg foo O\r\n"),
    ("mg-flag-E", b"mg foo E5\r\n"),
    ("md-flag-x", b"md foo x\r\n"),
    ("mg-duplicate", b"mg foo v v\r\n"),
    ("mg-flag-Z", b"mg foo Z\r\n"),
    ("mg-bad-b64", b"mg foo b\r\n"),
    ("mg-bad-token", b"mg x N\r\n"),
    ("mg-no-key", b"mg\r\n"),
    ("ms-bad-flag", b"ms foo 2 Z\r\nhi\r\n"),
    ("ms-bad-mode", b"ms foo 2 MX\r\nhi\r\n"),
    ("ms-mode-too-long", b"ms x 1 MSS\r\n1\r\nmn\r\n"),
    ("ms-bad-chunk", b"ms foo 2\r\nhix\r\n"),
    ("ms-no-length", b"ms foo\r\n"),
    ("ms-bad-length", b"ms foo abc\r\nmn\r\n"),
    ("ms-q-fence", b"ms foo 2 q\r\nhi\r\nms foo 2 q ME\r\nhi\r\nmn\r\n"),
    ("ms-q-cas-fence", b"ms foo 2 q C1\r\nhi\r\nms nope 2 q C1\r\nhi\r\nmn\r\n"),
    ("ms-replace-miss", b"ms nope 2 c MR\r\nhi\r\n"),
    ("ms-add-exists", b"ms foo 2 c ME O7 k\r\nhi\r\n"),
    ("ms-cas-exists", b"ms foo 2 c C1 O8 k\r\nhi\r\n"),
    ("ms-cas-not-found", b"ms nope 2 c C1 O8 k\r\nhi\r\n"),
    ("ms-append-prepend",
     b"ms x 1\r\n1\r\nms x 2 MA c\r\ncd\r\nmg x v\r\nms x 2 MP\r\nzz\r\n"
     b"mg x v\r\n"),
    ("ms-modes-miss",
     b"ms nx 2 MA\r\ncd\r\nms nx 2 ME\r\ncd\r\nms nx 2 ME\r\nef\r\n"
     b"ms nx 2 MR\r\ngh\r\nmg nx v\r\n"),
    ("ms-truncated-tokens",
     b"ms big 2 T4294967326 F4294967301 c\r\nhi\r\nmg big t f\r\n"),
    ("ms-negative-ttl", b"ms neg 2 T-1\r\nhi\r\nmg neg t f\r\n"),
    ("ms-too-large",
     b"ms huge 2000000 T0\r\n" + b"v" * 2000000 + b"\r\nmn\r\n"),
    ("md-q-fence", b"md foo q\r\nmd foo q\r\nmd foo q O3 k\r\nmn\r\n"),
    ("mg-17-flags", b"mg foo " + MAX_FLAGS + b"\r\n"),
    ("mg-18-flags", b"mg foo " + MAX_FLAGS + b" I\r\n"),
    ("ma-q-fence", b"ma cnt q\r\nma cnt q N0 J5\r\nma cnt q\r\nma cnt v\r\n"
                   b"mn\r\n"),
    ("ma-decr-all", b"ma cnt v t c k O9 MD D100\r\n"),
    ("ma-modes", b"ma cnt v M- D1\r\nma cnt v M+ D18446744073709551615\r\n"
                 b"ma cnt v MI D1\r\n"),
    ("ma-bad-mode", b"ma cnt MX\r\n"),
    ("ma-vivify-max", b"ma newc N0 J18446744073709551615 v\r\n"),
    ("ma-vivify-ttl", b"ma newc2 N100 J3 T50 t v\r\n"),
    ("ma-J-without-N", b"ma newc3 J3 v\r\n"),
    ("ma-non-numeric", b"ms txt 1\r\nx\r\nma txt v\r\n"),
    ("ma-cas-mismatch", b"ma cnt C1 v\r\n"),
    ("ma-bad-delta", b"ma cnt D-1 v\r\n"),
    ("ma-delta-overflow", b"ma cnt D18446744073709551616 v\r\n"),
    ("ma-v-q-fence", b"ma cnt v q\r\nmn\r\n"),
    ("lease-set", b"ms lease 2 T100 c\r\nhi\r\n"),
    ("lease-invalidate-q", b"md lease I T30 q\r\nmn\r\n"),
    ("lease-stale-win", b"mg lease v c t\r\n"),
    ("lease-stale-again", b"mg lease v c t\r\n"),
    ("lease-older-cas-I", b"ms lease 2 C1 I c\r\nyo\r\nmg lease v c t\r\n"),
    ("lease-newer-cas-I", b"ms lease 2 C999 I c\r\nyo\r\n"),
    ("lease-plain-set", b"ms lease 2 I c\r\nzz\r\nmg lease v c\r\n"),
    ("recache-set", b"ms rc 2 T10\r\nhi\r\n"),
    ("recache-win", b"mg rc R30 v t\r\n"),
    ("recache-again", b"mg rc R30 v t\r\n"),
    ("recache-low", b"ms rc 2 T10\r\nhi\r\nmg rc R5 v t\r\nmg rc R30 t\r\n"),
    ("recache-no-ttl", b"ms rc2 2\r\nhi\r\nmg rc2 R30 t\r\n"),
    ("vivify-cycle",
     b"mg nv N30 v c\r\nmg nv N30 v c\r\nms nv 3\r\nnew\r\nmg nv N30 v c\r\n"),
    ("invalidate-cycle",
     b"md nv I\r\nmg nv v\r\nmd nv I\r\nmg nv v\r\nmg nv v\r\n"),
    ("md-cas-q", b"md nv C1\r\nmd nv q C1\r\nmn\r\n"),
    ("md-T-without-I", b"md nv T30\r\nmg nv t\r\n"),
    ("md-invalidate-miss", b"md nope I\r\n"),
    ("mg-vivify-q-fence", b"mg nope2 q N30 O5\r\nmn\r\n"),
    ("mg-mixed-q-fence",
     b"mg nope3 v q k O1\r\nmg foo q s\r\nmg nope4 q O2\r\nmn\r\n"),
    ("mg-empty-value", b"ms e 0\r\n\r\nmg e v s f\r\n"),
    ("mg-b64-miss", b"mg Zm9v b k v\r\n"),
    ("b64-and-text-share-keys", b"ms Zm9v 1 b\r\nz\r\nmg foo k v\r\n"),
    ("me-b64-as-text", b"me foo x\r\n"),
    # a binary key created by vivifying is sent back raw (1.6.18)
    ("mg-vivify-b64-raw-key", b"mg " + VIV_KEY + b" b N30 k v c\r\n"),
    ("ma-vivify-b64", b"ma " + CRLF_KEY + b" b N0 k v\r\n"),
    ("mg-raw-crlf-key", b"mg " + CRLF_KEY + b" b k v\r\n"),
    ("me-raw-crlf-key", b"me " + CRLF_KEY + b" b\r\n"),
    ("md-b64", b"md " + CRLF_KEY + b" b k\r\nmd " + CRLF_KEY + b" b k\r\n"),
    ("lenient-b64-decoder", b"mg QR== b k\r\nmg Q!Q== b k\r\n"),
    ("mn-with-arguments", b"mn foo\r\nmn q\r\n"),
]


def start_server(binary):
    port = free_port()
    args = [binary, "-U", "0", "-l", "127.0.0.1", "-p", str(port)]
    if os.geteuid() == 0:
        args[1:1] = ["-u", "root"]
    server = subprocess.Popen(args)
    deadline = time.monotonic() + 5
    while True:
        try:
            return server, socket.create_connection(("127.0.0.1", port),
                                                    timeout=1)
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.terminate()
                raise
            time.sleep(0.05)


def write_seed(out_dir, name, i, reply):
    ctl = ((i * 8) & 0x38) | MAX_VALUE_1MIB
    with open(os.path.join(out_dir, "real-" + name), "wb") as f:
        f.write(bytes([ctl]) + reply[:4095])


def formatted_requests(path):
    """The request lines of FILE, each with its data block when ms."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\r\n")
    for line in lines:
        if not line:
            continue
        req = line + b"\r\n"
        if line.startswith(b"ms "):
            req += b"v" * int(line.split(b" ")[2]) + b"\r\n"
        yield req


def main():
    argv = sys.argv[1:]
    requests = None
    if "--requests" in argv:
        at = argv.index("--requests")
        requests = argv[at + 1]
        del argv[at:at + 2]
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = argv[0] if argv else os.path.join(here, "corpus-meta")
    binary = argv[1] if len(argv) > 1 else "/usr/bin/memcached"
    os.makedirs(out_dir, exist_ok=True)

    failed = 0
    server, sock = start_server(binary)
    try:
        with sock:
            for i, (name, request) in enumerate(COMMANDS):
                sock.sendall(request)
                reply = read_reply(sock)
                if not reply:
                    print(f"{name}: no reply", file=sys.stderr)
                    continue
                write_seed(out_dir, name, i, reply)
                print(f"{name}: {len(reply)} bytes {reply[:70]!r}")
            if requests is not None:
                for i, req in enumerate(formatted_requests(requests)):
                    sock.sendall(req + b"mn\r\n")
                    reply = read_reply(sock)
                    write_seed(out_dir, f"fmt-{i:02d}", i, reply)
                    bad = any(reply.startswith(w) or b"\r\n" + w in reply
                              for w in (b"ERROR", b"CLIENT_ERROR",
                                        b"SERVER_ERROR"))
                    ok = reply.endswith(b"MN\r\n") and not bad
                    failed += not ok
                    print(f"fmt-{i:02d}: {'ok' if ok else 'FAILED'} "
                          f"{req[:50]!r} -> {reply[:60]!r}")
    finally:
        server.terminate()
        server.wait(timeout=5)
    if failed:
        print(f"{failed} formatted requests were refused", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
