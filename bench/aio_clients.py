"""The asyncio clients bench/aio_bench.py measures, each behind one small adapter.

An adapter opens its client for a given number of concurrent tasks and then
exposes three awaitable callables, used as they are in the timed loop (no extra
coroutine layer in between):

    get(key)          -> the client's own answer for a get
    set(key, value)   -> the client's own answer for a set
    get_multi(keys)   -> the client's own answer for a multi-key get

plus `value(r)`, `stored(r)` and `as_dict(keys, r)`, which turn those answers
into bytes-or-None, bool and {key: bytes} for the answer checks (untimed).
Keys and values are bytes.
"""

import asyncio
import concurrent.futures
import functools
import importlib

HOST = "127.0.0.1"

#: threads of the pool asyncio.to_thread runs on, for the sync cmemcache
#: clients: min(tasks, THREADS). Chosen by a sweep at 256 tasks (bench/README.md).
THREADS = 4
#: request deadline of the sync cmemcache clients (seconds): long, so that a
#: machine that stalls the client process for a second (a shared, loaded VM)
#: costs a slow call, not a failed case; the peers have no deadline at all
#: here. A deadline costs the same whatever its length.
TIMEOUT = 10.0


class Adapter:
    """One client library: how to build it for `concurrency` tasks."""

    key = ""            # --clients name
    label = ""          # column / legend title
    module = ""         # import that must work for the client to be measured
    dist = ""           # distribution name for the version
    kind = ""           # what the client's request path is written in
    cases = None        # case names this client takes part in (None: all)

    def __init__(self, pool=None):
        self.pool_override = pool   # --pool KEY=N: replaces pool_for()

    def available(self):
        try:
            importlib.import_module(self.module)
        except Exception as e:  # ImportError, or a build that does not load
            return False, "%s: %s" % (type(e).__name__, e)
        return True, None

    def version(self):
        try:
            from importlib.metadata import version
            return version(self.dist)
        except Exception:
            mod = importlib.import_module(self.module)
            return getattr(mod, "__version__", None)

    def pool_for(self, concurrency):
        return self.pool_override or concurrency

    def settings(self, concurrency):
        """The constructor arguments used, recorded with the results."""
        return {}

    async def open(self, port, concurrency):
        raise NotImplementedError

    async def close(self):
        raise NotImplementedError

    # answer normalisation for the checks
    def value(self, r):
        return r

    def stored(self, r):
        return r is True

    def as_dict(self, keys, r):
        return r


class Aiomcache(Adapter):
    key, label, module, dist, kind = "aiomcache", "aiomcache", "aiomcache", "aiomcache", \
        "pure Python"

    # aiomcache sends one request per connection and waits for its reply (no
    # pipelining): every task in flight needs its own pooled connection, so
    # pool_size = tasks; pool_minsize defaults to pool_size (opened up front).
    def settings(self, concurrency):
        return {"pool_size": self.pool_for(concurrency)}

    async def open(self, port, concurrency):
        import aiomcache
        c = self.c = aiomcache.Client(HOST, port, **self.settings(concurrency))
        self.get = c.get
        self.set = c.set
        mg = c.multi_get
        self.get_multi = lambda keys: mg(*keys)

    async def close(self):
        await self.c.close()

    def as_dict(self, keys, r):
        return {k: v for k, v in zip(keys, r) if v is not None}


class Emcache(Adapter):
    key, label, module, dist, kind = "emcache", "emcache", "emcache", "emcache", \
        "Python + Cython parser"
    autobatching = False

    # emcache runs one request at a time per connection; its pool grows on
    # demand up to max_connections (default 2) and hands a freed connection
    # to the newest waiter first. max_connections = tasks, so no task waits
    # for a connection, and min_connections = max_connections, so the pool is
    # filled at creation and never purged. timeout=None: the default 1.0 s
    # arms and cancels a timer per operation (about 10 % of its CPU per get
    # here); aiomcache and memcachio have no per-operation timer either.
    def settings(self, concurrency):
        n = self.pool_for(concurrency)
        s = {"max_connections": n, "min_connections": n, "timeout": None}
        if self.autobatching:
            s["autobatching"] = True
        return s

    async def open(self, port, concurrency):
        import emcache
        settings = self.settings(concurrency)
        c = self.c = await emcache.create_client(
            [emcache.MemcachedHostAddress(HOST, port)], **settings)
        # the pool opens its connections one after the other in the
        # background: wait for all of them (bounded), so that no timed run
        # measures the pool growing
        metrics = c.cluster_managment().connection_pool_metrics
        deadline = asyncio.get_running_loop().time() + 10.0
        while sum(m.cur_connections for m in metrics().values()) < settings["min_connections"]:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("emcache opened %d of %d connections in 10 s" % (
                    sum(m.cur_connections for m in metrics().values()),
                    settings["min_connections"]))
            await asyncio.sleep(0.002)
        self.get = c.get
        self.set = c.set
        self.get_multi = c.get_many

    async def close(self):
        await self.c.close()

    def value(self, r):
        return None if r is None else r.value

    def stored(self, r):
        return r is None        # set returns None, raises StorageCommandError otherwise

    def as_dict(self, keys, r):
        return {k: item.value for k, item in r.items()}


