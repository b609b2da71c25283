"""Stampede-proof ``get_or_set`` and ``invalidate`` on memcached's meta
commands: leases (``mg`` with ``N`` vivify and ``R`` recache, a win flag
for one caller only), stale values served while one caller refreshes.

A plan (see cmemcache.client) that yields the engine calls it needs, plus
two steps of its own, each as (callable, args, kwargs): running the
producer and sleeping between polls, so the same policy runs on any
driver that runs plans and calls those callables.

The states of ``mg key v f c N<lock_ttl> [R<recache_ttl>]`` and what a
caller does in each:

- a miss: memcached creates an empty item that lives ``lock_ttl`` seconds
  and gives this caller the win (``W``): it runs the producer and stores
  the value with the empty item's cas; if the producer raises, it deletes
  the empty item (with that cas) so the next caller wins at once.
- the empty item, won by another caller (``Z``): it waits, polling, until
  the value lands, or until the empty item expires (its winner died) and
  one of the waiters wins in its turn: nobody recomputes meanwhile.
- a stale value (``X``, from ``invalidate``): one caller wins and refreshes
  it; the others are served the stale value at once.
- a value whose TTL fell under ``recache_ttl``: one caller wins and
  refreshes it early; the others are served it at once.
- any other value: returned.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from ._cmemcache import Error, MetaResult

# the longest sleep between two polls of a value another caller computes
MAX_POLL = 0.1
FIRST_POLL = 0.005


def _seconds(name: str, value: Any, *, zero: bool, none: bool = False) -> Any:
    """A TTL argument checked: an int of seconds (0 allowed when zero)."""
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1) \
            or value > 0x7FFFFFFF:
        what = ">= 0" if zero else "> 0"
        raise ValueError(f"{name} must be an int of seconds {what}, not {value!r}")
    return value


def check(producer: Any, ttl: Any, lock_ttl: Any, stale_ttl: Any, recache_ttl: Any,
          wait: Any) -> float:
    """Refuses bad arguments before anything is sent; returns the longest
    wait in seconds."""
    if not callable(producer):
        raise TypeError(f"producer must be callable, not {type(producer).__name__}")
    _seconds("ttl", ttl, zero=True)
    _seconds("lock_ttl", lock_ttl, zero=False)
    _seconds("stale_ttl", stale_ttl, zero=False, none=True)
    _seconds("recache_ttl", recache_ttl, zero=False, none=True)
    if wait is None:
        # the winner's lease, then a waiter's own if the winner died
        return 2.0 * float(lock_ttl) + 1.0
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not wait >= 0 \
            or math.isinf(wait):
        raise ValueError(f"wait must be a number of seconds >= 0, not {wait!r}")
    return float(wait)


def _empty(r: MetaResult) -> bool:
    """What a miss vivified looks like: no value, no flags, not stale."""
    return not r.stale and r.flags == 0 and r.value == b""


def plan_get_or_set(client: Any, key: Any, producer: Callable[[], Any], ttl: int,
                    lock_ttl: int, stale_ttl: int | None, recache_ttl: int | None,
                    wait: float, sleep: Callable[[float], Any]) -> Any:
    """The plan of ``get_or_set`` (client: the _Policy whose keys,
    serializer and failure handling apply)."""
    key = client._prepare_key(key)
    ask: dict[str, Any] = {"flags": True, "cas": True, "vivify": lock_ttl}
    if recache_ttl is not None:
        ask["recache"] = recache_ttl
    deadline = time.monotonic() + wait
    pause = FIRST_POLL
    while True:
        try:
            r = yield "meta_get", (key,), ask
        except (Error, TypeError) as e:
            # no cache to ask: the value is computed here, not stored
            client._keyed_failure("get_or_set", key, e, None)
            return (yield producer, (), {})
        if r.win:
            return (yield from _produce(client, key, r, producer, ttl, stale_ttl))
        if not (r.won and _empty(r)):  # anything but a lease another caller holds
            value = client._decode(key, r.value, r.flags, _UNDECODABLE)
            if value is not _UNDECODABLE:
                return value
            return (yield producer, (), {})  # logged as undecodable; not stored
        left = deadline - time.monotonic()
        if left <= 0:
            # waited as long as allowed: computed here, not stored
            client.error_counts["LeaseWait"] += 1
            return (yield producer, (), {})
        yield sleep, (min(pause, left),), {}
        pause = min(pause * 2, MAX_POLL)


_UNDECODABLE = object()


def _produce(client: Any, key: Any, r: MetaResult, producer: Callable[[], Any], ttl: int,
             stale_ttl: int | None) -> Any:
    """This caller won: runs the producer and stores what it returns with
    the cas the win came with (a newer write by anyone else stays)."""
    empty = _empty(r)
    if r.stale and stale_ttl is not None:
        # should this caller die, the stale value goes after stale_ttl
        try:
            yield "meta_get", (key,), {"value": False, "touch": stale_ttl}
        except Error as e:
            client._failed("get_or_set", e)
    try:
        value = yield producer, (), {}
    except BaseException:
        if empty:
            try:
                yield "meta_delete", (key,), {"cas": r.cas}
            except Error as e:
                client._failed("get_or_set", e)
        raise
    data, flags = client._serializer.dumps(value, 0)
    try:
        yield "meta_set", (key, data), {"ttl": ttl, "flags": flags, "cas": r.cas}
    except Error as e:
        client._failed("get_or_set", e)
    return value


def plan_invalidate(client: Any, key: Any, stale_ttl: int | None) -> Any:
    """The plan of ``invalidate``: marks the value stale (``md key I``):
    True when there was one."""
    _seconds("stale_ttl", stale_ttl, zero=False, none=True)
    key = client._prepare_key(key)
    kw: dict[str, Any] = {"invalidate": True}
    if stale_ttl is not None:
        kw["ttl"] = stale_ttl
    try:
        found: bool = yield "meta_delete", (key,), kw
    except (Error, TypeError) as e:
        return client._keyed_failure("invalidate", key, e, False)
    return found
