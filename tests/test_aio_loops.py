"""cmemcache.aio's core cases on every kind of event loop it may run on:
asyncio's default loop (epoll), asyncio's selector loop over poll() and over
select(), and uvloop — each running in the test's own thread, the way an
application runs it (test_aio_commands.py drives its loops from another
thread).  The same steps run on the blocking clients, and every outcome must
be the same; then what is particular to loops: a client moving from one
loop to another after close(), clients on loops in several threads at once,
a loop that ends (or a client that is dropped) with connections open, and
debug mode."""

from __future__ import annotations

import asyncio
import gc
import selectors
import threading
import warnings

import pytest
import uvloop

import cmemcache
import cmemcache.aio
from conftest import wait_until
from test_aio_commands import BIG, Raised, Recorder, address_subs, assert_same_steps, open_sockets

FACTORIES = {
    "asyncio": asyncio.new_event_loop,
    "asyncio-poll": lambda: asyncio.SelectorEventLoop(selectors.PollSelector()),
    "asyncio-select": lambda: asyncio.SelectorEventLoop(selectors.SelectSelector()),
    "uvloop": uvloop.new_event_loop,
}


def on(loop: str, coro, debug: bool = False):
    with asyncio.Runner(loop_factory=FACTORIES[loop], debug=debug) as runner:
        return runner.run(coro)


def curr_connections(server) -> int:
    return int(server.stats()["curr_connections"]) - 1


# the steps: (method, args, kwargs), the same on both clients
STRING_STEPS = [
    ("get", (b"k",), {}),
    ("set", (b"k", b"v"), {}),
    ("get", (b"k",), {}),
    ("get", (b"k",), {"with_flags": True}),
    ("set", ("clé", b"unicode key", 0, 7), {}),
    ("get", ("clé",), {"with_flags": True}),
    ("add", (b"k", b"x"), {}),
    ("add", (b"a", b"1"), {}),
    ("replace", (b"a", b"2"), {}),
    ("replace", (b"nope", b"2"), {}),
    ("append", (b"a", b"3"), {}),
    ("prepend", (b"a", b"0"), {}),
    ("get", (b"a",), {}),
    ("set", (b"n", b"10"), {}),
    ("incr", (b"n", 5), {}),
    ("decr", (b"n",), {"delta": 20}),
    ("incr", (b"missing",), {}),
    ("incr", (b"k",), {}),
    ("touch", (b"k", 100), {}),
    ("touch", (b"nope", 100), {}),
    ("gat", (b"k", 100), {}),
    ("set_multi", ({b"m%d" % i: b"v%d" % i for i in range(100)},), {"key_prefix": b"p:"}),
    ("get_multi", ([b"m%d" % i for i in range(0, 120, 3)],), {"key_prefix": b"p:"}),
    ("delete_multi", ([b"m1", b"m2"],), {"key_prefix": b"p:"}),
    ("get_multi", ([b"m1", b"m2", b"m3"],), {"key_prefix": b"p:"}),
    ("set", (b"big", BIG[:500_000]), {}),
    ("get", (b"big",), {}),
    ("get_multi", ([b"big", b"k", b"a"],), {}),
    ("set", (b"nr", b"noreply"), {"noreply": True}),
    ("get", (b"nr",), {}),
    ("delete", (b"nr",), {"noreply": True}),
    ("get", (b"nr",), {}),
    ("delete", (b"k",), {}),
    ("delete", (b"k",), {}),
    ("set", (b"a b", b"v"), {}),
    ("get", (b"k" * 251,), {}),
    ("set", (b"k", b"x" * (1024 * 1024 + 1)), {}),
    ("set", (b"k", "str"), {}),
    ("incr", (b"n", -1), {}),
    ("get_stats", ("nosuch",), {}),
    ("get", (b"a",), {}),
    ("flush_all", (), {}),
    ("get", (b"a",), {}),
]

CLIENT_STEPS = [
    ("get", ("k",), {}),
    ("get", ("k", "default"), {}),
    ("set", ("k", {"a": [1, 2], "b": "é"}), {}),
    ("get", ("k",), {}),
    ("set", ("i", 41), {}),
    ("incr", ("i",), {}),
    ("get", ("i",), {}),
    ("set", ("s", "text", 0, 1), {}),
    ("get", ("s",), {}),
    ("set_multi", ({f"m{i}": (i, str(i)) for i in range(50)},), {"key_prefix": "p:"}),
    ("get_multi", ([f"m{i}" for i in range(60)],), {"key_prefix": "p:"}),
    ("add", ("k", 1), {}),
    ("replace", ("k", [3]), {}),
    ("get", ("k",), {}),
    ("append", ("s", "-more"), {}),
    ("get", ("s",), {}),
    ("delete", ("k",), {}),
    ("delete", ("k",), {}),
    ("touch", ("s", 100), {}),
    ("set", ("big", BIG[:300_000]), {}),
    ("get", ("big",), {}),
    ("set", ("nr", 1), {"noreply": True}),
    ("get", ("nr",), {}),
    ("get", ("a b",), {}),
    ("get_multi", ([None],), {}),
    ("set", ("huge", b"x" * (1024 * 1024 + 1)), {}),
    ("delete_multi", (["s", "i"],), {}),
    ("get_multi", (["s", "i", "big"],), {}),
    ("flush_all", (), {}),
    ("get", ("big",), {}),
]


