"""cmemcache.aio: the same C engine as cmemcache, driven by asyncio.

``StringClient`` and ``Client`` have the constructors, methods, arguments,
return values and exceptions of their blocking namesakes, as coroutines::

    mc = cmemcache.aio.Client(["127.0.0.1:11211"])
    await mc.set("k", {"a": 1})
    await mc.get("k")

Many tasks share one client: their requests go out back to back on a few
connections per server (``max_connections``, default 2) with up to
``max_inflight`` requests in flight on each (default 64), and the engine
matches every reply to its request in order.  A cancelled call (a cancelled
task, ``asyncio.timeout``, ``wait_for``) never leaves a reply behind for the
next one: the engine reads and discards it.  A ``noreply`` write that
returned is read by its server before any request made after it (those go
on its connection until then), so a task reads its own writes.
"""

from __future__ import annotations

import asyncio
import collections.abc
import errno
import functools
import inspect
import os
import socket
from typing import Any, Callable

from collections.abc import Iterable, Mapping

from . import _cmemcache, _discovery, _dstring, _lease
from ._cmemcache import AsyncCall, Error
from .client import _Plan, _Policy

__all__ = ["Client", "StringClient"]

# A call is a coroutine: asyncio.create_task() and TaskGroups take it.
collections.abc.Coroutine.register(AsyncCall)


