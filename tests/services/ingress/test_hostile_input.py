"""Bad input gets a clear 4xx, never a 500 (issue 22, items 3, 4, 5, 7 and the slow-client
timeouts): a real ingress on loopback, a real nats-server, raw sockets for slow clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from prometheus_client import REGISTRY

import services.ingress.bodies
import shared.http_timeouts
from services.ingress.app import WEBHOOK_PATH
from services.ingress.main import Ingress
from services.ingress.webhook import bounded_sip_headers
from shared.calls import MAX_SIP_HEADER_NAME, MAX_SIP_HEADER_VALUE, MAX_SIP_HEADERS
from shared.control import control_subject
from shared.streams import CALL_LEASES_BUCKET
from shared.text import is_invisible
from switchboard.nats_server import NatsServer
from tests.services.ingress.conftest import (
    Signer,
    call_events,
    incoming_call,
    ingress_settings,
    new_secret,
)

TOKEN = "ctl-" + "h" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def signer() -> Signer:
    return Signer(new_secret())


@pytest.fixture
async def ingress(nats_server: NatsServer, signer: Signer) -> AsyncIterator[Ingress]:
    settings = ingress_settings(nats_server.url, signer.secret, switchboard_control_token=TOKEN)
    running = Ingress(settings, "127.0.0.1", 0)
    await running.start()
    await running.wait_connected()
    yield running
    await running.stop()


@pytest.fixture
async def http(ingress: Ingress) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{ingress.http.port}"
    async with httpx.AsyncClient(base_url=base, timeout=20) as client:
        yield client


@pytest.fixture
async def nc(nats_server: NatsServer, ingress: Ingress) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


def control_count(action: str, status: int) -> float:
    labels = {"action": action, "status": str(status)}
    return REGISTRY.get_sample_value("switchboard_control_requests_total", labels) or 0.0


async def own(nc: Client, call_id: str) -> list[bytes]:
    """A live call held by a (pretend) worker that records its commands and answers ok."""
    leases = await nc.jetstream().key_value(CALL_LEASES_BUCKET)
    await leases.put(call_id, json.dumps({"worker": "worker-x", "attempt": 1}).encode())
    commands: list[bytes] = []

    async def on_command(msg: nats.aio.msg.Msg) -> None:
        commands.append(msg.data)
        await msg.respond(b'{"ok": true, "status": "done", "worker": "worker-x"}')

    await nc.subscribe(control_subject(call_id), cb=on_command)
    return commands


async def test_a_call_id_with_a_dash_is_seen_and_steered_like_any_other(
    http: httpx.AsyncClient, nc: Client, signer: Signer
) -> None:
    """Item 3: the webhook's rule allowed `-`; the control API did not see such calls."""
    call_id = "rtc_probe-dash-2"
    body = incoming_call(call_id)
    assert (await http.post(WEBHOOK_PATH, content=body, headers=signer.headers(body))).json() == {
        "status": "published"
    }
    commands = await own(nc, call_id)

    listed = (await http.get("/calls", headers=AUTH)).json()["calls"]
    assert [c["call_id"] for c in listed] == [call_id]
    one = await http.get(f"/calls/{call_id}", headers=AUTH)
    assert one.status_code == 200 and one.json()["last_event"]["type"] == "call.received"
    assert (await http.post(f"/calls/{call_id}/hangup", headers=AUTH)).status_code == 200
    say = await http.post(f"/calls/{call_id}/say", headers=AUTH, json={"instructions": "Hi"})
    assert say.status_code == 200
    assert [json.loads(c)["action"] for c in commands] == ["hangup", "say"]


@pytest.mark.parametrize(
    "call_id",
    ["rtc_é", "²³", "rtc_٣", "rtc_x%0A", "rtc_a.b", "rtc_*", "rtc_%3E", "x" * 257, "rtc_%20"],
)
async def test_ids_outside_the_rule_are_404_with_a_reason_and_counted(
    http: httpx.AsyncClient, call_id: str
) -> None:
    """Item 4: non-ASCII letters and digits were a 500 (KV's InvalidKeyError), uncounted."""
    for action, method, path, body in [
        ("get", "GET", f"/calls/{call_id}", None),
        ("hangup", "POST", f"/calls/{call_id}/hangup", None),
        ("say", "POST", f"/calls/{call_id}/say", {"instructions": "hi"}),
        ("transfer", "POST", f"/calls/{call_id}/transfer", {"target": "tel:+61290000000"}),
    ]:
        before = control_count(action, 404)
        reply = await http.request(method, path, headers=AUTH, json=body)
        assert reply.status_code == 404, (action, reply.text)
        assert reply.json()["reason"] == "not a valid call id"
        assert control_count(action, 404) == before + 1


