"""An aiocache cache on ``cmemcache.aio.Client``.

    from cmemcache.aiocache import CMemcacheCache

    cache = CMemcacheCache(endpoint="127.0.0.1", port=11211, namespace="app")
    await cache.set("k", {"a": 1}, ttl=60)
    await cache.get("k")

or by name, in aiocache's configuration (``"cache":
"cmemcache.aiocache.CMemcacheCache"``) and URLs
(``Cache.from_url("cmemcache://127.0.0.1:11211")``).

It behaves as aiocache's own ``MemcachedCache`` (aiomcache underneath):
``JsonSerializer`` by default, keys with blanks replaced by ``_``, ``add``
raising ``ValueError`` when the key exists, ``increment`` of a missing key
storing ``delta``, ``exists`` as an empty ``append``, ``expire(key, 0)``
removing the expiry, ``clear`` refusing a namespace, ``raw`` calling the
client's method, cas through ``_gets`` / ``set(..., _cas_token=...)``
(``OptimisticLock``), and ``TypeError`` for what memcached cannot take: an
invalid key, a value that is not bytes or str after serializing, a ttl
that is not a whole number of seconds or is negative, an ``increment`` of a
value that is not a number.  A server that cannot be reached raises
``cmemcache.ConnectionError`` (``cmemcache.TimeoutError`` when it does not
answer in time), as aiomcache raises its ``OSError``.

Differences from ``MemcachedCache``:

* ``servers=["host:port", ...]`` spreads the keys over several servers;
  ``client_options`` are keyword arguments of ``cmemcache.aio.Client``
  (``socket_timeout``, ``connect_timeout``, ``dead_retry``,
  ``max_inflight``, ...; ``strict`` is True by default here, see above).
  ``pool_size`` is the client's ``max_connections`` per server.
* A ttl given as a whole float (``10.0``, which aiocache's ``ttl=10``
  constructor argument becomes) is taken; aiomcache refuses it.
* ``increment`` returns the value memcached answered, 0 included, and a
  missing key is created with ``add`` (a concurrent creator's value is then
  incremented instead of overwritten).
* Releasing a ``RedLock`` deletes the lock only while it still holds the
  releasing lock's value (aiocache's memcached release deletes whatever is
  there; between the read and the delete another holder may still slip
  in, as memcached has no compare-and-delete in its text protocol).
* One asyncio client per event loop (made on first use there), so one
  cache object serves ``asyncio.run`` after ``asyncio.run``, or loops in
  several threads; ``close()`` closes the running loop's client (the next
  call reconnects) and those of loops that have closed.
"""

from __future__ import annotations

from typing import Any

from aiocache import AIOCACHE_CACHES  # type: ignore[import-untyped, unused-ignore]
from aiocache.base import BaseCache  # type: ignore[import-untyped, unused-ignore]
from aiocache.serializers import JsonSerializer  # type: ignore[import-untyped, unused-ignore]

import cmemcache
import cmemcache.aio

from ._perloop import PerLoop

__all__ = ["CMemcacheCache"]

#: a key the client refuses (python-memcached's key errors)
_KEY_ERRORS = (cmemcache.Client.MemcachedKeyError, cmemcache.InvalidKeyError)


def _server(endpoint: str, port: int) -> str:
    """A cmemcache server string for aiocache's endpoint and port."""
    if endpoint.startswith(("unix:", "/")):
        return endpoint if endpoint.startswith("unix:") else f"unix:{endpoint}"
    if ":" in endpoint:
        return f"inet6:[{endpoint.strip('[]')}]:{port}"
    return f"{endpoint}:{port}"


def _exptime(ttl: Any) -> int:
    """memcached's exptime for an aiocache ttl (None: never expires)."""
    if ttl is None:
        return 0
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl != int(ttl):
        raise TypeError(f"cmemcache error: exptime not int: {ttl}")
    if ttl < 0:
        raise TypeError(f"cmemcache error: exptime negative: {ttl}")
    return int(ttl)


