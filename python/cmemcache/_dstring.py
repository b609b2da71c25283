"""``StringClient(..., discovery="elasticache")``, blocking and asyncio: a
StringClient on the configuration endpoint (it asks ``config get
cluster``) whose calls go to a StringClient of the nodes it lists.

A changed node list makes a new node client and swaps it in with one
attribute store: a call holds the node client it started on until it
returns, so nothing in flight is dropped or sent twice; the old client's
idle connections close at once, the rest when its last call ends (asyncio:
after ``timeout + 1`` seconds, when every call started on it has ended by
its deadline).  Until the first discovery succeeds, the configuration
endpoint (itself a node) serves every call, as with ``Client``.

Each call passes through one Python method more than on a plain
StringClient; the engine under it is the same.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

from . import _cmemcache, _discovery

#: the constructor's defaults for the two discovery arguments
DEFAULT_INTERVAL = 60.0

# made by the discovering classes themselves (or by the engine's driver)
_OWN = frozenset({"close", "disconnect_all", "discover", "discovery",
                  "discovered_version", "discovery_interval"})


def _split(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, float, dict[str, Any]]:
    """(servers, discovery, interval, the other keyword arguments), the
    discovery arguments checked as Client checks them."""
    rest = dict(kwargs)
    discovery = rest.pop("discovery", None)
    interval = rest.pop("discovery_interval", DEFAULT_INTERVAL)
    if args:
        servers = args[0]
    elif "servers" in rest:
        servers = rest.pop("servers")
    else:
        raise TypeError("StringClient() missing its servers argument")
    if len(args) > 1:
        raise TypeError(f"StringClient() takes 1 positional argument, {len(args)} given")
    listed = [servers] if isinstance(servers, (str, tuple)) else servers
    if discovery is not None and isinstance(listed, list):
        _discovery.check(discovery, listed, interval)
    elif discovery is not None:
        raise TypeError(f"servers must be a str or a list, not {type(servers).__name__}")
    return servers, discovery, interval, rest


class _Discovering:
    """What both discovering classes keep: the options every node client is
    made with, the node list and client in use, the version read last."""

    _nodes: Any  # the node client, None until the first discovery
    _node_specs: list[str]
    _options: dict[str, Any]
    _version: int | None
    _interval: float
    _lock: threading.Lock

    def _setup(self, interval: float, options: dict[str, Any]) -> None:
        self._nodes = None
        self._node_specs = []
        self._options = options
        self._version = None
        self._interval = interval
        self._lock = threading.Lock()

    @property
    def discovery(self) -> str:
        return "elasticache"

    @property
    def discovery_interval(self) -> float:
        return self._interval

    @property
    def discovered_version(self) -> int | None:
        """The configuration version the node list was read from last."""
        return self._version

    def _take(self, reply: dict[str, bytes | None], make: Callable[[list[str]], Any]
              ) -> tuple[list[str], Any]:
        """Takes a config_get("cluster") reply: (the node list, the node
        client it replaced, or None when the list is unchanged)."""
        version, specs = _discovery.cluster_of(reply)
        with self._lock:
            self._version = version
            if specs == self._node_specs:
                return specs, None
            _discovery.log.info("cmemcache: cluster configuration %d: %s", version,
                                " ".join(specs))
            fresh = make(specs)
            old, self._nodes, self._node_specs = self._nodes, fresh, specs
            return specs, old


def _on_endpoint(client: Any, name: str) -> Any:
    """The C type's attribute name of client (the configuration endpoint's)."""
    base = _cmemcache.AsyncStringClient if isinstance(client, _cmemcache.AsyncStringClient) \
        else _cmemcache.StringClient
    return getattr(base, name).__get__(client)


def _delegate(base: type, name: str) -> Callable[..., Any]:
    """A method that calls the node client's ``name`` (the base class's on
    the configuration endpoint until there is one)."""
    on_endpoint = getattr(base, name)

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        nodes = self._nodes
        if nodes is None:
            return on_endpoint(self, *args, **kwargs)
        return getattr(nodes, name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = on_endpoint.__doc__
    return call


def _delegate_attribute(name: str) -> property:
    """A read-only attribute read from the node client (the configuration
    endpoint's until there is one)."""

    def get(self: Any) -> Any:
        nodes = self._nodes
        return _on_endpoint(self, name) if nodes is None else getattr(nodes, name)

    return property(get, doc=f"The node client's {name}.")


def _delegating(cls: type, base: type) -> type:
    """cls with a delegating method (or attribute) for every public one of
    base it does not define itself."""
    for name in dir(base):
        if name.startswith("_") or name in _OWN or name in vars(cls):
            continue
        if callable(getattr(base, name)):
            setattr(cls, name, _delegate(base, name))
        else:
            setattr(cls, name, _delegate_attribute(name))
    return cls


# -- blocking --------------------------------------------------------------------------------


class DiscoveringStringClient(_Discovering, _cmemcache.StringClient):
    """``cmemcache.StringClient(endpoint, discovery="elasticache")``: its
    own engine asks the configuration endpoint; the calls go to the nodes.
    A daemon thread calls discover() every ``discovery_interval`` seconds
    (it holds the client weakly, and starts again in a forked child)."""

    def discover(self) -> list[str]:
        """Reads the node list from the configuration endpoint now and,
        when it changed, sends the calls made from now on to it (calls in
        flight finish on the old one); returns it."""
        reply = _cmemcache.StringClient.config_get(self, "cluster")
        specs, old = self._take(reply, self._node_client)
        if old is not None:
            old.disconnect_all()
        return specs

    def _node_client(self, specs: list[str]) -> Any:
        return _cmemcache.StringClient(specs, **self._options)

    def disconnect_all(self) -> None:
        """Closes every idle connection: the nodes' and the configuration
        endpoint's."""
        nodes = self._nodes
        if nodes is not None:
            nodes.disconnect_all()
        _cmemcache.StringClient.disconnect_all(self)

    close = disconnect_all

    def __exit__(self, *exc: object) -> None:
        self.disconnect_all()


_delegating(DiscoveringStringClient, _cmemcache.StringClient)


def new_string_client(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``StringClient(...)`` called with a discovery argument (the C
    constructor hands those calls here)."""
    servers, discovery, interval, rest = _split(args, kwargs)
    if discovery is None:
        return _cmemcache.StringClient.__new__(cls, servers, **rest)
    if cls is _cmemcache.StringClient:
        cls = DiscoveringStringClient
    elif not issubclass(cls, DiscoveringStringClient):
        raise TypeError(f"discovery= is for StringClient itself, not a {cls.__name__}")
    client = _cmemcache.StringClient.__new__(cls, servers, **rest)
    client._setup(interval, rest)
    try:
        client.discover()
    except _cmemcache.Error as exc:
        _discovery.log_failure(exc)
    _discovery.ThreadPoller(client, interval)
    return client


# -- asyncio ---------------------------------------------------------------------------------


def aio_discovering(base: Any) -> type:
    """The asyncio class, made from cmemcache.aio.StringClient (base) when
    aio.py defines it."""

    class AioDiscoveringStringClient(_Discovering, base):  # type: ignore[misc]
        """``cmemcache.aio.StringClient(endpoint, discovery="elasticache")``:
        its own engine asks the configuration endpoint; the calls go to the
        nodes.  Made inside a running loop, it discovers at once in a task;
        otherwise on ``async with`` or the first discover(), which also
        starts a task on the running loop that calls discover() every
        ``discovery_interval`` seconds (close() stops it)."""

        _poll_task: asyncio.Task[None] | None
        _retired: list[Any]

        def _setup(self, interval: float, options: dict[str, Any]) -> None:
            super()._setup(interval, options)
            self._poll_task = None
            self._retired = []
            self._first_discovery = _discovery.first_discovery(self)

        async def discover(self) -> list[str]:
            """Reads the node list from the configuration endpoint now and,
            when it changed, sends the calls made from now on to it (calls
            in flight finish on the old one); returns it."""
            self._poll_task = _discovery.poll_task(self._poll_task, self, self._interval)
            reply = await base.config_get(self, "cluster")
            specs, old = self._take(reply, self._node_client)
            if old is not None:
                _discovery.retire_later(self._retired, old,
                                        self._options.get("timeout", 1.0))
            return specs

        def _node_client(self, specs: list[str]) -> Any:
            return base(specs, **self._options)

        async def close(self) -> None:
            """Closes every connection, the nodes' and the configuration
            endpoint's (what is in flight fails); stops the polling
            (discover() starts it again)."""
            if self._poll_task is not None:
                self._poll_task.cancel()
                self._poll_task = None
            while self._retired:
                self._retired.pop()._close_now()
            nodes = self._nodes
            if nodes is not None:
                await nodes.close()
            await base.close(self)

        disconnect_all = close

        async def __aenter__(self) -> Any:
            await _discovery.discover_logged(self)
            return self

    _delegating(AioDiscoveringStringClient, base)
    AioDiscoveringStringClient.__name__ = "DiscoveringStringClient"
    AioDiscoveringStringClient.__qualname__ = "DiscoveringStringClient"
    AioDiscoveringStringClient.__module__ = base.__module__
    return AioDiscoveringStringClient


def new_aio_string_client(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``aio.StringClient(...)`` called with a discovery argument (the C
    constructor hands those calls here)."""
    from .aio import DiscoveringStringClient as discovering, StringClient as base

    servers, discovery, interval, rest = _split(args, kwargs)
    if discovery is None:
        return _cmemcache.AsyncStringClient.__new__(cls, servers, **rest)
    if cls is base:
        cls = discovering
    elif not issubclass(cls, discovering):
        raise TypeError(f"discovery= is for aio.StringClient itself, not a {cls.__name__}")
    client: Any = _cmemcache.AsyncStringClient.__new__(cls, servers, **rest)
    client._setup(interval, rest)
    return client
