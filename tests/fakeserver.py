"""A scripted fake memcached for replies a real server never sends.

The server listens on 127.0.0.1 (or a Unix socket) and runs one daemon thread
per accepted connection.  Each connection is driven by a *script*: either a
callable ``script(conn)`` or a list of steps built with the step functions below::

    FakeServer([expect(rb"^get k\\r\\n"), send(b"HELLO\\r\\n")])

By default the script runs on the first connection only and every later
connection runs in echo mode.  In echo mode every ``get K`` is answered
``VALUE K 0 len(K)\\r\\nK\\r\\nEND\\r\\n`` (self-identifying), stores are answered
``STORED`` and so on, so a request that reads someone else's reply fails loudly.
When a list script ends without closing, the connection continues in echo mode
(``then="echo"``) or keeps reading without answering (``then="hold"``).

Every byte received is recorded per connection, so tests can assert that
nothing was sent and on which connection a request arrived.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import threading
import time

__all__ = [
    "FakeServer",
    "FakeConnection",
    "ScriptEnd",
    "expect",
    "send",
    "send_chunks",
    "sleep",
    "close",
    "reset",
    "shut_wr",
    "stall",
    "echo",
    "hold",
    "echo_reply",
]

#: upper bound on any wait inside a script, so a broken test cannot hang a thread
SCRIPT_WAIT = 15.0
_MAX_LINE = 64 * 1024


class ScriptEnd(Exception):
    """The peer went away, the server stopped, or an expectation timed out."""


def echo_reply(key: bytes, cas: int | None = None) -> bytes:
    """The reply that echo mode sends for one key of a retrieval."""
    if cas is None:
        return b"VALUE %s 0 %d\r\n%s\r\n" % (key, len(key), key)
    return b"VALUE %s 0 %d %d\r\n%s\r\n" % (key, len(key), cas, key)


class FakeConnection:
    """One accepted connection: the script's view of the socket."""

    def __init__(self, server: "FakeServer", sock: socket.socket, index: int):
        self.server = server
        self.sock = sock
        self.index = index
        self._lock = threading.Lock()
        self._received = bytearray()
        self._buf = bytearray()
        self.lines: list[bytes] = []  # request lines seen in echo mode
        self.peer_closed = threading.Event()  # recv returned EOF or an error
        self.finished = threading.Event()  # the handler thread is done
        self.error: BaseException | None = None
        self._closed = False

    # -- recording ---------------------------------------------------------
    @property
    def received(self) -> bytes:
        with self._lock:
            return bytes(self._received)

    def _fill(self, deadline: float) -> None:
        """Read once into the buffer; raise ScriptEnd on EOF, stop or deadline."""
        while True:
            if self.server._stopping.is_set():
                raise ScriptEnd("server stopping")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ScriptEnd("timed out waiting for data")
            self.sock.settimeout(min(0.1, remaining))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as exc:
                self.peer_closed.set()
                raise ScriptEnd(f"recv failed: {exc!r}") from exc
            if not data:
                self.peer_closed.set()
                raise ScriptEnd("peer closed")
            with self._lock:
                self._received += data
            self._buf += data
            return

    # -- reading -------------------------------------------------------------
    def expect(self, pattern, timeout: float = SCRIPT_WAIT):
        """Read until ``pattern`` (bytes regex) matches the unread input; consume
        the input up to the end of the match and return the match."""
        rx = re.compile(pattern, re.M | re.S) if isinstance(pattern, (bytes, str)) else pattern
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(bytes(self._buf))
            if m:
                del self._buf[: m.end()]
                return m
            if len(self._buf) > 64 * 1024 * 1024:
                raise ScriptEnd("too much input without a match")
            self._fill(deadline)

    def read_line(self, timeout: float = SCRIPT_WAIT) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = bytes(self._buf[: i + 1])
                del self._buf[: i + 1]
                return line
            if len(self._buf) > _MAX_LINE:
                raise ScriptEnd("request line too long")
            self._fill(deadline)

    def read_exact(self, n: int, timeout: float = SCRIPT_WAIT) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self._buf) < n:
            self._fill(deadline)
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    # -- writing and closing -------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.settimeout(SCRIPT_WAIT)
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.peer_closed.set()
            raise ScriptEnd(f"send failed: {exc!r}") from exc

    def send_chunks(self, data: bytes, size: int = 1, delay: float = 0.0) -> None:
        for i in range(0, len(data), size):
            self.send(data[i : i + size])
            if delay:
                self.sleep(delay)

    def sleep(self, seconds: float) -> None:
        if self.server._stopping.wait(seconds):
            raise ScriptEnd("server stopping")

    def _drain(self) -> None:
        """Read what the peer already sent, so that close() sends a FIN, not
        a RST (Linux resets a connection closed with unread input)."""
        try:
            self.sock.setblocking(False)
            while True:
                data = self.sock.recv(65536)
                if not data:
                    self.peer_closed.set()
                    break
                with self._lock:
                    self._received += data
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.peer_closed.set()
        finally:
            try:
                self.sock.setblocking(True)
            except OSError:
                pass

    def close(self) -> None:
        """Orderly close (FIN)."""
        if self._closed:
            return
        self._drain()
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        # Keep recording until the client closes its side (bounded), so that
        # "zero bytes sent" checks see everything the client wrote.
        try:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and not self.server._stopping.is_set():
                try:
                    self._fill(deadline)
                except ScriptEnd:
                    break
        finally:
            self._really_close()

    def reset(self) -> None:
        """Abortive close: SO_LINGER 0, so the peer gets a RST."""
        if self._closed:
            return
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self._really_close()
        self.peer_closed.set()

    def shut_wr(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _really_close(self) -> None:
        self._closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def stall(self) -> None:
        """Stop reading and never answer, until the server stops."""
        self.server._stopping.wait(SCRIPT_WAIT * 4)
        raise ScriptEnd("stalled")

    def hold(self) -> None:
        """Keep reading and recording, never answer, until the peer closes."""
        deadline = time.monotonic() + SCRIPT_WAIT * 4
        while True:
            self._buf.clear()
            self._fill(deadline)

    # -- echo mode -----------------------------------------------------------
    def echo(self) -> None:
        """Answer every request with self-identifying replies until EOF."""
        deadline_each = SCRIPT_WAIT * 4
        while True:
            line = self.read_line(timeout=deadline_each)
            with self._lock:
                self.lines.append(line)
            if not line.endswith(b"\r\n"):
                self.send(b"ERROR\r\n")
                continue
            parts = line[:-2].split(b" ")
            cmd, args = parts[0], parts[1:]
            noreply = bool(args) and args[-1] == b"noreply"
            if noreply:
                args = args[:-1]
            if cmd in (b"get", b"gets", b"gat", b"gats"):
                keys = args[1:] if cmd in (b"gat", b"gats") else args
                if not keys:
                    self.send(b"ERROR\r\n")
                    continue
                with_cas = cmd in (b"gets", b"gats")
                out = b"".join(echo_reply(k, 1 if with_cas else None) for k in keys)
                self.send(out + b"END\r\n")
            elif cmd in (b"set", b"add", b"replace", b"append", b"prepend", b"cas"):
                try:
                    nbytes = int(args[3])
                except (IndexError, ValueError):
                    self.send(b"CLIENT_ERROR bad command line format\r\n")
                    continue
                self.read_exact(nbytes + 2)
                if not noreply:
                    self.send(b"STORED\r\n")
            elif cmd == b"delete":
                if not noreply:
                    self.send(b"DELETED\r\n")
            elif cmd in (b"incr", b"decr"):
                if not noreply:
                    self.send(args[1] + b"\r\n" if len(args) > 1 else b"ERROR\r\n")
            elif cmd == b"touch":
                if not noreply:
                    self.send(b"TOUCHED\r\n")
            elif cmd in (b"flush_all", b"verbosity"):
                if not noreply:
                    self.send(b"OK\r\n")
            elif cmd == b"version":
                self.send(b"VERSION 1.6.18-fake\r\n")
            elif cmd == b"stats":
                self.send(b"STAT pid %d\r\nSTAT version 1.6.18-fake\r\nEND\r\n" % os.getpid())
            elif cmd == b"mn":
                self.send(b"MN\r\n")
            elif cmd == b"quit":
                self.close()
                return
            else:
                self.send(b"ERROR\r\n")


# -- script steps ---------------------------------------------------------------


class _Step:
    def __init__(self, name, fn, *args, **kwargs):
        self.name, self.fn, self.args, self.kwargs = name, fn, args, kwargs

    def __call__(self, conn: FakeConnection):
        return self.fn(conn, *self.args, **self.kwargs)

    def __repr__(self):
        return f"{self.name}{self.args!r}"


def expect(pattern, timeout: float = SCRIPT_WAIT) -> _Step:
    """Read until a match of ``pattern`` (a bytes regex, re.M|re.S)."""
    return _Step("expect", FakeConnection.expect, pattern, timeout)


def send(data: bytes) -> _Step:
    return _Step("send", FakeConnection.send, data)


def send_chunks(data: bytes, size: int = 1, delay: float = 0.0) -> _Step:
    return _Step("send_chunks", FakeConnection.send_chunks, data, size, delay)


def sleep(seconds: float) -> _Step:
    return _Step("sleep", FakeConnection.sleep, seconds)


def close() -> _Step:
    return _Step("close", FakeConnection.close)


def reset() -> _Step:
    return _Step("reset", FakeConnection.reset)


def shut_wr() -> _Step:
    return _Step("shut_wr", FakeConnection.shut_wr)


def stall() -> _Step:
    return _Step("stall", FakeConnection.stall)


def echo() -> _Step:
    return _Step("echo", FakeConnection.echo)


def hold() -> _Step:
    return _Step("hold", FakeConnection.hold)


# -- the server -------------------------------------------------------------------


class FakeServer:
    """A thread-per-connection scripted server on loopback.

    ``script``: None (echo mode everywhere), a list of steps, or a callable
    taking a :class:`FakeConnection`.  It runs on the first connection only,
    unless ``every=True``; other connections run in echo mode.  ``then`` says
    what a list script does when its steps are done: ``"echo"`` or ``"hold"``.
    """

    def __init__(
        self,
        script=None,
        *,
        every: bool = False,
        then: str = "echo",
        host: str = "127.0.0.1",
        port: int = 0,
        unix_path: str | None = None,
        rcvbuf: int | None = None,
    ):
        self.script = script
        self.every = every
        self.then = then
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[FakeConnection] = []
        self._threads: list[threading.Thread] = []
        self.unix_path = unix_path
        if unix_path is not None:
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if os.path.exists(unix_path):
                os.unlink(unix_path)
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._listener = socket.socket(family, socket.SOCK_STREAM)
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf is not None:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if unix_path is not None:
            self._listener.bind(unix_path)
            self.port = None
            self.address = f"unix:{unix_path}"
        else:
            self._listener.bind((host, port))
            self.port = self._listener.getsockname()[1]
            self.address = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="fakeserver-accept", daemon=True
        )
        self._accept_thread.start()

    # -- context manager ---------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- inspection ----------------------------------------------------------------
    @property
    def connections(self) -> list[FakeConnection]:
        with self._lock:
            return list(self._conns)

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._conns)

    def received(self, index: int | None = None) -> bytes:
        """Bytes received on connection ``index``, or on all of them."""
        conns = self.connections
        if index is not None:
            return conns[index].received
        return b"".join(c.received for c in conns)

    def wait_for_connections(self, n: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connection_count >= n:
                return True
            time.sleep(0.005)
        return self.connection_count >= n

    def wait_peer_closed(self, index: int, timeout: float = 5.0) -> bool:
        """Wait until the client closed connection ``index`` (EOF or error)."""
        conns = self.connections
        if index >= len(conns):
            return False
        return conns[index].peer_closed.wait(timeout)

    def wait_all_finished(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        for c in self.connections:
            if not c.finished.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def connection_of(self, needle: bytes) -> list[int]:
        """Indexes of the connections whose received bytes contain ``needle``."""
        return [c.index for c in self.connections if needle in c.received]

    # -- running -------------------------------------------------------------------
    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            if self._stopping.is_set():
                sock.close()
                return
            with self._lock:
                conn = FakeConnection(self, sock, len(self._conns))
                self._conns.append(conn)
                t = threading.Thread(
                    target=self._serve, args=(conn,), name=f"fakeserver-{conn.index}", daemon=True
                )
                self._threads.append(t)
            t.start()

    def _serve(self, conn: FakeConnection):
        try:
            script = self.script if (conn.index == 0 or self.every) else None
            if script is None:
                conn.echo()
            elif callable(script):
                script(conn)
            else:
                for step in script:
                    step(conn)
                    if conn._closed:
                        break
                if not conn._closed:
                    if self.then == "echo":
                        conn.echo()
                    else:
                        conn.hold()
        except ScriptEnd:
            pass
        except BaseException as exc:  # recorded for the test to inspect
            conn.error = exc
        finally:
            conn._really_close()
            conn.finished.set()

    def stop(self):
        if self._stopping.is_set():
            return
        self._stopping.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self._accept_thread.join(2.0)
        for c in self.connections:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(2.0)
        if self.unix_path is not None:
            try:
                os.unlink(self.unix_path)
            except OSError:
                pass
