"""Fuzz: any path and any body at the control API, with a valid token, on a real ingress and
nats-server: a 2xx or 4xx, never a 500, and every answer counted in the control metric."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from prometheus_client import REGISTRY

from services.ingress.main import Ingress
from switchboard.nats_server import NatsServer
from tests.services.ingress.conftest import ingress_settings, new_secret
from tests.services.ingress.test_hostile_input import own

TOKEN = "ctl-" + "f" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIVE = "rtc_fuzz-live"
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"target": json_values | st.text(), "instructions": json_values | st.text()}
    ).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 50_000).map(lambda n: b'{"target": ' + b"[" * n + b"]" * n + b"}"),
    st.integers(16_000, 40_000).map(lambda n: b'{"instructions": "' + b"a" * n + b'"}'),
)
call_ids = st.one_of(st.just(LIVE), st.text(min_size=1, max_size=140))
actions = st.sampled_from(["get", "hangup", "transfer", "say"])


def counted() -> float:
    total = 0.0
    for family in REGISTRY.collect():
        if family.name == "switchboard_control_requests":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


@pytest.fixture
async def ingress(nats_server: NatsServer) -> AsyncIterator[Ingress]:
    settings = ingress_settings(nats_server.url, new_secret(), switchboard_control_token=TOKEN)
    running = Ingress(settings, "127.0.0.1", 0)
    await running.start()
    await running.wait_connected()
    yield running
    await running.stop()


@pytest.fixture
async def nc(nats_server: NatsServer, ingress: Ingress) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    await own(client, LIVE)  # a live call that answers its commands
    yield client
    await client.close()


@pytest.fixture
async def asgi(ingress: Ingress, nc: Client) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=ingress.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
        yield client


@PROPERTY
@given(call_id=call_ids, action=actions, body=bodies)
async def test_any_path_and_body_is_answered_below_500_and_counted(
    asgi: httpx.AsyncClient, call_id: str, action: str, body: bytes
) -> None:
    path = f"/calls/{quote(call_id, safe='')}"
    before = counted()
    if action == "get":
        reply = await asgi.get(path, headers=AUTH)
    else:
        reply = await asgi.post(f"{path}/{action}", headers=AUTH, content=body)
    assert reply.status_code < 500, (reply.status_code, reply.text)
    routed = "/" not in call_id and call_id not in (".", "..")
    if routed:  # our routes answered (not the router's own 404): counted once
        assert counted() == before + 1
        assert set(reply.json()) & {"error", "ok", "call_id"}
