"""No server-side request forgery through a webhook URL: refused when subscribed, and
refused again where the connection is made (a name that resolves to loopback)."""

from __future__ import annotations

import httpx
import pytest
from nats.aio.client import Client
from prometheus_client import REGISTRY

from services.ingress.main import Ingress
from services.postcall.main import PostCall
from shared.events import CallEventPublisher
from shared.settings import Settings
from switchboard.nats_server import NatsServer
from tests.services.postcall.conftest import (
    AUTH,
    Receiver,
    eventually,
    finished_call,
    postcall_settings,
    subscribe,
    wait_delivering,
)


@pytest.fixture
def settings(nats_server: NatsServer) -> Settings:
    """This module's ingress refuses private addresses (as in production)."""
    return postcall_settings(nats_server.url, switchboard_webhooks_allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://localhost/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "http://example.com/hook",  # plain http
        "https://user:pass@example.com/hook",
    ],
)
async def test_loopback_private_and_plain_http_are_refused(
    api: httpx.AsyncClient, url: str
) -> None:
    answer = await api.post("/webhooks", json={"url": url})
    assert answer.status_code == 422, url
    assert answer.json()["details"][0]["field"] == "url"
    assert "pass" not in answer.text


async def test_a_name_resolving_to_loopback_is_refused_at_connection(
    nats_server,
    receiver: Receiver,
    nc: Client,  # type: ignore[no-untyped-def]
) -> None:
    """Allowed by the API (an allowing ingress), refused by a post-call service that does
    not allow private addresses: the address is checked where the connection is made."""
    ingress = Ingress(postcall_settings(nats_server.url), "127.0.0.1", 0)
    await ingress.start()
    await ingress.wait_connected()
    strict = PostCall(
        postcall_settings(nats_server.url, switchboard_webhooks_allow_private=False), 0,
        "127.0.0.1",
    )  # fmt: skip
    await strict.start()
    try:
        base = f"http://127.0.0.1:{ingress.http.port}"
        async with httpx.AsyncClient(base_url=base, headers=AUTH) as api:
            url = receiver.url.replace("127.0.0.1", "localhost")
            endpoint_id, _ = await subscribe(api, url)
        await wait_delivering(strict, endpoint_id)
        before = _refused(endpoint_id)
        await finished_call(CallEventPublisher(nc.jetstream()))

        async def refused() -> bool:
            return _refused(endpoint_id) > before

        await eventually(refused)
        assert receiver.deliveries == []
    finally:
        await strict.stop()
        await ingress.stop()


def _refused(endpoint_id: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "switchboard_webhook_deliveries_total", {"endpoint": endpoint_id, "outcome": "unsafe"}
        )
        or 0.0
    )
