"""examples/starlette_app.py in-process (Starlette's TestClient, which runs
the app's lifespan and its event loop in a thread of its own) against a
real memcached: what the endpoint answers, what the server holds, and the
client's connections closed when the app stops."""

from __future__ import annotations

import importlib.util
import pickle
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
try:  # TestClient's transport: httpx2 (Starlette 1.10 on), httpx before
    import httpx2  # noqa: F401
except ImportError:
    pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from conftest import wait_until  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "starlette_app.py"


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("starlette_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def connections(server: Any) -> int:
    """Connections open on the server, the one asking not counted."""
    return int(server.stats()["curr_connections"]) - 1


def test_starlette_app_caches_its_endpoint(server):
    example = load_example()
    app = example.create_app([server.address])
    idle = connections(server)
    with TestClient(app) as client:
        first = client.get("/reports/12")
        assert first.status_code == 200
        body = first.json()
        assert body["cached"] is False
        report = body["report"]
        assert (report["n"], report["square"], report["divisors"]) == (12, 144, [1, 2, 3, 4, 6, 12])
        # what memcached holds: the report, pickled, for REPORT_TTL seconds
        data, flags = server.raw_get(b"report:12")
        assert flags == 1 and pickle.loads(data) == report
        reply = server.command(b"mg report:12 t\r\n")
        assert 55 <= int(re.fullmatch(rb"HD t(\d+)\r\n", reply)[1]) <= example.REPORT_TTL

        again = client.get("/reports/12").json()
        assert again == {"cached": True, "report": report}  # computed_at included
        assert client.get("/reports/7").json()["report"]["divisors"] == [1, 7]
        assert app.state.computed == 2
        assert connections(server) > idle  # the app's client is connected

        # a value put there by another client is served as it is
        server.raw_set(b"report:5", pickle.dumps({"n": 5, "from": "elsewhere"}), flags=1)
        assert client.get("/reports/5").json() == {
            "cached": True, "report": {"n": 5, "from": "elsewhere"}}

        assert client.delete("/reports/12").json() == {"deleted": True}
        assert server.raw_get(b"report:12") is None
        assert client.delete("/reports/12").json() == {"deleted": False}
        recomputed = client.get("/reports/12").json()
        assert recomputed["cached"] is False
        assert recomputed["report"]["computed_at"] >= report["computed_at"]

        stats = client.get("/stats").json()
        assert stats["computed"] == 3
        (name, counts), = stats["servers"].items()
        assert name == f"{server.address} (1)"  # python-memcached's label: host:port (weight)
        assert int(counts["get_hits"]) >= 2 and int(counts["get_misses"]) >= 3
        assert counts["curr_items"] == "3"
        assert client.get("/reports/x").status_code == 404
    # the lifespan's shutdown closed the client's connections
    assert wait_until(lambda: connections(server) == idle, timeout=5)


def test_starlette_app_when_memcached_is_down(memcached_factory):
    stopped = memcached_factory()
    address = stopped.address
    stopped.kill()
    example = load_example()
    app = example.create_app([address])
    with TestClient(app) as client:
        # python-memcached's answers for a server that cannot be reached:
        # a miss, a store that did not happen; the endpoint still answers
        for _ in range(2):
            body = client.get("/reports/3").json()
            assert body["cached"] is False and body["report"]["square"] == 9
        assert app.state.computed == 2
        assert client.get("/stats").json() == {"computed": 2, "servers": {}}
