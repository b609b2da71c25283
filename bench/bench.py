#!/usr/bin/env python3
"""Throughput benchmark: cmemcache against the other Python memcached clients.

    python3 bench/bench.py [--quick] [--out DIR] [--cases a,b] [--clients x,y]
                           [--scaling] [--rounds N]

Starts its own memcached servers on free loopback ports (one, plus four for the
multi-server case), checks every client's answers for each case, then times the
clients in interleaved rounds and reports the median ops/s per client, the ratio
to pylibmc and the fraction of the raw C loop (bench/rawloop.c).

Writes a Markdown table to stdout and OUT/results.md, the numbers to
OUT/results.json, and with --scaling OUT/scaling_value_size.png and
OUT/scaling_multi.png. See bench/README.md.
"""

import argparse
import atexit
import datetime
import functools
import gc
import importlib
import inspect
import json
import os
import pickle
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results")
BUILD_DIR = os.path.join(HERE, "build")
RAWLOOP_SRC = os.path.join(HERE, "rawloop.c")
HOST = "127.0.0.1"
PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL


# --------------------------------------------------------------------------
# memcached servers


_SERVERS = []


class Memcached:
    """One memcached process on a free loopback port; extra_args are added
    to its command line (with -Z, tls=True: ready once it accepts, as a
    plain "version" gets no answer)."""

    def __init__(self, binary=None, cpus=None, extra_args=(), tls=False):
        self.binary = binary or shutil.which("memcached") or "/usr/bin/memcached"
        self.cpus = cpus          # CPU set to pin the server to, or None
        self.extra_args = list(extra_args)
        self.tls = tls
        self.proc = None
        self.port = None

    def start(self):
        last_err = None
        for _attempt in range(5):
            port = _free_port()
            cmd = [self.binary, "-U", "0", "-l", HOST, "-p", str(port),
                   "-t", "2", "-m", "1024", "-I", "2m"] + self.extra_args
            if os.geteuid() == 0:
                cmd += ["-u", "root"]
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE,
                                    preexec_fn=functools.partial(_server_child_setup, self.cpus))
            _SERVERS.append(self)
            self.proc, self.port = proc, port
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    last_err = proc.stderr.read().decode(errors="replace").strip()
                    break
                try:
                    with socket.create_connection((HOST, port), timeout=0.5) as s:
                        if self.tls:
                            return self
                        s.sendall(b"version\r\n")
                        if s.recv(64).startswith(b"VERSION"):
                            return self
                except OSError as e:
                    last_err = str(e)
                time.sleep(0.05)
            self.stop()
        raise RuntimeError("memcached did not start: %s" % last_err)

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stderr:
            proc.stderr.close()

    @property
    def address(self):
        return "%s:%d" % (HOST, self.port)


