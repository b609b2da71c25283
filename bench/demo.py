"""make demo: a throwaway memcached on loopback, cmemcache at work on it, and
a short speed table against python-memcached, pymemcache and pylibmc."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import cmemcache
from cmemcache import StringClient

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_memcached(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("memcached") or "/usr/bin/memcached"
    argv = [binary, "-U", "0", "-l", "127.0.0.1", "-p", str(port), "-m", "64"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("memcached did not start")


def show(label: str, value: object) -> None:
    print(f"  {label:<46} -> {value!r}")


def main() -> int:
    port = free_port()
    server = f"127.0.0.1:{port}"
    proc = start_memcached(port)
    try:
        print(f"cmemcache {cmemcache.__version__}, memcached on {server}\n")
        print("StringClient (the C engine: bytes, flags, exceptions)")
        sc = StringClient([server], timeout=1.0)
        show('set(b"greeting", b"hello", flags=7)', sc.set(b"greeting", b"hello", flags=7))
        show('get(b"greeting", with_flags=True)', sc.get(b"greeting", with_flags=True))
        show('get(b"missing")', sc.get(b"missing"))
        show('set_multi({b"a": b"1", b"b": b"2"})', sc.set_multi({b"a": b"1", b"b": b"2"}))
        show('get_multi([b"a", b"b", b"c"])', sc.get_multi([b"a", b"b", b"c"]))
        show('incr(b"a", 41)', sc.incr(b"a", 41))
        value, token = sc.gets(b"greeting")
        show("gets(b\"greeting\")", (value, token))
        show("cas(b\"greeting\", b\"hi\", token)", sc.cas(b"greeting", b"hi", token))
        show("cas(b\"greeting\", b\"yo\", token)  # stale", sc.cas(b"greeting", b"yo", token))
        try:
            sc.get(b"bad key")
        except cmemcache.InvalidKeyError as e:
            show('get(b"bad key")', f"InvalidKeyError: {e}")
        print("\nClient (python-memcached's API: pickles, neutral values on failure)")
        mc = cmemcache.Client([server])
        show('set("user:1", {"name": "Ada", "langs": [...]})',
             mc.set("user:1", {"name": "Ada", "langs": ["C", "Python"]}))
        show('get("user:1")', mc.get("user:1"))
        show('get_multi(["user:1", "user:2"])', mc.get_multi(["user:1", "user:2"]))
        show('incr("user:1:visits")  # missing', mc.incr("user:1:visits"))
        down = cmemcache.Client([f"127.0.0.1:{free_port()}"])
        show("get on a server that is down", down.get("x"))
        show("  ... counted in error_counts", dict(down.error_counts))
        print()
    finally:
        proc.terminate()
        proc.wait(5)

    print("Speed against the other clients (short run; `make bench` for the full table):\n",
          flush=True)
    done = subprocess.run(
        [sys.executable, str(HERE / "bench.py"), "--quick",
         "--cases", "get_hit,set_10,get_multi_100,set_multi_100,get_pickle",
         "--out", str(HERE / "results" / "demo")],
    )
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
