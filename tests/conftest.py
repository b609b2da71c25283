"""Shared fixtures: real memcached servers on free loopback ports, a scripted
fake server, and a per-test hang guard."""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fakeserver import FakeServer  # noqa: E402

MEMCACHED = os.environ.get("MEMCACHED", shutil.which("memcached") or "/usr/bin/memcached")

#: seconds a single test may run before the process is stopped with a traceback
DEFAULT_HANG_TIMEOUT = 60.0


# -- hang guard --------------------------------------------------------------------------


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "hang_timeout(seconds): stop the run with a traceback if this test runs longer",
    )


#: modules whose tests depend on timing (SIGSTOP, deadlines, hold-downs,
#: elapsed-time bounds): every test in them is marked ``serial``, and
#: ``make test`` runs those alone, not beside pytest-xdist workers
SERIAL_MODULES = frozenset({
    "test_client_compat.py",
    "test_concurrency.py",
    "test_deadlines.py",
    "test_errors.py",
    "test_faults.py",
    "test_holddown.py",
    "test_midcall.py",
    "test_multiserver.py",
    "test_recovery.py",
    "test_resolve.py",
    "test_threads_chaos.py",
})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SERIAL_MODULES:
            item.add_marker(pytest.mark.serial)


def _real_stderr(config):
    """The terminal's stderr, not pytest's capture file (which is lost when
    the guard ends the process)."""
    try:
        from _pytest.faulthandler import fault_handler_stderr_fd_key

        return config.stash[fault_handler_stderr_fd_key]
    except (ImportError, KeyError):
        return sys.__stderr__


@pytest.fixture(autouse=True)
def _hang_guard(request):
    """A hanging test dumps every thread's traceback and ends the run instead
    of blocking CI (pytest-timeout is not required)."""
    marker = request.node.get_closest_marker("hang_timeout")
    seconds = float(marker.args[0]) if marker else DEFAULT_HANG_TIMEOUT
    faulthandler.dump_traceback_later(seconds, exit=True, file=_real_stderr(request.config))
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


# -- utilities ---------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def run_python(code: str, *args: str, timeout: float = 60.0, **kwargs) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; a crash shows as a negative returncode."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


# util-linux's setpriv: memcached is started through it with
# --pdeathsig KILL, so it is killed when the test run dies (e.g. the hang
# guard ends it) and no memcached outlives the run.  Not a preexec_fn: that
# runs Python in the forked child, and a child forked while another thread
# held the (ASan) allocator's lock waits on it forever, with the parent
# blocked in Popen until the hang guard ends the run.
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


def _dying_with_parent(argv: list[str]) -> list[str]:
    """argv run so that it is SIGKILLed when the thread that started it
    ends (Linux with setpriv; argv unchanged elsewhere)."""
    if _SETPRIV is None:
        return argv
    return [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]