def _server_child_setup(cpus):
    """In the forked child before exec: pin the CPUs, and have the kernel send
    SIGTERM to the server if this process dies without cleaning up (SIGKILL)."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except Exception:
        pass


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def stop_all_servers():
    for srv in list(_SERVERS):
        srv.stop()
    _SERVERS.clear()


atexit.register(stop_all_servers)


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def install_signal_handlers():
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, _on_signal)
        except (ValueError, OSError):
            pass


def repo_revision():
    """The commit of the repository holding this benchmark (cmemcache's sources),
    with "+dirty" when ext/ or python/ have uncommitted changes."""
    root = os.path.dirname(HERE)
    try:
        rev = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "ext",
                                "python"], capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def memcached_version():
    try:
        out = subprocess.run([shutil.which("memcached") or "/usr/bin/memcached", "-V"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


class Seeder:
    """A minimal text-protocol connection used to prepare and verify server state.

    It is independent of the clients under test, so a wrong client cannot
    make its own check pass.
    """

    def __init__(self, port):
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb")

    def close(self):
        self.f.close()
        self.sock.close()

    @staticmethod
    def _b(key):
        return key.encode() if isinstance(key, str) else key

    def set_many(self, items, flags=0, batch=500):
        items = list(items)
        for i in range(0, len(items), batch):
            chunk = items[i:i + batch]
            parts = []
            for key, value in chunk:
                parts.append(b"set %s %d 0 %d\r\n" % (self._b(key), flags, len(value)))
                parts.append(value)
                parts.append(b"\r\n")
            self.sock.sendall(b"".join(parts))
            for _ in chunk:
                line = self.f.readline()
                if line != b"STORED\r\n":
                    raise RuntimeError("seed set failed: %r" % line)

    def set(self, key, value, flags=0):
        self.set_many([(key, value)], flags)

    def get_multi(self, keys):
        keys = [self._b(k) for k in keys]
        self.sock.sendall(b"get " + b" ".join(keys) + b"\r\n")
        out = {}
        for _ in range(len(keys) + 1):
            line = self.f.readline()
            if line == b"END\r\n":
                return out
            parts = line.split()
            if len(parts) != 4 or parts[0] != b"VALUE":
                raise RuntimeError("unexpected reply %r" % line)
            data = self.f.read(int(parts[3]) + 2)
            out[parts[1]] = data[:-2]
        raise RuntimeError("get reply too long")

    def get(self, key):
        return self.get_multi([key]).get(self._b(key))

    def delete_many(self, keys, batch=500):
        keys = [self._b(k) for k in keys]
        for i in range(0, len(keys), batch):
            chunk = keys[i:i + batch]
            self.sock.sendall(b"".join(b"delete %s\r\n" % k for k in chunk))
            for _ in chunk:
                line = self.f.readline()
                if line not in (b"DELETED\r\n", b"NOT_FOUND\r\n"):
                    raise RuntimeError("seed delete failed: %r" % line)

    def delete(self, key):
        self.delete_many([key])


# --------------------------------------------------------------------------
# the raw C loop


def build_rawloop():
    """Compile bench/rawloop.c with cc -O2 into bench/build/ if missing or stale."""
    exe = os.path.join(BUILD_DIR, "rawloop")
    if os.path.exists(exe) and os.path.getmtime(exe) >= os.path.getmtime(RAWLOOP_SRC):
        return exe
    os.makedirs(BUILD_DIR, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    tmp = exe + ".tmp%d" % os.getpid()
    try:
        subprocess.run([cc, "-O2", "-o", tmp, RAWLOOP_SRC], check=True, timeout=120)
        os.replace(tmp, exe)
    except (OSError, subprocess.SubprocessError) as e:
        print("warning: cannot build the raw C loop (%s); its column is skipped" % e,
              file=sys.stderr)
        return None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return exe


def run_rawloop(exe, port, op, size, nkeys, n, timeout=600):
    out = subprocess.run([exe, HOST, str(port), op, str(size), str(nkeys), str(n)],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError("rawloop failed: %s" % out.stderr.strip())
    return json.loads(out.stdout)


# --------------------------------------------------------------------------
# clients


class ClientSpec:
    """How to build one client library's client and what it supports."""

    key = ""            # --clients name
    label = ""          # column title
    module = ""         # import to test availability
    pickles = True      # stores arbitrary objects itself (pickle)

    def available(self):
        try:
            importlib.import_module(self.module)
        except Exception as e:  # ImportError, or a broken build
            return False, "%s: %s" % (type(e).__name__, e)
        return True, None

    def version(self):
        try:
            from importlib.metadata import version
            return version(self.dist)
        except Exception:
            mod = importlib.import_module(self.module)
            return getattr(mod, "__version__", None)

    def make(self, ports, pickling=False):
        raise NotImplementedError

    @staticmethod
    def disconnect(c):
        """Close the client's connections; it reconnects on the next call."""
        for name in ("disconnect_all", "close"):
            fn = getattr(c, name, None)
            if fn is not None:
                fn()
                return


class StringClientSpec(ClientSpec):
    key, label, module, dist, pickles = ("stringclient", "cmemcache.StringClient",
                                         "cmemcache", "cmemcache", False)

    def available(self):
        ok, why = ClientSpec.available(self)
        if ok and not hasattr(importlib.import_module("cmemcache"), "StringClient"):
            return False, "cmemcache has no StringClient"
        return ok, why

    def make(self, ports, pickling=False):
        import cmemcache
        return cmemcache.StringClient(["%s:%d" % (HOST, p) for p in ports])


class StringClientMetaSpec(StringClientSpec):
    key, label = "stringclient-meta", 'cmemcache.StringClient(protocol="meta")'

    def make(self, ports, pickling=False):
        import cmemcache
        return cmemcache.StringClient(["%s:%d" % (HOST, p) for p in ports], protocol="meta")


class CmemcacheClientSpec(ClientSpec):
    key, label, module, dist, pickles = ("client", "cmemcache.Client", "cmemcache",
                                         "cmemcache", True)

    def available(self):
        ok, why = ClientSpec.available(self)
        if ok and not hasattr(importlib.import_module("cmemcache"), "Client"):
            return False, "cmemcache has no Client yet"
        return ok, why

    def make(self, ports, pickling=False):
        import cmemcache
        servers = ["%s:%d" % (HOST, p) for p in ports]
        try:
            params = inspect.signature(cmemcache.Client).parameters
        except (TypeError, ValueError):
            params = {}
        if "pickleProtocol" in params:
            return cmemcache.Client(servers, pickleProtocol=PICKLE_PROTOCOL)
        return cmemcache.Client(servers)


class PythonMemcachedSpec(ClientSpec):
    key, label, module, dist = "python-memcached", "python-memcached", "memcache", "python-memcached"

    def make(self, ports, pickling=False):
        import memcache
        # pickleProtocol defaults to 0 in python-memcached; use the same
        # protocol as every other client so the pickle cases compare clients.
        return memcache.Client(["%s:%d" % (HOST, p) for p in ports],
                               pickleProtocol=PICKLE_PROTOCOL)


class PymemcacheSpec(ClientSpec):
    key, label, module, dist = "pymemcache", "pymemcache", "pymemcache", "pymemcache"

    def make(self, ports, pickling=False):
        from pymemcache.client.base import Client
        from pymemcache.client.hash import HashClient
        kw = dict(default_noreply=False, no_delay=True)
        if pickling:
            from pymemcache import serde
            kw["serde"] = serde.PickleSerde(pickle_version=PICKLE_PROTOCOL)
        if len(ports) == 1:
            return Client((HOST, ports[0]), **kw)
        return HashClient([(HOST, p) for p in ports], **kw)


class PylibmcSpec(ClientSpec):
    key, label, module, dist = "pylibmc", "pylibmc", "pylibmc", "pylibmc"

    def version(self):
        import pylibmc
        return "%s (libmemcached %s)" % (pylibmc.__version__, pylibmc.libmemcached_version)

    def make(self, ports, pickling=False):
        import pylibmc
        behaviors = {"tcp_nodelay": True}
        if len(ports) > 1:
            behaviors["ketama"] = True
        return pylibmc.Client(["%s:%d" % (HOST, p) for p in ports], binary=False,
                              behaviors=behaviors)


class CmemcacheClientMetaSpec(CmemcacheClientSpec):
    key, label = "client-meta", 'cmemcache.Client(protocol="meta")'

    def make(self, ports, pickling=False):
        import cmemcache
        return cmemcache.Client(["%s:%d" % (HOST, p) for p in ports],
                                pickleProtocol=PICKLE_PROTOCOL, protocol="meta")


CLIENT_SPECS = [StringClientSpec(), StringClientMetaSpec(), CmemcacheClientSpec(),
                CmemcacheClientMetaSpec(), PythonMemcachedSpec(),
                PymemcacheSpec(), PylibmcSpec()]
RAW = "raw"
RAW_LABEL = "raw C loop"
REFERENCE = "pylibmc"
CLIENT_ALIASES = {
    "cmemcache": "stringclient", "string": "stringclient", "cmemcache.stringclient": "stringclient",
    "cmemcache.client": "client", "python_memcached": "python-memcached",
    "memcache": "python-memcached", "rawloop": RAW, "c": RAW,
}


def label_of(key):
    if key == RAW:
        return RAW_LABEL
    for spec in CLIENT_SPECS:
        if spec.key == key:
            return spec.label
    return key


# --------------------------------------------------------------------------
# cases

SMALL = b"0123456789"                       # 10 bytes
BIG = random.Random(1).randbytes(100 * 1024)        # 100 KiB
MIX_VALUE = b"v" * 100
PICKLE_OBJ = {"id": 123456, "name": "user-123456", "email": "user123456@example.com",
              "active": True, "score": 3.25, "tags": ["alpha", "beta", "gamma"]}
MULTI_KEYS = ["bench:gm:%d" % i for i in range(100)]
SETM_KEYS = ["bench:sm:%d" % i for i in range(100)]
MULTI4_KEYS = ["bench:gm4:%d" % i for i in range(100)]
ZIPF_KEYS = 10000
ZIPF_S = 1.0
ZIPF_SEED = 20240601
ZIPF_LEN = 400000


class Env:
    """Servers and seeders shared by all cases."""

    def __init__(self, one, four):
        self.one = one
        self.four = four
        self.seed1 = Seeder(one.port)
        self.seed4 = [Seeder(s.port) for s in four] if four else []
        self._zipf = None

    def close(self):
        self.seed1.close()
        for s in self.seed4:
            s.close()

    def zipf_sequence(self):
        """(is_set, key) pairs: 90 % get / 10 % set, keys Zipf(s=1) over 10,000."""
        if self._zipf is None:
            rng = random.Random(ZIPF_SEED)
            keys = ["bench:z:%d" % i for i in range(ZIPF_KEYS)]
            cum, total = [], 0.0
            for rank in range(1, ZIPF_KEYS + 1):
                total += 1.0 / rank ** ZIPF_S
                cum.append(total)
            drawn = rng.choices(keys, cum_weights=cum, k=ZIPF_LEN)
            self._zipf = (keys, [(rng.random() < 0.10, k) for k in drawn])
        return self._zipf


class Wrong(Exception):
    """A client's answer is not the expected one."""


def expect(cond, msg):
    if not cond:
        raise Wrong(msg)


class Case:
    """One benchmark case.

    setup(env): untimed, once.  check(c, env): raise Wrong if c answers wrong.
    runner(c, env, spec) -> run(n) performing n timed operations.
    before_run(env, n): untimed, before every timed run (e.g. re-create keys).
    raw: (op, size, nkeys) for the raw C loop, or None.
    """

    def __init__(self, name, title, runner, check, setup=None, before_run=None,
                 raw=None, servers=1, pickling=False, base_ops=20000, max_ops=None):
        self.name, self.title = name, title
        self.runner, self.check = runner, check
        self.setup_fn, self.before_run_fn = setup, before_run
        self.raw, self.servers, self.pickling = raw, servers, pickling
        self.base_ops = base_ops
        self.max_ops = max_ops or 10 * base_ops

    def setup(self, env):
        if self.setup_fn:
            self.setup_fn(env)

    def before_run(self, env, n):
        if self.before_run_fn:
            self.before_run_fn(env, n)


def _loop_get(key):
    def runner(c, env, spec):
        def run(n):
            g = c.get
            for _ in range(n):
                g(key)
        return run
    return runner


def _loop_set(key, value):
    def runner(c, env, spec):
        def run(n):
            s = c.set
            for _ in range(n):
                s(key, value)
        return run
    return runner


def _check_get(key, value):
    def check(c, env, spec):
        got = c.get(key)
        expect(got == value, "get(%r) returned %s" % (key, _short(got)))
    return check


def _check_set(key, value, seeder=lambda env: env.seed1):
    def check(c, env, spec):
        seeder(env).delete(key)
        r = c.set(key, value)
        expect(r, "set returned %r" % (r,))
        got = seeder(env).get(key)
        expect(got == value, "server holds %s after set" % _short(got))
    return check


def _short(v):
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


# get hit / miss / set

def _setup_get_hit(env):
    env.seed1.set("bench:get10", SMALL)


def _setup_get_miss(env):
    env.seed1.delete("bench:miss")


def _check_get_miss(c, env, spec):
    got = c.get("bench:miss")
    expect(got is None, "get of a missing key returned %s" % _short(got))


def _setup_get_100k(env):
    env.seed1.set("bench:get100k", BIG)


# get_multi / set_multi

def _setup_get_multi(env):
    env.seed1.set_many([(k, SMALL) for k in MULTI_KEYS])


def _runner_get_multi(keys):
    def runner(c, env, spec):
        def run(n):
            gm = c.get_multi
            for _ in range(n):
                gm(keys)
        return run
    return runner


def _check_get_multi(keys):
    def check(c, env, spec):
        got = c.get_multi(keys)
        expect(isinstance(got, dict), "get_multi returned %s" % type(got).__name__)
        expect(len(got) == len(keys), "get_multi returned %d of %d keys" % (len(got), len(keys)))
        bad = [k for k in keys if got.get(k) != SMALL]
        expect(not bad, "get_multi: wrong value for %d keys, e.g. %r -> %s"
               % (len(bad), bad[:1], _short(got.get(bad[0]) if bad else None)))
    return check


SETM_MAPPING = {k: SMALL for k in SETM_KEYS}


def _runner_set_multi(c, env, spec):
    mapping = dict(SETM_MAPPING)

    def run(n):
        sm = c.set_multi
        for _ in range(n):
            sm(mapping)
    return run


def _check_set_multi(c, env, spec):
    env.seed1.delete_many(SETM_KEYS)
    r = c.set_multi(dict(SETM_MAPPING))
    expect(r is not None and len(r) == 0, "set_multi returned %s" % _short(r))
    got = env.seed1.get_multi(SETM_KEYS)
    expect(len(got) == 100 and all(v == SMALL for v in got.values()),
           "server holds %d of 100 keys after set_multi" % len(got))


# incr / delete

def _setup_incr(env):
    env.seed1.set("bench:ctr", b"100")


def _runner_incr(c, env, spec):
    def run(n):
        inc = c.incr
        for _ in range(n):
            inc("bench:ctr", 1)
    return run


def _check_incr(c, env, spec):
    env.seed1.set("bench:ctr", b"100")
    r = c.incr("bench:ctr", 1)
    expect(r == 101 and type(r) is int, "incr returned %s, expected 101" % _short(r))
    got = env.seed1.get("bench:ctr")
    expect(got == b"101", "server holds %s after incr" % _short(got))


DEL_KEYS = []


def _del_keys(n):
    while len(DEL_KEYS) < n:
        DEL_KEYS.append("bench:del:%d" % len(DEL_KEYS))
    return DEL_KEYS[:n]


def _before_delete(env, n):
    env.seed1.set_many([(k, SMALL) for k in _del_keys(n)])


def _runner_delete(c, env, spec):
    def run(n):
        d = c.delete
        for k in DEL_KEYS[:n]:
            d(k)
    return run


def _check_delete(c, env, spec):
    env.seed1.set("bench:delchk", SMALL)
    r = c.delete("bench:delchk")
    expect(r, "delete of an existing key returned %r" % (r,))
    expect(env.seed1.get("bench:delchk") is None, "key still there after delete")
    r = c.delete("bench:delchk")
    expect(not r, "delete of a missing key returned %r" % (r,))


# 90/10 Zipf mix

def _setup_mix(env):
    keys, _seq = env.zipf_sequence()
    env.seed1.set_many([(k, MIX_VALUE) for k in keys])


def _runner_mix(c, env, spec):
    _keys, seq = env.zipf_sequence()

    def run(n):
        g, s, v = c.get, c.set, MIX_VALUE
        for is_set, k in seq[:n]:
            if is_set:
                s(k, v)
            else:
                g(k)
    return run


def _check_mix(c, env, spec):
    keys, seq = env.zipf_sequence()
    for k in keys[:3] + keys[-3:]:
        got = c.get(k)
        expect(got == MIX_VALUE, "get(%r) returned %s" % (k, _short(got)))
    r = c.set(keys[0], MIX_VALUE)
    expect(r, "set returned %r" % (r,))


# pickled dict

def _pkl_key(spec):
    return "bench:pkl:%s" % spec.key


def _runner_set_pickle(c, env, spec):
    key, obj = _pkl_key(spec), PICKLE_OBJ
    if spec.pickles:
        def run(n):
            s = c.set
            for _ in range(n):
                s(key, obj)
    else:
        def run(n):
            s, dumps, proto = c.set, pickle.dumps, PICKLE_PROTOCOL
            for _ in range(n):
                s(key, dumps(obj, proto))
    return run


def _runner_get_pickle(c, env, spec):
    key = _pkl_key(spec)
    if spec.pickles:
        def run(n):
            g = c.get
            for _ in range(n):
                g(key)
    else:
        def run(n):
            g, loads = c.get, pickle.loads
            for _ in range(n):
                loads(g(key))
    return run


def _check_pickle(c, env, spec):
    key = _pkl_key(spec)
    env.seed1.delete(key)
    if spec.pickles:
        expect(c.set(key, PICKLE_OBJ), "set of a dict failed")
        got = c.get(key)
    else:
        expect(c.set(key, pickle.dumps(PICKLE_OBJ, PICKLE_PROTOCOL)), "set failed")
        raw = c.get(key)
        got = pickle.loads(raw) if isinstance(raw, bytes) else raw
    expect(got == PICKLE_OBJ, "get returned %s" % _short(got))


# get_multi over 4 servers

def _setup_multi4(env):
    # every server holds every key, so each client's own key distribution
    # finds all 100 keys wherever it sends them
    for s in env.seed4:
        s.set_many([(k, SMALL) for k in MULTI4_KEYS])


CASES = [
    Case("get_hit", "get hit, 10 B", _loop_get("bench:get10"), _check_get("bench:get10", SMALL),
         setup=_setup_get_hit, raw=("get", 10, 1)),
    Case("get_miss", "get miss", _loop_get("bench:miss"), _check_get_miss,
         setup=_setup_get_miss),
    Case("set_10", "set 10 B", _loop_set("bench:set10", SMALL), _check_set("bench:set10", SMALL),
         raw=("set", 10, 1)),
    Case("get_100k", "get 100 KiB", _loop_get("bench:get100k"), _check_get("bench:get100k", BIG),
         setup=_setup_get_100k, raw=("get", len(BIG), 1), base_ops=4000),
    Case("set_100k", "set 100 KiB", _loop_set("bench:set100k", BIG), _check_set("bench:set100k", BIG),
         raw=("set", len(BIG), 1), base_ops=4000),
    Case("get_multi_100", "get_multi, 100 keys x 10 B (per call)", _runner_get_multi(MULTI_KEYS),
         _check_get_multi(MULTI_KEYS), setup=_setup_get_multi, raw=("get_multi", 10, 100),
         base_ops=4000),
    Case("set_multi_100", "set_multi, 100 keys x 10 B (per call)", _runner_set_multi,
         _check_set_multi, base_ops=2000),
    Case("incr", "incr", _runner_incr, _check_incr, setup=_setup_incr),
    Case("delete", "delete (hit)", _runner_delete, _check_delete, before_run=_before_delete,
         max_ops=100000),
    Case("mix_zipf", "90/10 get/set, Zipf over 10,000 keys, 100 B", _runner_mix, _check_mix,
         setup=_setup_mix, max_ops=ZIPF_LEN),
    Case("get_pickle", "get of a pickled dict", _runner_get_pickle, _check_pickle, pickling=True),
    Case("set_pickle", "set of a pickled dict", _runner_set_pickle, _check_pickle, pickling=True),
    Case("get_multi_4srv", "get_multi, 100 keys over 4 servers (per call)",
         _runner_get_multi(MULTI4_KEYS), _check_get_multi(MULTI4_KEYS), setup=_setup_multi4,
         servers=4, base_ops=2000),
]
CASE_BY_NAME = {c.name: c for c in CASES}


# --------------------------------------------------------------------------
# timing


def timed(run, n):
    """ops/s for run(n); the garbage collector is off while the loop runs."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        run(n)
        dt = time.perf_counter() - t0
    finally:
        if was:
            gc.enable()
    return n / max(dt, 1e-9)


class Contender:
    """A client (or the raw loop) prepared for one case."""

    def __init__(self, key, run=None, raw=None, fresh=None, spec=None, client=None):
        self.key, self.run, self.raw, self.fresh = key, run, raw, fresh
        self.spec, self.client = spec, client

    def fresh_connection(self, n):
        """Untimed: reconnect and warm the new connection up with n/10
        operations, so every timed run starts on its own, established
        connection (the raw loop makes a new connection and warms it up in
        every run anyway)."""
        if self.fresh is not None:
            self.fresh(max(1, n // 10))

    def measure(self, n):
        if self.raw is not None:
            exe, port, op, size, nkeys = self.raw
            return run_rawloop(exe, port, op, size, nkeys, n)["ops_per_sec"]
        return self.run(n)


def prepare_contenders(case, env, specs, rawloop, results):
    """Build and check every client for a case. Fills results[key] with the
    status of the ones that cannot run; returns the runnable ones."""
    ports = [env.one.port] if case.servers == 1 else [s.port for s in env.four]
    contenders = []
    for spec in specs:
        try:
            c = spec.make(ports, pickling=case.pickling)
        except Exception as e:
            results[spec.key] = {"status": "error", "detail": "constructor: %s: %s"
                                 % (type(e).__name__, e)}
            continue
        try:
            case.check(c, env, spec)
        except Wrong as e:
            results[spec.key] = {"status": "wrong", "detail": str(e)}
            continue
        except Exception as e:
            results[spec.key] = {"status": "wrong", "detail": "%s: %s" % (type(e).__name__, e)}
            continue
        run = case.runner(c, env, spec)

        def fresh(warm, c=c, spec=spec, run=run):
            spec.disconnect(c)
            run(warm)
        contenders.append(Contender(spec.key, run=lambda n, run=run: timed(run, n),
                                    fresh=fresh, spec=spec, client=c))
    if rawloop and case.raw:
        op, size, nkeys = case.raw
        port = ports[0]
        try:
            run_rawloop(rawloop, port, op, size, nkeys, 10)   # includes its own reply check
            contenders.append(Contender(RAW, raw=(rawloop, port, op, size, nkeys)))
        except Exception as e:
            results[RAW] = {"status": "wrong", "detail": str(e)}
    return contenders


def run_case(case, env, specs, rawloop, rounds, round_budget, min_ops, log):
    """Check, calibrate, then time the case in interleaved rounds."""
    results = {}
    case.setup(env)
    contenders = prepare_contenders(case, env, specs, rawloop, results)

    # Calibrate (and warm up): one short run each, then pick the op count that
    # makes one round (all contenders) take about round_budget seconds.
    probe = max(20, case.base_ops // 20)
    per_op = {}
    for ct in list(contenders):
        try:
            case.before_run(env, probe)
            per_op[ct.key] = 1.0 / ct.measure(probe)
        except Exception as e:
            results[ct.key] = {"status": "error", "detail": "%s: %s" % (type(e).__name__, e)}
            contenders.remove(ct)
    total = sum(per_op[ct.key] for ct in contenders) or 1e-6
    n = int(round_budget / total)
    n = max(min_ops, min(n, case.max_ops))

    samples = {ct.key: [] for ct in contenders}
    for r in range(rounds):
        k = r % len(contenders) if contenders else 0
        order = contenders[k:] + contenders[:k]
        for ct in order:
            if ct.key not in samples:
                continue
            try:
                ct.fresh_connection(n)
                case.before_run(env, n)
                samples[ct.key].append(ct.measure(n))
            except Exception as e:
                results[ct.key] = {"status": "error", "detail": "%s: %s" % (type(e).__name__, e)}
                del samples[ct.key]
    for key, s in samples.items():
        results[key] = {"status": "ok", "ops_per_sec": statistics.median(s),
                        "samples": [round(x, 1) for x in s]}
    # check the answers once more after the load, then close the connections
    for ct in contenders:
        if ct.client is None:
            continue
        if ct.key in samples:
            try:
                case.check(ct.client, env, ct.spec)
            except Exception as e:
                results[ct.key] = {"status": "wrong", "detail": "after timing: %s: %s"
                                   % (type(e).__name__, e)}
        try:
            ct.spec.disconnect(ct.client)
        except Exception:
            pass
    ref = results.get(REFERENCE, {}).get("ops_per_sec")
    raw = results.get(RAW, {}).get("ops_per_sec")
    for key, res in results.items():
        if res.get("status") != "ok":
            continue
        if ref:
            res["ratio_to_pylibmc"] = res["ops_per_sec"] / ref
        if raw:
            res["fraction_of_raw"] = res["ops_per_sec"] / raw
        s = res["samples"]
        res["spread"] = (max(s) - min(s)) / res["ops_per_sec"] if len(s) > 1 else 0.0
    log("  %-16s n=%-7d %s" % (case.name, n, "  ".join(
        "%s=%s" % (k, _fmt_cell(v)) for k, v in results.items())))
    return {"title": case.title, "ops_per_round": n, "rounds": rounds, "clients": results}


def run_case_retry(retry, case, env, specs, rawloop, rounds, round_budget, min_ops, log):
    """run_case, and once more if some client's rounds spread over NOISY (most
    likely something else ran on the machine meanwhile); keeps the calmer run."""
    res = run_case(case, env, specs, rawloop, rounds, round_budget, min_ops, log)
    if retry and _max_spread(res) > NOISY:
        log("  %s: rounds spread over %d %% of the median, running it again"
            % (case.name, round(100 * NOISY)))
        res2 = run_case(case, env, specs, rawloop, rounds, round_budget, min_ops, log)
        keep, drop = (res2, res) if _max_spread(res2) < _max_spread(res) else (res, res2)
        keep["discarded_noisier_run"] = drop
        res = keep
    return res


def _max_spread(case_result):
    return max([r.get("spread", 0.0) for r in case_result["clients"].values()
                if r.get("status") == "ok"] or [0.0])


def _fmt_cell(res):
    if res.get("status") == "ok":
        return "%.0f" % res["ops_per_sec"]
    return res.get("status", "?")


# --------------------------------------------------------------------------
# scaling

SCALE_SIZES = [10, 32, 100, 316, 1000, 3162, 10000, 31623, 100000, 316228, 1048576]
SCALE_SIZES_QUICK = [10, 100, 1000, 10000, 100000, 1048576]
SCALE_KEYS = [1, 3, 10, 30, 100, 300, 1000]
SCALE_KEYS_QUICK = [1, 10, 100, 1000]


def _value_of(size):
    return (b"abcdefghijklmnopqrstuvwxyz" * (size // 26 + 1))[:size]


def scaling_cases():
    out = []
    for size in SCALE_SIZES:
        value = _value_of(size)
        key = "bench:sc:get:%d" % size
        ops = max(200, min(20000, int(2e8 / max(size, 1))))
        out.append(("get", size, Case(
            "get_%d" % size, "get %d B" % size, _loop_get(key), _check_get(key, value),
            setup=lambda env, key=key, value=value: env.seed1.set(key, value),
            raw=("get", size, 1), base_ops=ops)))
        skey = "bench:sc:set:%d" % size
        out.append(("set", size, Case(
            "set_%d" % size, "set %d B" % size, _loop_set(skey, value), _check_set(skey, value),
            raw=("set", size, 1), base_ops=ops)))
    for nkeys in SCALE_KEYS:
        keys = ["bench:sc:m:%d" % i for i in range(nkeys)]
        out.append(("get_multi", nkeys, Case(
            "get_multi_%d" % nkeys, "get_multi %d keys" % nkeys, _runner_get_multi(keys),
            _check_get_multi(keys),
            setup=lambda env, keys=keys: env.seed1.set_many([(k, SMALL) for k in keys]),
            raw=("get_multi", 10, nkeys), base_ops=max(100, 20000 // nkeys))))
    return out


def run_scaling(env, specs, rawloop, quick, rounds, round_budget, log, retry=True):
    sizes = SCALE_SIZES_QUICK if quick else SCALE_SIZES
    nkeys_list = SCALE_KEYS_QUICK if quick else SCALE_KEYS
    data = {"value_size": {"get": {}, "set": {}}, "multi": {}}
    for op, x, case in scaling_cases():
        if op in ("get", "set") and x not in sizes:
            continue
        if op == "get_multi" and x not in nkeys_list:
            continue
        res = run_case_retry(retry, case, env, specs, rawloop, rounds, round_budget, 20, log)
        if op == "get_multi":
            data["multi"][str(x)] = res
        else:
            data["value_size"][op][str(x)] = res
    return data


def plot_scaling(data, out_dir, order):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(block):
        xs = sorted(int(x) for x in block)
        lines = {}
        for key in order:
            pts = [(x, block[str(x)]["clients"].get(key, {}).get("ops_per_sec")) for x in xs]
            pts = [(x, y) for x, y in pts if y]
            if pts:
                lines[key] = pts
        return lines

    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, op in zip(axes, ("get", "set")):
        for key, pts in series(data["value_size"][op]).items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label_of(key),
                    linestyle="--" if key == RAW else "-")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("value size (bytes)")
        ax.set_title(op)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ops/s (one connection, loopback)")
    axes[0].legend(fontsize=8)
    fig.suptitle("memcached get/set throughput vs value size")
    fig.tight_layout()
    p = os.path.join(out_dir, "scaling_value_size.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(os.path.basename(p))

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for key, pts in series(data["multi"]).items():
        style = "--" if key == RAW else "-"
        axes[0].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label_of(key),
                     linestyle=style)
        axes[1].plot([p[0] for p in pts], [p[0] * p[1] for p in pts], marker="o",
                     label=label_of(key), linestyle=style)
    for ax, ylab in zip(axes, ("get_multi calls/s", "keys/s")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("keys per get_multi (10 B values)")
        ax.set_ylabel(ylab)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("get_multi throughput vs keys per call")
    fig.tight_layout()
    p = os.path.join(out_dir, "scaling_multi.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(os.path.basename(p))
    return paths


# --------------------------------------------------------------------------
# report


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _loadavg():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[:3]
    except OSError:
        return None


def _fmt_ops(v):
    return "{:,.0f}".format(v)


NOISY = 0.25     # spread above which an ops/s cell is marked


def _cell(res, field, fmt):
    if not res:
        return "—"
    st = res.get("status")
    if st != "ok":
        return st
    v = res.get(field)
    if v is None:
        return "—"
    mark = " †" if field == "ops_per_sec" and res.get("spread", 0) > NOISY else ""
    return fmt(v) + mark


def markdown_tables(block, order, heading_label="case"):
    """block: {row label: case result}. Three tables: ops/s, ratio, raw fraction."""
    cols = [k for k in order if any(k in r["clients"] for r in block.values())]
    out = []

    def table(title, field, fmt, cols, need=None):
        lines = ["**%s**" % title, "",
                 "| %s | %s |" % (heading_label, " | ".join(label_of(k) for k in cols)),
                 "|---|%s|" % "|".join("---:" for _ in cols)]
        for row, r in block.items():
            if need and r["clients"].get(need, {}).get("status") != "ok":
                continue
            lines.append("| %s | %s |" % (row, " | ".join(
                _cell(r["clients"].get(k), field, fmt) for k in cols)))
        return lines + [""]

    out += table("ops/s (median over rounds; † = the rounds spread over more than %d %% "
                 "of the median)" % round(100 * NOISY), "ops_per_sec", _fmt_ops, cols)
    if REFERENCE in cols:
        out += table("ratio to pylibmc (higher is faster)", "ratio_to_pylibmc",
                     lambda v: "%.2f" % v, [k for k in cols if k != RAW])
    if RAW in cols:
        out += table("fraction of the raw C loop", "fraction_of_raw",
                     lambda v: "%.0f%%" % (100 * v), [k for k in cols if k != RAW], need=RAW)
    notes = []
    for row, r in block.items():
        for k in cols:
            res = r["clients"].get(k)
            if res and res.get("status") != "ok":
                notes.append("- %s / %s: %s — %s" % (row, label_of(k), res["status"],
                                                     res.get("detail", "")))
    if notes:
        out += ["Not timed:", ""] + notes + [""]
    return out


def render_markdown(report, order):
    m = report["meta"]
    lines = ["# cmemcache benchmark", "",
             "- date: %s" % m["date"],
             "- machine: %s, %s, %s CPUs" % (m["machine"], m["cpu"], m["cpus"]),
             "- Python %s; %s" % (m["python"], m["memcached"]),
             "- clients: %s" % ", ".join("%s %s" % (label_of(k), v) for k, v in m["clients"].items()),
             "- cmemcache source revision: %s" % m.get("cmemcache_revision"),
             "- load average at start / end: %s / %s" % (
                 " ".join(m.get("loadavg_start") or ["?"]), " ".join(m.get("loadavg_end") or ["?"])),
             "- %d rounds per case, median ops/s; mode: %s; CPU placement: %s (client CPUs %s, "
             "memcached CPUs %s)" % (m["rounds"], m["mode"], m["pin"], m["client_cpus"],
                                      m["server_cpus"]),
             ""]
    if report.get("cases"):
        block = {"%s (`%s`)" % (r["title"], name): r for name, r in report["cases"].items()}
        lines += ["## Cases", ""] + markdown_tables(block, order)
    sc = report.get("scaling")
    if sc:
        lines += ["## Scaling", ""]
        for op in ("get", "set"):
            blk = {"{:,} B".format(int(x)): r for x, r in sorted(
                sc["value_size"][op].items(), key=lambda kv: int(kv[0]))}
            if blk:
                lines += ["### %s vs value size" % op, ""] + markdown_tables(blk, order, "size")
        blk = {x: r for x, r in sorted(sc["multi"].items(), key=lambda kv: int(kv[0]))}
        if blk:
            lines += ["### get_multi vs keys per call (calls/s)", ""] + \
                     markdown_tables(blk, order, "keys per call")
        for p in sc.get("plots", []):
            lines += ["![%s](%s)" % (p, p), ""]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# main


def cpu_placement(mode):
    """(client CPU set, server CPU set) for --pin; None means not pinned."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if mode == "none" or not cpus:
        return None, None
    if mode == "same" or len(cpus) == 1:
        return {cpus[-1]}, {cpus[-1]}
    return {cpus[0]}, set(cpus[1:])


