"""``captured_stderr()`` for python-memcached's tests/test_memcache.py,
which imports it from a ``tests/utils.py`` that its sdist does not ship."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def captured_stderr() -> Iterator[io.StringIO]:
    """Replaces ``sys.stderr`` by a StringIO for the ``with`` block and
    gives that StringIO."""
    saved = sys.stderr
    sys.stderr = buffer = io.StringIO()
    try:
        yield buffer
    finally:
        sys.stderr = saved
