"""``python -m cmemcache``: the ``cmemcache`` command (see ``cmemcache.cli``)."""

from __future__ import annotations

import sys

from cmemcache.cli import main

if __name__ == "__main__":
    sys.exit(main())
