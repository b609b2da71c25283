"""cmemcache: a memcached client whose protocol engine is C on raw sockets.

``Client`` is a drop-in replacement for python-memcached's ``memcache.Client``
(``import cmemcache as memcache``).  ``StringClient`` is the C type under it:
bytes in, bytes out, with 32-bit flags and exceptions on every failure.
"""

from importlib.metadata import version as _version

from ._cmemcache import (
    MAX_KEY_LENGTH,
    AuthenticationError,
    ClientError,
    ConnectionError,
    Error,
    InvalidKeyError,
    InvalidServerError,
    MetaResult,
    ProtocolError,
    ServerError,
    StringClient,
    TimeoutError,
    ValueTooLargeError,
)
from .client import (
    _DEAD_RETRY,
    _SOCKET_TIMEOUT,
    SERVER_MAX_KEY_LENGTH,
    SERVER_MAX_VALUE_LENGTH,
    Client,
    _Host,
    cmemcache_hash,
    serverHashFunction,
    useOldServerHashFunction,
    valid_key_chars_re,
)

__version__ = _version("cmemcache")

__all__ = [
    "MAX_KEY_LENGTH",
    "SERVER_MAX_KEY_LENGTH",
    "SERVER_MAX_VALUE_LENGTH",
    "AuthenticationError",
    "Client",
    "ClientError",
    "ConnectionError",
    "Error",
    "InvalidKeyError",
    "InvalidServerError",
    "MetaResult",
    "ProtocolError",
    "ServerError",
    "StringClient",
    "TimeoutError",
    "ValueTooLargeError",
    "cmemcache_hash",
    "serverHashFunction",
    "useOldServerHashFunction",
    "valid_key_chars_re",
]