async def test_a_huge_body_is_refused_before_it_is_read(
    ingress: Ingress, http: httpx.AsyncClient, nc: Client
) -> None:
    """Item 5: 200 MB to `say` was read whole (77 → 468 MB) before its 413."""
    await own(nc, "rtc_big")
    reader, writer = await asyncio.open_connection("127.0.0.1", ingress.http.port)
    writer.write(  # 200 MB announced, none sent: refused on the announcement alone
        f"POST /calls/rtc_big/say HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH['Authorization']}"
        f"\r\nContent-Length: {200 * 1024 * 1024}\r\n\r\n".encode()
    )
    await writer.drain()
    async with asyncio.timeout(20):
        assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 413")
    writer.close()
    # Chunked, so there is no length to refuse up front: the answer must come while the
    # client is still sending, after about the cap, not after 200 MB.
    reader, writer = await asyncio.open_connection("127.0.0.1", ingress.http.port)
    writer.write(
        f"POST /calls/rtc_big/say HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH['Authorization']}"
        "\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    sent = 0

    async def send_200_mb() -> None:
        nonlocal sent
        while sent < 200 * 1024 * 1024:
            writer.write(chunk)
            await writer.drain()
            sent += 0x10000

    sending = asyncio.create_task(send_200_mb())
    try:
        async with asyncio.timeout(30):
            status = await reader.readuntil(b"\r\n")
        answered_after = sent
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()
    assert status.startswith(b"HTTP/1.1 413")
    assert answered_after < 16 * 1024 * 1024  # socket buffers, not the body


async def test_sip_headers_lose_every_invisible_character(
    http: httpx.AsyncClient, js, signer: Signer
) -> None:
    """Item 7: bidirectional marks, tag characters, soft hyphens, annotation anchors,
    Mongolian vowel separators and Hangul fillers reached `call.received`."""
    hidden = "\u061c\U000e0041\U000e0042\u00ad\ufff9\u180e\u3164\u202e\u200b\ue000"
    body = incoming_call(
        "rtc_sanitised",
        sip_headers=[{"name": f"X-{hidden}Name", "value": f"Ali{hidden}ce <sip:a@b>"}],
    )
    reply = await http.post(WEBHOOK_PATH, content=body, headers=signer.headers(body))
    assert reply.status_code == 200
    received = (await call_events(js, "rtc_sanitised"))[0]
    assert received.data["sip_headers"] == [{"name": "X-Name", "value": "Alice <sip:a@b>"}]


@pytest.fixture
async def js(nats_server: NatsServer):
    client = await nats.connect(nats_server.url)
    yield client.jetstream()
    await client.close()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while chunk := await reader.read(4096):
        data += chunk
    return data


async def test_a_client_too_slow_with_its_headers_is_disconnected(
    ingress: Ingress, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared.http_timeouts, "HEADER_TIMEOUT_S", 0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", ingress.http.port)
    writer.write(b"POST " + WEBHOOK_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n")  # never ends
    await writer.drain()
    async with asyncio.timeout(20):
        assert await read_until_closed(reader) == b""  # closed without an answer
    writer.close()


async def test_a_client_too_slow_with_its_body_gets_408(
    ingress: Ingress, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services.ingress.bodies, "BODY_TIMEOUT_S", 0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", ingress.http.port)
    writer.write(
        b"POST " + WEBHOOK_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b'Content-Length: 100\r\nContent-Type: application/json\r\n\r\n{"a"'
    )
    await writer.drain()
    async with asyncio.timeout(20):
        answer = await reader.readuntil(b"\r\n")
    assert answer.startswith(b"HTTP/1.1 408")
    writer.close()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries({"name": st.text(), "value": st.text(max_size=2000)})
        | st.dictionaries(st.text(max_size=5), st.text(max_size=5)),
        max_size=80,
    )
)
def test_any_sip_headers_come_out_bounded_and_visible(raw: list) -> None:
    headers = bounded_sip_headers(raw)
    assert len(headers) <= MAX_SIP_HEADERS
    for header in headers:
        assert len(header.name) <= MAX_SIP_HEADER_NAME
        assert len(header.value) <= MAX_SIP_HEADER_VALUE
        assert not any(is_invisible(c) for c in header.name + header.value)
        header.model_dump_json()  # and they can be written to an event
