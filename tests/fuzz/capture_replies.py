#!/usr/bin/env python3
"""Captures raw replies of a real memcached as fuzzer seed files.

Usage: tests/fuzz/capture_replies.py [OUT_DIR] [MEMCACHED]

Starts MEMCACHED (default /usr/bin/memcached) on a free loopback port, sends a
fixed list of commands over a plain socket, and writes each reply's exact
bytes to OUT_DIR/real-<name> (default tests/fuzz/corpus), prefixed with the
fuzzer's control byte.  The server is stopped afterwards.
"""

import os
import socket
import subprocess
import sys
import time

# Control byte for fuzz_parse.c: low 3 bits 6 = max_value 1 MiB; the high
# bits vary the chunking.
MAX_VALUE_1MIB = 6

KEY250 = b"k" * 250
KEY251 = b"k" * 251
BINARY = b"\r\nEND\r\n\x00\x01\x02\xff VALUE x 0 1\r\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_reply(sock, idle=0.15, limit=1 << 20):
    """Reads until the server has been silent for `idle` seconds."""
    sock.settimeout(idle)
    out = b""
    while len(out) < limit:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        out += chunk
    return out


# (name, request bytes); requests run in this order on one connection.
COMMANDS = [
    ("version", b"version\r\n"),
    ("set", b"set foo 5 0 3\r\nbar\r\n"),
    ("get-hit", b"get foo\r\n"),
    ("gets-hit", b"gets foo\r\n"),
    ("get-miss", b"get nope\r\n"),
    ("get-multi", b"get foo nope foo\r\n"),
    ("set-empty", b"set empty 0 0 0\r\n\r\n"),
    ("get-empty", b"gets empty\r\n"),
    ("set-binary", b"set bin 4294967295 0 %d\r\n%s\r\n" % (len(BINARY), BINARY)),
    ("get-binary", b"gets bin\r\n"),
    ("set-key250", b"set " + KEY250 + b" 1 0 2\r\nhi\r\n"),
    ("get-key250", b"gets " + KEY250 + b"\r\n"),
    ("gat", b"gat 100 foo\r\n"),
    ("gats", b"gats 100 foo bin\r\n"),
    ("touch", b"touch foo 100\r\n"),
    ("touch-miss", b"touch nope 100\r\n"),
    ("add-exists", b"add foo 0 0 1\r\nx\r\n"),
    ("cas-exists", b"cas foo 0 0 1 999999\r\nx\r\n"),
    ("cas-not-found", b"cas nope 0 0 1 1\r\nx\r\n"),
    ("set-counter", b"set n 0 0 1\r\n5\r\n"),
    ("incr", b"incr n 10\r\n"),
    ("decr-floor", b"decr n 100\r\n"),
    ("set-counter-max", b"set n 0 0 20\r\n18446744073709551615\r\n"),
    ("incr-zero-max", b"incr n 0\r\n"),
    ("incr-wrap", b"incr n 1\r\n"),
    ("incr-non-numeric", b"incr foo 1\r\n"),
    ("incr-bad-delta", b"incr n abc\r\n"),
    ("incr-miss", b"incr nope 1\r\n"),
    ("get-counter-padded", b"set p 0 0 2\r\n10\r\ndecr p 1\r\nget p\r\n"),
    ("delete", b"delete foo\r\n"),
    ("delete-miss", b"delete foo\r\n"),
    ("delete-time", b"delete foo 5\r\n"),
    ("touch-bad-exptime", b"touch foo abc\r\n"),
    ("unknown-command", b"hello\r\n"),
    ("get-no-key", b"get\r\n"),
    ("bad-data-chunk", b"set x 0 0 1\r\nabc\r\n"),
    ("key-too-long", b"get " + KEY251 + b"\r\n"),
    ("too-large", b"set big 0 0 2000000\r\n" + b"v" * 2000000 + b"\r\n"),
    ("pipeline", b"set a 0 0 1\r\n1\r\nget a a\r\ntouch a 0\r\ndelete a\r\n"),
    ("stats", b"stats\r\n"),
    ("stats-settings", b"stats settings\r\n"),
    ("stats-slabs", b"stats slabs\r\n"),
    ("stats-items", b"stats items\r\n"),
    ("stats-reset", b"stats reset\r\n"),
    ("stats-detail-on", b"stats detail on\r\n"),
    ("verbosity", b"verbosity 1\r\n"),
    ("flush-all", b"flush_all\r\n"),
    ("mn", b"mn\r\n"),
    ("shutdown", b"shutdown\r\n"),
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus")
    binary = sys.argv[2] if len(sys.argv) > 2 else "/usr/bin/memcached"
    os.makedirs(out_dir, exist_ok=True)

    port = free_port()
    args = [binary, "-U", "0", "-l", "127.0.0.1", "-p", str(port)]
    if os.geteuid() == 0:
        args[1:1] = ["-u", "root"]
    server = subprocess.Popen(args)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)
        with sock:
            for i, (name, request) in enumerate(COMMANDS):
                sock.sendall(request)
                reply = read_reply(sock)
                if not reply:
                    print(f"{name}: no reply", file=sys.stderr)
                    continue
                ctl = ((i * 8) & 0xF8) | MAX_VALUE_1MIB
                path = os.path.join(out_dir, "real-" + name)
                with open(path, "wb") as f:
                    f.write(bytes([ctl]) + reply[:4095])
                print(f"{name}: {len(reply)} bytes {reply[:60]!r}")
    finally:
        server.terminate()
        server.wait(timeout=5)


if __name__ == "__main__":
    main()
