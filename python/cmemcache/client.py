"""cmemcache.Client: python-memcached's API and behaviour on the C engine.

``import cmemcache as memcache`` and the code written for python-memcached
keeps working: same constructor, same methods and return values, same value
encoding (flags), same key -> server mapping.  What differs is listed in the
README's compatibility table.
"""

from __future__ import annotations

import abc
import binascii
import errno
import logging
import os
import pickle
import re
import sys
import threading
import time as _time
import zlib
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterable, Mapping

if TYPE_CHECKING:
    import ssl

from . import _cmemcache, _discovery, _lease
from ._cmemcache import Error, InvalidKeyError, StringClient, ValueTooLargeError
from ._serialize import (
    FLAG_COMPRESSED,
    FLAG_INTEGER,
    FLAG_LONG,
    FLAG_PICKLE,
    FLAG_TEXT,
    KNOWN_FLAGS,
    Serializer,
    Undecodable,
)

log = logging.getLogger("cmemcache")

SERVER_MAX_KEY_LENGTH = 250
SERVER_MAX_VALUE_LENGTH = 1024 * 1024
_DEAD_RETRY = 30
_SOCKET_TIMEOUT = 3

valid_key_chars_re = re.compile(b"[\x21-\x7e\x80-\xff]+")

_KEY_TYPES = (bytes, str)
_KEY_TYPE_SET = frozenset(_KEY_TYPES)
_CONNECT_ERRNOS = {errno.ECONNREFUSED, errno.ENOENT, errno.EHOSTUNREACH, errno.ENETUNREACH,
                   errno.EADDRNOTAVAIL, errno.ECONNABORTED}
_pickle_dumps = pickle.dumps
_OMIT = object()  # a value the decoder could not read: left out of get_multi
_NO_KW: dict[str, Any] = {}
_WITH_FLAGS = {"with_flags": True}
# a command's plan: yields (engine method, args, kwargs), returns its result
_Plan = Generator[tuple[Any, tuple[Any, ...], dict[str, Any]], Any, Any]
_HARD_MAX_VALUE = 1 << 30
#: memcached checks the length of a base64-encoded key (250): 186 bytes
_MAX_BINARY_KEY = 186


def cmemcache_hash(key: bytes) -> int:
    """python-memcached's server hash of a key: 15 bits of its CRC-32 (as
    python-memcached 1.60 and later; up to 1.59 a 0 was read as 1, which
    ``key_hash="python-memcached-1.59"`` reproduces)."""
    return ((zlib.crc32(key) & 0xFFFFFFFF) >> 16) & 0x7FFF


serverHashFunction: Callable[[bytes], int] = cmemcache_hash


def useOldServerHashFunction() -> None:
    """Map keys with plain CRC-32, as python-memcached before 1.45 did.
    Affects clients created afterwards."""
    global serverHashFunction
    serverHashFunction = zlib.crc32
    package = sys.modules.get(__package__ or "cmemcache")
    if package is not None:
        package.serverHashFunction = zlib.crc32  # type: ignore[attr-defined]


def _server_hash_function() -> Callable[[bytes], int]:
    """The hash function set by the application, on the package as in
    python-memcached (``memcache.serverHashFunction = f``)."""
    package = sys.modules.get(__package__ or "cmemcache")
    fn = getattr(package, "serverHashFunction", serverHashFunction)
    if fn is cmemcache_hash and serverHashFunction is not cmemcache_hash:
        fn = serverHashFunction
    return fn


class _Host:
    """What python-memcached's ``client.servers`` lists: one per server,
    its state read from the engine (``deaduntil``) and changed there
    (``mark_dead``)."""

    __slots__ = ("spec", "weight", "family", "address", "ip", "port", "_client", "_sc", "_index")

    def __init__(self, spec: str | tuple[str, int], client: _Policy, index: int) -> None:
        import socket

        if isinstance(spec, tuple):
            spec, self.weight = spec
        else:
            self.weight = 1
        self.spec = spec
        self._client = client
        self._sc = client._sc  # the engine of the server list this host is in
        self._index = index
        self.ip = None
        self.port = None
        m = re.match(r"^unix:(?P<path>.*)$", spec)
        if m:
            self.family = socket.AF_UNIX
            self.address = m["path"]
            return
        m = re.match(r"^(?:inet6:)?\[(?P<host>[^\[\]]+)\](:(?P<port>[0-9]+))?$", spec)
        if m:
            self.family = socket.AF_INET6
        else:
            m = re.match(r"^(?:inet:)?(?P<host>[^:]+)(:(?P<port>[0-9]+))?$", spec)
            self.family = socket.AF_INET
        if m is None:
            raise ValueError(f'Unable to parse connection string: "{spec}"')
        self.ip = m["host"]
        self.port = int(m["port"] or 11211)
        self.address = (self.ip, self.port)

    @property
    def deaduntil(self) -> float:
        """When the engine's hold-down of this server ends, as a
        ``time.time()`` timestamp; 0 while the server is live (as in
        python-memcached).  The engine probes a failed server again after
        1 s, then at doubling intervals up to ``dead_retry``."""
        left = self._sc.hold_downs()[self._index]
        return _time.time() + left if left > 0 else 0

    def mark_dead(self, reason: object) -> None:
        """Hold this server down for ``dead_retry`` seconds, as after a
        failure (python-memcached's ``_Host.mark_dead``; with ``debug`` it
        prints the same line)."""
        self._client.debuglog(f"MemCache: {self._name()}: {reason}.  Marking dead.")
        self._sc.mark_dead(self._index)

    def label(self) -> str:
        """The name get_stats() gives this server."""
        import socket

        if self.family == socket.AF_INET:
            return f"{self.ip}:{self.port} ({self.weight})"
        if self.family == socket.AF_INET6:
            return f"[{self.ip}]:{self.port} ({self.weight})"
        return f"unix:{self.address} ({self.weight})"

    def _name(self) -> str:
        import socket

        if self.family == socket.AF_INET:
            return f"inet:{self.ip}:{self.port}"
        if self.family == socket.AF_INET6:
            return f"inet6:[{self.ip}]:{self.port}"
        return f"unix:{self.address}"

    def __str__(self) -> str:
        until = self.deaduntil
        return f"{self._name()} (dead until {int(until)})" if until else self._name()


