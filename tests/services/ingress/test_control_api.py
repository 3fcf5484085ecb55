"""The control API's own rules on a real ingress and nats-server: the token, unknown calls,
commands nobody answers, and the answer of whoever subscribes for the call."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import nats
import pytest
from nats.aio.client import Client

from services.ingress.main import Ingress
from shared.control import ControlCommand, ControlReply, control_subject
from shared.settings import Settings
from shared.streams import CALL_LEASES_BUCKET
from switchboard.nats_server import NatsServer
from tests.stack import new_webhook_secret

TOKEN = "ctl-" + "t" * 32


async def start_ingress(nats_server: NatsServer, token: str | None) -> Ingress:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        nats_url=nats_server.url,
        switchboard_control_token=token,
        openai_webhook_secret=new_webhook_secret(),
        log_format="text",
    )
    ingress = Ingress(settings, "127.0.0.1", 0)
    await ingress.start()
    await ingress.wait_connected()
    return ingress


@pytest.fixture
async def ingress(nats_server: NatsServer) -> AsyncIterator[Ingress]:
    running = await start_ingress(nats_server, TOKEN)
    yield running
    await running.stop()


@pytest.fixture
async def http(ingress: Ingress) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{ingress.http.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        yield client


@pytest.fixture
async def nc(nats_server: NatsServer, ingress: Ingress) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def own(nc: Client, call_id: str, worker: str = "worker-x") -> None:
    leases = await nc.jetstream().key_value(CALL_LEASES_BUCKET)
    await leases.put(call_id, json.dumps({"worker": worker, "attempt": 1}).encode())


async def record(nc: Client, call_id: str) -> list[bytes]:
    """Every command that reaches `call_id`'s control subject."""
    commands: list[bytes] = []

    async def on_command(msg: nats.aio.msg.Msg) -> None:
        commands.append(msg.data)

    await nc.subscribe(control_subject(call_id), cb=on_command)
    return commands


async def test_without_a_token_configured_the_api_does_not_exist(nats_server) -> None:
    ingress = await start_ingress(nats_server, None)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http.port}") as http:
            assert (await http.get("/calls", headers=AUTH)).status_code == 404
            assert (await http.post("/calls/rtc_1/hangup", headers=AUTH)).status_code == 404
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await ingress.stop()


async def test_a_wrong_or_missing_token_is_refused_and_nothing_happens(http, nc) -> None:
    await own(nc, "rtc_known")
    commands = await record(nc, "rtc_known")
    await nc.flush()
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
        assert (await http.get("/calls", headers=headers)).status_code == 401
        assert (await http.get("/calls/rtc_known", headers=headers)).status_code == 401
        reply = await http.post("/calls/rtc_known/hangup", headers=headers)
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in reply.text
    await nc.flush()
    assert commands == []


async def test_unknown_calls_are_404_and_nothing_is_sent(http, nc) -> None:
    commands = await record(nc, "rtc_unknown")
    await nc.flush()
    assert (await http.get("/calls/rtc_unknown", headers=AUTH)).status_code == 404
    reply = await http.post("/calls/rtc_unknown/say", headers=AUTH, json={"instructions": "hi"})
    assert reply.status_code == 404
    assert (await http.post("/calls/..%2F/hangup", headers=AUTH)).status_code == 404
    await nc.flush()
    assert commands == []


async def test_bodies_are_validated(http, nc) -> None:
    await own(nc, "rtc_known")
    assert (await http.post("/calls/rtc_known/say", headers=AUTH, json={})).status_code == 422
    bad = await http.post("/calls/rtc_known/transfer", headers=AUTH, content=b"{nope")
    assert bad.status_code == 422


async def test_a_command_nobody_answers_is_503(http, nc) -> None:
    await own(nc, "rtc_orphan")
    reply = await http.post("/calls/rtc_orphan/hangup", headers=AUTH)
    assert reply.status_code == 503


async def test_listing_and_commands_reach_the_subscriber_of_the_call(http, nc) -> None:
    await own(nc, "rtc_a", "worker-1")
    await own(nc, "rtc_b", "worker-2")
    received: list[ControlCommand] = []

    async def worker(msg: nats.aio.msg.Msg) -> None:
        received.append(ControlCommand.model_validate_json(msg.data))
        ok = ControlReply(ok=True, status="transferring", worker="worker-2")
        await msg.respond(ok.model_dump_json().encode())

    await nc.subscribe(control_subject("rtc_b"), cb=worker)
    await nc.flush()

    listed = (await http.get("/calls", headers=AUTH)).json()["calls"]
    assert listed == [
        {"call_id": "rtc_a", "worker": "worker-1", "attempt": 1},
        {"call_id": "rtc_b", "worker": "worker-2", "attempt": 1},
    ]
    one = await http.get("/calls/rtc_b", headers=AUTH)
    assert one.json()["worker"] == "worker-2"
    reply = await http.post(
        "/calls/rtc_b/transfer", headers=AUTH, json={"target": "tel:+61290000000"}
    )
    assert reply.status_code == 200
    assert reply.json() == {"ok": True, "status": "transferring", "worker": "worker-2"}
    assert received == [
        ControlCommand(action="transfer", target="tel:+61290000000", instructions=None)
    ]
