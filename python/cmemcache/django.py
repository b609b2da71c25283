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

A server that cannot be reached is logged on the ``cmemcache`` logger and
answered as python-memcached answers it: writes are not stored, reads return
``None`` (not the default, so ``has_key()`` is True and ``get_or_set()``
returns None meanwhile).  ``OPTIONS={"strict": True}`` raises the
``cmemcache.Error`` instead.

Differences from Django's backends:

* Every backend instance with the same ``LOCATION`` and ``OPTIONS`` shares
  one ``cmemcache.Client`` (it is thread-safe and keeps a pool of
  connections per server), so threads and async tasks do not each open
  their own connections.
* ``close()``, which Django calls at the end of every request, keeps the
  pooled connections (see ``CMemcacheCache.close``).
* ``add()`` returns a bool (python-memcached's clients return 0 when the
  server cannot be reached).
* Keys are also checked for their UTF-8 length: a key of 250 characters or
  fewer that is longer than 250 bytes raises ``InvalidCacheKey`` instead of
  a client error.
"""

from __future__ import annotations

import pickle
import threading
from typing import Any

from django.core.cache.backends.base import (
    DEFAULT_TIMEOUT,
    InvalidCacheKey,
    memcache_key_warnings,
)
from django.core.cache.backends.memcached import BaseMemcachedCache
from django.utils.functional import cached_property

import cmemcache

__all__ = ["CMemcacheCache"]

#: memcached's longest key, in bytes
MEMCACHE_MAX_KEY_LENGTH = 250

_clients: dict[tuple[tuple[Any, ...], str], cmemcache.Client] = {}
_clients_lock = threading.Lock()


def shared_client(servers: list[Any], options: dict[str, Any]) -> cmemcache.Client:
    """The one ``cmemcache.Client`` for these servers and options, created
    on first use.  Options are compared by ``repr`` (so two equal
    configurations share a client and two different ones never do)."""
    key = (tuple(servers), repr(sorted(options.items())))
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = cmemcache.Client(servers, **options)
    return client


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

    def add(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Stores ``value`` only if ``key`` is absent: True when stored,
        False when the key exists or the server could not be reached."""
        return bool(super().add(key, value, timeout, version))

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