def _engine_spec(spec: Any) -> Any:
    """A python-memcached server string as the C engine spells it."""
    weight = None
    if isinstance(spec, tuple):
        spec, weight = spec
    if isinstance(spec, str) and spec.startswith("inet:"):
        spec = spec[5:]
    return spec if weight is None else (spec, weight)


class _Policy:
    """Everything cmemcache.Client and cmemcache.aio.Client share:
    python-memcached's constructor, keys, value encoding, return values and
    failure handling, and every command as a plan (see _plan_get).  What
    runs the plans, and on which engine, is each client's own."""

    _engine: Any  # the engine class: StringClient, or its asyncio namesake

    _FLAG_PICKLE = FLAG_PICKLE
    _FLAG_INTEGER = FLAG_INTEGER
    _FLAG_LONG = FLAG_LONG
    _FLAG_COMPRESSED = FLAG_COMPRESSED
    _FLAG_TEXT = FLAG_TEXT

    _SERVER_RETRIES = 10

    class MemcachedKeyError(Exception):
        pass

    class MemcachedKeyLengthError(MemcachedKeyError):
        pass

    class MemcachedKeyCharacterError(MemcachedKeyError):
        pass

    class MemcachedKeyNoneError(MemcachedKeyError):
        pass

    class MemcachedKeyTypeError(MemcachedKeyError):
        pass

    class MemcachedStringEncodingError(Exception):
        pass

    def __init__(
        self,
        servers: Iterable[str | tuple[str, int]],
        debug: int = 0,
        pickleProtocol: int = 0,
        pickler: Any = pickle.Pickler,
        unpickler: Any = pickle.Unpickler,
        compressor: Callable[[bytes], bytes] = zlib.compress,
        decompressor: Callable[[bytes], bytes] = zlib.decompress,
        pload: Callable[[Any], Any] | None = None,
        pid: Callable[[Any], Any] | None = None,
        server_max_key_length: int | None = None,
        server_max_value_length: int | None = None,
        dead_retry: float = _DEAD_RETRY,
        socket_timeout: float = _SOCKET_TIMEOUT,
        cache_cas: bool = False,
        flush_on_reconnect: int = 0,
        check_keys: bool = True,
        key_encoder: Callable[[Any], Any] | None = None,
        *,
        strict: bool = False,
        connect_timeout: float | None = None,
        pool_size: int = 8,
        distribution: str = "python-memcached",
        failover: str | None = None,
        key_hash: str | None = None,
        proxy: str | None = None,
        timeout_limit: int = 3,
        protocol: str = "text",
        binary_keys: bool = False,
        username: str | bytes | None = None,
        password: str | bytes | None = None,
        tls: bool = False,
        tls_ca_file: str | os.PathLike[str] | None = None,
        tls_certfile: str | os.PathLike[str] | None = None,
        tls_keyfile: str | os.PathLike[str] | None = None,
        tls_keyfile_password: str | bytes | None = None,
        tls_server_hostname: str | None = None,
        tls_verify: bool | None = None,
        tls_min_version: ssl.TLSVersion | str | None = None,
        tls_max_version: ssl.TLSVersion | str | None = None,
        discovery: str | None = None,
        discovery_interval: float = 60.0,
    ) -> None:
        self.debug = debug
        self.dead_retry = dead_retry
        self.socket_timeout = socket_timeout
        self.connect_timeout = socket_timeout if connect_timeout is None else connect_timeout
        self.flush_on_reconnect = flush_on_reconnect
        self.strict = strict
        self.pool_size = pool_size
        self.distribution = distribution
        self.proxy = proxy
        self.timeout_limit = timeout_limit
        # "meta": the engine speaks every key command as mg/ms/md/ma
        self.protocol = protocol
        # with "meta": keys with spaces or control characters (base64)
        self.binary_keys = binary_keys
        # memcached -Y: checked by the engine (set_servers), kept for the
        # engines set_servers makes later; never shown
        self._username = username
        self._password = password
        # TLS (memcached -Z): checked, and the context built, by the engine
        # (set_servers); kept for the engines set_servers makes later
        self._tls: dict[str, Any] = {
            "tls": tls,
            "tls_ca_file": tls_ca_file,
            "tls_certfile": tls_certfile,
            "tls_keyfile": tls_keyfile,
            "tls_keyfile_password": tls_keyfile_password,
            "tls_server_hostname": tls_server_hostname,
            "tls_verify": tls_verify,
            "tls_min_version": tls_min_version,
            "tls_max_version": tls_max_version,
        }
        if failover is None:
            failover = "rehash" if distribution == "python-memcached" else "next"
        self.failover = failover
        # python-memcached's module-level serverHashFunction: the two known
        # ones run in the engine, any other is called here per key.
        self._custom_hash: Callable[[bytes], int] | None = None
        if key_hash is None and distribution == "python-memcached":
            fn = _server_hash_function()
            if fn is cmemcache_hash:
                key_hash = "python-memcached"
            elif fn in (zlib.crc32, binascii.crc32):
                key_hash = "crc32"
            else:
                key_hash = "python-memcached"
                self._custom_hash = fn
        self.key_hash = key_hash
        self._extra_stats: Counter[str] = Counter()
        self.error_counts: Counter[str] = Counter()
        self.cache_cas = cache_cas
        self._local = threading.local()
        self.do_check_key = check_keys
        self.pickleProtocol = pickleProtocol
        self.pickler = pickler
        self.unpickler = unpickler
        self.compressor = compressor
        self.decompressor = decompressor
        self.persistent_load = pload
        self.persistent_id = pid
        self.server_max_key_length = (
            SERVER_MAX_KEY_LENGTH if server_max_key_length is None else server_max_key_length
        )
        self.server_max_value_length = (
            SERVER_MAX_VALUE_LENGTH if server_max_value_length is None else server_max_value_length
        )
        self.key_encoder = key_encoder
        self._serializer = Serializer(
            pickleProtocol, pickler, unpickler, compressor, decompressor, pid, pload
        )
        self.picklerIsKeyword = self._serializer._pickler_keyword
        if isinstance(servers, (str, tuple)):
            servers = [servers]
        servers = list(servers)
        _discovery.check(discovery, servers, discovery_interval)
        # ElastiCache: the configuration endpoint (itself a node) is the one
        # server until discover() reads the node list from it
        self.discovery = discovery
        self.discovery_interval = discovery_interval
        self.discovered_version: int | None = None
        self._config_endpoint = servers[0] if discovery else None
        self._config_sc: Any = None
        self._discovery_lock = threading.Lock()
        self.set_servers(servers)
        if discovery:
            self._start_discovery()

    # -- configuration ------------------------------------------------------

    def set_servers(self, servers: Iterable[str | tuple[str, int]]) -> None:
        """Use this list of servers from now on (closes the old connections)."""
        self._set_servers(servers, self._drop_engine)

    def _set_servers(self, servers: Iterable[str | tuple[str, int]],
                     retire: Callable[[Any], None]) -> None:
        if isinstance(servers, (str, tuple)):
            servers = [servers]
        servers = list(servers)
        old = getattr(self, "_sc", None)
        if old is not None:
            retire(old)
        self._sc = self._new_engine([_engine_spec(s) for s in servers], **self._options())
        self.servers = [_Host(s, self, i) for i, s in enumerate(servers)]
        self.buckets = [h for h in self.servers for _ in range(h.weight)]
        self._bind()

    def _options(self) -> dict[str, Any]:
        """The engine's keyword arguments, as configured."""
        limit = self.server_max_value_length
        return dict(
            timeout=self.socket_timeout,
            connect_timeout=self.connect_timeout,
            dead_retry=self.dead_retry,
            max_value_size=limit if 0 < limit <= _HARD_MAX_VALUE else _HARD_MAX_VALUE,
            pool_size=self.pool_size,
            distribution=self.distribution,
            failover=self.failover,
            key_hash=self.key_hash,
            flush_on_reconnect=bool(self.flush_on_reconnect),
            proxy=self.proxy,
            timeout_limit=self.timeout_limit,
            protocol=self.protocol,
            binary_keys=self.binary_keys,
            username=self._username,
            password=self._password,
            **self._tls,
        )

    # -- discovery (ElastiCache) --------------------------------------------

    @abc.abstractmethod
    def _start_discovery(self) -> None:
        """Called at the end of the constructor with discovery= set: each
        client defines it (the blocking one reads the node list and starts
        its polling thread, the asyncio one starts a task when a loop runs)."""

    def _config_engine(self) -> Any:
        """The engine that asks the configuration endpoint, made once."""
        if self.discovery is None:
            raise ValueError("this client was made without discovery=")
        if self._config_sc is None:
            self._config_sc = self._new_engine([_engine_spec(self._config_endpoint)],
                                               **self._options())
        return self._config_sc

    def _use_cluster(self, reply: dict[str, bytes | None]) -> list[str]:
        """Takes a config_get("cluster") reply: a changed node list becomes
        the server list; what is in flight on the old one finishes there."""
        version, nodes = _discovery.cluster_of(reply)
        with self._discovery_lock:
            self.discovered_version = version
            if nodes != [h.spec for h in self.servers]:
                log.info("cmemcache: cluster configuration %d: %s", version, " ".join(nodes))
                self._set_servers(nodes, self._retire_engine)
        return nodes

    def _retire_engine(self, old: Any) -> None:
        """Lets go of an engine discovery replaced: calls in flight on it
        finish there."""
        self._drop_engine(old)

    def _new_engine(self, servers: list[Any], **options: Any) -> Any:
        return self._engine(servers, **options)

    @abc.abstractmethod
    def _drop_engine(self, old: Any) -> None:
        """Closes the connections of an engine set_servers() replaces, at
        once: each client defines it (the blocking engine disconnects its
        sockets, the asyncio engine fails what is in flight and closes its
        transports)."""
        raise NotImplementedError(f"{type(self).__name__} defines no _drop_engine")

    def _bind(self) -> None:
        self._decode_cb = self._decoder
        # Plain pickles are read by pickle.loads straight from the engine and
        # written by pickle.dumps without the serializer's layers, unless a
        # custom unpickler/pickler or persistent hooks are configured.
        ser = self._serializer
        self._unpickle = pickle.loads if ser._fast_loads else None
        self._fast_dumps = ser._fast_dumps
        # The engine always checks keys; the Python check runs first only when
        # it can differ (a shorter length limit, or key_encoder output).
        self._python_check = self.do_check_key and (
            self.server_max_key_length not in (0, SERVER_MAX_KEY_LENGTH)
        )
        self._prepare = (
            self.key_encoder is not None or self._python_check or self._custom_hash is not None
        )

    @property
    def pickleProtocol(self) -> int:
        """The pickle protocol values are stored with."""
        return self._pickle_protocol

    @pickleProtocol.setter
    def pickleProtocol(self, protocol: int) -> None:
        self._pickle_protocol = protocol
        if hasattr(self, "_sc"):
            self._serializer.protocol = protocol
            self._bind()

    @property
    def server_max_value_length(self) -> int:
        """The largest value stored (0: no limit of the client's own)."""
        return self._max_value_length

    @server_max_value_length.setter
    def server_max_value_length(self, limit: int) -> None:
        self._max_value_length = limit
        if hasattr(self, "_sc"):
            self._bind()

    @property
    def cas_ids(self) -> dict[bytes, int]:
        """The cas ids remembered by gets() with cache_cas, for this thread."""
        ids = getattr(self._local, "cas_ids", None)
        if ids is None:
            ids = self._local.cas_ids = {}
        return ids

    def reset_cas(self) -> None:
        """Forget the cas ids remembered by gets() (cache_cas=True)."""
        self._local.cas_ids = {}

    def forget_dead_hosts(self) -> None:
        """Treat every server as alive again."""
        self._sc.forget_dead()

    def debuglog(self, str: str) -> None:
        if self.debug:
            sys.stderr.write(f"MemCached: {str}\n")

    def _statlog(self, func: str) -> None:
        self._extra_stats[func] += 1

    @property
    def stats(self) -> dict[str, int]:
        """Calls made per command, as python-memcached counts them."""
        counts: Counter[str] = Counter(self._sc.call_counts())
        counts.update(self._extra_stats)
        return dict(counts)

    @stats.setter
    def stats(self, value: dict[str, int]) -> None:
        self._sc.reset_call_counts()
        self._extra_stats = Counter(value)

    # -- errors -------------------------------------------------------------

    def _failed(self, op: str, exc: Error) -> None:
        """A call met a network or server failure: raise it (strict) or log
        and count it, for the caller to return python-memcached's value."""
        if self.strict:
            raise exc
        name = type(exc).__name__
        self.error_counts[name] += 1
        # A server held down fails every call until dead_retry passes: the
        # first failure is a warning, the repeats are counted quietly.
        level = logging.DEBUG if "marked dead" in str(exc) else logging.WARNING
        log.log(level, "%s failed: %s: %s", op, name, exc)
        if self.debug:
            self._debug_failure(exc)

    def _debug_failure(self, exc: Error) -> None:
        """With ``debug``: python-memcached's line for a server that failed,
        ``MemCached: MemCache: inet:host:port: <reason>.  Marking dead.``
        A server already held down is skipped silently, as python-memcached
        skips a dead one; a failure not tied to a server prints nothing."""
        if "marked dead" in str(exc):
            return
        found = self._failed_host(exc)
        if found is None:
            return
        host, text = found
        if isinstance(exc, _cmemcache.AuthenticationError):
            # refused credentials hold nothing down: no "Marking dead"
            self.debuglog(f"MemCache: {host._name()}: {text}.")
            return
        if isinstance(exc, _cmemcache.TimeoutError):
            reason = "timed out"
        elif isinstance(exc, _cmemcache.ConnectionError) and exc.errno is not None:
            # python-memcached shows the OSError: "[Errno 111] Connection refused",
            # after "connect: " when connecting failed
            reason = f"[Errno {exc.errno}] {text}"
            if exc.errno in _CONNECT_ERRNOS:
                reason = "connect: " + reason
        elif isinstance(exc, _cmemcache.ConnectionError) and text == "connection closed by the server":
            reason = "connection closed in readline()"
        elif isinstance(exc, _cmemcache.ConnectionError):
            reason = "connect: " + text  # name resolution
        else:
            reason = text
        self.debuglog(f"MemCache: {host._name()}: {reason}.  Marking dead.")

    def _failed_host(self, exc: Error) -> tuple[_Host, str] | None:
        """The server an engine error names (its messages start with the
        server's name) and the rest of the message."""
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        best: tuple[_Host, str] | None = None
        names = self._sc.servers
        for index, name in enumerate(names):
            if text.startswith(name + ": ") and (best is None or len(name) > len(names[best[0]._index])):
                best = (self.servers[index], text[len(name) + 2:])
        return best

    def _debug_reply(self, expected: str, line: str) -> None:
        """With ``debug``: python-memcached's ``_Host.expect`` line for a
        reply other than the one expected."""
        self.debuglog("while expecting %r, got unexpected response %r" % (expected, line))

    @staticmethod
    def _unreachable(exc: Error) -> bool:
        """True when a call failed before anything was sent: no server could
        be connected, or it refused the credentials (python-memcached skips
        such keys)."""
        if isinstance(exc, _cmemcache.AuthenticationError):
            return True
        return isinstance(exc, _cmemcache.ConnectionError) and (
            exc.errno in _CONNECT_ERRNOS or exc.errno is None
        )

    def _refused(self, op: str, exc: Error) -> bool:
        """The server answered SERVER_ERROR (object too large, out of
        memory): python-memcached reads any such line as "not stored"."""
        self.error_counts[type(exc).__name__] += 1
        log.info("%s not stored: %s", op, exc)
        if self.debug:
            self._debug_reply("STORED", f"SERVER_ERROR {exc}")
        return False

    def _undecodable(self, key: Any, exc: Undecodable, flags: int) -> None:
        self.error_counts["Undecodable"] += 1
        log.warning("value of %r read as a miss: %s", key, exc)
        if not self.debug:
            return
        # python-memcached prints for these two (and raises for the others:
        # corrupt compressed data, bad UTF-8 or digits)
        if flags & ~KNOWN_FLAGS:
            self.debuglog("unknown flags on get: %x\n" % flags)
        elif not flags & (FLAG_TEXT | FLAG_INTEGER | FLAG_LONG) and exc.__cause__ is not None \
                and not str(exc).startswith("cannot decompress"):
            self.debuglog("Pickle error: %s\n" % exc.__cause__)

    # -- keys ---------------------------------------------------------------

    def _encode_key(self, key: Any) -> Any:
        if self.key_encoder is not None:
            key = self.key_encoder(key)
        if isinstance(key, str):
            return key.encode("utf-8")
        if isinstance(key, tuple) and len(key) == 2 and isinstance(key[1], str):
            return (key[0], key[1].encode("utf-8"))
        return key

    def check_key(self, key: Any, key_extra_len: int = 0) -> None:
        """Raises a MemcachedKeyError subclass for a key memcached would not
        take: None, not bytes, too long (prefix counted), or holding a space,
        control character or DEL (a trailing newline included; with
        binary_keys=True such a key of at most 186 bytes is taken)."""
        if isinstance(key, tuple):
            key = key[1]
        if key is None:
            raise _Policy.MemcachedKeyNoneError("Key is None")
        if key == "":
            # python-memcached: only a str can be "empty" here; an empty
            # bytes key fails the character check below.
            if key_extra_len == 0:
                raise _Policy.MemcachedKeyNoneError("Key is empty")
            return
        if not isinstance(key, bytes):
            raise _Policy.MemcachedKeyTypeError("Key must be a binary string")
        limit = self.server_max_key_length
        if (limit != 0 and len(key) + key_extra_len > limit) or (
            len(key) + key_extra_len > SERVER_MAX_KEY_LENGTH
        ):
            raise _Policy.MemcachedKeyLengthError(f"Key length is > {limit or SERVER_MAX_KEY_LENGTH}")
        if not valid_key_chars_re.fullmatch(key):
            if self.binary_keys:
                if len(key) + key_extra_len <= _MAX_BINARY_KEY:
                    return
                raise _Policy.MemcachedKeyLengthError(
                    f"Key length is > {_MAX_BINARY_KEY} (a key with a space or control"
                    " character is sent base64-encoded)")
            raise _Policy.MemcachedKeyCharacterError(
                f"Control/space characters not allowed (key={key!r})"
            )

    def _prepare_key(self, key: Any) -> Any:
        """The key as the engine takes it (bytes, str or (hash, key))."""
        if self.key_encoder is not None:
            key = self._encode_key(key)
            if self.do_check_key:
                self.check_key(key)
        elif self._python_check:
            self.check_key(self._encode_key(key))
        return self._hashed(key)

    def _hashed(self, key: Any) -> Any:
        """With an application's serverHashFunction, the key as the
        (hash, key) pair that carries the server choice to the engine."""
        if self._custom_hash is None or isinstance(key, tuple):
            return key
        raw = key.encode("utf-8") if isinstance(key, str) else key
        if not isinstance(raw, bytes):
            return key  # the engine raises the key type error
        return (self._custom_hash(raw), key)

    def _key_error(self, key: Any, exc: Exception) -> Exception:
        """The python-memcached exception for a key the engine refused."""
        try:
            self.check_key(self._encode_key(key))
        except _Policy.MemcachedKeyError as e:
            return e
        if isinstance(exc, TypeError):
            return _Policy.MemcachedKeyTypeError(str(exc))
        return _Policy.MemcachedKeyCharacterError(str(exc))

    def _keyed_failure(self, op: str, key: Any, exc: Exception, value: Any) -> Any:
        """A one-key call failed: a key the engine refused raises
        python-memcached's key error; anything else is a failure, raised
        with strict=True, otherwise logged, counted and answered by value."""
        if isinstance(exc, (InvalidKeyError, TypeError)):
            raise self._key_error(key, exc) from None
        assert isinstance(exc, Error)
        self._failed(op, exc)
        return value

    def _store_failure(self, op: str, key: Any, exc: Exception) -> Any:
        """A store failed: too large is 0 and SERVER_ERROR is "not stored"
        (False), as python-memcached answers them; the rest as above."""
        if isinstance(exc, ValueTooLargeError):
            return 0
        if isinstance(exc, _cmemcache.ServerError) and not self.strict:
            return self._refused(op, exc)
        return self._keyed_failure(op, key, exc, 0)

    def _multi_failure(self, op: str, keys: list[Any], prefix: Any, exc: Error) -> None:
        """A multi-key call failed: a refused key raises its key error, the
        rest is a failure (raised with strict=True, else logged)."""
        if isinstance(exc, InvalidKeyError):
            raise self._first_key_error(keys, prefix, exc) from None
        self._failed(op, exc)

    # -- retrieval ----------------------------------------------------------

    def _decode(self, key: Any, data: bytes, flags: int, default: Any) -> Any:
        try:
            return self._serializer.loads(data, flags)
        except Undecodable as e:
            self._undecodable(key, e, flags)
            return default

    def _decoder(self, key: Any, data: bytes, flags: int, default: Any) -> Any:
        """What the engine calls for values it does not decode itself
        (pickles, compressed values, unknown flags)."""
        try:
            return self._serializer.loads(data, flags)
        except Undecodable as e:
            self._undecodable(key, e, flags)
            return default

    # -- the commands, written once -------------------------------------------
    #
    # Each command is a plan: a generator that yields the engine call it
    # needs, as (method name, args, kwargs), and gets back its result (or
    # has its exception thrown in).  The blocking Client runs plans on
    # cmemcache.StringClient, cmemcache.aio.Client on its asyncio engine:
    # the policy (keys, encoding, python-memcached's return values, what a
    # failure becomes) is the same code for both.

    def _plan_get(self, key: Any, default: Any = None) -> _Plan:
        if self._prepare:
            key = self._prepare_key(key)
        try:
            return (yield "get_decoded", (key, default, self._decode_cb, self._unpickle), _NO_KW)
        except (Error, TypeError) as e:
            return self._keyed_failure("get", key, e, None)

    def _plan_gets(self, key: Any, default: Any = None, with_token: bool = False) -> _Plan:
        key = self._prepare_key(key)
        try:
            r = yield "gets", (key,), _WITH_FLAGS
        except (Error, TypeError) as e:
            return self._keyed_failure("gets", key, e, (None, None) if with_token else None)
        if r is None:
            return (default, None) if with_token else default
        data, flags, cas_id = r
        if self.cache_cas:
            self.cas_ids[self._wire_key(key)] = cas_id
        value = self._decode(key, data, flags, default)
        return (value, cas_id) if with_token else value

    def _wire_key(self, key: Any) -> bytes:
        """The bytes sent for a prepared key (cache_cas remembers by them)."""
        key = self._encode_key_plain(key)
        raw = key[1] if isinstance(key, tuple) else key
        return raw if isinstance(raw, bytes) else bytes(raw)

    def _multi_keys(self, keys: Iterable[Any], prefix: Any = b"") -> tuple[list[Any], dict[Any, Any] | None]:
        """The keys for the engine, and a map back to the caller's keys when
        any had to change (key_encoder, or ints and other str()-able keys)."""
        keys = list(keys)
        extra = len(self._encode_key_plain(prefix)) if prefix else 0
        if (self.key_encoder is None and self._custom_hash is None and all(keys)
                and _KEY_TYPE_SET.issuperset(map(type, keys))):
            if self._python_check:
                for k in keys:
                    self.check_key(self._encode_key(k), key_extra_len=extra)
            return keys, None
        engine: list[Any] = []
        back: dict[Any, Any] = {}
        for orig in keys:
            k = self.key_encoder(orig) if self.key_encoder is not None else orig
            if orig is None:
                self.check_key(None)
            if isinstance(k, tuple):
                h, inner = k
                if not isinstance(inner, _KEY_TYPES):
                    inner = str(inner)
                k = (h, inner)
            elif not isinstance(k, _KEY_TYPES):
                k = str(k)
            if self.do_check_key:
                self.check_key(self._encode_key_plain(k), key_extra_len=extra)
            shown = k if self.key_encoder is not None else orig
            if self._custom_hash is not None and not isinstance(k, tuple):
                raw = (self._encode_key_plain(prefix) if prefix else b"") + self._encode_key_plain(k)
                k = (self._custom_hash(raw), k)
            engine.append(k)
            back[k] = shown
        return engine, back

    @staticmethod
    def _encode_key_plain(key: Any) -> Any:
        if isinstance(key, str):
            return key.encode("utf-8")
        if isinstance(key, tuple) and isinstance(key[1], str):
            return (key[0], key[1].encode("utf-8"))
        return key

    def _prefix(self, key_prefix: Any) -> Any:
        if key_prefix and self.do_check_key:
            self.check_key(self._encode_key_plain(key_prefix))
        return key_prefix or b""

    def _plan_get_multi(self, keys: Iterable[Any], key_prefix: Any = "") -> _Plan:
        prefix = self._prefix(key_prefix)
        engine, back = self._multi_keys(keys, prefix)
        try:
            found = yield "get_multi_decoded", (engine, prefix, self._decode_cb, _OMIT,
                                                self._unpickle), _NO_KW
        except Error as e:
            self._multi_failure("get_multi", engine, prefix, e)
            found = getattr(e, "partial", None) or {}
        if back is None:
            return found
        return {back[k]: v for k, v in found.items()}

    def _first_key_error(self, keys: list[Any], prefix: Any, exc: Exception) -> Exception:
        extra = len(self._encode_key_plain(prefix)) if prefix else 0
        for k in keys:
            try:
                self.check_key(self._encode_key_plain(k), key_extra_len=extra)
            except _Policy.MemcachedKeyError as e:
                return e
        return _Policy.MemcachedKeyCharacterError(str(exc))

    # -- storage ------------------------------------------------------------

    @staticmethod
    def _exptime(time: Any) -> int:
        if type(time) is int:
            return time
        if isinstance(time, timedelta):
            return int(time.total_seconds())
        return int(time)

    def _plan_store(
        self, op: str, key: Any, val: Any, time: Any, min_compress_len: int, noreply: bool,
        token: int | None = None,
    ) -> _Plan:
        key = self._prepare_key(key)
        data, flags = self._serializer.dumps(val, min_compress_len)
        limit = self.server_max_value_length
        if limit and len(data) > limit:
            return 0
        try:
            ok: bool | None
            if op == "cas":
                assert token is not None
                ok = yield "cas", (key, data, token, self._exptime(time), flags, noreply), _NO_KW
            else:
                ok = yield op, (key, data, self._exptime(time), flags, noreply), _NO_KW
        except (Error, TypeError) as e:
            return self._store_failure(op, key, e)
        if ok is True:
            return True
        if self.debug:
            # cas: False is EXISTS, None is NOT_FOUND
            self._debug_reply("STORED", "NOT_STORED" if op != "cas" else
                              "EXISTS" if ok is False else "NOT_FOUND")
        return False

    def _plan_set(self, key: Any, val: Any, time: Any = 0, min_compress_len: int = 0,
                  noreply: bool = False) -> _Plan:
        if self._prepare:
            key = self._prepare_key(key)
        t = type(val)
        if t is bytes:
            data, flags = val, 0
        elif min_compress_len:
            data, flags = self._serializer.dumps(val, min_compress_len)
        elif t is str:
            data, flags = val.encode("utf-8"), FLAG_TEXT
        elif t is int:
            data, flags = b"%d" % val, FLAG_INTEGER
        elif self._fast_dumps:
            data, flags = _pickle_dumps(val, self._pickle_protocol), FLAG_PICKLE
        else:
            data, flags = self._serializer.dumps(val, 0)
        limit = self.server_max_value_length
        if limit and len(data) > limit:
            return 0
        try:
            ok = yield "set", (key, data, time if type(time) is int else self._exptime(time),
                               flags, noreply), _NO_KW
        except (Error, TypeError) as e:
            return self._store_failure("set", key, e)
        if ok is True:
            return True
        return self._not_stored("set")

    def _not_stored(self, op: str) -> bool:
        """A store the server answered NOT_STORED: False (python-memcached
        says so on stderr with debug)."""
        if self.debug:
            self._debug_reply("STORED", "NOT_STORED")
        return False

    def _plan_cas(self, key: Any, val: Any, time: Any = 0, min_compress_len: int = 0,
                  noreply: bool = False, token: int | None = None) -> _Plan:
        if token is None:
            if self.cache_cas:
                token = self.cas_ids.get(self._wire_key(self._prepare_key(key)))
            if token is None:
                self._statlog("cas")  # python-memcached counts both
                return (yield from self._plan_set(key, val, time, min_compress_len, noreply))
        return (yield from self._plan_store("cas", key, val, time, min_compress_len, noreply,
                                            token))

    def _plan_set_multi(self, mapping: Mapping[Any, Any], time: Any = 0, key_prefix: Any = "",
                        min_compress_len: int = 0, noreply: bool = False) -> _Plan:
        prefix = self._prefix(key_prefix)
        engine, back = self._multi_keys(mapping.keys(), prefix)
        values = list(mapping.values())
        dumps = self._serializer.dumps
        limit = self.server_max_value_length
        batch: dict[Any, Any] = {}
        notstored: list[Any] = []
        for k, v in zip(engine, values):
            data, flags = dumps(v, min_compress_len)
            if limit and len(data) > limit:
                notstored.append(k)
            else:
                batch[k] = (data, flags)
        try:
            failed = yield "set_multi", (batch, self._exptime(time), 0, noreply, prefix), _NO_KW
        except Error as e:
            self._multi_failure("set_multi", engine, prefix, e)
            partial = getattr(e, "partial", None)
            failed = list(batch) if partial is None else list(partial)
        notstored.extend(failed)
        if back is None:
            return notstored
        return [back[k] for k in notstored]

    # -- other commands -----------------------------------------------------

    def _plan_delete(self, key: Any, noreply: bool = False) -> _Plan:
        key = self._prepare_key(key)
        try:
            if (yield "delete", (key, noreply), _NO_KW):
                return 1
        except (Error, TypeError) as e:
            return int(self._keyed_failure("delete", key, e, 0))
        self.debuglog("delete expected DELETED, got: b'NOT_FOUND'")
        return 0

    def _plan_delete_multi(self, keys: Iterable[Any], time: Any = None, key_prefix: Any = "",
                           noreply: bool = False) -> _Plan:
        prefix = self._prefix(key_prefix)
        engine, _ = self._multi_keys(keys, prefix)
        if self.debug and not noreply and len(engine) > 0:
            return (yield from self._plan_delete_multi_debug(engine, prefix))
        try:
            yield "delete_multi", (engine, noreply, prefix), _NO_KW
        except Error as e:
            self._multi_failure("delete_multi", engine, prefix, e)
            # python-memcached skips the keys of servers it cannot connect
            # to and still answers 1; 0 means a send or read failed.
            return 1 if self._unreachable(e) else 0
        return 1

    def _plan_delete_multi_debug(self, engine: list[Any], prefix: Any) -> _Plan:
        """delete_multi with ``debug``: python-memcached prints a line for
        every key that was not deleted, and the engine's delete_multi
        answers for all keys at once, so each key is deleted on its own
        (still counted as one delete_multi call)."""
        extra = len(self._encode_key_plain(prefix)) if prefix else 0
        for key in engine:  # a bad key fails the call before anything is sent
            self.check_key(self._encode_key_plain(key), key_extra_len=extra)
        rc = 1
        for key in engine:
            try:
                if not (yield "delete_multi", ([key], False, prefix), _NO_KW):
                    self._debug_reply("DELETED", "NOT_FOUND")
            except Error as e:
                self._multi_failure("delete_multi", [key], prefix, e)
                if not self._unreachable(e):
                    rc = 0
        self._extra_stats["delete_multi"] -= len(engine) - 1
        return rc

    def _plan_touch(self, key: Any, time: Any = 0, noreply: bool = False) -> _Plan:
        key = self._prepare_key(key)
        try:
            if (yield "touch", (key, self._exptime(time), noreply), _NO_KW):
                return 1
        except (Error, TypeError) as e:
            return int(self._keyed_failure("touch", key, e, 0))
        self.debuglog("touch expected TOUCHED, got: b'NOT_FOUND'")
        return 0

    def _plan_incrdecr(self, op: str, key: Any, delta: int, noreply: bool) -> _Plan:
        key = self._prepare_key(key)
        try:
            result: int | None = yield op, (key, int(delta), noreply), _NO_KW
            return result
        except _cmemcache.ClientError as e:
            if self.strict:
                raise
            # python-memcached: int() of the error line (the Django backend
            # finds the ClientError as the cause)
            raise ValueError(str(e)) from e
        except (Error, TypeError) as e:
            result = self._keyed_failure(op, key, e, None)
            return result

    def _plan_flush_all(self, delay: int = 0) -> _Plan:
        try:
            yield "flush_all", (delay,), _NO_KW
        except Error as e:
            self._failed("flush_all", e)
        return None

    def _plan_stats(self, args: str | None) -> _Plan:
        try:
            rows = yield "get_stats", (args,), _NO_KW
        except Error as e:
            self._failed("get_stats", e)
            rows = getattr(e, "partial", None) or []
        index = {name: i for i, name in enumerate(self._sc.servers)}
        return [(self.servers[index[name]], stats) for name, stats in rows]

    def _plan_get_stats(self, stat_args: str | None = None) -> _Plan:
        rows = yield from self._plan_stats(stat_args)
        return [(h.label(), stats) for h, stats in rows]

    def _plan_get_slab_stats(self) -> _Plan:
        out = []
        for h, stats in (yield from self._plan_stats("slabs")):
            data: dict[str, Any] = {}
            for name, value in stats.items():
                if name in ("active_slabs", "total_malloced"):
                    data[name] = value
                    continue
                slab, _, field = name.partition(":")
                data.setdefault(slab, {})[field] = value
            out.append((h.label(), data))
        return out

    def _plan_get_slabs(self) -> _Plan:
        out = []
        for h, stats in (yield from self._plan_stats("items")):
            data: dict[str, dict[str, str]] = {}
            for name, value in stats.items():
                parts = name.split(":", 2)
                if len(parts) == 3:
                    data.setdefault(parts[1], {})[parts[2]] = value
            out.append((h.label(), data))
        return out


