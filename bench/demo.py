"""make demo: a throwaway memcached on loopback, cmemcache at work on it, and
a short speed table against python-memcached, pymemcache and pylibmc."""

from __future__ import annotations

import logging
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


def show_text(label: str, text: str) -> None:
    print(f"  {label:<46} -> {text}")


class Captured(logging.Handler):
    """Keeps the records logged while it is attached (shown by the demo
    itself instead of printed bare on stderr)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def speed_tables(markdown: str) -> str:
    """The ops/s and ratio tables of bench.py's report (all of it when
    they are not found)."""
    lines = markdown.splitlines()
    keep: list[str] = []
    section = ""
    for line in lines:
        if line.startswith("- machine:") or line.startswith("- clients:"):
            keep.append(line)
        elif line.startswith("**"):
            section = line
            if "ops/s" in line or "ratio to" in line:
                keep += ["", line]
        elif line.startswith("|") and ("ops/s" in section or "ratio to" in section):
            keep.append(line)
    return "\n".join(keep) if any(l.startswith("|") for l in keep) else markdown


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
            show_text('get(b"bad key")', f"raises InvalidKeyError ({e}), nothing sent")
        print("\nClient (python-memcached's API: pickles, neutral values on failure)")
        mc = cmemcache.Client([server])
        show('set("user:1", {"name": "Ada", "langs": [...]})',
             mc.set("user:1", {"name": "Ada", "langs": ["C", "Python"]}))
        show('get("user:1")', mc.get("user:1"))
        show('get_multi(["user:1", "user:2"])', mc.get_multi(["user:1", "user:2"]))
        show('incr("user:1:visits")  # missing', mc.incr("user:1:visits"))
        down_server = f"127.0.0.1:{free_port()}"
        print(f"\nClient on a server that is down on purpose ({down_server}: nothing listens)")
        down = cmemcache.Client([down_server])
        captured = Captured()
        logger = logging.getLogger("cmemcache")
        logger.addHandler(captured)
        try:
            value = down.get("x")
        finally:
            logger.removeHandler(captured)
        show('get("x")  # a miss, not an exception', value)
        for record in captured.records:
            show_text(f"  ... logged ({record.levelname.lower()}, logger {record.name!r})",
                      record.getMessage())
        show("  ... counted in error_counts", dict(down.error_counts))
        try:
            cmemcache.Client([down_server], strict=True).get("x")
        except cmemcache.ConnectionError as e:
            show_text('Client(..., strict=True).get("x")', f"raises ConnectionError ({e})")
        print()
    finally:
        proc.terminate()
        proc.wait(5)

    out = HERE / "results" / "demo"
    print("Speed against the other clients: a short run of bench/bench.py, about half a "
          "minute\n(`make bench` for the full table) ...", flush=True)
    done = subprocess.run(
        [sys.executable, str(HERE / "bench.py"), "--quick",
         "--cases", "get_hit,set_10,get_multi_100,set_multi_100,get_pickle",
         "--out", str(out)],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        print(f"bench/bench.py failed (exit status {done.returncode})")
        return done.returncode
    print(speed_tables(done.stdout))
    print(f"\n(the whole report, with each round: {out / 'results.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