class StringClient(_cmemcache.AsyncStringClient):
    """``cmemcache.StringClient`` for asyncio: bytes in, bytes out, every
    method a coroutine.  Extra arguments: ``max_connections`` per server and
    ``max_inflight`` requests per connection (``pool_size``, the blocking
    client's count of idle connections, is checked and has no effect).  With
    ``discovery="elasticache"`` (and ``discovery_interval=``) the one
    server is an ElastiCache configuration endpoint and the calls go to the
    nodes it lists (see cmemcache._dstring)."""

    #: None: the servers are fixed (a client made with discovery= says its kind)
    discovery: str | None = None
    discovered_version: int | None = None
    discovery_interval: float | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connects: set[asyncio.Task[None]] = set()  # connects under way

    async def discover(self) -> list[str]:
        """await discover() -> [server] (with discovery=: reads the node
        list from the configuration endpoint now; ValueError otherwise)"""
        raise ValueError("this client was made without discovery=")

    def _connect(self, index: int, timeout: float) -> None:
        """The engine asks for a connection to server ``index``."""
        task = asyncio.get_running_loop().create_task(self._open(index, timeout))
        self._connects.add(task)
        task.add_done_callback(functools.partial(self._connect_done, index))

    def _connect_done(self, index: int, task: asyncio.Task[None]) -> None:
        self._connects.discard(task)
        if task.cancelled() or task.exception() is not None:
            # given up (close(), the loop ending) before it could report:
            # not a failure of the server
            self._connect_failed(index, -1, "connect cancelled")

    async def _open(self, index: int, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        spec = self._server(index)
        sock: socket.socket | None = None
        refused: str | None = None
        try:
            async with asyncio.timeout(timeout):
                for attempt in range(2):
                    if spec[0] == "unix":
                        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                        sock.setblocking(False)
                        await loop.sock_connect(sock, spec[1])
                    else:
                        sock = await _tcp(loop, spec[1], spec[2], spec[0] == "tcp6")
                    tls = self._tls_new(index, sock.fileno())
                    if tls is None:
                        break
                    tls_failed = await self._handshake(loop, sock, tls)
                    if tls_failed is None:
                        break
                    sock.close()
                    sock = None
                    if attempt == 0 and self._tls_resume_refused(tls):
                        # memcached with ssl_verify_mode and no
                        # ssl_session_cache refuses every resumption: once
                        # more with a full handshake, in the same timeout
                        continue
                    self._connect_failed(index, *tls_failed)
                    return
                assert sock is not None
                refused = await self._authenticate(loop, sock, tls)
        except TimeoutError:
            if sock is not None:
                sock.close()
            self._connect_failed(index, errno.ETIMEDOUT, "timed out")
            return
        except _TLSFailure as e:
            if sock is not None:
                sock.close()
            self._connect_failed(index, e.code, e.why)
            return
        except socket.gaierror as e:
            self._connect_failed(index, 0, str(e.strerror or e))
            return
        except OSError as e:
            if sock is not None:
                sock.close()
            self._connect_failed(index, e.errno or errno.ECONNREFUSED, str(e))
            return
        except BaseException:
            if sock is not None:
                sock.close()
            raise  # reported by _connect_done
        if refused is not None:
            sock.close()
            self._connect_failed(index, _cmemcache._EAUTH, refused)
            return
        self._attach(index, sock.detach(), tls)

    async def _handshake(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                         tls: Any) -> tuple[int, str] | None:
        """Completes the TLS handshake on a new connection, each step when
        the loop says the socket is ready for what the last one wanted:
        None, or the (code, why) for _connect_failed."""
        while (rc := self._tls_handshake(tls)) != 0:
            if rc in (_TLS_WANT_READ, _TLS_WANT_WRITE):
                await _ready(loop, sock, rc)
                continue
            return self._tls_failure(tls, rc)
        return None

    def _tls_failure(self, tls: Any, rc: int) -> tuple[int, str]:
        """A TLS connection's failure code as _connect_failed takes it."""
        rc = self._tls_code(tls, rc)
        if rc == _cmemcache._ETLS:
            return rc, self._tls_why(tls)
        if rc == _cmemcache._EEOF:
            return errno.ECONNRESET, "connection closed by the server"
        return -rc if rc < 0 else errno.EIO, os.strerror(-rc) if rc < 0 else "TLS failed"

    async def _authenticate(self, loop: asyncio.AbstractEventLoop,
                            sock: socket.socket, tls: Any = None) -> str | None:
        """Sends the credentials (memcached -Y) on a new connection, before
        anything else (over TLS after the handshake when the client has
        TLS), and reads the one-line answer: None when the server answered
        STORED (or there are no credentials), else why it refused.  The
        request and the verdict come from the engine, as for the blocking
        driver."""
        request = self._auth_request()
        if request is None:
            return None
        if tls is not None:
            return await self._authenticate_tls(loop, sock, tls, request)
        await loop.sock_sendall(sock, request)
        reply = b""
        while (verdict := self._auth_reply(reply)) is None:
            chunk = await loop.sock_recv(sock, 1024 - len(reply))
            if not chunk:
                raise ConnectionResetError(errno.ECONNRESET, "connection closed by the server")
            reply += chunk
        return None if verdict is True else str(verdict)

    async def _authenticate_tls(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                                tls: Any, request: bytes) -> str | None:
        """_authenticate over the TLS connection tls."""
        while request:
            n = self._tls_send(tls, request)
            if n > 0:
                request = request[n:]
            elif n in (_TLS_WANT_READ, _TLS_WANT_WRITE):
                await _ready(loop, sock, n)
            else:
                raise _TLSFailure(*self._tls_failure(tls, n))
        reply = b""
        while (verdict := self._auth_reply(reply)) is None:
            chunk = self._tls_recv(tls, 1024 - len(reply))
            if isinstance(chunk, bytes):
                reply += chunk
            elif chunk in (_TLS_WANT_READ, _TLS_WANT_WRITE):
                await _ready(loop, sock, chunk)
            else:
                raise _TLSFailure(*self._tls_failure(tls, chunk))
        return None if verdict is True else str(verdict)

    async def close(self) -> None:
        """Closes every connection (what is in flight fails, connects under
        way are given up); the client can be used again afterwards."""
        self._close_now()
        try:
            # (a connect of a loop that was closed never ends: forgotten)
            pending = [t for t in self._connects
                       if not t.done() and not t.get_loop().is_closed()]
            self._connects.clear()
            for t in pending:
                t.cancel()
            loop = asyncio.get_running_loop()
            mine = [t for t in pending if t.get_loop() is loop]
            if mine:
                await asyncio.wait(mine)
        finally:
            self._reopen()

    disconnect_all = close

    async def __aenter__(self) -> StringClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


DiscoveringStringClient = _dstring.aio_discovering(StringClient)

_TLS_WANT_READ: int = _cmemcache._TLS_WANT_READ
_TLS_WANT_WRITE: int = _cmemcache._TLS_WANT_WRITE


class _TLSFailure(Exception):
    """A TLS connection failed while the connector used it: (code, why)
    for _connect_failed."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(code, why)
        self.code = code
        self.why = why


async def _ready(loop: asyncio.AbstractEventLoop, sock: socket.socket, want: int) -> None:
    """Waits until sock is readable (want _TLS_WANT_READ) or writable."""
    fut: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    fd = sock.fileno()
    if want == _TLS_WANT_READ:
        loop.add_reader(fd, wake)
        try:
            await fut
        finally:
            loop.remove_reader(fd)
    else:
        loop.add_writer(fd, wake)
        try:
            await fut
        finally:
            loop.remove_writer(fd)


def _numeric(host: str, port: int) -> list[tuple[Any, ...]]:
    """getaddrinfo()'s answer for an IP address literal, without a thread."""
    for family, addr in ((socket.AF_INET, (host, port)), (socket.AF_INET6, (host, port, 0, 0))):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", addr)]
    return []


async def _tcp(loop: asyncio.AbstractEventLoop, host: str, port: int, v6: bool) -> socket.socket:
    """A connected non-blocking TCP socket, trying every address in turn."""
    infos = _numeric(host, port)
    if not infos:
        family = socket.AF_INET6 if v6 else socket.AF_UNSPEC
        infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
    last: OSError | None = None
    for fam, kind, proto, _, addr in infos:
        sock = socket.socket(fam, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, addr)
            return sock
        except OSError as e:
            sock.close()
            last = e
        except BaseException:
            sock.close()
            raise
    raise last if last is not None else OSError(errno.ECONNREFUSED, "no address")


async def _arun(sc: Any, plan: _Plan) -> Any:
    """Runs a plan (see cmemcache.client) on the asyncio engine."""
    try:
        name, args, kwargs = next(plan)
        while True:
            try:
                if name.__class__ is str:
                    res = await getattr(sc, name)(*args, **kwargs)
                else:
                    # a plan's own step: a callable, awaited when it returns
                    # an awaitable (an async producer, asyncio.sleep)
                    res = name(*args, **kwargs)
                    if inspect.isawaitable(res):
                        res = await res
            except BaseException as e:  # the plan decides what it catches
                name, args, kwargs = plan.throw(e)
            else:
                name, args, kwargs = plan.send(res)
    except StopIteration as done:
        return done.value


class Client(_Policy):
    """``cmemcache.Client`` for asyncio: python-memcached's constructor,
    keys, values, return values and failure handling, every command a
    coroutine.  The same engine as ``cmemcache.aio.StringClient`` runs
    underneath; the extra arguments ``max_connections`` and
    ``max_inflight`` go to it.

    Failures return python-memcached's neutral values as in the blocking
    client (with ``strict=True`` they raise); a cancelled call raises
    ``asyncio.CancelledError`` and leaves nothing behind.
    """

    _engine = StringClient

    def __init__(self, servers: Iterable[str | tuple[str, int]], *args: Any,
                 max_connections: int = 2, max_inflight: int = 64, **kwargs: Any) -> None:
        self._engine_options: dict[str, Any] = {"max_connections": max_connections,
                                "max_inflight": max_inflight}
        self._poll_task: asyncio.Task[None] | None = None
        self._first_discovery: asyncio.Task[None] | None = None
        self._retired: list[Any] = []  # engines discovery replaced, closing soon
        super().__init__(servers, *args, **kwargs)

    def _new_engine(self, servers: list[Any], **options: Any) -> Any:
        return self._engine(servers, **options, **self._engine_options)

    def _drop_engine(self, old: Any) -> None:
        old._close_now()

    def _retire_engine(self, old: Any) -> None:
        _discovery.retire_later(self._retired, old, self.socket_timeout)

    def _start_discovery(self) -> None:
        self._first_discovery = _discovery.first_discovery(self)

    async def discover(self) -> list[str]:
        """With ``discovery="elasticache"``: reads the node list from the
        configuration endpoint now and, when it changed, uses it as the
        server list (calls in flight finish on the old one); returns it.
        The first call (``async with`` makes it) also starts a task on the
        running loop that does this every ``discovery_interval`` seconds;
        until then the configuration endpoint is the only server."""
        engine = self._config_engine()
        self._poll_task = _discovery.poll_task(self._poll_task, self, self.discovery_interval)
        return self._use_cluster(await engine.config_get("cluster"))

    async def get(self, key: Any, default: Any = None) -> Any:
        """The value stored under key, or default when there is none."""
        if not self._prepare:
            try:
                return await self._sc.get_decoded(key, default, self._decode_cb, self._unpickle)
            except (Error, TypeError) as e:
                return self._keyed_failure("get", key, e, None)
        return await _arun(self._sc, self._plan_get(key, default))

    async def gets(self, key: Any, default: Any = None, *, with_token: bool = False) -> Any:
        """Like get(); remembers the cas id for cas() when cache_cas is set.
        ``with_token=True`` returns ``(value, cas_id)``."""
        return await _arun(self._sc, self._plan_gets(key, default, with_token))

    async def get_multi(self, keys: Iterable[Any], key_prefix: Any = "") -> dict[Any, Any]:
        """A dict of the keys found (prefix not included in its keys)."""
        result: dict[Any, Any] = await _arun(self._sc, self._plan_get_multi(keys, key_prefix))
        return result

    async def set(self, key: Any, val: Any, time: Any = 0, min_compress_len: int = 0,
                  noreply: bool = False) -> Any:
        """Store val under key: True when stored."""
        return await _arun(self._sc, self._plan_set(key, val, time, min_compress_len, noreply))

    async def add(self, key: Any, val: Any, time: Any = 0, min_compress_len: int = 0,
                  noreply: bool = False) -> Any:
        """Store only if key is absent."""
        return await _arun(self._sc, self._plan_store("add", key, val, time, min_compress_len,
                                                      noreply))

    async def replace(self, key: Any, val: Any, time: Any = 0, min_compress_len: int = 0,
                      noreply: bool = False) -> Any:
        """Store only if key is present."""
        return await _arun(self._sc, self._plan_store("replace", key, val, time,
                                                      min_compress_len, noreply))

    async def append(self, key: Any, val: Any, time: Any = 0, min_compress_len: int = 0,
                     noreply: bool = False) -> Any:
        """Add val's bytes at the end of the stored value."""
        return await _arun(self._sc, self._plan_store("append", key, val, time,
                                                      min_compress_len, noreply))

    async def prepend(self, key: Any, val: Any, time: Any = 0, min_compress_len: int = 0,
                      noreply: bool = False) -> Any:
        """Add val's bytes at the start of the stored value."""
        return await _arun(self._sc, self._plan_store("prepend", key, val, time,
                                                      min_compress_len, noreply))

    async def cas(self, key: Any, val: Any, time: Any = 0, min_compress_len: int = 0,
                  noreply: bool = False, *, token: int | None = None) -> Any:
        """Check and set, as cmemcache.Client.cas()."""
        return await _arun(self._sc, self._plan_cas(key, val, time, min_compress_len, noreply,
                                                    token))

    async def set_multi(self, mapping: Mapping[Any, Any], time: Any = 0, key_prefix: Any = "",
                        min_compress_len: int = 0, noreply: bool = False) -> list[Any]:
        """Store every pair; returns the keys not stored."""
        result: list[Any] = await _arun(self._sc, self._plan_set_multi(
            mapping, time, key_prefix, min_compress_len, noreply))
        return result

    async def delete(self, key: Any, noreply: bool = False) -> int:
        """1 when deleted, 0 when not found or the server is unreachable."""
        result: int = await _arun(self._sc, self._plan_delete(key, noreply))
        return result

    async def delete_multi(self, keys: Iterable[Any], time: Any = None, key_prefix: Any = "",
                           noreply: bool = False) -> int:
        """Delete every key: 1 unless a server could not be reached."""
        result: int = await _arun(self._sc, self._plan_delete_multi(keys, time, key_prefix,
                                                                    noreply))
        return result

    async def touch(self, key: Any, time: Any = 0, noreply: bool = False) -> int:
        """Set a new expiry: 1 when touched, 0 when not found or down."""
        result: int = await _arun(self._sc, self._plan_touch(key, time, noreply))
        return result

    async def get_or_set(self, key: Any, producer: Callable[[], Any], ttl: int = 0, *,
                         lock_ttl: int = 30, stale_ttl: int | None = None,
                         recache_ttl: int | None = None, wait: float | None = None) -> Any:
        """cmemcache.Client.get_or_set, awaited: ``producer`` is a coroutine
        function (or a plain function); waiting callers sleep on the loop."""
        longest = _lease.check(producer, ttl, lock_ttl, stale_ttl, recache_ttl, wait)
        return await _arun(self._sc, _lease.plan_get_or_set(
            self, key, producer, ttl, lock_ttl, stale_ttl, recache_ttl, longest, asyncio.sleep))

    async def invalidate(self, key: Any, stale_ttl: int | None = None) -> bool:
        """cmemcache.Client.invalidate, awaited."""
        result: bool = await _arun(self._sc, _lease.plan_invalidate(self, key, stale_ttl))
        return result

    async def incr(self, key: Any, delta: int = 1, noreply: bool = False) -> int | None:
        """Add delta to a decimal value: the new value, None when not found."""
        result: int | None = await _arun(self._sc, self._plan_incrdecr("incr", key, delta,
                                                                       noreply))
        return result

    async def decr(self, key: Any, delta: int = 1, noreply: bool = False) -> int | None:
        """Subtract delta from a decimal value, stopping at 0."""
        result: int | None = await _arun(self._sc, self._plan_incrdecr("decr", key, delta,
                                                                       noreply))
        return result

    async def flush_all(self, delay: int = 0) -> None:
        """Invalidate every item on every reachable server."""
        await _arun(self._sc, self._plan_flush_all(delay))

    async def get_stats(self, stat_args: str | None = None) -> list[tuple[str, dict[str, str]]]:
        """[(server name, {stat: value})] of the reachable servers."""
        result: list[tuple[str, dict[str, str]]] = await _arun(
            self._sc, self._plan_get_stats(stat_args))
        return result

    async def get_slab_stats(self) -> list[tuple[str, dict[str, Any]]]:
        """`stats slabs` per server."""
        result: list[tuple[str, dict[str, Any]]] = await _arun(self._sc,
                                                               self._plan_get_slab_stats())
        return result

    async def get_slabs(self) -> list[tuple[str, dict[str, dict[str, str]]]]:
        """`stats items` per server."""
        result: list[tuple[str, dict[str, dict[str, str]]]] = await _arun(
            self._sc, self._plan_get_slabs())
        return result

    async def close(self) -> None:
        """Close every connection (what is in flight fails); the next call
        reconnects.  Stops discovery's polling (discover() starts it again)."""
        if self._poll_task is not None:
            self._poll_task.cancel()
            self._poll_task = None
        while self._retired:
            self._retired.pop()._close_now()
        if self._config_sc is not None:
            await self._config_sc.close()
        await self._sc.close()

    disconnect_all = close
    quit_all = close

    async def __aenter__(self) -> Client:
        if self.discovery is not None:
            await _discovery.discover_logged(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
