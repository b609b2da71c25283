"""A dogpile.cache backend on ``cmemcache.Client``.

    from dogpile.cache import make_region

    region = make_region().configure(
        "cmemcache",                       # entry point "dogpile.cache" -> CMemcacheBackend
        expiration_time=3600,
        arguments={
            "url": ["127.0.0.1:11211"],
            "memcached_expire_time": 3900,
            "distributed_lock": True,
        },
    )

Arguments are those of dogpile's ``dogpile.cache.memcached`` backend:
``url`` (a server or a list), ``distributed_lock``, ``lock_timeout``,
``memcached_expire_time`` (passed to ``set`` as ``time``),
``min_compress_len``, ``dead_retry`` (default 30) and ``socket_timeout``
(default 3).  Any other argument is passed to ``cmemcache.Client`` as a
keyword argument (``connect_timeout``, ``pool_size``, ``distribution``,
``failover``, ``pickleProtocol``, ...); values are pickled with the newest
protocol unless ``pickleProtocol`` says otherwise.

Unlike dogpile's other memcached backends, which make one client per thread,
every thread uses the same ``cmemcache.Client``: it is thread-safe and each
call takes its own pooled connection.
"""

from __future__ import annotations

import pickle
import threading
from typing import Any, Mapping

from dogpile.cache.backends.memcached import GenericMemcachedBackend, MemcacheArgs

import cmemcache

__all__ = ["CMemcacheBackend"]


class CMemcacheBackend(MemcacheArgs, GenericMemcachedBackend):
    """dogpile.cache backend for memcached through ``cmemcache.Client``."""

    #: the arguments dogpile's memcached backends read; the others are
    #: keyword arguments of cmemcache.Client
    BACKEND_ARGUMENTS = frozenset({
        "url",
        "distributed_lock",
        "lock_timeout",
        "memcached_expire_time",
        "min_compress_len",
        "dead_retry",
        "socket_timeout",
    })

    def __init__(self, arguments: Mapping[str, Any]) -> None:
        self.dead_retry: float = arguments.get("dead_retry", 30)
        self.socket_timeout: float = arguments.get("socket_timeout", 3)
        options = {k: v for k, v in arguments.items() if k not in self.BACKEND_ARGUMENTS}
        options.setdefault("pickleProtocol", pickle.HIGHEST_PROTOCOL)
        self.client_options: dict[str, Any] = options
        self._client: cmemcache.Client | None = None
        self._client_lock = threading.Lock()
        super().__init__(arguments)

    def _imports(self) -> None:
        """Nothing to import: cmemcache is this module's own package."""

    def _create_client(self) -> cmemcache.Client:
        """A new ``cmemcache.Client`` for ``url`` with this backend's options."""
        return cmemcache.Client(
            self.url,
            dead_retry=self.dead_retry,
            socket_timeout=self.socket_timeout,
            **self.client_options,
        )

    @property
    def client(self) -> cmemcache.Client:
        """The client every thread shares, created on first use."""
        client = self._client
        if client is None:
            with self._client_lock:
                client = self._client
                if client is None:
                    client = self._client = self._create_client()
        return client