class MemcachedServer:
    """A real memcached process on a free loopback port (or a Unix socket)."""

    def __init__(
        self,
        extra_args=(),
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        unix_path: str | None = None,
        memory_mb: int = 64,
    ):
        self.host = host
        self.unix_path = unix_path
        self.extra_args = list(extra_args)
        self.memory_mb = memory_mb
        self._fixed_port = port is not None
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.paused = False
        self.start()

    # -- addressing ------------------------------------------------------------------
    @property
    def address(self) -> str:
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        if ":" in self.host:
            return f"inet6:[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _connect(self, timeout: float) -> socket.socket:
        if self.unix_path is not None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(self.unix_path)
            except BaseException:
                s.close()
                raise
            return s
        return socket.create_connection((self.host, self.port), timeout=timeout)

    # -- lifecycle ---------------------------------------------------------------------
    def _argv(self):
        argv = [MEMCACHED, "-U", "0", "-t", "1", "-m", str(self.memory_mb)]
        if self.unix_path is not None:
            argv += ["-s", self.unix_path]
        else:
            argv += ["-l", self.host, "-p", str(self.port)]
        if os.geteuid() == 0:
            argv += ["-u", "root"]
        return argv + self.extra_args

    def start(self):
        attempts = 1 if (self._fixed_port or self.unix_path) else 5
        last = ""
        for _ in range(attempts):
            if self.unix_path is None and not self._fixed_port:
                self.port = free_port(self.host)
            if self.unix_path is not None and os.path.exists(self.unix_path):
                os.unlink(self.unix_path)
            self._stderr = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(
                _dying_with_parent(self._argv()),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
            )
            self.paused = False
            if self._wait_ready(5.0):
                self._fixed_port = True  # a later start() reuses the port
                return
            last = self._abort()
        raise RuntimeError(f"memcached did not start: {self._argv()}: {last}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with self._connect(0.5) as s:
                    s.sendall(b"version\r\n")
                    if s.recv(64).startswith(b"VERSION "):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def _abort(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        self._reap()
        self._stderr.seek(0)
        err = self._stderr.read()
        self._stderr.close()
        return err.decode(errors="replace")

    def _reap(self, timeout: float = 5.0):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def _close_stderr(self):
        if not self._stderr.closed:
            self._stderr.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGCONT (in case it is paused), then SIGTERM and wait."""
        if not self.running():
            return
        self.resume()
        self.proc.terminate()
        self._reap()
        self._close_stderr()

    def kill(self):
        """SIGKILL and wait."""
        if not self.running():
            return
        self.proc.kill()
        self.paused = False
        self._reap()
        self._close_stderr()

    def _stopped(self) -> bool:
        """True when every thread of the process is stopped (from /proc)."""
        task_dir = f"/proc/{self.proc.pid}/task"
        try:
            tids = os.listdir(task_dir)
            for tid in tids:
                with open(f"{task_dir}/{tid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                        return False
        except (OSError, IndexError):
            return False
        return bool(tids)

    def dispose(self):
        """Teardown: SIGCONT, then SIGKILL (memcached takes up to a second
        to act on SIGTERM, and nothing of its state is needed any more)."""
        self.resume()
        self.kill()

    def pause(self):
        """SIGSTOP, and wait until the process really is stopped (the signal
        is delivered asynchronously)."""
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True
        if os.path.isdir(f"/proc/{self.proc.pid}/task"):
            if not wait_until(self._stopped, timeout=5.0, interval=0.001):
                raise RuntimeError(f"memcached {self.proc.pid} did not stop")
        else:
            time.sleep(0.05)

    def resume(self):
        if self.running():
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def restart(self):
        """Stop, then start again on the same port (or socket path)."""
        self.stop()
        self.start()

    # -- raw access, independent of the client under test --------------------------------
    def command(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Send raw protocol bytes on a fresh connection and return every reply
        byte for them (a trailing ``mn`` marks where the replies end)."""
        with self._connect(timeout) as s:
            self._send_with_mn(s, data)
            out = bytearray()
            deadline = time.monotonic() + timeout
            while not (out == b"MN\r\n" or out.endswith(b"\r\nMN\r\n")):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no complete reply to {data[:80]!r}: {bytes(out[-200:])!r}")
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise ConnectionError(f"server closed: {bytes(out[-200:])!r}")
                out += chunk
            return bytes(out[:-4])

    def _send_with_mn(self, s: socket.socket, data: bytes) -> None:
        """Sends ``data`` and the ``mn`` that ends ``command``'s replies."""
        s.sendall(data + b"mn\r\n")

    def raw_get(self, key: bytes):
        """``(value, flags)`` stored under ``key`` (exact bytes), or None."""
        reply = self.command(b"get " + key + b"\r\n")
        if reply == b"END\r\n":
            return None
        header, _, rest = reply.partition(b"\r\n")
        parts = header.split(b" ")
        assert parts[0] == b"VALUE" and parts[1] == key, reply[:200]
        flags, n = int(parts[2]), int(parts[3])
        assert rest[n:] == b"\r\nEND\r\n", reply[-200:]
        return rest[:n], flags

    def raw_get_many(self, keys: list[bytes]) -> list[tuple[bytes, bytes]]:
        """The ``(key, value)`` pairs the server holds of ``keys`` (exact
        bytes), asked for 100 keys a request."""
        out = []
        for start in range(0, len(keys), 100):
            chunk = keys[start : start + 100]
            out += parse_values(self.command(b"get " + b" ".join(chunk) + b"\r\n"))
        return out

    def raw_ttl(self, key: bytes | str) -> int | None:
        """Seconds left before the item under ``key`` (exact bytes, or a str
        in UTF-8) expires, as the server reports it (-1: never), or None
        when there is no such item."""
        if isinstance(key, str):
            key = key.encode()
        reply = self.command(b"mg " + key + b" t\r\n")
        if reply == b"EN\r\n":
            return None
        m = re.fullmatch(rb"HD t(-?\d+)(?: [WXZ])*\r\n", reply)  # stale, win flags
        assert m, reply
        return int(m[1])

    def raw_set(self, key: bytes, value: bytes, flags: int = 0, exptime: int = 0) -> None:
        reply = self.command(b"set %s %d %d %d\r\n%s\r\n" % (key, flags, exptime, len(value), value))
        assert reply == b"STORED\r\n", reply

    def flush(self) -> None:
        assert self.command(b"flush_all\r\n") == b"OK\r\n"

    def fresh(self) -> "MemcachedServer":
        """The server running (started again on its port if it was stopped
        or killed), resumed and flushed."""
        if not self.running():
            self.start()
        self.resume()
        self.flush()
        return self

    def stats(self, args: bytes = b"") -> dict:
        reply = self.command(b"stats" + (b" " + args if args else b"") + b"\r\n")
        out = {}
        for line in reply.split(b"\r\n"):
            if line.startswith(b"STAT "):
                _, name, value = (line.split(b" ", 2) + [b""])[:3]
                out[name.decode()] = value.decode()
        return out


def auth_request(user: bytes, password: bytes) -> bytes:
    """memcached -Y's authentication request: ``set <user> ...``."""
    value = user + b" " + password
    return b"set %s 0 0 %d\r\n%s\r\n" % (user, len(value), value)


def authenticate_socket(s: socket.socket, user: str, password: str) -> socket.socket:
    """Authenticates a harness connection to a memcached -Y (plain or TLS)
    and returns it; closes it and raises ConnectionError when refused."""
    try:
        s.sendall(auth_request(user.encode(), password.encode()))
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(64)
            if not chunk:
                raise ConnectionError("closed while authenticating")
            reply += chunk
        if reply != b"STORED\r\n":
            raise ConnectionError(f"harness not authenticated: {reply!r}")
    except BaseException:
        s.close()
        raise
    return s


def django_cache_class():
    """cmemcache.django.CMemcacheCache, Django's settings configured first
    (a local-memory default cache) when nothing configured them; skips
    without Django."""
    django = pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
            USE_TZ=True,
        )
        django.setup()
    from cmemcache.django import CMemcacheCache

    return CMemcacheCache


def parse_values(reply: bytes) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs of a complete ``get`` reply."""
    out = []
    pos = 0
    for _ in range(len(reply) + 1):
        eol = reply.index(b"\r\n", pos)
        line = reply[pos:eol]
        if line == b"END":
            assert eol + 2 == len(reply), reply[-200:]
            return out
        parts = line.split(b" ")
        assert parts[0] == b"VALUE" and len(parts) == 4, line
        n = int(parts[3])
        start = eol + 2
        assert reply[start + n : start + n + 2] == b"\r\n", reply[start : start + n + 10]
        out.append((parts[1], reply[start : start + n]))
        pos = start + n + 2
    raise AssertionError("unterminated reply")


@contextlib.contextmanager
def memcached_servers(n: int):
    """``n`` MemcachedServers, disposed of on leaving (for a module's fixture)."""
    servers: list[MemcachedServer] = []
    try:
        for _ in range(n):
            servers.append(MemcachedServer())
        yield servers
    finally:
        for server in servers:
            server.dispose()


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def memcached():
    """One memcached per test module (flushed before each test by ``mc``)."""
    server = MemcachedServer()
    try:
        yield server
    finally:
        server.dispose()


@pytest.fixture
def server(memcached):
    """The module's memcached, running, resumed and flushed."""
    return memcached.fresh()


@pytest.fixture
def mc(memcached):
    """A fresh ``StringClient`` on the module's flushed server."""
    from cmemcache import StringClient

    memcached.fresh()
    client = StringClient([memcached.address], timeout=2, connect_timeout=2)
    try:
        yield client
    finally:
        client.disconnect_all()


@contextlib.contextmanager
def made_by(new, end):
    """``make(*args, **kwargs)``: ``new(*args, **kwargs)``, each of them
    passed to ``end`` on leaving (for a fixture's factory)."""
    made = []

    def make(*args, **kwargs):
        thing = new(*args, **kwargs)
        made.append(thing)
        return thing

    try:
        yield make
    finally:
        for thing in made:
            end(thing)


@pytest.fixture
def memcached_factory():
    """``make(extra_args=(), **kwargs) -> MemcachedServer``; all are stopped
    after the test."""
    with made_by(MemcachedServer, MemcachedServer.dispose) as make:
        yield make


@pytest.fixture
def fake_server():
    """``make(script=None, **kwargs) -> FakeServer``; all are stopped after the test."""
    with made_by(FakeServer, FakeServer.stop) as make:
        yield make


class TcpRelay:
    """A loopback TCP relay in front of a server, which counts the
    connections it relays and the bytes the clients send through it
    (``per_connection`` also holds each connection's bytes both ways).
    Taking it down (``stop``) makes the server unreachable (new connections
    refused, open ones closed) while the server keeps its data, as in a
    network partition; ``start`` brings it back on the same port."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self.connections = 0
        self.bytes_sent = 0
        #: one ``[client bytes, server bytes]`` per relayed connection, in
        #: the order they were accepted
        self.per_connection: list[list[int]] = []
        #: what the clients sent, every connection's bytes in arrival order
        self.sent = bytearray()
        self._socks: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _spawn(self, fn, *args) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def start(self) -> None:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        ls.settimeout(0.05)
        self._stop = threading.Event()
        self._listener = ls
        self._spawn(self._accept_loop, ls, self._stop)

    def _accept_loop(self, ls: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            counts = [0, 0]
            with self._lock:
                self.connections += 1
                self.per_connection.append(counts)
                self._socks += [client, upstream]
            self._spawn(self._pump, client, upstream, True, counts)
            self._spawn(self._pump, upstream, client, False, counts)

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool,
              counts: list[int]) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    if count:
                        self.bytes_sent += len(data)
                        self.sent += data
                    counts[0 if count else 1] += len(data)
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def counters(self) -> tuple[int, int]:
        """(connections relayed, bytes the clients sent)."""
        with self._lock:
            return self.connections, self.bytes_sent

    def server_bytes(self) -> list[int]:
        """The bytes the server sent on each relayed connection so far."""
        with self._lock:
            return [counts[1] for counts in self.per_connection]

    def stop(self) -> None:
        """Refuse new connections and close the open ones."""
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(5)
        self._threads = [t for t in self._threads if t.is_alive()]

    def refuses(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False


class BlackHole:
    """A listening socket whose accept queue is full: connects to it hang
    (their SYNs are dropped) until the client's connect timeout."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(4):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(s)
        # a connect that completes within 0.2 s means the queue is not full
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.2)
        try:
            probe.connect(("127.0.0.1", self.port))
            self.full = False
        except OSError:
            self.full = True
        finally:
            probe.close()

    def close(self):
        for s in self.fillers:
            s.close()
        self.listener.close()


@pytest.fixture
def black_hole():
    """A ``BlackHole`` whose accept queue is known to be full; closed after the test."""
    hole = BlackHole()
    if not hole.full:
        hole.close()
        pytest.fail("could not fill the accept queue of a loopback listener")
    yield hole
    hole.close()


@pytest.fixture
def tmp_socket_dir():
    """A short directory for Unix sockets (paths are limited to ~107 bytes)."""
    path = tempfile.mkdtemp(prefix="cmc-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class ChildProcess:
    """A Python subprocess driven line by line over stdin/stdout (bounded waits)."""

    def __init__(self, code: str, *args: str, env=None):
        import queue
        import threading

        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", textwrap.dedent(code), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._lines: "queue.Queue[str | None]" = queue.Queue()
        self._stderr: list[str] = []

        def pump_out():
            for line in self.proc.stdout:
                self._lines.put(line.rstrip("\n"))
            self._lines.put(None)

        def pump_err():
            for line in self.proc.stderr:
                self._stderr.append(line)

        threading.Thread(target=pump_out, daemon=True).start()
        threading.Thread(target=pump_err, daemon=True).start()

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read_line(self, timeout: float = 20.0) -> str:
        import queue

        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from the child within {timeout} s; stderr: {self.stderr}")
        if line is None:
            self.proc.wait(5)
            raise AssertionError(
                f"child ended (returncode {self.proc.returncode}); stderr: {self.stderr}"
            )
        return line

    def read_json(self, timeout: float = 20.0):
        """The next line of output, a JSON value."""
        line = self.read_line(timeout)
        try:
            return json.loads(line)
        except ValueError:
            raise AssertionError(f"unexpected child output {line!r}; stderr: {self.stderr}")

    def finish(self, timeout: float = 20.0) -> int:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"child did not exit within {timeout} s; stderr: {self.stderr}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def restart_rounds(child: ChildProcess, restarts):
    """Drives a child that says "ready", answers each "go" with a JSON
    round of calls ({"round": n, ...}) and "stop" with "done": one round
    after each restart of ``restarts`` in turn.  Yields each round's result
    (its number checked), then stops the child and checks it exited with 0."""
    assert child.read_line() == "ready"
    for r, restart in enumerate(restarts):
        restart()
        child.send("go")
        result = child.read_json()
        assert result["round"] == r
        yield result
    child.send("stop")
    assert child.read_line() == "done"
    rc = child.finish()
    assert rc == 0, f"child exited with {rc}; stderr: {child.stderr}"


@pytest.fixture
def child_process():
    """``start(code, *args) -> ChildProcess``; killed after the test if still running."""
    with made_by(ChildProcess, ChildProcess.kill) as start:
        yield start