class EmcacheAutobatch(Emcache):
    key, label = "emcache-autobatch", "emcache (autobatching)"
    autobatching = True
    # autobatching only changes get/gets: the gets of one loop iteration go
    # out as one multi-key get (autobatching_max_keys = 32, the default)
    cases = ("get_hit", "mix")


class Memcachio(Adapter):
    key, label, module, dist, kind = "memcachio", "memcachio", "memcachio", "memcachio", \
        "pure Python"

    # memcachio pipelines: a connection carries up to
    # max_inflight_requests_per_connection (100) requests, and the pool grows
    # to max_connections (default 2). A sweep at 256 tasks picked 4
    # (bench/README.md); min_connections = max_connections.
    def pool_for(self, concurrency):
        return self.pool_override or min(concurrency, 4)

    def settings(self, concurrency):
        n = self.pool_for(concurrency)
        return {"max_connections": n, "min_connections": n}

    async def open(self, port, concurrency):
        import memcachio
        c = self.c = memcachio.Client((HOST, port), **self.settings(concurrency))
        cget = c.get
        self.get = cget              # get(*keys) -> {key: MemcachedItem}
        self.set = c.set
        self.get_multi = lambda keys: cget(*keys)

    async def close(self):
        self.c.connection_pool.close()

    def value(self, r):
        if len(r) > 1:
            raise ValueError("get of one key returned %d items" % len(r))
        for item in r.values():
            return item.value
        return None

    def as_dict(self, keys, r):
        return {k: item.value for k, item in r.items()}


class _Threaded(Adapter):
    """A sync cmemcache client shared by a pool of threads, through
    asyncio.to_thread (the loop's default executor is a ThreadPoolExecutor of
    min(tasks, THREADS) threads, set by the worker; the client keeps as many
    idle connections)."""

    module, dist = "cmemcache", "cmemcache"
    kind = "C engine, thread pool"

    def pool_for(self, concurrency):
        return threads_for(concurrency, self.pool_override)

    def settings(self, concurrency):
        return {"pool_size": self.pool_for(concurrency),
                "threads": self.pool_for(concurrency), "timeout": TIMEOUT}

    def make(self, servers, pool_size):
        raise NotImplementedError

    async def open(self, port, concurrency):
        n = self.pool_for(concurrency)
        loop = asyncio.get_running_loop()
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=n, thread_name_prefix="bench-%s" % self.key)
        loop.set_default_executor(self.executor)
        c = self.c = self.make(["%s:%d" % (HOST, port)], n)
        to_thread = asyncio.to_thread
        self.get = functools.partial(to_thread, c.get)
        self.set = functools.partial(to_thread, c.set)
        self.get_multi = functools.partial(to_thread, c.get_multi)

    async def close(self):
        self.c.disconnect_all()
        self.executor.shutdown(wait=True)
        # the clients that run next on this loop get a default executor that works
        asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor())


def threads_for(concurrency, override=None):
    return override or min(concurrency, THREADS)


class ThreadStringClient(_Threaded):
    key, label = "stringclient-thread", "cmemcache.StringClient (to_thread)"

    def available(self):
        ok, why = Adapter.available(self)
        if ok and not hasattr(importlib.import_module("cmemcache"), "StringClient"):
            return False, "cmemcache has no StringClient"
        return ok, why

    def make(self, servers, pool_size):
        import cmemcache
        return cmemcache.StringClient(servers, pool_size=pool_size, timeout=TIMEOUT)


class ThreadClient(_Threaded):
    key, label = "client-thread", "cmemcache.Client (to_thread)"

    def available(self):
        ok, why = Adapter.available(self)
        if ok and not hasattr(importlib.import_module("cmemcache"), "Client"):
            return False, "cmemcache has no Client"
        return ok, why

    def make(self, servers, pool_size):
        import cmemcache
        return cmemcache.Client(servers, pool_size=pool_size, socket_timeout=TIMEOUT)


class _Aio(Adapter):
    """cmemcache.aio: the sync API, awaited; one client drives all tasks."""

    module, dist = "cmemcache.aio", "cmemcache"
    kind = "C engine, asyncio"
    cls = ""

    def available(self):
        ok, why = Adapter.available(self)
        if ok and not hasattr(importlib.import_module(self.module), self.cls):
            return False, "cmemcache.aio has no %s" % self.cls
        return ok, why

    def pool_for(self, concurrency):
        return None

    async def open(self, port, concurrency):
        import cmemcache.aio
        c = self.c = getattr(cmemcache.aio, self.cls)(["%s:%d" % (HOST, port)])
        self.get, self.set, self.get_multi = c.get, c.set, c.get_multi

    async def close(self):
        await self.c.close()


class AioStringClient(_Aio):
    key, label, cls = "aio-stringclient", "cmemcache.aio.StringClient", "StringClient"


class AioClient(_Aio):
    key, label, cls = "aio-client", "cmemcache.aio.Client", "Client"


ADAPTERS = [AioStringClient, AioClient, ThreadStringClient, ThreadClient,
            Aiomcache, Emcache, EmcacheAutobatch, Memcachio]
ADAPTER_BY_KEY = {a.key: a for a in ADAPTERS}
#: the clients whose request path is pure Python (the targets compare with the best)
PURE_PYTHON = ("aiomcache", "memcachio")
