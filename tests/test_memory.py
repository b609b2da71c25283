"""Leak soak: 100,000 mixed calls over every success and error path.

After a warm-up, the calls must leave no trace:

* ``sys.getrefcount`` of every key, value, default, prefix, key list and
  mapping object handed to the client is unchanged;
* the number of objects tracked by the garbage collector is flat;
* the resident set size grows by less than 2 MiB;
* under a debug interpreter (``sys.gettotalrefcount``), the total reference
  count moves by less than 100 between 50,000 and 100,000 calls.

The error paths: an invalid key, a value over ``max_value_size``, a server
that refuses connections, a server that answers garbage (ProtocolError), a
server that never answers (TimeoutError), ``CLIENT_ERROR`` from memcached
(incr of a non-number), and a value the compat Client cannot decode.

The misbehaving servers run in a separate process, so that nothing they
allocate is counted here.  A second, per-operation test runs each kind of
call on its own, so a leak is pinned to the call that causes it.
"""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import textwrap
import time
import uuid

import cmemcache
import pytest
from cmemcache import Client, StringClient
from conftest import free_port

KiB = 1024
MiB = 1024 * KiB
PAGE = os.sysconf("SC_PAGE_SIZE")

WARMUP = 10_000
ITERATIONS = 100_000
DEBUG_BUILD = hasattr(sys, "gettotalrefcount")

# A server process with two listeners: one answers every request line with
# garbage (the client raises ProtocolError and closes), one reads and never
# answers (the client times out and closes).
MISBEHAVING_SERVERS = r"""
import selectors, socket, sys

sel = selectors.DefaultSelector()

def listener(kind):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, ("listen", kind))
    return s.getsockname()[1]

ports = [listener("garbage"), listener("silent")]
print(*ports, flush=True)
while True:
    for key, _ in sel.select(timeout=1.0):
        what, kind = key.data
        if what == "listen":
            try:
                conn, _ = key.fileobj.accept()
            except OSError:
                continue
            conn.setblocking(False)
            sel.register(conn, selectors.EVENT_READ, ("conn", kind))
            continue
        conn = key.fileobj
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            data = b""
        if not data:
            sel.unregister(conn)
            conn.close()
            continue
        if kind == "garbage":
            try:
                conn.send(b"HELLO garbage\r\n" * data.count(b"\n"))
            except OSError:
                pass
"""