def settle_malloc():
    """Put glibc malloc into its long-running steady state.

    glibc serves blocks of 128 KiB and more with mmap and trims the heap top
    beyond 128 KiB, until the first such mapped block is freed: then both
    thresholds rise to that block's size. Until that happens, every 100 KiB
    reply buffer a client allocates and frees costs two brk calls and page
    faults, so large-value numbers would depend on what ran earlier in the
    process. Freeing one 4 MiB block once makes it the same for every client
    and every order, as in any process that has handled a large object.
    """
    block = bytearray(4 << 20)
    del block


def parse_list(s):
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds, fewer ops (about 1-2 min)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default bench/results)")
    ap.add_argument("--cases", help="comma-separated cases (default: all); 'none' for none: %s"
                    % ",".join(c.name for c in CASES))
    ap.add_argument("--clients", help="comma-separated clients (default: all available): %s,%s"
                    % (",".join(s.key for s in CLIENT_SPECS), RAW))
    ap.add_argument("--scaling", action="store_true",
                    help="also run the value-size and keys-per-get_multi scaling and plot it")
    ap.add_argument("--pin", choices=("same", "split", "none"), default="same",
                    help="CPU placement: 'same' (default) pins this process, the raw loop and "
                         "memcached to one CPU; 'split' puts the clients on one CPU and "
                         "memcached on the others; 'none' leaves it to the scheduler")
    ap.add_argument("--no-retry", dest="retry", action="store_false",
                    help="do not run a case again when its rounds spread over 25 %% of the median")
    ap.add_argument("--rounds", type=int, help="timed rounds per case (default 7, --quick 3)")
    ap.add_argument("--round-seconds", type=float,
                    help="target duration of one round of all clients (default 1.5, --quick 0.4)")
    args = ap.parse_args(argv)
    install_signal_handlers()

    rounds = args.rounds or (3 if args.quick else 7)
    budget = args.round_seconds or (0.4 if args.quick else 1.5)
    min_ops = 50 if args.quick else 200
    if rounds < 1 or rounds > 100 or budget <= 0 or budget > 60:
        ap.error("--rounds must be 1..100 and --round-seconds 0..60")

    if args.cases and args.cases.strip().lower() == "none":
        cases = []
    else:
        names = parse_list(args.cases) or [c.name for c in CASES]
        unknown = [n for n in names if n not in CASE_BY_NAME]
        if unknown:
            ap.error("unknown case(s): %s" % ", ".join(unknown))
        cases = [CASE_BY_NAME[n] for n in names]

    all_keys = [s.key for s in CLIENT_SPECS] + [RAW]
    wanted = parse_list(args.clients)
    if wanted:
        wanted = [CLIENT_ALIASES.get(w.lower(), w.lower()) for w in wanted]
        unknown = [w for w in wanted if w not in all_keys]
        if unknown:
            ap.error("unknown client(s): %s (known: %s)" % (", ".join(unknown), ", ".join(all_keys)))
    else:
        wanted = all_keys

    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    specs, versions, skipped = [], {}, {}
    for spec in CLIENT_SPECS:
        if spec.key not in wanted:
            continue
        ok, why = spec.available()
        if not ok:
            skipped[spec.key] = why
            log("skipping %s: %s" % (spec.label, why))
            continue
        specs.append(spec)
        versions[spec.key] = spec.version()
    rawloop = build_rawloop() if RAW in wanted else None
    if rawloop:
        versions[RAW] = "cc -O2 bench/rawloop.c"
    order = [s.key for s in specs] + ([RAW] if rawloop else [])

    settle_malloc()
    client_cpus, server_cpus = cpu_placement(args.pin)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)

    os.makedirs(args.out, exist_ok=True)
    t_start = time.monotonic()
    report = {"meta": {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(), "cpu": cpu_model(), "cpus": os.cpu_count(),
        "kernel": platform.release(), "python": platform.python_version(),
        "memcached": memcached_version(), "clients": versions, "skipped_clients": skipped,
        "cmemcache_revision": repo_revision(),
        "rounds": rounds, "round_seconds": budget,
        "mode": "quick" if args.quick else "full",
        "server_options": "-U 0 -l 127.0.0.1 -t 2 -m 1024 -I 2m",
        "pin": args.pin,
        "client_cpus": sorted(client_cpus) if client_cpus else None,
        "server_cpus": sorted(server_cpus) if server_cpus else None,
        "reference": REFERENCE,
        "loadavg_start": _loadavg(),
    }, "cases": {}}

    one = Memcached(cpus=server_cpus).start()
    four = [Memcached(cpus=server_cpus).start() for _ in range(4)] \
        if any(c.servers == 4 for c in cases) else []
    env = Env(one, four)
    try:
        log("memcached on %s%s; %d rounds, ~%.1f s per round" % (
            one.address, (" and " + ", ".join(s.address for s in four)) if four else "",
            rounds, budget))
        for case in cases:
            report["cases"][case.name] = run_case_retry(
                args.retry, case, env, specs, rawloop, rounds, budget, min_ops, log)
        if args.scaling:
            s_rounds = args.rounds or (3 if args.quick else 5)
            s_budget = args.round_seconds or (0.25 if args.quick else 0.6)
            report["scaling"] = run_scaling(env, specs, rawloop, args.quick,
                                            s_rounds, s_budget, log, args.retry)
            report["scaling"]["rounds"] = s_rounds
            report["scaling"]["plots"] = plot_scaling(report["scaling"], args.out, order)
    finally:
        env.close()
        stop_all_servers()

    report["meta"]["elapsed_seconds"] = round(time.monotonic() - t_start, 1)
    report["meta"]["loadavg_end"] = _loadavg()
    md = render_markdown(report, order)
    print(md)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(report, f, indent=1)
    log("wrote %s and %s (%.0f s)" % (os.path.join(args.out, "results.md"),
                                      os.path.join(args.out, "results.json"),
                                      report["meta"]["elapsed_seconds"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
