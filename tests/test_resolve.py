"""connect_timeout bounds name resolution too: a server given by a host
name whose DNS lookup never completes fails by the connect deadline, not
after the resolver's own timeouts (resolv.conf's, seconds per attempt), on
the blocking StringClient and on cmemcache.aio.

The lookup runs in a network and mount namespace the test makes
(``unshare --net --mount``, root only): only loopback is up, and
/etc/resolv.conf is bind-mounted over with one naming a UDP socket on
127.0.0.1:53 that reads queries and never answers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import json, socket, threading, time
    import cmemcache

    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 53))
    queries = []

    def swallow():
        while True:
            data, _ = dns.recvfrom(4096)
            queries.append(len(data))

    threading.Thread(target=swallow, daemon=True).start()

    # the lookup itself hangs here: getaddrinfo is still waiting after 1 s
    stuck = threading.Thread(target=lambda: socket.getaddrinfo("cache.example.test", 11211),
                             daemon=True)
    stuck.start()
    stuck.join(1.0)
    out = {"getaddrinfo_still_waiting": stuck.is_alive()}

    sc = cmemcache.StringClient(["cache.example.test:11211"], connect_timeout=0.5, timeout=0.5,
                                dead_retry=0)
    for attempt in range(2):
        start = time.monotonic()
        try:
            sc.get("k")
            out[f"error{attempt}"] = None
        except cmemcache.Error as e:
            out[f"error{attempt}"] = [type(e).__name__, str(e)]
        out[f"took{attempt}"] = time.monotonic() - start
    # a numeric address needs no lookup: refused at once, nothing listens
    start = time.monotonic()
    try:
        cmemcache.StringClient(["127.0.0.1:1"], connect_timeout=0.5).get("k")
    except cmemcache.Error as e:
        out["numeric"] = [type(e).__name__, time.monotonic() - start]
    # the asyncio client resolves on the loop's executor, within its own
    # connect deadline
    import asyncio, os
    import cmemcache.aio

    async def aio_get():
        c = cmemcache.aio.StringClient(["cache.example.test:11211"], connect_timeout=0.5,
                                       timeout=0.5, dead_retry=0)
        start = time.monotonic()
        try:
            await c.get("k")
            out["aio"] = None
        except cmemcache.Error as e:
            out["aio"] = [type(e).__name__, time.monotonic() - start]
        await c.close()

    asyncio.new_event_loop().run_until_complete(aio_get())
    out["queries"] = len(queries)
    print(json.dumps(out), flush=True)
    os._exit(0)  # the executor's lookup is still waiting on the resolver
""")


def can_make_namespaces() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None \
        and shutil.which("ip") is not None


@pytest.mark.skipif(not can_make_namespaces(), reason="needs root and util-linux's unshare")
def test_connect_timeout_bounds_a_dns_lookup_that_never_answers(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:5 attempts:2\n")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    shell = (f"ip link set lo up && mount --bind {resolv} /etc/resolv.conf && "
             f"exec {sys.executable} {script}")
    done = subprocess.run(["unshare", "--net", "--mount", "sh", "-c", shell],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["getaddrinfo_still_waiting"] is True  # the test can fail
    assert out["queries"] >= 1                       # the lookup went to the DNS socket
    for attempt in (0, 1):
        kind, text = out[f"error{attempt}"]
        assert kind in ("TimeoutError", "ConnectionError"), out
        assert "cache.example.test" in text, out
        # the connect deadline (0.5 s), not the resolver's 5 s per attempt
        assert 0.4 <= out[f"took{attempt}"] < 2.0, out
    assert out["numeric"][0] == "ConnectionError" and out["numeric"][1] < 0.5, out
    assert out["aio"][0] in ("TimeoutError", "ConnectionError") and 0.4 <= out["aio"][1] < 2.0, out