@pytest.fixture(scope="module")
def misbehaving():
    """(garbage_address, silent_address) served by a child process."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(MISBEHAVING_SERVERS)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        garbage_port, silent_port = proc.stdout.readline().split()
        yield f"127.0.0.1:{garbage_port}", f"127.0.0.1:{silent_port}"
    finally:
        proc.kill()
        proc.wait(5)
        proc.stdout.close()


@pytest.fixture
def quiet_client_log():
    """The compat Client logs every failure; 100,000 of them would only slow
    the run down (the logging calls themselves are exercised elsewhere)."""
    log = logging.getLogger("cmemcache")
    old = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(old)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class Subjects:
    """The objects handed to the client, all made at run time, whose
    reference counts must not move."""

    def __init__(self):
        tag = uuid.uuid4().hex[:8]
        self.key = f"mem-{tag}-hit".encode()
        self.miss = f"mem-{tag}-miss".encode()
        self.str_key = f"mem-{tag}-str-é"
        self.counter = f"mem-{tag}-n".encode()
        self.text = f"mem-{tag}-text".encode()
        self.pickled = f"mem-{tag}-pickled".encode()
        self.value = os.urandom(200)
        self.big = os.urandom(2000)
        self.default = object()
        self.prefix = f"p{tag}:".encode()
        self.str_prefix = f"s{tag}:"
        self.bad_key = f"bad key {tag}".encode()
        self.keys = [self.key, self.miss, self.counter]
        self.str_keys = [self.str_key, f"mem-{tag}-other"]
        self.mapping = {self.key: self.value, self.miss + b"x": (self.value, 7)}

    def objects(self) -> dict:
        return {
            name: obj
            for name, obj in vars(self).items()
            if not name.startswith("_")
        }

    def refcounts(self) -> dict:
        return {name: sys.getrefcount(obj) for name, obj in self.objects().items()}


class Calls:
    """Every kind of call, by name; each checks its own result."""

    def __init__(self, memcached_address, garbage_address, silent_address, s: Subjects):
        self.s = s
        self.good = StringClient([memcached_address], timeout=2, connect_timeout=2)
        self.small = StringClient([memcached_address], timeout=2, connect_timeout=2, max_value_size=1000)
        self.compat = Client([memcached_address], socket_timeout=2)
        self.down = StringClient([f"127.0.0.1:{free_port()}"], timeout=0.5, connect_timeout=0.5, dead_retry=0)
        self.garbage = StringClient([garbage_address], timeout=1, connect_timeout=1, dead_retry=0)
        self.silent = StringClient([silent_address], timeout=0.003, connect_timeout=1, dead_retry=0)
        assert self.good.set(s.key, s.value) is True
        assert self.good.set(s.text, b"not a number") is True
        assert self.good.set(s.pickled, b"\x80\x04not a pickle", flags=1) is True
        assert self.good.set(s.counter, b"0") is True
        assert self.compat.set(s.str_key, s.value) is True

    def close(self):
        for c in (self.good, self.small, self.down, self.garbage, self.silent):
            c.close()
        self.compat.disconnect_all()

    # -- successes ---------------------------------------------------------------------
    def get_hit(self):
        assert self.good.get(self.s.key) == self.s.value

    def get_miss(self):
        assert self.good.get(self.s.miss) is None

    def get_flags(self):
        assert self.good.get(self.s.key, with_flags=True) == (self.s.value, 0)

    def gets(self):
        value, cas = self.good.gets(self.s.key)
        assert value == self.s.value and cas > 0

    def set(self):
        assert self.good.set(self.s.key, self.s.value) is True

    def get_multi(self):
        got = self.good.get_multi(self.s.keys)
        assert got[self.s.key] == self.s.value and self.s.miss not in got

    def get_multi_prefix(self):
        # set_multi stores prefix + key, so the hit key may be there
        got = self.good.get_multi(self.s.keys, key_prefix=self.s.prefix)
        assert got in ({}, {self.s.key: self.s.value})

    def set_multi(self):
        assert self.good.set_multi(self.s.mapping, key_prefix=self.s.prefix) == []

    def delete(self):
        assert self.good.delete(self.s.miss) is False

    def incr(self):
        assert self.good.incr(self.s.counter, 1) > 0

    def compat_get_default(self):
        assert self.compat.get(self.s.miss, self.s.default) is self.s.default

    def compat_get(self):
        assert self.compat.get(self.s.str_key) == self.s.value

    def compat_get_multi_prefix(self):
        assert self.compat.get_multi(self.s.str_keys, key_prefix=self.s.str_prefix) == {}

    def compat_set(self):
        assert self.compat.set(self.s.str_key, self.s.value) is True

    # -- error paths -------------------------------------------------------------------
    def bad_key(self):
        try:
            self.good.get(self.s.bad_key)
        except cmemcache.InvalidKeyError:
            return
        raise AssertionError("no InvalidKeyError")

    def bad_key_set(self):
        try:
            self.good.set(self.s.bad_key, self.s.value)
        except cmemcache.InvalidKeyError:
            return
        raise AssertionError("no InvalidKeyError")

    def bad_key_multi(self):
        try:
            self.good.get_multi([self.s.key, self.s.bad_key], key_prefix=self.s.prefix)
        except cmemcache.InvalidKeyError:
            return
        raise AssertionError("no InvalidKeyError")

    def compat_bad_key(self):
        try:
            self.compat.get(self.s.bad_key, self.s.default)
        except Client.MemcachedKeyError:
            return
        raise AssertionError("no MemcachedKeyError")

    def too_large(self):
        try:
            self.small.set(self.s.key, self.s.big)
        except cmemcache.ValueTooLargeError:
            return
        raise AssertionError("no ValueTooLargeError")

    def down_get(self):
        try:
            self.down.get(self.s.key)
        except cmemcache.ConnectionError:
            return
        raise AssertionError("no ConnectionError")

    def down_set(self):
        try:
            self.down.set(self.s.key, self.s.value)
        except cmemcache.ConnectionError:
            return
        raise AssertionError("no ConnectionError")

    def down_get_multi(self):
        try:
            self.down.get_multi(self.s.keys, key_prefix=self.s.prefix)
        except cmemcache.ConnectionError as exc:
            assert exc.partial == {}
            return
        raise AssertionError("no ConnectionError")

    def client_error(self):
        try:
            self.good.incr(self.s.text, 1)
        except cmemcache.ClientError:
            return
        raise AssertionError("no ClientError")

    def undecodable(self):
        assert self.compat.get(self.s.pickled, self.s.default) is self.s.default

    def protocol_error(self):
        try:
            self.garbage.get(self.s.key)
        except cmemcache.ProtocolError:
            return
        raise AssertionError("no ProtocolError")

    def protocol_error_multi(self):
        try:
            self.garbage.get_multi(self.s.keys, key_prefix=self.s.prefix)
        except cmemcache.ProtocolError as exc:
            assert exc.partial == {}
            return
        raise AssertionError("no ProtocolError")

    def timeout(self):
        try:
            self.silent.get(self.s.key)
        except cmemcache.TimeoutError:
            return
        raise AssertionError("no TimeoutError")


# The mixed schedule: (call name, how many in each block of 1000 calls).
SCHEDULE = [
    ("get_hit", 156),
    ("get_miss", 100),
    ("get_flags", 30),
    ("gets", 30),
    ("set", 120),
    ("get_multi", 60),
    ("get_multi_prefix", 30),
    ("set_multi", 40),
    ("delete", 40),
    ("incr", 40),
    ("compat_get_default", 40),
    ("compat_get", 40),
    ("compat_get_multi_prefix", 20),
    ("compat_set", 30),
    ("bad_key", 40),
    ("bad_key_set", 20),
    ("bad_key_multi", 20),
    ("compat_bad_key", 10),
    ("too_large", 20),
    ("down_get", 30),
    ("down_set", 10),
    ("down_get_multi", 10),
    ("client_error", 20),
    ("undecodable", 20),
    ("protocol_error", 16),
    ("protocol_error_multi", 6),
    ("timeout", 2),
]
assert sum(n for _, n in SCHEDULE) == 1000


def block(calls: Calls) -> list:
    """One block of 1000 calls, interleaved (not grouped by kind)."""
    out = []
    for name, n in SCHEDULE:
        fn = getattr(calls, name)
        out += [fn] * n
    # interleave deterministically: stride through the list
    stride = 487  # coprime with 1000
    return [out[(i * stride) % 1000] for i in range(1000)]


def run_blocks(fns: list, n: int) -> None:
    for _ in range(n // len(fns)):
        for fn in fns:
            fn()


@pytest.mark.hang_timeout(300)
def test_hundred_thousand_mixed_calls_leave_no_trace(memcached_factory, misbehaving, quiet_client_log):
    server = memcached_factory()
    s = Subjects()
    calls = Calls(server.address, *misbehaving, s)
    fns = block(calls)
    started = time.monotonic()
    run_blocks(fns, WARMUP)
    gc.collect()
    refs_before = s.refcounts()
    objects_before = len(gc.get_objects())
    rss_before = rss()

    run_blocks(fns, ITERATIONS // 2)
    gc.collect()
    total_half = sys.gettotalrefcount() if DEBUG_BUILD else None
    objects_half = len(gc.get_objects())

    run_blocks(fns, ITERATIONS - ITERATIONS // 2)
    gc.collect()
    total_end = sys.gettotalrefcount() if DEBUG_BUILD else None
    objects_after = len(gc.get_objects())
    rss_after = rss()
    refs_after = s.refcounts()
    elapsed = time.monotonic() - started

    assert refs_after == refs_before
    assert abs(objects_after - objects_before) <= 50, (objects_before, objects_half, objects_after)
    assert rss_after - rss_before < 2 * MiB, f"RSS grew by {(rss_after - rss_before) / KiB:.0f} KiB"
    if DEBUG_BUILD:
        assert abs(total_end - total_half) < 100, (total_half, total_end)
    # the clients still work
    assert calls.good.get(s.key) == s.value
    assert calls.compat.get(s.str_key) == s.value
    calls.close()
    print(f"{ITERATIONS + WARMUP} calls in {elapsed:.1f} s; RSS {(rss_after - rss_before) / KiB:+.0f} KiB; "
          f"gc objects {objects_before} -> {objects_after}"
          + (f"; total refcount {total_half} -> {total_end}" if DEBUG_BUILD else ""))


PER_CALL = [name for name, _ in SCHEDULE]


@pytest.fixture(scope="module")
def per_call_setup(memcached_factory_module, misbehaving):
    server = memcached_factory_module
    s = Subjects()
    calls = Calls(server.address, *misbehaving, s)
    try:
        yield calls, s
    finally:
        calls.close()


@pytest.fixture(scope="module")
def memcached_factory_module():
    from conftest import MemcachedServer

    server = MemcachedServer()
    try:
        yield server
    finally:
        server.dispose()


@pytest.mark.parametrize("name", PER_CALL)
def test_each_call_leaves_no_trace(per_call_setup, quiet_client_log, name):
    """The same checks, one kind of call at a time (pins a leak to its call)."""
    calls, s = per_call_setup
    fn = getattr(calls, name)
    n = 20 if name == "timeout" else 1000
    for _ in range(max(n // 10, 2)):
        fn()
    gc.collect()
    refs_before = s.refcounts()
    objects_before = len(gc.get_objects())
    total_before = sys.gettotalrefcount() if DEBUG_BUILD else None
    for _ in range(n):
        fn()
    gc.collect()
    total_after = sys.gettotalrefcount() if DEBUG_BUILD else None
    assert s.refcounts() == refs_before
    assert abs(len(gc.get_objects()) - objects_before) <= 20
    if DEBUG_BUILD:
        assert abs(total_after - total_before) < 50, (name, total_before, total_after)
