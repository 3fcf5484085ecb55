"""A session worker's `/healthz` (the Kubernetes liveness probe) tells a worker that will
recover from one that will not: cut off from NATS for longer than its lease, or with a
NATS client closed for good, it fails; back in touch, it passes again. `/readyz` follows
the connection itself. A real nats-server, the worker's own HTTP server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.session.main import SessionService
from shared.settings import Settings
from switchboard.nats_server import NatsServer
from tests.services.session.conftest import until

LEASE_TTL_S = 1


@pytest.fixture
async def service(nats_server: NatsServer) -> AsyncIterator[SessionService]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        nats_url=nats_server.url,
        log_format="text",
        session_lease_ttl_s=LEASE_TTL_S,
        session_ack_wait_s=2.0,
        session_drain_deadline_s=1.0,
    )
    running = SessionService(settings, 2, "probed", metrics_port=0, host="127.0.0.1")
    await running.start()
    yield running
    await running.stop()


async def status(service: SessionService, path: str) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        reply = await client.get(f"http://127.0.0.1:{service.http.port}{path}")
    return reply.status_code


async def until_status(service: SessionService, path: str, wanted: int) -> None:
    async def reached() -> bool:  # probing the endpoint, as kubelet does
        return await status(service, path) == wanted

    await until(reached, timeout=30)


async def test_a_worker_cut_off_from_nats_longer_than_its_lease_fails_liveness(
    service: SessionService, nats_server: NatsServer
) -> None:
    assert await status(service, "/healthz") == 200
    nats_server.stop()
    await until_status(service, "/readyz", 503)
    await until_status(service, "/healthz", 503)
    assert service.worker.watch.down_for() > LEASE_TTL_S
    nats_server.start()
    await until_status(service, "/healthz", 200)
    await until_status(service, "/readyz", 200)


async def test_a_worker_whose_nats_client_is_closed_fails_liveness_at_once(
    service: SessionService,
) -> None:
    assert service.worker.nc is not None
    await service.worker.nc.close()  # wedged: this client will never reconnect
    assert await status(service, "/healthz") == 503
    assert await status(service, "/readyz") == 503
