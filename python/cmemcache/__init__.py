"""cmemcache: a memcached client whose protocol engine is C on raw sockets.

``StringClient`` is the C type: bytes in, bytes out, with 32-bit flags.
"""

from ._cmemcache import (
    MAX_KEY_LENGTH,
    ClientError,
    ConnectionError,
    Error,
    InvalidKeyError,
    InvalidServerError,
    ProtocolError,
    ServerError,
    StringClient,
    TimeoutError,
    ValueTooLargeError,
)

from importlib.metadata import version as _version

__version__ = _version("cmemcache")

__all__ = [
    "MAX_KEY_LENGTH",
    "ClientError",
    "ConnectionError",
    "Error",
    "InvalidKeyError",
    "InvalidServerError",
    "ProtocolError",
    "ServerError",
    "StringClient",
    "TimeoutError",
    "ValueTooLargeError",
]
