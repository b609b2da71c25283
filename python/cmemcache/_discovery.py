"""ElastiCache auto-discovery: the node list read from a configuration
endpoint's ``config get cluster`` reply, and the pollers that keep a
client's server list equal to it.

The reply's value is two lines: the configuration's version, then the
nodes, ``hostname|ip|port`` separated by spaces.  A node is reached by its
hostname (what TLS verifies), by its IP address when the hostname is empty.

The blocking client polls from a daemon thread that holds the client only
weakly (it ends when the client is collected, and starts again in a forked
child); the asyncio client polls from a task on the loop its ``discover()``
ran on, cancelled by ``close()``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import weakref
from typing import Any, Callable

from ._cmemcache import Error, ProtocolError

log = logging.getLogger("cmemcache")

#: the ``discovery=`` values the clients take
KINDS = ("elasticache",)

_VERSION = re.compile(rb"[0-9]{1,19}")
_PORT = re.compile(rb"[0-9]{1,5}")
_NAME = re.compile(rb"[A-Za-z0-9._:-]{1,253}")


def parse_cluster(body: bytes) -> tuple[int, list[str]]:
    """(version, ["host:port", ...]) from a ``config get cluster`` value;
    ProtocolError for anything else."""
    lines = body.split(b"\n")
    if len(lines) < 2 or any(line for line in lines[2:]):
        raise ProtocolError("config get cluster: expected a version line and a node line")
    head, nodes_line = lines[0].rstrip(b"\r"), lines[1].rstrip(b"\r")
    if not _VERSION.fullmatch(head):
        raise ProtocolError(f"config get cluster: bad version line {head[:40]!r}")
    nodes: list[str] = []
    for token in nodes_line.split(b" "):
        parts = token.split(b"|")
        if len(parts) != 3:
            raise ProtocolError(f"config get cluster: bad node {token[:80]!r} "
                                "(expected hostname|ip|port)")
        host, ip, port = parts
        addr = host or ip
        if not _NAME.fullmatch(addr) or (ip and not _NAME.fullmatch(ip)) \
                or not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
            raise ProtocolError(f"config get cluster: bad node {token[:80]!r}")
        name = addr.decode("ascii")
        spec = f"[{name}]:{int(port)}" if ":" in name else f"{name}:{int(port)}"
        if spec not in nodes:
            nodes.append(spec)
    return int(head), nodes


def cluster_of(reply: dict[str, bytes | None]) -> tuple[int, list[str]]:
    """The parsed configuration of a config_get("cluster") reply of one server."""
    ((name, body),) = reply.items()
    if body is None:
        raise ProtocolError(f"{name}: no cluster configuration (not an ElastiCache "
                            "configuration endpoint)")
    return parse_cluster(body)


def log_failure(exc: Error) -> None:
    """A failed discovery, logged: the client keeps the servers it has."""
    log.warning("cmemcache: discovery failed (the server list is kept): %s", exc)


def check(discovery: str | None, servers: list[Any], interval: float) -> None:
    """Refuses what a client with discovery= cannot work with."""
    if discovery is None:
        return
    if discovery not in KINDS:
        raise ValueError(f"discovery must be one of {KINDS} or None, not {discovery!r}")
    if len(servers) != 1:
        raise ValueError("discovery='elasticache' takes the configuration endpoint as the "
                         f"only server ({len(servers)} given)")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) \
            or not interval > 0:
        raise ValueError(f"discovery_interval must be a number of seconds > 0, not {interval!r}")


# -- the blocking client's poller ------------------------------------------------------------

_pollers: weakref.WeakSet[ThreadPoller] = weakref.WeakSet()


class ThreadPoller:
    """Calls ``discover()`` of a client every ``interval`` seconds from a
    daemon thread, until the client is collected or ``stop()``."""

    def __init__(self, client: Any, interval: float) -> None:
        self._ref: Callable[[], Any] = weakref.ref(client)
        self.interval = interval
        self._stop = threading.Event()
        weakref.finalize(client, self._stop.set)
        _pollers.add(self)
        client._poller = self  # the poller lives as long as its client
        self._start()

    def _start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="cmemcache-discovery",
                                       daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            client = self._ref()
            if client is None:
                return
            try:
                client.discover()
            except Error as exc:
                log_failure(exc)
            del client

    def stop(self) -> None:
        self._stop.set()

    def _after_fork(self) -> None:
        # the thread did not survive fork(): the child polls with its own
        self._stop = threading.Event()
        client = self._ref()
        if client is not None:
            weakref.finalize(client, self._stop.set)
            self._start()


def _restart_pollers() -> None:
    for poller in list(_pollers):
        poller._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_pollers)


# -- the asyncio client's poller -------------------------------------------------------------


async def poll(ref: Callable[[], Any], interval: float) -> None:
    """The asyncio client's polling task: discover() every interval seconds
    while the client exists."""
    while True:
        await asyncio.sleep(interval)
        client = ref()
        if client is None:
            return
        try:
            await client.discover()
        except Error as exc:
            log_failure(exc)
        del client


async def discover_logged(client: Any) -> None:
    """await client.discover(), a failure logged."""
    try:
        await client.discover()
    except Error as exc:
        log_failure(exc)


def first_discovery(client: Any) -> asyncio.Task[None] | None:
    """Made inside a running loop (a framework's backend), an asyncio
    client discovers at once, in this task; otherwise (None) on ``async
    with`` or discover()."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return loop.create_task(discover_logged(client))


def poll_task(task: asyncio.Task[None] | None, client: Any,
              interval: float) -> asyncio.Task[None]:
    """task, or (when it is None, ended, or of another loop: one closed) a
    new polling task for client on the running loop."""
    loop = asyncio.get_running_loop()
    if task is None or task.done() or task.get_loop() is not loop:
        task = loop.create_task(poll(weakref.ref(client), interval))
    return task


def retire_later(retired: list[Any], old: Any, timeout: float) -> None:
    """Closes the asyncio engine old, which discovery replaced, once every
    call started on it has ended by its deadline (timeout + 1 seconds);
    it waits in retired until then (close() closes what is there at once).
    Without a running loop: now."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        old._close_now()
        return
    retired.append(old)

    def close_old() -> None:
        if old in retired:
            retired.remove(old)
            old._close_now()

    loop.call_later(timeout + 1.0, close_old)
