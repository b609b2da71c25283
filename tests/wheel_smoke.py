"""Round trips through an installed cmemcache against a real memcached: what
every built wheel is checked with (make wheel, cibuildwheel's test-command,
tests/test_packaging.py).

    python tests/wheel_smoke.py                  # starts memcached on a free loopback port
    python tests/wheel_smoke.py --server H:PORT  # uses a running server (its keys are changed)

Standard library only, so it runs in a bare environment with nothing but
the wheel installed.  It refuses to test a cmemcache that is not installed
in the running interpreter's environment (e.g. the source tree), so a
passing run says something about the installed wheel.  memcached is taken
from $MEMCACHED, else from PATH (also /usr/bin, /usr/sbin, /usr/local/bin).
Exit status 0 when every check passed; the last line is the version.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time


def find_memcached() -> str:
    binary = os.environ.get("MEMCACHED") or shutil.which("memcached")
    for candidate in (binary, "/usr/bin/memcached", "/usr/sbin/memcached",
                      "/usr/local/bin/memcached", "/opt/homebrew/bin/memcached"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit("wheel_smoke: memcached not found (set MEMCACHED or install it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"version\r\n")
            return s.recv(64).startswith(b"VERSION ")
    except OSError:
        return False


def start_memcached() -> tuple[subprocess.Popen[bytes], str]:
    """memcached on a free loopback port, ready to answer (bounded tries)."""
    binary = find_memcached()
    for _ in range(5):
        port = free_port()
        argv = [binary, "-U", "0", "-l", "127.0.0.1", "-p", str(port), "-m", "64", "-t", "1"]
        if os.geteuid() == 0:
            argv += ["-u", "root"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            if answers(port):
                return proc, f"127.0.0.1:{port}"
            time.sleep(0.02)
        proc.kill()
        proc.wait(5)
    raise SystemExit(f"wheel_smoke: {binary} did not start")


def check(what: str, got: object, expected: object) -> None:
    if got != expected:
        raise SystemExit(f"wheel_smoke: {what}: got {got!r}, expected {expected!r}")
    print(f"  ok  {what} -> {got!r}")


def installed_here(path: str) -> bool:
    """True when ``path`` is inside this interpreter's site-packages."""
    real = os.path.realpath(path)
    dirs = {sysconfig.get_paths()[name] for name in ("purelib", "platlib")}
    return any(real.startswith(os.path.realpath(d) + os.sep) for d in dirs)


def round_trips(server: str) -> str:
    import cmemcache
    from cmemcache import _cmemcache

    for module in (cmemcache, _cmemcache):
        if not installed_here(module.__file__ or ""):
            raise SystemExit(f"wheel_smoke: {module.__name__} comes from {module.__file__}, "
                             f"not from this environment's site-packages")
    print(f"cmemcache {cmemcache.__version__} from {os.path.dirname(cmemcache.__file__ or '')}")
    print(f"  extension {os.path.basename(_cmemcache.__file__ or '')}, server {server}")

    sc = cmemcache.StringClient([server], timeout=2, connect_timeout=2)
    try:
        prefix = b"wheel-smoke:%d:" % os.getpid()
        check("StringClient.set", sc.set(prefix + b"a", b"\x00bytes\r\n", flags=5), True)
        check("StringClient.get", sc.get(prefix + b"a", with_flags=True), (b"\x00bytes\r\n", 5))
        check("StringClient.set_multi", sc.set_multi({prefix + b"b": b"2", prefix + b"c": b"3"}), [])
        check("StringClient.get_multi",
              sc.get_multi([prefix + b"a", prefix + b"b", prefix + b"c", prefix + b"missing"]),
              {prefix + b"a": b"\x00bytes\r\n", prefix + b"b": b"2", prefix + b"c": b"3"})
        check("StringClient.incr", sc.incr(prefix + b"b", 40), 42)
        value, token = sc.gets(prefix + b"c")
        check("StringClient.gets", value, b"3")
        check("StringClient.cas", sc.cas(prefix + b"c", b"33", token), True)
        check("StringClient.cas (stale token)", sc.cas(prefix + b"c", b"x", token), False)
        check("StringClient.delete", sc.delete(prefix + b"a"), True)
        check("StringClient.get (deleted)", sc.get(prefix + b"a"), None)
    finally:
        sc.disconnect_all()

    mc = cmemcache.Client([server])
    try:
        key = f"wheel-smoke:{os.getpid()}:client"
        value = {"name": "Ada", "langs": ["C", "Python"], "n": 3}
        check("Client.set", mc.set(key, value), True)
        check("Client.get", mc.get(key), value)
        check("Client.set (int)", mc.set(key + ":n", 41), True)
        check("Client.incr", mc.incr(key + ":n"), 42)
        check("Client.get_multi", mc.get_multi([key, key + ":n", key + ":missing"]),
              {key: value, key + ":n": 42})
        check("Client.delete", mc.delete(key), 1)  # python-memcached's 1
        check("Client.get (deleted)", mc.get(key), None)
        mc.delete(key + ":n")
    finally:
        mc.disconnect_all()
    return cmemcache.__version__


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="a running memcached (default: start one)")
    args = parser.parse_args()
    if args.server:
        version = round_trips(args.server)
    else:
        proc, server = start_memcached()
        try:
            version = round_trips(server)
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