def _run(sc: Any, plan: _Plan) -> Any:
    """Runs a plan on a blocking engine."""
    try:
        name, args, kwargs = next(plan)
        while True:
            try:
                # an engine method's name, or a plan's own step (a callable)
                res = (getattr(sc, name) if name.__class__ is str else name)(*args, **kwargs)
            except BaseException as e:  # the plan decides what it catches
                name, args, kwargs = plan.throw(e)
            else:
                name, args, kwargs = plan.send(res)
    except StopIteration as done:
        return done.value


class Client(_cmemcache.ClientBase, _Policy):
    """A memcached client with python-memcached's interface.

    One object may be shared by threads (each call takes its own connection)
    and survives ``fork()`` (the child opens its own connections).  Network
    failures return python-memcached's neutral values (a miss, ``0``,
    ``None``) and are logged on the ``cmemcache`` logger and counted in
    ``error_counts``; with ``strict=True`` they raise ``cmemcache.Error``
    subclasses instead.

    get() and set() are ClientBase's, in C, for the plain cases (what they
    do not cover comes to _get_slow and _set_slow).
    """

    _engine = StringClient

    def _drop_engine(self, old: Any) -> None:
        old.disconnect_all()

    def _start_discovery(self) -> None:
        try:
            self.discover()
        except Error as exc:
            _discovery.log_failure(exc)
        _discovery.ThreadPoller(self, self.discovery_interval)

    def discover(self) -> list[str]:
        """With ``discovery="elasticache"``: reads the node list from the
        configuration endpoint now and, when it changed, uses it as the
        server list (calls in flight finish on the old one); returns it.
        A daemon thread does this every ``discovery_interval`` seconds."""
        return self._use_cluster(self._config_engine().config_get("cluster"))

    def _bind(self) -> None:
        super()._bind()
        # What ClientBase's get() and set() run on, in C.
        self._configure(
            self._sc, self._decode_cb, self._unpickle, pickle.dumps if self._fast_dumps else None,
            self._pickle_protocol, self._max_value_length, not self._prepare,
        )

    def _get_slow(self, key: Any, default: Any = None) -> Any:
        return _run(self._sc, self._plan_get(key, default))

    def _set_slow(self, key: Any, val: Any, time: Any = 0, min_compress_len: int = 0,
                  noreply: bool = False) -> Any:
        return _run(self._sc, self._plan_set(key, val, time, min_compress_len, noreply))

    def gets(self, key: Any, default: Any = None, *, with_token: bool = False) -> Any:
        """Like get(); remembers the cas id for cas() when cache_cas is set.
        ``with_token=True`` returns ``(value, cas_id)`` (``(default, None)``
        on a miss) for an explicit ``cas(..., token=cas_id)``."""
        return _run(self._sc, self._plan_gets(key, default, with_token))

    def get_multi(self, keys: Iterable[Any], key_prefix: Any = "") -> dict[Any, Any]:
        """A dict of the keys found (prefix not included in its keys). One
        request per server, all servers at once; keys of an unreachable
        server are left out."""
        result: dict[Any, Any] = _run(self._sc, self._plan_get_multi(keys, key_prefix))
        return result

    def add(self, key: Any, val: Any, time: Any = 0, min_compress_len: int = 0,
            noreply: bool = False) -> Any:
        """Store only if key is absent."""
        return _run(self._sc, self._plan_store("add", key, val, time, min_compress_len, noreply))

    def replace(self, key: Any, val: Any, time: Any = 0, min_compress_len: int = 0,
                noreply: bool = False) -> Any:
        """Store only if key is present."""
        return _run(self._sc, self._plan_store("replace", key, val, time, min_compress_len,
                                               noreply))

    def append(self, key: Any, val: Any, time: Any = 0, min_compress_len: int = 0,
               noreply: bool = False) -> Any:
        """Add val's bytes at the end of the stored value."""
        return _run(self._sc, self._plan_store("append", key, val, time, min_compress_len,
                                               noreply))

    def prepend(self, key: Any, val: Any, time: Any = 0, min_compress_len: int = 0,
                noreply: bool = False) -> Any:
        """Add val's bytes at the start of the stored value."""
        return _run(self._sc, self._plan_store("prepend", key, val, time, min_compress_len,
                                               noreply))

    def cas(self, key: Any, val: Any, time: Any = 0, min_compress_len: int = 0,
            noreply: bool = False, *, token: int | None = None) -> Any:
        """Check and set.  With ``token`` (from ``gets(key, with_token=True)``)
        stores only if the value is unchanged since.  Without it, as in
        python-memcached: the id remembered by gets() when cache_cas is set,
        and a plain set() when there is none.  True when stored, False when
        the value changed or is gone."""
        return _run(self._sc, self._plan_cas(key, val, time, min_compress_len, noreply, token))

    def set_multi(self, mapping: Mapping[Any, Any], time: Any = 0, key_prefix: Any = "",
                  min_compress_len: int = 0, noreply: bool = False) -> list[Any]:
        """Store every pair in one round trip per server.  Returns the keys
        not stored: refused by the server, too large, or on a server that
        could not be reached."""
        result: list[Any] = _run(self._sc, self._plan_set_multi(mapping, time, key_prefix,
                                                                 min_compress_len, noreply))
        return result

    def delete(self, key: Any, noreply: bool = False) -> int:
        """1 when deleted, 0 when not found or the server is unreachable."""
        result: int = _run(self._sc, self._plan_delete(key, noreply))
        return result

    def delete_multi(self, keys: Iterable[Any], time: Any = None, key_prefix: Any = "",
                     noreply: bool = False) -> int:
        """Delete every key, one round trip per server.  1 unless a server
        could not be reached (whether the keys existed does not matter).
        ``time`` is accepted and ignored: memcached dropped delete delays."""
        result: int = _run(self._sc, self._plan_delete_multi(keys, time, key_prefix, noreply))
        return result

    def touch(self, key: Any, time: Any = 0, noreply: bool = False) -> int:
        """Set a new expiry: 1 when touched, 0 when not found or down."""
        result: int = _run(self._sc, self._plan_touch(key, time, noreply))
        return result

    def get_or_set(self, key: Any, producer: Callable[[], Any], ttl: int = 0, *,
                   lock_ttl: int = 30, stale_ttl: int | None = None,
                   recache_ttl: int | None = None, wait: float | None = None) -> Any:
        """The value of key; on a miss, ``producer()``'s, stored for ``ttl``
        seconds (0: no expiry) and returned.  Stampede-proof (memcached's
        meta leases): of all the callers that miss at once, in every
        process and host, one runs the producer; the others poll until its
        value lands (or, when the winner dies, until its ``lock_ttl``-second
        lease ends and one of them takes over), ``wait`` seconds at most
        (default ``2 * lock_ttl + 1``; then they run the producer
        themselves, storing nothing).  A value marked stale by
        ``invalidate()`` is served to every caller but one, which refreshes
        it (and, with ``stale_ttl``, lets it live at most that long should
        it die first); with ``recache_ttl``, one caller refreshes a value
        whose TTL fell under it while the others are served it."""
        longest = _lease.check(producer, ttl, lock_ttl, stale_ttl, recache_ttl, wait)
        return _run(self._sc, _lease.plan_get_or_set(self, key, producer, ttl, lock_ttl,
                                                      stale_ttl, recache_ttl, longest,
                                                      _time.sleep))

    def invalidate(self, key: Any, stale_ttl: int | None = None) -> bool:
        """Marks key's value stale instead of deleting it: get_or_set()
        serves it to every caller but the one that refreshes it (``get()``
        still reads it).  ``stale_ttl``: the seconds it may still live.
        True when there was a value."""
        result: bool = _run(self._sc, _lease.plan_invalidate(self, key, stale_ttl))
        return result

    def incr(self, key: Any, delta: int = 1, noreply: bool = False) -> int | None:
        """Add delta to a decimal value: the new value, None when not found
        (or noreply, or down).  Wraps at 2**64."""
        result: int | None = _run(self._sc, self._plan_incrdecr("incr", key, delta, noreply))
        return result

    def decr(self, key: Any, delta: int = 1, noreply: bool = False) -> int | None:
        """Subtract delta from a decimal value, stopping at 0."""
        result: int | None = _run(self._sc, self._plan_incrdecr("decr", key, delta, noreply))
        return result

    def flush_all(self, delay: int = 0) -> None:
        """Invalidate every item on every reachable server (after delay
        seconds when given)."""
        _run(self._sc, self._plan_flush_all(delay))

    def get_stats(self, stat_args: str | None = None) -> list[tuple[str, dict[str, str]]]:
        """[(server name, {stat: value})] of the reachable servers; values
        are strings as the server sent them."""
        result: list[tuple[str, dict[str, str]]] = _run(self._sc, self._plan_get_stats(stat_args))
        return result

    def get_slab_stats(self) -> list[tuple[str, dict[str, Any]]]:
        """`stats slabs` per server: {slab id: {field: value}}, plus
        active_slabs and total_malloced."""
        result: list[tuple[str, dict[str, Any]]] = _run(self._sc, self._plan_get_slab_stats())
        return result

    def get_slabs(self) -> list[tuple[str, dict[str, dict[str, str]]]]:
        """`stats items` per server: {slab id: {field: value}}."""
        result: list[tuple[str, dict[str, dict[str, str]]]] = _run(self._sc,
                                                                   self._plan_get_slabs())
        return result

    def disconnect_all(self) -> None:
        """Close every connection; the next call reconnects."""
        self._sc.disconnect_all()

    def quit_all(self) -> None:
        """Close every connection (python-memcached sends "quit" first)."""
        self._sc.disconnect_all()

    close = disconnect_all

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect_all()
