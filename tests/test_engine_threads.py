"""Threads through the engine's shared state.

The engine guards its pools and hold-down state with a lock of its own, not
the GIL.  Here many threads share one client while the GIL switches as
often as it can, and another thread keeps changing that shared state
(holding servers down, forgetting it, closing every idle connection): each
worker only ever reads its own values, and the pools stay within their
size.  (tests/c/test_engine.c hammers the lock itself from threads that
hold no GIL.)
"""

from __future__ import annotations

import sys
import threading
import time

import pytest

import cmemcache
from cmemcache import StringClient

WORKERS = 12
SECONDS = 2.0


@pytest.fixture
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.mark.parametrize("client_kind", ["string", "compat"])
def test_workers_and_a_state_changer_share_one_client(memcached_factory, fast_switching, client_kind):
    servers = [memcached_factory() for _ in range(3)]
    addresses = [s.address for s in servers]
    if client_kind == "string":
        client = StringClient(addresses, distribution="ketama", pool_size=4, timeout=5,
                              dead_retry=0.05)
    else:
        client = cmemcache.Client(addresses, distribution="ketama", failover="none",
                                  pool_size=4, socket_timeout=5, dead_retry=0.05, strict=True)
    engine = client if client_kind == "string" else client._sc
    stop = threading.Event()
    errors: list[str] = []
    done = [0] * WORKERS

    def worker(n: int) -> None:
        keys = [f"w{n}:{i}" for i in range(20)]
        ops = 0
        while not stop.is_set():
            for i, k in enumerate(keys):
                v = f"{n}:{i}:{ops}".encode()
                try:
                    if client.set(k, v) is True:
                        got = client.get(k)
                        # keys never move (no failover): the value just set
                        if got != v:
                            errors.append(f"{k}: {got!r} != {v!r}")
                    many = client.get_multi(keys[:5])
                    for mk, mv in many.items():
                        if not mv.startswith(f"{n}:".encode()):
                            errors.append(f"{mk}: {mv!r} from another worker")
                except cmemcache.ConnectionError:
                    pass  # a server held down by the state changer
                ops += 1
        done[n] = ops

    def changer() -> None:
        i = 0
        while not stop.is_set():
            engine.mark_dead(i % 3, 0.01)
            engine.hold_downs()
            if i % 5 == 0:
                engine.disconnect_all()
            if i % 7 == 0:
                engine.forget_dead()
            i += 1
            time.sleep(0.002)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    threads.append(threading.Thread(target=changer))
    for t in threads:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert all(n > 0 for n in done), done
    # the pools keep at most pool_size idle connections per server: with no
    # call running, a server sees those, the listener and the stats probe
    idle = [0, 0, 0]
    for _ in range(20):
        idle = [int(s.stats()["curr_connections"]) for s in servers]
        if max(idle) <= 4 + 2:
            break
        time.sleep(0.1)
    assert max(idle) <= 4 + 2, idle
    client.disconnect_all()
