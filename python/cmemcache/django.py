"""A Django cache backend on ``cmemcache.Client``.

    CACHES = {
        "default": {
            "BACKEND": "cmemcache.django.CMemcacheCache",
            "LOCATION": "127.0.0.1:11211",          # or "a:11211;b:11211", or a list
            "OPTIONS": {"socket_timeout": 1},       # keyword arguments of cmemcache.Client
        }
    }

It behaves as Django's own memcached backends (``BaseMemcachedCache``):
timeouts are converted the same way (``None`` never expires, ``0`` expires
at once, more than 30 days becomes a Unix time), invalid keys raise
``InvalidCacheKey``, a failed ``set`` deletes the old value and
``incr``/``decr`` of a missing key raise ``ValueError``.  ``incr``/``decr``
of a value that is not a decimal number raise ``cmemcache.ClientError``
(memcached's "cannot increment or decrement non-numeric value"), as
Django's pylibmc and pymemcache backends raise their library's client
error.

Every async method (``aget``, ``aset``, ``aget_many``, ``aincr``, ...,
``aclose``) is the backend's own, on ``cmemcache.aio.Client``: no thread
pool (Django's ``sync_to_async`` fallback) is involved, and each does what
its blocking namesake does (same timeouts, key checks, return values and
failures).  An asyncio client belongs to one event loop: the backend keeps
one per loop it runs on, with the same servers and options, and closes the
clients of loops that have closed.  ``OPTIONS`` go to both clients, except
``max_connections`` and ``max_inflight`` (per server and per connection,
see ``cmemcache.aio``), which only the asyncio client takes.

TLS and memcached's authentication (``memcached -Z``, ``memcached -Y``) are
options too, and reach both clients::

    "OPTIONS": {
        "tls": True,
        "tls_ca_file": "/etc/memcached/ca.pem",
        "tls_server_hostname": "cache.internal",    # when LOCATION is an IP
        "username": "app",
        "password": os.environ["MEMCACHED_PASSWORD"],
    }

(also ``tls_certfile``, ``tls_keyfile``, ``tls_keyfile_password``,
``tls_verify``, ``tls_min_version``, ``tls_max_version``: see
``cmemcache.Client``).  A handshake or authentication the server refuses
is a failure like an unreachable server's (below); the passwords are not
shown in any message.

A server that cannot be reached is logged on the ``cmemcache`` logger and
answered as python-memcached answers it: writes are not stored, reads return
``None`` (not the default, so ``has_key()`` is True and ``get_or_set()``
returns None meanwhile).  ``OPTIONS={"strict": True}`` raises the
``cmemcache.Error`` instead.

``OPTIONS={"leases": True}`` makes ``get_or_set()`` and ``aget_or_set()``
stampede-proof: they run on ``cmemcache.Client.get_or_set`` (memcached's
meta leases, memcached 1.6), so of the callers that miss a key at once in
every process only one calls ``default``; the others wait for its value
(``"lease_lock_ttl"``, default 30 s, bounds how long a caller that died
holds the lease).  Not through twemproxy, which has no meta commands.

Differences from Django's backends:

* Every backend instance with the same ``LOCATION`` and ``OPTIONS`` shares
  one ``cmemcache.Client`` (it is thread-safe and keeps a pool of
  connections per server), so threads do not each open their own
  connections; they share the asyncio clients too (one per event loop).
* ``close()``, which Django calls at the end of every request, keeps the
  pooled connections (see ``CMemcacheCache.close``).
* ``add()`` returns a bool (python-memcached's clients return 0 when the
  server cannot be reached).
* Keys are also checked for their UTF-8 length: a key of 250 characters or
  fewer that is longer than 250 bytes raises ``InvalidCacheKey`` instead of
  a client error.
* The async methods pickle and unpickle on the event loop, where Django's
  fallback did it in a thread: a value whose pickling queries the database
  (an unevaluated ``QuerySet``) raises ``SynchronousOnlyOperation`` there,
  as any database query in async code does; evaluate it first
  (``list(qs)``).
* Where each async call runs on a loop of its own (``async_to_sync``, an
  async view under WSGI), its first cache call opens a connection for
  that loop; an ASGI server's one loop keeps its connections.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.cache.backends.base import (
    DEFAULT_TIMEOUT,
    InvalidCacheKey,
    memcache_key_warnings,
)
from django.core.cache.backends.memcached import BaseMemcachedCache
from django.utils.functional import cached_property

import cmemcache
import cmemcache.aio

from ._perloop import PerLoop

__all__ = ["CMemcacheCache"]

#: OPTIONS only the asyncio client takes
AIO_ONLY_OPTIONS = frozenset({"max_connections", "max_inflight"})

#: memcached's longest key, in bytes
MEMCACHE_MAX_KEY_LENGTH = 250

_clients: dict[tuple[tuple[Any, ...], str], cmemcache.Client] = {}
_aio_clients: dict[tuple[tuple[Any, ...], str], PerLoop] = {}
_clients_lock = threading.Lock()


def _config_key(servers: list[Any], options: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    # Options are compared by repr: two equal configurations share clients
    # and two different ones never do.
    return (tuple(servers), repr(sorted(options.items())))


def shared_client(servers: list[Any], options: dict[str, Any]) -> cmemcache.Client:
    """The one ``cmemcache.Client`` for these servers and options, created
    on first use (the asyncio-only options left out)."""
    key = _config_key(servers, options)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                sync_options = {k: v for k, v in options.items() if k not in AIO_ONLY_OPTIONS}
                client = _clients[key] = cmemcache.Client(servers, **sync_options)
    return client


def shared_aio_clients(servers: list[Any], options: dict[str, Any]) -> PerLoop:
    """The ``cmemcache.aio.Client`` per event loop for these servers and
    options, shared as ``shared_client`` is."""
    key = _config_key(servers, options)
    clients = _aio_clients.get(key)
    if clients is None:
        with _clients_lock:
            clients = _aio_clients.get(key)
            if clients is None:
                servers = list(servers)
                options = dict(options)
                clients = _aio_clients[key] = PerLoop(
                    lambda: cmemcache.aio.Client(servers, **options))
    return clients


class CMemcacheCache(BaseMemcachedCache):
    """Django cache backend for memcached through ``cmemcache.Client``."""

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        super().__init__(
            server, params, library=cmemcache, value_not_found_exception=ValueError
        )
        # As PyMemcacheCache: pickles with the newest protocol; OPTIONS win.
        self._options: dict[str, Any] = {
            "pickleProtocol": pickle.HIGHEST_PROTOCOL,
            **self._options,
        }
        # the backend's own options (not the clients')
        self._leases = bool(self._options.pop("leases", False))
        self._lease_lock_ttl: int = self._options.pop("lease_lock_ttl", 30)

    @property
    def client_servers(self) -> list[Any]:
        """The LOCATION entries: strings stripped of blanks (empty ones
        dropped), ``(server, weight)`` pairs as given."""
        return [
            s.strip() if isinstance(s, str) else s
            for s in self._servers  # type: ignore[attr-defined]
            if not isinstance(s, str) or s.strip()
        ]

    @cached_property
    def _cache(self) -> cmemcache.Client:
        """The client shared by every backend instance with this LOCATION
        and OPTIONS."""
        return shared_client(self.client_servers, self._options)

    @cached_property
    def _aio(self) -> PerLoop:
        """The asyncio clients (one per event loop) shared by every backend
        instance with this LOCATION and OPTIONS."""
        return shared_aio_clients(self.client_servers, self._options)

    def _aclient(self) -> cmemcache.aio.Client:
        """The running event loop's asyncio client."""
        return self._aio.client()

    def add(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Stores ``value`` only if ``key`` is absent: True when stored,
        False when the key exists or the server could not be reached."""
        return bool(super().add(key, value, timeout, version))

    def _lease_ttl(self, timeout: Any) -> int | None:
        """With OPTIONS["leases"]: the memcached TTL get_or_set takes for
        timeout; None when it runs as Django's (no leases, or a timeout
        that expires at once)."""
        if not self._leases:
            return None
        ttl = self.get_backend_timeout(timeout)
        return int(ttl) if ttl is not None and ttl >= 0 else None

    def _lease_args(self, key: str, default: Any, version: int | None) -> tuple[str, Any]:
        """The client's key and producer for a leased get_or_set."""
        producer = default if callable(default) else (lambda: default)
        return self.make_and_validate_key(key, version=version), producer

    def get_or_set(
        self, key: str, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        """The stored value, else ``default`` (called when callable) stored
        and returned; with OPTIONS["leases"], one caller per miss calls it
        (see the module's documentation)."""
        ttl = self._lease_ttl(timeout)
        if ttl is None:
            return super().get_or_set(key, default, timeout, version)
        return self._cache.get_or_set(*self._lease_args(key, default, version), ttl,
                                      lock_ttl=self._lease_lock_ttl)

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """Adds ``delta`` (``decr`` subtracts it) to a decimal value: the
        new value.  ``ValueError`` when the key is missing,
        ``cmemcache.ClientError`` when its value is not a number."""
        key = self.make_and_validate_key(key, version=version)
        client = self._cache
        try:
            # memcached takes no negative delta
            val = client.decr(key, -delta) if delta < 0 else client.incr(key, delta)
        except ValueError as e:
            # cmemcache.Client raises python-memcached's ValueError for
            # memcached's CLIENT_ERROR, from the engine's ClientError
            if isinstance(e.__cause__, cmemcache.ClientError):
                raise e.__cause__ from None
            raise
        if val is None:
            raise ValueError(f"Key '{key}' not found")
        return val

    # -- the async methods, on cmemcache.aio.Client -----------------------------------
    #
    # Each is its blocking namesake's code (BaseMemcachedCache's, this
    # class's, or BaseCache's for the methods made of others) with the
    # client calls awaited on the running loop's asyncio client.

    async def aadd(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """``add()``: True when stored, False when the key exists or the
        server could not be reached."""
        key = self.make_and_validate_key(key, version=version)
        return bool(
            await self._aclient().add(key, value, self.get_backend_timeout(timeout)))

    async def aget(self, key: str, default: Any = None, version: int | None = None) -> Any:
        """``get()``: the value, or ``default`` when there is none."""
        key = self.make_and_validate_key(key, version=version)
        return await self._aclient().get(key, default)

    async def aset(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """``set()``: a value that could not be stored leaves no old value
        behind."""
        key = self.make_and_validate_key(key, version=version)
        client = self._aclient()
        if not await client.set(key, value, self.get_backend_timeout(timeout)):
            await client.delete(key)

    async def atouch(
        self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """``touch()``: True when the key exists and got the new expiry."""
        key = self.make_and_validate_key(key, version=version)
        return bool(await self._aclient().touch(key, self.get_backend_timeout(timeout)))

    async def adelete(self, key: str, version: int | None = None) -> bool:
        """``delete()``: True when the key existed."""
        key = self.make_and_validate_key(key, version=version)
        return bool(await self._aclient().delete(key))

    async def aget_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        """``get_many()``: one request per server for every key."""
        key_map = {self.make_and_validate_key(key, version=version): key for key in keys}
        ret = await self._aclient().get_multi(key_map.keys())
        return {key_map[k]: v for k, v in ret.items()}

    async def aget_or_set(
        self, key: str, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        """``get_or_set()``: the stored value, else ``default`` (called when
        callable; awaited when it returns an awaitable, with leases) added
        and read back."""
        ttl = self._lease_ttl(timeout)
        if ttl is not None:
            return await self._aclient().get_or_set(*self._lease_args(key, default, version),
                                                    ttl, lock_ttl=self._lease_lock_ttl)
        val = await self.aget(key, self._missing_key, version=version)
        if val is self._missing_key:
            if callable(default):
                default = default()
            await self.aadd(key, default, timeout=timeout, version=version)
            # Read again: another caller may have added a value between the
            # first aget() and the aadd().
            return await self.aget(key, default, version=version)
        return val

    async def ahas_key(self, key: str, version: int | None = None) -> bool:
        """``has_key()``."""
        return await self.aget(key, self._missing_key, version=version) is not self._missing_key

    async def aincr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """``incr()``: the new value; ``ValueError`` when the key is
        missing, ``cmemcache.ClientError`` when its value is not a number."""
        key = self.make_and_validate_key(key, version=version)
        client = self._aclient()
        try:
            val = await (client.decr(key, -delta) if delta < 0 else client.incr(key, delta))
        except ValueError as e:
            if isinstance(e.__cause__, cmemcache.ClientError):
                raise e.__cause__ from None
            raise
        if val is None:
            raise ValueError(f"Key '{key}' not found")
        return val

    async def adecr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """``decr()``."""
        return await self.aincr(key, -delta, version=version)

    async def aset_many(
        self, data: Mapping[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        """``set_many()``: the keys that could not be stored."""
        safe_data = {}
        original_keys = {}
        for key, value in data.items():
            safe_key = self.make_and_validate_key(key, version=version)
            safe_data[safe_key] = value
            original_keys[safe_key] = key
        failed_keys = await self._aclient().set_multi(
            safe_data, self.get_backend_timeout(timeout))
        return [original_keys[k] for k in failed_keys]

    async def adelete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        """``delete_many()``."""
        safe_keys = [self.make_and_validate_key(key, version=version) for key in keys]
        await self._aclient().delete_multi(safe_keys)

    async def aclear(self) -> None:
        """``clear()``: flushes every server."""
        await self._aclient().flush_all()

    async def aincr_version(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """``incr_version()``: moves the value to version + delta."""
        if version is None:
            version = self.version
        value = await self.aget(key, self._missing_key, version=version)
        if value is self._missing_key:
            raise ValueError(f"Key '{key}' not found")
        await self.aset(key, value, version=version + delta)
        await self.adelete(key, version=version)
        return version + delta

    async def adecr_version(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """``decr_version()``."""
        return await self.aincr_version(key, -delta, version)

    async def aclose(self, **kwargs: Any) -> None:
        """Keeps the connections open, as ``close()`` does."""

    def validate_key(self, key: str) -> None:
        """Raises ``InvalidCacheKey`` for a key memcached would refuse:
        Django's checks (length, control characters and spaces), plus a
        UTF-8 length over 250 bytes."""
        for warning in memcache_key_warnings(key):
            raise InvalidCacheKey(warning)
        if len(key.encode("utf-8")) > MEMCACHE_MAX_KEY_LENGTH:
            raise InvalidCacheKey(
                f"Cache key will cause errors if used with memcached: {key!r} "
                f"(longer than {MEMCACHE_MAX_KEY_LENGTH} bytes in UTF-8)"
            )

    def close(self, **kwargs: Any) -> None:
        """Keeps the connections open.

        Django calls this at the end of every request.  The client is
        shared, thread-safe and pools its connections; after an I/O error,
        timeout or protocol error it closes the connection involved itself,
        so a pooled connection is never left in an unknown state.
        Disconnecting here would only cost every request a new TCP connect
        (and close connections other threads are using).
        """
