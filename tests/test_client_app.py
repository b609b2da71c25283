"""A small application written for python-memcached, run unchanged with
``import memcache`` and with ``import cmemcache as memcache``.

The application (a session store, a login-attempt limiter and a memoizing
decorator) uses only python-memcached's API: get, set, add, delete, incr,
get_multi, set_multi and ``time=``.  Then: one cmemcache.Client shared by
threads, and one used on both sides of os.fork().
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import select
import signal
import threading
import time

import pytest

import cmemcache

# -- the application ---------------------------------------------------------------------


class SessionStore:
    """Sessions in memcached, python-memcached style."""

    def __init__(self, memcache, servers, prefix="sess:", ttl=3600):
        self.mc = memcache.Client(servers)
        self.prefix = prefix
        self.ttl = ttl

    def _key(self, sid):
        return self.prefix + sid

    def new_id(self):
        self.mc.add(self.prefix + "counter", 0)
        return "s%d" % self.mc.incr(self.prefix + "counter")

    def create(self, user, expires_at=None, **data):
        sid = self.new_id()
        session = {"user": user, "data": dict(data), "roles": ("reader",), "flags": {"new"}}
        time_ = expires_at if expires_at is not None else self.ttl
        if not self.mc.set(self._key(sid), session, time=time_):
            raise RuntimeError("session not stored")
        return sid

    def load(self, sid):
        return self.mc.get(self._key(sid))

    def update(self, sid, **changes):
        session = self.load(sid)
        if session is None:
            return False
        session["data"].update(changes)
        session["flags"].discard("new")
        return bool(self.mc.set(self._key(sid), session, time=self.ttl))

    def destroy(self, sid):
        return self.mc.delete(self._key(sid))

    def load_many(self, sids):
        return self.mc.get_multi(sids, key_prefix=self.prefix)

    def save_many(self, sessions):
        return self.mc.set_multi(sessions, time=self.ttl, key_prefix=self.prefix)

    def close(self):
        self.mc.disconnect_all()


class LoginLimiter:
    """Counts failed logins per user with add + incr."""

    def __init__(self, memcache, servers, limit=3):
        self.mc = memcache.Client(servers)
        self.limit = limit

    def fail(self, user):
        key = "fail:" + user
        if self.mc.add(key, 1, time=600):
            return 1
        return self.mc.incr(key)

    def blocked(self, user):
        count = self.mc.get("fail:" + user)
        return count is not None and count >= self.limit

    def reset(self, user):
        return self.mc.delete("fail:" + user)

    def close(self):
        self.mc.disconnect_all()


def memoize(mc, ttl=300, prefix="memo:"):
    """Caches a function's results; the result is wrapped in a tuple so that
    a cached None is a hit."""

    def decorate(fn):
        def key_for(args):
            digest = hashlib.sha1(repr(args).encode()).hexdigest()
            return "%s%s:%s" % (prefix, fn.__name__, digest)

        @functools.wraps(fn)
        def wrapper(*args):
            key = key_for(args)
            hit = mc.get(key)
            if hit is not None:
                return hit[0]
            result = fn(*args)
            mc.set(key, (result,), time=ttl)
            return result

        def many(arg_tuples):
            keys = {key_for(args): args for args in arg_tuples}
            found = mc.get_multi(list(keys))
            out = {args: found[k][0] for k, args in keys.items() if k in found}
            missing = [args for args in arg_tuples if args not in out]
            computed = {args: fn(*args) for args in missing}
            if computed:
                mc.set_multi({key_for(args): (v,) for args, v in computed.items()}, time=ttl)
            out.update(computed)
            return out

        wrapper.invalidate = lambda *args: mc.delete(key_for(args))
        wrapper.many = many
        return wrapper

    return decorate


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(params=["memcache", "cmemcache"])
def memcache(request):
    """``import memcache`` or ``import cmemcache as memcache``."""
    return importlib.import_module(request.param)


# -- the application, once per module ----------------------------------------------------


def test_sessions(server, memcache):
    store = SessionStore(memcache, [server.address])
    try:
        a = store.create("alice", theme="dark")
        b = store.create("bob")
        assert (a, b) == ("s1", "s2")
        assert store.load(a) == {"user": "alice", "data": {"theme": "dark"}, "roles": ("reader",),
                                 "flags": {"new"}}
        assert store.update(a, theme="light", lang="fr") is True
        assert store.load(a)["data"] == {"theme": "light", "lang": "fr"}
        assert store.load(a)["flags"] == set()
        assert store.update("s999", x=1) is False
        assert store.load("s999") is None

        many = store.load_many([a, b, "s999"])
        assert sorted(many) == [a, b]
        assert many[b]["user"] == "bob"

        assert store.save_many({"s100": {"user": "carol", "data": {}, "roles": (), "flags": set()},
                                "s101": {"user": "dave", "data": {}, "roles": (), "flags": set()}}) == []
        assert store.load("s101")["user"] == "dave"

        assert store.destroy(b) == 1
        assert store.destroy(b) == 0
        assert store.load(b) is None

        # a session whose absolute expiry time has passed is gone at once
        expired = store.create("eve", expires_at=int(time.time()) - 60)
        assert expired == "s3"
        assert store.load(expired) is None

        # what is on the server: a pickled dict (flag 1) and a decimal counter (flag 2)
        assert server.raw_get(b"sess:counter") == (b"3", 2)
        assert server.raw_get(b"sess:" + a.encode())[1] == 1
    finally:
        store.close()


def test_login_limiter(server, memcache):
    limiter = LoginLimiter(memcache, [server.address])
    try:
        assert limiter.blocked("alice") is False
        assert [limiter.fail("alice") for _ in range(4)] == [1, 2, 3, 4]
        assert limiter.blocked("alice") is True
        assert limiter.fail("bob") == 1
        assert limiter.blocked("bob") is False
        assert limiter.reset("alice") == 1
        assert limiter.blocked("alice") is False
        assert limiter.fail("alice") == 1
    finally:
        limiter.close()


def test_memoize(server, memcache):
    mc = memcache.Client([server.address])
    calls = []

    @memoize(mc)
    def slow_square(x):
        calls.append(x)
        return x * x

    @memoize(mc)
    def maybe(x):
        calls.append(("maybe", x))
        return None if x < 0 else {"x": x}

    try:
        assert [slow_square(i) for i in (1, 2, 3, 1, 2, 3)] == [1, 4, 9, 1, 4, 9]
        assert calls == [1, 2, 3]
        assert maybe(-1) is None
        assert maybe(-1) is None  # a cached None is a hit
        assert maybe(5) == {"x": 5} and maybe(5) == {"x": 5}
        assert calls == [1, 2, 3, ("maybe", -1), ("maybe", 5)]
        assert slow_square.invalidate(2) == 1
        assert slow_square(2) == 4
        assert calls[-1] == 2
        assert slow_square.many([(1,), (2,), (7,), (8,)]) == {(1,): 1, (2,): 4, (7,): 49, (8,): 64}
        assert calls[-2:] == [7, 8]
        assert slow_square.many([(7,), (8,)]) == {(7,): 49, (8,): 64}
        assert calls[-2:] == [7, 8] and len(calls) == 8
        assert slow_square.invalidate(99) == 0
    finally:
        mc.disconnect_all()


def _app_transcript(memcache, server):
    """Everything the application observes, plus the bytes it left on the server."""
    server.flush()
    out = []
    store = SessionStore(memcache, [server.address])
    limiter = LoginLimiter(memcache, [server.address])
    mc = memcache.Client([server.address])
    try:
        sids = [store.create(u, n=i) for i, u in enumerate(["ann", "ben", "cid"])]
        out.append(sids)
        out.append([store.load(s) for s in sids])
        out.append(store.update(sids[0], n=10))
        out.append(store.load_many(sids + ["nope"]))
        out.append(store.destroy(sids[1]))
        out.append(store.load_many(sids))
        out.append([limiter.fail("ann") for _ in range(3)] + [limiter.blocked("ann")])

        @memoize(mc, prefix="m:")
        def f(x):
            return [x] * 3

        out.append([f(1), f(1), f(2), f.many([(1,), (3,)])])
        keys = [b"sess:counter", b"fail:ann"] + [("sess:" + s).encode() for s in sids]
        keys += [("m:f:" + hashlib.sha1(repr((x,)).encode()).hexdigest()).encode() for x in (1, 2, 3)]
        out.append([server.raw_get(k) for k in keys])
    finally:
        store.close()
        limiter.close()
        mc.disconnect_all()
    return out


def test_same_transcript_with_both_modules(server):
    reference = _app_transcript(importlib.import_module("memcache"), server)
    ours = _app_transcript(cmemcache, server)
    assert ours == reference
    assert ours[0] == ["s1", "s2", "s3"]


# -- sharing one cmemcache.Client --------------------------------------------------------

THREADS = 8
ROUNDS = 500


def _value_for(tid, i):
    """A value that says which thread wrote it and when, in several types."""
    kind = i % 4
    if kind == 0:
        return {"tid": tid, "i": i, "pad": "x" * (i % 300)}
    if kind == 1:
        return "t%d-i%d-%s" % (tid, i, "é" * (i % 50))
    if kind == 2:
        return tid * 1_000_000 + i
    return ("t%d" % tid).encode() + b":%d" % i + b"\x00" * (i % 100)


def test_threads_share_one_client(server):
    client = cmemcache.Client([server.address], socket_timeout=10)
    barrier = threading.Barrier(THREADS)
    mismatches: list[tuple] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(tid):
        try:
            barrier.wait(timeout=30)
            mine = {}
            for i in range(ROUNDS):
                key = "t%d:k%d" % (tid, i % 40)
                value = _value_for(tid, i)
                if client.set(key, value) is not True:
                    with lock:
                        mismatches.append((tid, i, "set"))
                mine[key] = value
                got = client.get(key)
                if got != value or type(got) is not type(value):
                    with lock:
                        mismatches.append((tid, i, key, got))
                client.incr("shared-counter")
                if i % 25 == 24:
                    found = client.get_multi(list(mine))
                    if found != mine:
                        with lock:
                            mismatches.append((tid, i, "get_multi"))
        except BaseException as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(e)

    assert client.set("shared-counter", 0) is True
    threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(THREADS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        assert mismatches == []
        assert client.get("shared-counter") == THREADS * ROUNDS
        assert sum(client.error_counts.values()) == 0
        # every thread's last values are on the server
        for tid in range(THREADS):
            for j in range(40):
                i = max(i for i in range(ROUNDS) if i % 40 == j)
                assert client.get("t%d:k%d" % (tid, j)) == _value_for(tid, i)
    finally:
        client.disconnect_all()


def _wait_child(pid, deadline):
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("child did not finish")
        time.sleep(0.01)


def _read_all(fd, deadline):
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no complete reply from the child: {data!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return data
            data += chunk


def _exercise(client, who, n):
    """n self-checking set/get rounds; returns the number of mismatches."""
    bad = 0
    for i in range(n):
        key = "%s:%d" % (who, i % 30)
        value = {"who": who, "i": i, "pad": who * (i % 20)}
        if client.set(key, value) is not True:
            bad += 1
        if client.get(key) != value:
            bad += 1
        if client.get("before-fork") != "parent value":
            bad += 1
    return bad


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_child_and_parent_share_the_client(server):
    client = cmemcache.Client([server.address], socket_timeout=10)
    try:
        # open pooled connections in the parent before forking
        assert client.set("before-fork", "parent value") is True
        assert client.get_multi(["before-fork"]) == {"before-fork": "parent value"}
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                os.close(r)
                report = {
                    "before": client.get("before-fork"),
                    "mismatches": _exercise(client, "child", 300),
                    "multi": client.get_multi(["child:0", "before-fork"]),
                    "set": client.set("child-pid", os.getpid()),
                    "errors": sum(client.error_counts.values()),
                }
                os.write(w, json.dumps(report).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        deadline = time.monotonic() + 60
        try:
            parent_mismatches = _exercise(client, "parent", 300)
            raw = _read_all(r, deadline)
        finally:
            os.close(r)
            status = _wait_child(pid, deadline)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        report = json.loads(raw)
        assert report["before"] == "parent value"
        assert report["mismatches"] == 0
        assert report["multi"] == {"child:0": {"who": "child", "i": 270, "pad": "child" * 10},
                                   "before-fork": "parent value"}
        assert report["set"] is True
        assert report["errors"] == 0
        assert parent_mismatches == 0
        # the parent's client still works and sees what the child wrote
        assert client.get("child-pid") == pid
        assert client.get("child:29") == {"who": "child", "i": 299, "pad": "child" * 19}
        assert client.get("parent:29") == {"who": "parent", "i": 299, "pad": "parent" * 19}
        assert sum(client.error_counts.values()) == 0
    finally:
        client.disconnect_all()