def sync_steps(c, steps, r):
    for m, args, kwargs in steps:
        r(m, getattr(c, m), *args, **kwargs)


async def aio_steps(c, steps, r):
    for m, args, kwargs in steps:
        try:
            value = await getattr(c, m)(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - the exception is the outcome
            value = Raised(type(e), str(e), getattr(e, "partial", None))
        r(m, lambda v=value: v)


@pytest.mark.parametrize("loop", sorted(FACTORIES))
@pytest.mark.parametrize("cls, steps", [("StringClient", STRING_STEPS),
                                        ("Client", CLIENT_STEPS)], ids=["StringClient", "Client"])
def test_core_steps_same_results_as_blocking(memcached_factory, loop, cls, steps):
    sync_srv, aio_srv = memcached_factory(), memcached_factory()
    sync_r, aio_r = Recorder(address_subs([sync_srv])), Recorder(address_subs([aio_srv]))
    c = getattr(cmemcache, cls)([sync_srv.address])
    sync_steps(c, steps, sync_r)
    c.close()

    async def go():
        async with getattr(cmemcache.aio, cls)([aio_srv.address]) as ac:
            await aio_steps(ac, steps, aio_r)
            # and many at once, each its own reply
            keys = [b"c%d" % i if cls == "StringClient" else "c%d" % i for i in range(300)]
            assert all(await asyncio.gather(*(ac.set(k, BIG[:i * 100]) for i, k in
                                              enumerate(keys))))
            got = await asyncio.gather(*(ac.get(k) for k in keys))
            assert got == [BIG[:i * 100] for i in range(300)]

    on(loop, go())
    assert_same_steps(sync_r, aio_r)
    assert wait_until(lambda: curr_connections(aio_srv) == 0)


@pytest.mark.parametrize("loop", sorted(FACTORIES))
def test_cancellation_and_timeouts_on_every_loop(memcached_factory, loop):
    srv = memcached_factory()
    values = {b"c%d" % i: b"%d:" % i + BIG[: 100_000 + i] for i in range(16)}
    for k, v in values.items():
        srv.raw_set(k, v)

    async def go():
        async with cmemcache.aio.StringClient([srv.address], timeout=0.3, max_connections=1,
                                              timeout_limit=0) as c:
            cancelled = 0
            for i, k in enumerate(values):
                t = asyncio.ensure_future(c.get(k))
                for _ in range(i % 5):
                    await asyncio.sleep(0)
                t.cancel()
                try:
                    assert await t == values[k]  # it was done already
                except asyncio.CancelledError:
                    cancelled += 1
                with pytest.raises(TimeoutError):  # sent, then given up
                    async with asyncio.timeout(0):
                        await c.get_multi(list(values))
                other = list(values)[(i + 7) % 16]
                assert await c.get(other) == values[other]
            assert cancelled >= 4  # (at least those cancelled before they ran)
            # a TaskGroup whose task fails: the others are cancelled
            with pytest.raises(ExceptionGroup):
                async with asyncio.TaskGroup() as tg:
                    for k in values:
                        tg.create_task(c.get(k))
                    tg.create_task(c.incr(b"c0"))  # ClientError: not a number
            assert await c.get_multi(list(values)) == values
            srv.pause()
            try:
                with pytest.raises(cmemcache.TimeoutError):
                    await c.get(b"c1")
            finally:
                srv.resume()
            assert await c.get(b"c2") == values[b"c2"]
            assert c.connections() == (1,)

    on(loop, go())


def test_a_client_moves_between_loops_after_close(memcached_factory):
    srv = memcached_factory()
    c = cmemcache.aio.StringClient([srv.address])
    mc = cmemcache.aio.Client([srv.address])

    async def use(n):
        assert await c.set(b"k", b"%d" % n) is True
        assert await c.get(b"k") == b"%d" % n
        assert await mc.set("o", [n]) is True
        assert await mc.get("o") == [n]
        await c.close()
        await mc.close()

    for n, loop in enumerate(["asyncio", "uvloop", "asyncio-poll", "uvloop", "asyncio-select"]):
        on(loop, use(n))
    assert wait_until(lambda: curr_connections(srv) == 0)


@pytest.mark.parametrize("first, then", [("asyncio", "uvloop"), ("uvloop", "asyncio"),
                                         ("asyncio", "asyncio")])
def test_a_client_moves_on_when_its_loop_was_closed(memcached_factory, first, then):
    """A client made once (at module level, say) and used by one
    asyncio.run() after another, never closed: each run's loop takes it,
    and the connections of the loop before are closed."""
    srv = memcached_factory()
    c = cmemcache.aio.StringClient([srv.address], max_connections=1)
    mc = cmemcache.aio.Client([srv.address], max_connections=1)

    async def use(n):
        assert await c.set(b"k", b"%d" % n) is True
        got = await asyncio.gather(*(c.get(b"k") for _ in range(50)))
        assert got == [b"%d" % n] * 50
        assert await mc.set("o", [n]) is True
        assert await mc.get("o") == [n]
        return c.connections()[0], mc._sc.connections()[0]

    for n, loop in enumerate([first, then, first, then]):
        assert on(loop, use(n)) == (1, 1)
        assert wait_until(lambda: curr_connections(srv) == 2), curr_connections(srv)
    # still bound to the last loop's: one that is open and not running
    # keeps it (as before)
    own = FACTORIES[then]()
    try:
        assert own.run_until_complete(use(9)) == (1, 1)
        with pytest.raises(RuntimeError, match="another event loop"):
            on(first, use(10))
        assert own.run_until_complete(c.get(b"k")) == b"9"
    finally:
        own.close()
    assert on(first, use(11)) == (1, 1)
    on(first, c.close())
    on(first, mc.close())
    assert wait_until(lambda: curr_connections(srv) == 0)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_calls_left_in_flight_on_a_closed_loop_cross_nothing(memcached_factory, loop):
    """A loop closed with calls still waiting for their replies (the
    server stopped meanwhile): on the next loop every call reads its own
    reply, never one of theirs."""
    srv = memcached_factory()
    srv.raw_set(b"a", b"A")
    srv.raw_set(b"b", b"B")
    c = cmemcache.aio.StringClient([srv.address], max_connections=1, timeout=10)
    assert on(loop, c.get(b"a")) == b"A"
    old = FACTORIES[loop]()
    srv.pause()
    try:
        left = [old.create_task(c.get(b"a")) for _ in range(5)]
        old.run_until_complete(asyncio.sleep(0.05))
        assert not any(t.done() for t in left)
    finally:
        srv.resume()
    old.close()                 # no cleanup: the tasks are left as they are

    async def after():
        return await asyncio.gather(c.get(b"b"), c.get_multi([b"b", b"a"]), c.get(b"b"))

    assert on(loop, after()) == [b"B", {b"a": b"A", b"b": b"B"}, b"B"]
    assert on(loop, c.close()) is None
    del left
    gc.collect()
    assert wait_until(lambda: curr_connections(srv) == 0)


class _FirstConnectHangs(cmemcache.aio.StringClient):
    """Its first connect never ends (as one whose loop is closed first)."""

    hang = True

    async def _open(self, index, timeout):
        if self.hang:
            self.hang = False
            await asyncio.sleep(3600)
        return await super()._open(index, timeout)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_connect_left_on_a_closed_loop_is_forgotten(memcached_factory, loop):
    """A loop closed while a connect of the client was under way: that
    connect never reports, and the next loop connects for itself instead
    of waiting for it."""
    srv = memcached_factory()
    srv.raw_set(b"k", b"v")
    c = _FirstConnectHangs([srv.address], max_connections=1, timeout=3)
    old = FACTORIES[loop]()
    left = old.create_task(c.get(b"k"))
    old.run_until_complete(asyncio.sleep(0.05))
    assert not left.done()
    assert c.connections() == (0,)
    old.close()
    assert on(loop, c.get(b"k")) == b"v"
    assert c.connections() == (1,)
    assert on(loop, c.close()) is None
    del left
    gc.collect()
    assert wait_until(lambda: curr_connections(srv) == 0)


def test_clients_on_loops_in_several_threads(memcached_factory):
    """Each thread runs a loop of its own with its own clients (one engine
    each), all against the same servers at once."""
    servers = [memcached_factory() for _ in range(2)]
    spec = [s.address for s in servers]
    errors = []

    async def work(t):
        async with cmemcache.aio.StringClient(spec) as c, cmemcache.aio.Client(spec) as mc:
            for r in range(30):
                keys = [b"t%d:%d:%d" % (t, r, i) for i in range(20)]
                assert await c.set_multi({k: k * 3 for k in keys}) == []
                got = await asyncio.gather(*(c.get(k) for k in keys))
                assert got == [k * 3 for k in keys]
                assert await mc.set(f"t{t}", {"r": r}) is True
                assert await mc.get(f"t{t}") == {"r": r}

    def thread(t, loop):
        try:
            on(loop, work(t))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append((t, repr(e)))

    threads = [threading.Thread(target=thread, args=(t, sorted(FACTORIES)[t % 4]))
               for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert errors == []
    assert not any(th.is_alive() for th in threads)
    for s in servers:
        assert wait_until(lambda: curr_connections(s) == 0)


@pytest.mark.parametrize("loop", sorted(FACTORIES))
def test_a_loop_that_ends_with_connections_open(memcached_factory, loop):
    """The loop ends (the client never closed): once the client is dropped
    its sockets are closed, quietly; a client closed on a new loop works
    there."""
    srv = memcached_factory()
    gc.collect()                # sockets of earlier tests, unreachable, closed now
    before = open_sockets()
    kept = cmemcache.aio.StringClient([srv.address])

    async def leave_open():
        c = cmemcache.aio.StringClient([srv.address], max_connections=3)
        got = await asyncio.gather(*(c.get(b"k%d" % i) for i in range(200)),
                                   kept.set(b"k", b"v"))
        assert got[-1] is True
        return c

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = on(loop, leave_open())
        assert c.connections()[0] >= 1
        del c
        gc.collect()
    assert [w for w in caught if issubclass(w.category, (ResourceWarning, RuntimeWarning))] == []
    assert open_sockets() == before + kept.connections()[0]

    async def again():
        await kept.close()
        return await kept.get(b"k")

    assert on("uvloop" if loop != "uvloop" else "asyncio", again()) == b"v"
    del kept
    gc.collect()
    assert open_sockets() == before
    assert wait_until(lambda: curr_connections(srv) == 0)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_debug_mode_finds_nothing(memcached_factory, loop, caplog):
    """In debug mode asyncio reports callbacks from the wrong thread,
    coroutines never awaited and slow callbacks: none here."""
    srv = memcached_factory()

    async def go():
        asyncio.get_running_loop().slow_callback_duration = 0.25
        async with cmemcache.aio.Client([srv.address]) as mc:
            assert await mc.set_multi({f"k{i}": i for i in range(100)}) == []
            assert await mc.get_multi([f"k{i}" for i in range(100)]) == {f"k{i}": i for i in
                                                                          range(100)}
            t = asyncio.ensure_future(mc.get("k1"))
            await asyncio.sleep(0)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            assert await mc.get("k2") == 2

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        on(loop, go(), debug=True)
        gc.collect()
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


@pytest.mark.parametrize("loop", sorted(FACTORIES))
def test_the_running_loop_is_checked_on_every_call(memcached_factory, loop):
    """A call finds its client's loop running in its own thread, or raises
    RuntimeError: the same loop stopped and run again, the client's loop
    running in another thread while this one runs another loop, and after
    each of these the client still works on its own loop."""
    srv = memcached_factory()
    c = cmemcache.aio.StringClient([srv.address])
    own = FACTORIES[loop]()
    try:
        for _ in range(3):  # stopped and run again: the same loop
            assert own.run_until_complete(c.set(b"k", b"v")) is True
            assert own.run_until_complete(c.get(b"k")) == b"v"

        async def get():
            return await c.get(b"k")

        # this thread runs another loop, twice, between calls on its own
        for _ in range(2):
            with pytest.raises(RuntimeError, match="another event loop"):
                on(loop, get())
            assert own.run_until_complete(get()) == b"v"
        # the client's loop runs in another thread; this one runs another
        started, release = threading.Event(), threading.Event()
        results: list = []

        async def hold():
            results.append(await c.get(b"k"))
            started.set()
            while not release.is_set():
                await asyncio.sleep(0.005)
            results.append(await c.get(b"k"))

        t = threading.Thread(target=own.run_until_complete, args=(hold(),))
        t.start()
        assert started.wait(10)
        try:
            with pytest.raises(RuntimeError, match="another event loop"):
                on(loop, get())
        finally:
            release.set()
            t.join(10)
        assert results == [b"v", b"v"]
        assert own.run_until_complete(get()) == b"v"
        own.run_until_complete(c.close())
    finally:
        own.close()


FORKED_IN_A_CALL = r"""
import asyncio, os, sys
import cmemcache.aio

c = cmemcache.aio.StringClient([sys.argv[1]])

async def main():
    assert await c.set(b"k", b"v") is True
    pid = os.fork()
    if pid == 0:
        # the child is inside the parent's running loop, which no longer
        # runs here: a call must not take it for running
        try:
            await c.get(b"k")
            os._exit(3)
        except RuntimeError:
            os._exit(0)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert await c.get(b"k") == b"v"
    print(os.waitstatus_to_exitcode(status))

asyncio.run(main())
"""


def test_a_child_forked_inside_a_call_does_not_use_the_parents_loop(memcached_factory):
    from conftest import run_python
    srv = memcached_factory()
    proc = run_python(FORKED_IN_A_CALL, srv.address, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["0"]
