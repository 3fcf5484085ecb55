"""Health, readiness and metrics over HTTP, served by every service.

`/healthz` says the process is alive: it can still do its job, or will once NATS is back
(a liveness probe restarts it when not); `/readyz` says it is connected and taking work
right now (503 while draining or disconnected; a readiness probe only takes it out of the
load balancer); `/metrics` is Prometheus text. The ingress mounts these beside its own
routes; the other services serve them alone on `--metrics-port`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from shared.http_timeouts import HeaderDeadlineProtocol


def _always() -> bool:
    return True


def ops_routes(
    is_ready: Callable[[], bool], is_alive: Callable[[], bool] = _always
) -> list[BaseRoute]:
    async def healthz(_: Request) -> Response:
        if is_alive():
            return PlainTextResponse("ok")
        return PlainTextResponse("not alive", status_code=503)

    async def readyz(_: Request) -> Response:
        if is_ready():
            return PlainTextResponse("ready")
        return PlainTextResponse("not ready", status_code=503)

    async def metrics(_: Request) -> Response:
        is_ready()  # refreshes switchboard_ready, which nothing else updates without probes
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The service owns SIGTERM/SIGINT and decides when to stop; uvicorn must not.
        yield


class HttpServer:
    """A uvicorn server run as a task of the service's own event loop.

    uvicorn's signal handlers are off: the service owns SIGTERM and decides when to stop.
    Request headers must arrive within `HEADER_TIMEOUT_S` (`shared/http_timeouts.py`).
    """

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=10,
            http=HeaderDeadlineProtocol,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        port: int = self._server.servers[0].sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the bind error
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop accepting connections and finish the requests in flight."""
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._task = None


def ops_app(is_ready: Callable[[], bool], is_alive: Callable[[], bool] = _always) -> Starlette:
    return Starlette(routes=ops_routes(is_ready, is_alive))
