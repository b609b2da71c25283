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
(default 3).  The other keyword arguments of ``cmemcache.Client``
(``connect_timeout``, ``pool_size``, ``distribution``, ``failover``,
``pickleProtocol``, ``strict``, ...) are passed to it, the TLS and
authentication ones among them (``tls``, ``tls_ca_file``,
``tls_certfile``, ``tls_keyfile``, ``tls_keyfile_password``,
``tls_server_hostname``, ``tls_verify``, ``tls_min_version``,
``tls_max_version``, ``username``, ``password``); any other argument is
ignored, as dogpile's own backends ignore the arguments they do not know.
Values are pickled with the newest protocol unless ``pickleProtocol`` says
otherwise.  A server that refuses the handshake or the credentials answers
as an unreachable one: ``get`` returns ``NO_VALUE`` and ``set`` stores
nothing (``strict=True`` raises the ``cmemcache.Error``).

``lease_lock=True`` (with ``distributed_lock``) makes the distributed lock a
meta lease (memcached 1.6): taken in one round trip by the caller
memcached gives the win token to (``mg <_lockkey> N<ttl>``), released by a
delete that names the lease's cas, so a holder whose lease ran out (after
``lock_timeout`` seconds, 30 when that is 0: a lease always ends) never
releases the lease another caller took since, as dogpile's
``MemcachedLock`` does with its plain delete.

Unlike dogpile's other memcached backends, which make one client per thread,
every thread uses the same ``cmemcache.Client``: it is thread-safe and each
call takes its own pooled connection.

Keys memcached would refuse (with spaces, as ``cache_on_arguments`` makes
them, control characters, or too long) are replaced by ``sha1:`` and their
SHA-1, unless the region has its own ``key_mangler``; other keys are sent
unchanged.
"""

from __future__ import annotations

import hashlib
import inspect
import pickle
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from dogpile.cache.backends.memcached import GenericMemcachedBackend, MemcacheArgs

import cmemcache
from cmemcache import _lease

__all__ = ["CMemcacheBackend"]

#: the longest key sent unchanged: memcached's 250 bytes, less the "_lock"
#: prefix of MemcachedLock's keys
_MAX_PLAIN_KEY = 250 - len("_lock")
_INVALID_KEY_BYTE = re.compile(rb"[\x00-\x20\x7f]")

#: the keyword arguments of cmemcache.Client that arguments may set
CLIENT_OPTIONS = frozenset(inspect.signature(cmemcache.Client).parameters) - {"servers"}


class CMemcacheBackend(MemcacheArgs, GenericMemcachedBackend):
    """dogpile.cache backend for memcached through ``cmemcache.Client``."""

    #: the arguments dogpile's memcached backends read; of the others, those
    #: in CLIENT_OPTIONS go to cmemcache.Client
    BACKEND_ARGUMENTS = frozenset({
        "url",
        "distributed_lock",
        "lock_timeout",
        "memcached_expire_time",
        "min_compress_len",
        "dead_retry",
        "socket_timeout",
        "lease_lock",
    })

    def __init__(self, arguments: Mapping[str, Any]) -> None:
        self.dead_retry: float = arguments.get("dead_retry", 30)
        self.socket_timeout: float = arguments.get("socket_timeout", 3)
        options = {k: v for k, v in arguments.items()
                   if k in CLIENT_OPTIONS and k not in self.BACKEND_ARGUMENTS}
        options.setdefault("pickleProtocol", pickle.HIGHEST_PROTOCOL)
        self.client_options: dict[str, Any] = options
        self.lease_lock = bool(arguments.get("lease_lock", False))
        super().__init__(arguments)  # type: ignore[no-untyped-call]
        # Made now (it opens no connection yet), so bad arguments fail in
        # configure() rather than at the first cache call.
        self._client: cmemcache.Client = self._create_client()

    def key_mangler(self, key: Any) -> Any:
        """``key`` unchanged when memcached takes it (also with the lock
        prefix); otherwise ``"sha1:"`` and the hex SHA-1 of its UTF-8 bytes.
        Keys that are neither str nor bytes are left to the client."""
        if isinstance(key, str):
            raw = key.encode("utf-8")
        elif isinstance(key, bytes):
            raw = key
        else:
            return key
        if raw and len(raw) <= _MAX_PLAIN_KEY and not _INVALID_KEY_BYTE.search(raw):
            return key
        return "sha1:" + hashlib.sha1(raw).hexdigest()

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
        """The client every thread shares."""
        return self._client

    def get_mutex(self, key: Any) -> Any:
        """dogpile's distributed lock for key (with ``distributed_lock``):
        a LeaseLock with ``lease_lock``, else dogpile's MemcachedLock."""
        if self.distributed_lock and self.lease_lock:
            return LeaseLock(lambda: self._client, key, self.lock_timeout or 30)
        return super().get_mutex(key)  # type: ignore[no-untyped-call]


class LeaseLock:
    """A distributed lock on a meta lease: ``acquire`` wins it or not in
    one ``mg`` (memcached hands the win token to one caller), ``release``
    deletes it only while it is still this holder's (its cas).  The lease
    ends after ``ttl`` seconds if its holder dies."""

    def __init__(self, client_fn: Any, key: Any, ttl: int) -> None:
        self.client_fn = client_fn
        self.key = "_lock" + key
        self.ttl = int(ttl)
        self._cas: int | None = None
        self._mutex = threading.Lock()

    def _engine(self) -> cmemcache.StringClient:
        engine: cmemcache.StringClient = self.client_fn()._sc
        return engine

    def acquire(self, wait: bool = True) -> bool:
        """True when this caller won the lease; with wait, tries again
        (5 ms, doubling up to 100 ms) until it does."""
        pause = _lease.FIRST_POLL  # get_or_set's waiters poll alike
        while True:
            with self._mutex:
                r = self._engine().meta_get(self.key, value=False, cas=True, vivify=self.ttl)
                if r is not None and r.win:
                    self._cas = r.cas
                    return True
            if not wait:
                return False
            time.sleep(pause)
            pause = min(pause * 2, _lease.MAX_POLL)

    def locked(self) -> bool:
        """True while someone holds the lease."""
        return self._engine().meta_get(self.key, value=False) is not None

    def release(self) -> None:
        """Deletes the lease if it is still this holder's."""
        cas, self._cas = self._cas, None
        if cas is not None:
            self._engine().meta_delete(self.key, cas=cas)

