"""Values to bytes and flags, and back: python-memcached's scheme.

Flags: 0 bytes, 16 text (UTF-8), 2 int (decimal), 4 long (read as int),
1 pickle, plus 8 when the stored bytes are compressed.  Reading also takes what
pylibmc writes (int as flag 4, bool as flag 2 "1"/"0") and what pymemcache's
``pickle_serde`` writes (the same scheme).
"""

from __future__ import annotations

import logging
import pickle
import zlib
from io import BytesIO
from typing import Any, Callable

FLAG_PICKLE = 1 << 0
FLAG_INTEGER = 1 << 1
FLAG_LONG = 1 << 2
FLAG_COMPRESSED = 1 << 3
FLAG_TEXT = 1 << 4
KNOWN_FLAGS = FLAG_PICKLE | FLAG_INTEGER | FLAG_LONG | FLAG_COMPRESSED | FLAG_TEXT

log = logging.getLogger("cmemcache")


class Undecodable(Exception):
    """A stored value this client cannot turn back into an object."""


class Serializer:
    """Encodes and decodes values with one client's pickling settings."""

    __slots__ = (
        "protocol",
        "pickler",
        "unpickler",
        "compressor",
        "decompressor",
        "persistent_id",
        "persistent_load",
        "_fast_dumps",
        "_fast_loads",
        "_pickler_keyword",
    )

    def __init__(
        self,
        protocol: int = 0,
        pickler: Any = pickle.Pickler,
        unpickler: Any = pickle.Unpickler,
        compressor: Callable[[bytes], bytes] = zlib.compress,
        decompressor: Callable[[bytes], bytes] = zlib.decompress,
        persistent_id: Callable[[Any], Any] | None = None,
        persistent_load: Callable[[Any], Any] | None = None,
    ) -> None:
        self.protocol = protocol
        self.pickler = pickler
        self.unpickler = unpickler
        self.compressor = compressor
        self.decompressor = decompressor
        self.persistent_id = persistent_id
        self.persistent_load = persistent_load
        # The plain pickle module is much faster than a Pickler object per
        # value; it is used whenever no hook or subclass asks otherwise.
        self._fast_dumps = pickler is pickle.Pickler and persistent_id is None
        self._fast_loads = unpickler is pickle.Unpickler and persistent_load is None
        try:
            pickler(BytesIO(), protocol=protocol)
            self._pickler_keyword = True
        except TypeError:
            self._pickler_keyword = False

    def _pickle(self, value: Any) -> bytes:
        if self._fast_dumps:
            return pickle.dumps(value, self.protocol)
        buf = BytesIO()
        if self._pickler_keyword:
            p = self.pickler(buf, protocol=self.protocol)
        else:
            p = self.pickler(buf, self.protocol)
        if self.persistent_id is not None:
            p.persistent_id = self.persistent_id
        p.dump(value)
        return buf.getvalue()

    def _unpickle(self, data: bytes) -> Any:
        if self._fast_loads:
            return pickle.loads(data)
        u = self.unpickler(BytesIO(data))
        if self.persistent_load is not None:
            u.persistent_load = self.persistent_load
        return u.load()

    def dumps(self, value: Any, min_compress_len: int = 0) -> tuple[bytes, int]:
        """Returns (bytes, flags) for value, by its exact type as
        python-memcached does: subclasses of bytes, str and int are pickled,
        so they come back as their own class."""
        t = type(value)
        if t is bytes:
            data, flags = value, 0
        elif t is str:
            data, flags = value.encode("utf-8"), FLAG_TEXT
        elif t is int:
            return b"%d" % value, FLAG_INTEGER  # never compressed: incr works
        else:
            data, flags = self._pickle(value), FLAG_PICKLE
        if min_compress_len and len(data) > min_compress_len:
            packed = self.compressor(data)
            if len(packed) < len(data):
                return packed, flags | FLAG_COMPRESSED
        return data, flags

    def loads(self, data: bytes, flags: int) -> Any:
        """The value for stored bytes and flags.  Raises Undecodable for
        unknown flags, corrupt compressed data, bad text or a pickle that
        fails to load."""
        if flags == 0:
            return data
        if flags & ~KNOWN_FLAGS:
            raise Undecodable(f"unknown flags {flags:#x}")
        if flags & FLAG_COMPRESSED:
            try:
                data = self.decompressor(data)
            except Exception as e:
                raise Undecodable(f"cannot decompress: {e}") from e
            flags &= ~FLAG_COMPRESSED
            if flags == 0:
                return data
        try:
            if flags & FLAG_TEXT:
                return data.decode("utf-8")
            if flags & (FLAG_INTEGER | FLAG_LONG):
                return int(data)
            return self._unpickle(data)
        except Exception as e:
            raise Undecodable(f"cannot decode value with flags {flags:#x}: {e}") from e
