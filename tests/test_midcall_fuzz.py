"""Hypothesis drives the multi-key calls with user objects whose hooks change
the call's own arguments at random points.

Keys are str subclasses whose ``__hash__`` fires, ``(hash, key)`` tuples whose
int's ``__str__`` fires, values whose ``__buffer__`` fires (Python 3.12+), and
a decoder that fires.  Firing does one of: empty the caller's key list or
mapping, replace its items with fresh objects (freeing the originals: the
list holds the only references), drop or add items, run the garbage
collector, or call the same client again.  Whatever fires, every call returns
exactly what a model of the server says, and (under tests/sanitize.sh) the
sanitizers report nothing.
"""

from __future__ import annotations

import gc
import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cmemcache
from cmemcache import StringClient

EXAMPLES = int(os.environ.get("CMEMCACHE_MIDCALL_EXAMPLES", "120"))

ACTIONS = ["clear", "refill", "shrink", "grow", "gc", "reenter", "none"]


class Chaos:
    """What the hooks do when they fire: the plan of one example."""

    def __init__(self):
        self.reset()

    def reset(self, plan=(), victim=None, client=None, model=None):
        self.plan = list(plan)
        self.victim = victim
        self.client = client
        self.model = model
        self.fired = 0
        self.busy = False

    def fire(self):
        if not self.plan or self.busy:
            return
        self.busy = True  # the hooks of the objects touched here stay quiet
        try:
            self._act(self.plan.pop(0))
        finally:
            self.busy = False

    def _act(self, action):
        self.fired += 1
        v = self.victim
        if action == "gc":
            gc.collect()
        elif action == "reenter" and self.client is not None and self.model:
            # the same client, called from inside its own call: nothing of
            # this call has been sent yet, so the server holds the model
            name = sorted(self.model)[self.fired % len(self.model)]
            got = self.client.get(key_for(name))
            assert got == self.model[name][0]
        elif v is None:
            return
        elif isinstance(v, list):
            if action == "clear":
                v.clear()
            elif action == "refill":
                v[:] = [("junk%d" % i) * 5 for i in range(len(v) + 3)]
            elif action == "shrink":
                del v[: len(v) // 2]
            elif action == "grow":
                v.extend(("more%d" % i) * 4 for i in range(20))
        elif isinstance(v, dict):
            if action == "clear":
                v.clear()
            elif action == "refill":
                n = len(v)
                v.clear()
                v.update({("junk%d" % i) * 5: b"j" for i in range(n + 3)})
            elif action == "shrink":
                for k in list(v)[: len(v) // 2]:
                    v.pop(k, None)
            elif action == "grow":
                v.update({("more%d" % i) * 4: b"m" for i in range(20)})


CHAOS = Chaos()


class HookStr(str):
    def __hash__(self):
        CHAOS.fire()
        return str.__hash__(self)

    def __eq__(self, other):
        return str.__eq__(self, other)


class HookInt(int):
    def __str__(self):
        CHAOS.fire()
        return int.__str__(self)


class HookBuffer:
    def __init__(self, data):
        self.data = data

    def __buffer__(self, flags):
        CHAOS.fire()
        return memoryview(self.data)


def tuple_hash(name: str) -> int:
    return sum(ord(c) * 131**i for i, c in enumerate(name)) % 1_000_003


def key_for(name: str, hooked: bool = False):
    """The key object for a name: 'p' names are str, 'b' bytes, 't' tuples."""
    if name[0] == "p":
        return HookStr(name) if hooked else name
    if name[0] == "b":
        return name.encode()
    h = tuple_hash(name)
    return (HookInt(h) if hooked else h, name)


def result_key(name: str):
    return key_for(name)


names = st.sampled_from(["p%d" % i for i in range(8)] + ["b%d" % i for i in range(6)]
                        + ["t%d" % i for i in range(8)])
hooked = st.booleans()
plans = st.lists(st.sampled_from(ACTIONS), max_size=6)
value_kinds = st.sampled_from(["bytes", "bytearray", "memoryview", "hook", "flagged"])
values = st.binary(max_size=40)

op = st.one_of(
    st.tuples(st.just("set_multi"), st.lists(st.tuples(names, hooked, value_kinds, values),
                                              min_size=1, max_size=12), plans),
    st.tuples(st.sampled_from(["get_multi", "gets_multi", "get_multi_decoded", "delete_multi",
                               "client_get_multi"]),
              st.lists(st.tuples(names, hooked), min_size=1, max_size=16), plans),
)


@pytest.fixture(scope="module")
def servers(memcached_factory_module):
    return [memcached_factory_module() for _ in range(2)]


@pytest.fixture(scope="module")
def memcached_factory_module():
    from conftest import MemcachedServer

    made = []

    def make():
        s = MemcachedServer()
        made.append(s)
        return s

    yield make
    for s in made:
        s.dispose()


def decoder_for(chaos):
    def decoder(key, data, flags, omit):
        chaos.fire()
        return ("decoded", data, flags)

    return decoder


def run_ops(sc, client, ops):
    model: dict[str, tuple[bytes, int]] = {}
    sc.flush_all()
    for kind, args, plan in ops:
        CHAOS.reset()  # inert while the arguments are built
        if kind == "set_multi":
            mapping = {}
            expect_model = dict(model)
            for name, hk, vkind, data in args:
                key = key_for(name, hk)
                flags = 0x100 if vkind == "flagged" else 0
                if vkind == "bytes" or vkind == "flagged":
                    value = bytes(data)
                elif vkind == "bytearray":
                    value = bytearray(data)
                elif vkind == "memoryview":
                    value = memoryview(bytes(data))
                else:
                    value = HookBuffer(bytes(data)) if sys.version_info >= (3, 12) else bytes(data)
                mapping.pop(key, None)
                mapping[key] = (value, flags) if flags else value
                expect_model[name] = (bytes(data), flags)
            CHAOS.reset(plan, mapping, sc, dict(model))
            assert sc.set_multi(mapping) == []
            model = expect_model
            continue
        # fresh key objects: the list holds the only reference to each
        victim = [key_for(name, hk) for name, hk in args]
        asked = [name for name, _ in args]
        CHAOS.reset(plan, victim, sc, dict(model))
        if kind == "get_multi":
            got = sc.get_multi(victim)
            assert got == {result_key(n): model[n][0] for n in asked if n in model}
        elif kind == "gets_multi":
            got = sc.gets_multi(victim)
            assert {k: v for k, (v, _c) in got.items()} == {
                result_key(n): model[n][0] for n in asked if n in model
            }
        elif kind == "get_multi_decoded":
            omit = object()
            got = sc.get_multi_decoded(victim, b"", decoder_for(CHAOS), omit)
            want = {}
            for n in asked:
                if n in model:
                    data, flags = model[n]
                    want[result_key(n)] = data if flags == 0 else ("decoded", data, flags)
            assert got == want
        elif kind == "delete_multi":
            found = True
            gone = set()
            for n in asked:
                if n not in model or n in gone:
                    found = False
                gone.add(n)
            assert sc.delete_multi(victim) is found
            for n in gone:
                model.pop(n, None)
        elif kind == "client_get_multi":
            CHAOS.client = None  # the Client reads values it did not write
            got = client.get_multi(victim)
            want = {}
            for n in asked:
                if n in model:
                    data, flags = model[n]
                    if flags == 0:
                        want[result_key(n)] = data
            assert got == want


@pytest.mark.hang_timeout(900)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(op, min_size=1, max_size=6), distribution=st.sampled_from(["ketama", "modula"]))
def test_hooks_that_change_the_arguments_never_corrupt_a_call(servers, ops, distribution):
    for s in servers:
        s.resume()
    addresses = [s.address for s in servers]
    sc = StringClient(addresses, distribution=distribution, timeout=5)
    client = cmemcache.Client(addresses, distribution=distribution, failover="none")
    try:
        run_ops(sc, client, ops)
    finally:
        CHAOS.reset()
        sc.disconnect_all()
        client.disconnect_all()