def _data(value: Any) -> bytes:
    """What is stored: the serializer's bytes, or its str in UTF-8."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"cmemcache error: value must be bytes or str, not {type(value).__name__}")


def _text(value: Any, encoding: str | None) -> Any:
    """A stored value as the serializer reads it: decoded with its
    encoding, bytes when it has none."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value if encoding is None else value.decode(encoding)
    if isinstance(value, str) and encoding is None:  # stored as text by another client
        return value.encode("utf-8")
    return value


def _key_error(key: Any, exc: Exception) -> TypeError:
    return TypeError(f"cmemcache error: invalid key: {key!r} ({exc})")


class CMemcacheBackend(BaseCache):  # type: ignore[misc, unused-ignore]
    """The memcached commands of aiocache's ``BaseCache`` on
    ``cmemcache.aio.Client`` (no serializer default, keys as built)."""

    def __init__(
        self,
        endpoint: str = "127.0.0.1",
        port: int = 11211,
        pool_size: int = 2,
        servers: list[str] | None = None,
        client_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.port = int(port)
        self.pool_size = int(pool_size)
        self.servers = list(servers) if servers else [_server(endpoint, self.port)]
        self.client_options: dict[str, Any] = {
            "strict": True, "max_connections": self.pool_size, **(client_options or {})}
        servers_, options = list(self.servers), dict(self.client_options)
        self._clients = PerLoop(lambda: cmemcache.aio.Client(servers_, **options))

    @property
    def client(self) -> cmemcache.aio.Client:
        """The running event loop's ``cmemcache.aio.Client``."""
        return self._clients.client()

    async def _get(self, key: Any, encoding: str | None = "utf-8", _conn: Any = None) -> Any:
        try:
            value = await self.client.get(key)
        except _KEY_ERRORS as e:
            raise _key_error(key, e) from None
        return _text(value, encoding)

    async def _gets(self, key: Any, encoding: str | None = "utf-8", _conn: Any = None) -> Any:
        key = key.encode() if isinstance(key, str) else key
        try:
            _, token = await self.client.gets(key, with_token=True)
        except _KEY_ERRORS as e:
            raise _key_error(key, e) from None
        return token

    async def _multi_get(self, keys: list[Any], encoding: str | None = "utf-8",
                         _conn: Any = None) -> list[Any]:
        try:
            found = await self.client.get_multi(keys)
        except _KEY_ERRORS as e:
            raise _key_error(keys, e) from None
        return [_text(found.get(k), encoding) for k in keys]

    async def _set(self, key: Any, value: Any, ttl: Any = 0, _cas_token: Any = None,
                   _conn: Any = None) -> bool:
        if _cas_token is not None:
            return await self._cas(key, value, _cas_token, ttl=ttl, _conn=_conn)
        data, exptime = _data(value), _exptime(ttl)
        try:
            return bool(await self.client.set(key, data, exptime))
        except _KEY_ERRORS as e:
            raise _key_error(key, e) from None

    async def _cas(self, key: Any, value: Any, token: int, ttl: Any = None,
                   _conn: Any = None) -> bool:
        data, exptime = _data(value), _exptime(ttl)
        try:
            return bool(await self.client.cas(key, data, exptime, token=token))
        except _KEY_ERRORS as e:
            raise _key_error(key, e) from None

    async def _multi_set(self, pairs: Any, ttl: Any = 0, _conn: Any = None) -> bool:
        mapping = {key: _data(value) for key, value in pairs}
        exptime = _exptime(ttl)
        try:
            await self.client.set_multi(mapping, exptime)
        except _KEY_ERRORS as e:
            raise _key_error(list(mapping), e) from None
        return True

    async def _add(self, key: Any, value: Any, ttl: Any = 0, _conn: Any = None) -> bool:
        data, exptime = _data(value), _exptime(ttl)
        try:
            stored = await self.client.add(key, data, exptime)
        except _KEY_ERRORS as e:
            raise _key_error(key, e) from None
        if not stored:
            raise ValueError(f"Key {key} already exists, use .set to update the value")
        return True

    async def _exists(self, key: Any, _conn: Any = None) -> bool:
        try:
            return bool(await self.client.append(key, b""))
        except _KEY_ERRORS as e:
            raise _key_error(key, e) from None

    async def _increment(self, key: Any, delta: int, _conn: Any = None) -> int:
        client = self.client
        for _ in range(2):  # a second round when another client created the key meanwhile
            try:
                if delta >= 0:
                    value = await client.incr(key, delta)
                else:
                    value = await client.decr(key, -delta)
            except _KEY_ERRORS as e:
                raise _key_error(key, e) from None
            except (ValueError, cmemcache.ClientError) as e:
                # memcached: cannot increment or decrement non-numeric value
                raise TypeError(f"cmemcache error: {e}") from e
            if value is not None:
                return int(value)
            if await client.add(key, str(delta).encode(), 0):
                return delta
        raise TypeError(f"cmemcache error: {key!r} was created and removed while incremented")

    async def _expire(self, key: Any, ttl: Any, _conn: Any = None) -> bool:
        exptime = _exptime(ttl)
        try:
            return bool(await self.client.touch(key, exptime))
        except _KEY_ERRORS as e:
            raise _key_error(key, e) from None

    async def _delete(self, key: Any, _conn: Any = None) -> int:
        try:
            return 1 if await self.client.delete(key) else 0
        except _KEY_ERRORS as e:
            raise _key_error(key, e) from None

    async def _clear(self, namespace: Any = None, _conn: Any = None) -> bool:
        if namespace:
            raise ValueError("memcached cannot flush by namespace")
        await self.client.flush_all()
        return True

    async def _raw(self, command: str, *args: Any, encoding: str | None = "utf-8",
                   _conn: Any = None, **kwargs: Any) -> Any:
        value = await getattr(self.client, command)(*args, **kwargs)
        if command == "get":
            return _text(value, encoding)
        if command == "get_multi":
            return {k: _text(v, encoding) for k, v in value.items()}
        return value

    async def _redlock_release(self, key: Any, value: str) -> int:
        if await self._get(key, encoding=None) != _data(value):
            return 0
        return await self._delete(key)

    async def _close(self, *args: Any, _conn: Any = None, **kwargs: Any) -> None:
        await self._clients.close()


class CMemcacheCache(CMemcacheBackend):
    """aiocache's ``MemcachedCache`` on cmemcache: ``JsonSerializer`` by
    default, keys with blanks replaced by ``_`` and encoded to bytes.

    :param serializer: an ``aiocache.serializers.BaseSerializer``
    :param plugins: ``aiocache.plugins.BasePlugin`` instances
    :param namespace: prefix of every key (default None)
    :param timeout: seconds an operation may take (aiocache's, default 5)
    :param ttl: default expiry in seconds
    :param endpoint: the server's host (default 127.0.0.1), or a Unix
        socket path
    :param port: the server's port (default 11211)
    :param pool_size: connections per server (default 2)
    :param servers: several servers (``"host:port"``, cmemcache's server
        strings); endpoint and port are then unused
    :param client_options: keyword arguments of ``cmemcache.aio.Client``
    """

    NAME = "cmemcache"

    def __init__(self, serializer: Any = None, **kwargs: Any) -> None:
        super().__init__(serializer=serializer or JsonSerializer(), **kwargs)

    @classmethod
    def parse_uri_path(cls, path: str) -> dict[str, Any]:
        return {}

    def _build_key(self, key: Any, namespace: Any = None) -> bytes:
        ns_key = super()._build_key(key, namespace=namespace).replace(" ", "_")
        return str.encode(ns_key)

    def __repr__(self) -> str:
        return f"CMemcacheCache ({', '.join(self.servers)})"


# Cache.from_url("cmemcache://host:port") and the "cmemcache" cache name
AIOCACHE_CACHES.setdefault(CMemcacheCache.NAME, CMemcacheCache)
