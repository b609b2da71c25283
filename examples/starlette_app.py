"""A Starlette app whose endpoint is cached in memcached through
``cmemcache.aio.Client``: the client is made when the app starts (its
lifespan) and closed when it stops, and every request's task shares it.

    pip install starlette uvicorn
    CMEMCACHE_SERVERS=127.0.0.1:11211 uvicorn examples.starlette_app:app

    GET    /reports/{n}   the report for n, from the cache when it is there
    DELETE /reports/{n}   drops it from the cache
    GET    /stats         how many reports were computed, and the servers' stats

(FastAPI runs the same lifespan and handlers: ``FastAPI(lifespan=lifespan)``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import cmemcache.aio

#: seconds a report stays cached
REPORT_TTL = 60


async def compute_report(n: int) -> dict[str, Any]:
    """The expensive part the cache saves."""
    await asyncio.sleep(0.01)
    return {"n": n, "square": n * n, "divisors": [d for d in range(1, n + 1) if n % d == 0],
            "computed_at": time.time()}


async def get_report(request: Request) -> JSONResponse:
    n = int(request.path_params["n"])
    cache: cmemcache.aio.Client = request.app.state.cache
    key = f"report:{n}"
    report = await cache.get(key)
    if report is not None:
        return JSONResponse({"cached": True, "report": report})
    report = await compute_report(n)
    request.app.state.computed += 1
    await cache.set(key, report, REPORT_TTL)
    return JSONResponse({"cached": False, "report": report})


async def drop_report(request: Request) -> JSONResponse:
    n = int(request.path_params["n"])
    deleted = await request.app.state.cache.delete(f"report:{n}")
    return JSONResponse({"deleted": bool(deleted)})


async def stats(request: Request) -> JSONResponse:
    servers = await request.app.state.cache.get_stats()
    return JSONResponse({
        "computed": request.app.state.computed,
        "servers": {name: {k: s[k] for k in ("get_hits", "get_misses", "curr_items")}
                    for name, s in servers},
    })


def create_app(servers: list[str]) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.cache = cmemcache.aio.Client(servers, socket_timeout=1)
        app.state.computed = 0
        try:
            yield
        finally:
            await app.state.cache.close()

    return Starlette(
        routes=[
            Route("/reports/{n:int}", get_report, methods=["GET"]),
            Route("/reports/{n:int}", drop_report, methods=["DELETE"]),
            Route("/stats", stats, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


app = create_app(os.environ.get("CMEMCACHE_SERVERS", "127.0.0.1:11211").split(","))
