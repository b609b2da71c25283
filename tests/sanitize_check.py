"""Prints which cmemcache build Python imports, and fails when it is not the
one under $CMEMCACHE_EXPECT_BUILD (tests/sanitize.sh sets it to its
package directory).  Independent of pytest and conftest.py.

    CMEMCACHE_EXPECT_BUILD=build/asan/pkg python3 tests/sanitize_check.py
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    import cmemcache
    import cmemcache._cmemcache as ext

    package = os.path.realpath(cmemcache.__file__)
    extension = os.path.realpath(ext.__file__)
    print(f"cmemcache package:   {package}")
    print(f"cmemcache extension: {extension}")
    expected = os.environ.get("CMEMCACHE_EXPECT_BUILD")
    if not expected:
        return 0
    root = os.path.realpath(expected) + os.sep
    wrong = [path for path in (package, extension) if not path.startswith(root)]
    if wrong:
        print(f"not from {root}: {wrong}", file=sys.stderr)
        return 1
    # the extension really is instrumented: the ASan runtime is loaded
    with open("/proc/self/maps") as maps:
        if "libclang_rt.asan" not in maps.read():
            print("the ASan runtime is not loaded (LD_PRELOAD)", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
