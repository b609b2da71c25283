"""One ``cmemcache.aio.Client`` per running event loop.

An asyncio client is bound to the loop its first call ran on.  A framework's
cache object (a Django backend, an aiocache cache) outlives loops: Django
runs each ``async_to_sync`` call and each async test on a loop of its own,
ASGI servers may run several loops in threads, scripts call
``asyncio.run`` more than once.  ``PerLoop`` makes a client for each loop
on its first call there, from the same servers and options, and closes the
clients of loops that have closed.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable

from .aio import Client

__all__ = ["PerLoop"]


class PerLoop:
    """The clients of one configuration, one per event loop.

    ``client()`` is the running loop's (made on first use by ``make``).  A
    client whose loop has closed is closed (its connections with it) the
    next time a client is made for a new loop, or by ``close_all()``; one
    whose loop is garbage collected unused is forgotten with it (the
    mapping holds its loops weakly).  ``made`` counts the clients made.
    """

    def __init__(self, make: Callable[[], Client]) -> None:
        self._make = make
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Client] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self.made = 0

    def client(self) -> Client:
        """The running loop's client (RuntimeError outside a running loop)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            with self._lock:
                client = self._clients.get(loop)
                if client is None:
                    self._sweep()
                    client = self._clients[loop] = self._make()
                    self.made += 1
        return client

    def _sweep(self) -> None:
        """Closes and forgets the clients of closed loops (lock held)."""
        for loop, client in list(self._clients.items()):
            if loop.is_closed():
                del self._clients[loop]
                _close_now(client)

    def loops(self) -> int:
        """How many loops have a client now."""
        with self._lock:
            return len(self._clients)

    async def close(self) -> None:
        """Closes the running loop's client (it reconnects on its next call)
        and the clients of closed loops."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            self._sweep()
        if client is not None:
            await client.close()

    def close_all(self) -> None:
        """Closes every client now (what is in flight on them fails) and
        forgets them: the next call on any loop makes a new one.  For when
        their loops are closed or idle (shutdown, tests): a loop's
        callbacks are not thread-safe."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            _close_now(client)


def _close_now(client: Client) -> None:
    """Closes a client from outside its loop (which may be closed): its
    connections are closed at once, nothing is awaited."""
    client._sc._close_now()
