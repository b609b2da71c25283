"""What TLS costs: get, set and get_multi over plain TCP and over TLS, for
cmemcache (StringClient, Client) beside pymemcache and emcache, in one run.

It makes its own certificates (trustme) and starts two memcached servers on
free loopback ports, one plain and one with ``-Z``.  For each client and
transport it reports sequential operations per second (the median of
--reps runs, one client and one connection, so it is the round trip plus
the client's work), and for the blocking clients the instructions per
operation in the client process from callgrind (two run lengths, as
bench/callgrind.py: the handshake and start-up cancel out).

    python bench/tls_bench.py [--quick] [--out bench/results]

writes tls.md and tls.json to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import ssl
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench  # noqa: E402  (servers' helpers, machine description)
import callgrind  # noqa: E402  (run_valgrind)

VALUE = b"0123456789"
KEYS = ["tls:gm:%d" % i for i in range(100)]
CASES = {"get": "get 10 B", "set": "set 10 B", "get_multi": "get_multi 100 keys"}
#: client -> (label, asyncio?)
CLIENTS = {
    "stringclient": ("cmemcache.StringClient", False),
    "client": ("cmemcache.Client", False),
    "pymemcache": ("pymemcache", False),
    "emcache": ("emcache (asyncio)", True),
}


# -- certificates and servers -----------------------------------------------------------------


def make_certs(directory):
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    paths = {"ca": os.path.join(directory, "ca.pem"),
             "chain": os.path.join(directory, "chain.pem"),
             "key": os.path.join(directory, "key.pem")}
    ca.cert_pem.write_to_path(paths["ca"])
    server.private_key_pem.write_to_path(paths["key"])
    with open(paths["chain"], "wb") as f:
        for blob in server.cert_chain_pems:
            f.write(blob.bytes())
    return paths



# -- the clients ------------------------------------------------------------------------------


def make_sync(kind, port, ca):
    """A blocking client (get, set, get_multi) on port, TLS when ca is set."""
    if kind in ("stringclient", "client"):
        import cmemcache

        tls = {"tls": True, "tls_ca_file": ca} if ca else {}
        if kind == "stringclient":
            return cmemcache.StringClient(["%s:%d" % (bench.HOST, port)], **tls)
        return cmemcache.Client(["%s:%d" % (bench.HOST, port)], **tls)
    from pymemcache.client.base import Client

    ctx = None
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
    # default_noreply=False: pymemcache's set does not wait for STORED otherwise
    return Client((bench.HOST, port), tls_context=ctx, no_delay=True, default_noreply=False)


def to_bytes(v):
    return v.encode() if isinstance(v, str) else v


def sync_ops(c, case, n):
    """Runs n operations of case; returns the last result for a check."""
    key = "tls:key"
    if case == "get":
        g = c.get
        for _ in range(n):
            r = g(key)
        return to_bytes(r)
    if case == "set":
        s = c.set
        for _ in range(n):
            r = s(key, VALUE)
        return r
    gm = c.get_multi
    for _ in range(n):
        r = gm(KEYS)
    return len(r)


def sync_prepare(c):
    c.set("tls:key", VALUE)
    for k in KEYS:
        c.set(k, VALUE)


def check(case, result):
    want = {"get": VALUE, "set": True, "get_multi": 100}[case]
    if result != want:
        raise RuntimeError("%s returned %r, not %r" % (case, result, want))


async def emcache_ops(port, ca, case, n, reps):
    import emcache

    opts = {}
    if ca:
        opts = dict(ssl=True, ssl_verify=True, ssl_extra_ca=ca)
    client = await emcache.create_client([emcache.MemcachedHostAddress(bench.HOST, port)],
                                         max_connections=1, **opts)
    try:
        await client.set(b"tls:key", VALUE)
        bkeys = [k.encode() for k in KEYS]
        for k in bkeys:
            await client.set(k, VALUE)
        rates = []
        for _ in range(reps):
            t = time.perf_counter()
            for _ in range(n):
                if case == "get":
                    r = (await client.get(b"tls:key")).value
                elif case == "set":
                    await client.set(b"tls:key", VALUE)
                    r = True
                else:
                    r = len(await client.get_many(bkeys))
            rates.append(n / (time.perf_counter() - t))
        check(case, r)
        return statistics.median(rates)
    finally:
        await client.close()


def ops_per_sec(kind, port, ca, case, n, reps):
    if CLIENTS[kind][1]:
        return asyncio.run(emcache_ops(port, ca, case, n, reps))
    c = make_sync(kind, port, ca)
    sync_prepare(c)
    sync_ops(c, case, min(n, 200))  # warm (the handshake is not timed)
    rates = []
    for _ in range(reps):
        t = time.perf_counter()
        r = sync_ops(c, case, n)
        rates.append(n / (time.perf_counter() - t))
    check(case, r)
    return statistics.median(rates)


# -- callgrind --------------------------------------------------------------------------------


def driver(kind, case, n, port, ca):
    c = make_sync(kind, port, ca or None)
    sync_prepare(c)
    sync_ops(c, case, 100)
    check(case, sync_ops(c, case, n))


def instructions(kind, case, port, ca, n1, n2, workdir):
    irs = []
    for n in (n1, n2):
        out = os.path.join(workdir, "cg.%s.%s.%d.%s" % (kind, case, n, "tls" if ca else "plain"))
        cmd = [sys.executable, os.path.abspath(__file__), "--driver", kind, case, str(n),
               str(port), ca or ""]
        irs.append(callgrind.run_valgrind(cmd, out, 900))
    return (irs[1] - irs[0]) / (n2 - n1)


# -- the report -------------------------------------------------------------------------------


def render(report):
    m = report["meta"]
    lines = ["# cmemcache: what TLS costs", "",
             "- date: %s; %s, %s; Python %s; memcached %s; %s" % (
                 m["date"], m["machine"], m["cpu"], m["python"], m["memcached"], m["openssl"]),
             "- one client, one connection, sequential calls: ops/s is the median of %d runs "
             "of %d calls (get_multi: %d); instructions per call from callgrind (N = %d/%d), "
             "client process only" % (m["reps"], m["n"], m["n"] // 10, m["n1"], m["n2"]),
             "",
             "| case | client | ops/s plain | ops/s TLS | TLS/plain | Ir/op plain | Ir/op TLS "
             "| TLS extra Ir |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for case, title in CASES.items():
        for kind, (label, _) in CLIENTS.items():
            r = report["results"].get(case, {}).get(kind)
            if r is None:
                continue
            if "error" in r:
                lines.append("| %s | %s | %s | | | | | |" % (title, label, r["error"]))
                continue
            ir_p, ir_t = r.get("ir_plain"), r.get("ir_tls")
            lines.append("| %s | %s | %s | %s | %.2f | %s | %s | %s |" % (
                title, label, "{:,.0f}".format(r["plain"]), "{:,.0f}".format(r["tls"]),
                r["tls"] / r["plain"],
                "{:,.0f}".format(ir_p) if ir_p else "—", "{:,.0f}".format(ir_t) if ir_t else "—",
                "{:+,.0f}".format(ir_t - ir_p) if ir_p and ir_t else "—"))
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    ap.add_argument("--no-callgrind", action="store_true")
    args = ap.parse_args(argv)
    n, reps = (300, 1) if args.quick else (4000, 5)
    n1, n2 = (200, 600) if args.quick else (1000, 3000)
    use_cg = not args.no_callgrind and shutil.which("valgrind") is not None
    kinds = [k for k in CLIENTS if k != "emcache" or _has("emcache")]
    kinds = [k for k in kinds if k != "pymemcache" or _has("pymemcache")]
    report = {"meta": {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(), "cpu": bench.cpu_model(),
        "python": platform.python_version(), "memcached": bench.memcached_version(),
        "openssl": ssl.OPENSSL_VERSION, "n": n, "reps": reps, "n1": n1, "n2": n2,
        "cmemcache_revision": bench.repo_revision(),
    }, "results": {}}
    with tempfile.TemporaryDirectory(prefix="cmemcache-tls-bench-") as tmp:
        certs = make_certs(tmp)
        plain = bench.Memcached().start()
        tls = bench.Memcached(extra_args=["-Z", "-o", "ssl_chain_cert=%s,ssl_key=%s"
                                          % (certs["chain"], certs["key"])], tls=True).start()
        pport, tport = plain.port, tls.port
        try:
            for case in CASES:
                calls = n // 10 if case == "get_multi" else n
                for kind in kinds:
                    try:
                        r = {"plain": ops_per_sec(kind, pport, None, case, calls, reps),
                             "tls": ops_per_sec(kind, tport, certs["ca"], case, calls, reps)}
                        if use_cg and not CLIENTS[kind][1]:
                            div = 10 if case == "get_multi" else 1
                            r["ir_plain"] = instructions(kind, case, pport, None, n1 // div,
                                                         n2 // div, tmp)
                            r["ir_tls"] = instructions(kind, case, tport, certs["ca"],
                                                       n1 // div, n2 // div, tmp)
                    except Exception as e:  # reported in the table
                        r = {"error": "%s: %s" % (type(e).__name__, e)}
                    report["results"].setdefault(case, {})[kind] = r
                    print("  %-10s %-13s %s" % (case, kind, r), file=sys.stderr, flush=True)
        finally:
            plain.stop()
            tls.stop()
    md = render(report)
    print(md)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "tls.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "tls.json"), "w") as f:
        json.dump(report, f, indent=1)
    return 0


def _has(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


if __name__ == "__main__":
    if len(sys.argv) in (6, 7) and sys.argv[1] == "--driver":
        driver(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
               sys.argv[6] if len(sys.argv) == 7 else "")
        sys.exit(0)
    sys.exit(main())
