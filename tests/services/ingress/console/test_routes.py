"""The console's HTTP surface on a real ingress and nats-server: sign-in, cookies, CSRF,
roles, and the live feeds, without a browser."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import nats
import pytest

from services.ingress.main import Ingress
from shared.events import CallEventPublisher
from switchboard.nats_server import NatsServer
from tests.services.ingress.conftest import (
    ingress_settings,
    metric,
    new_secret,
    wait_readiness,
)
from tests.services.ingress.console.conftest import CONTROL_TOKEN, VIEW_TOKEN

WRONG = "That token is not valid. Check it and try again."


@pytest.fixture
async def console(nats_server: NatsServer) -> AsyncIterator[Ingress]:
    settings = ingress_settings(
        nats_server.url,
        new_secret(),
        switchboard_view_token=VIEW_TOKEN,
        switchboard_control_token=CONTROL_TOKEN,
    )
    running = Ingress(settings, "127.0.0.1", 0)
    await running.start()
    await running.wait_connected()
    yield running
    await running.stop()


@pytest.fixture
async def http(console: Ingress) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{console.http.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        yield client


async def sign_in(http: httpx.AsyncClient, token: str) -> str:
    """Sign in; the CSRF token (the session cookie stays in the client)."""
    reply = await http.post("/console/api/signin", json={"token": token})
    assert reply.status_code == 200, reply.text
    return reply.json()["csrf"]


async def test_the_console_does_not_exist_without_a_token(ingress: Ingress) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http.port}") as http:
        for path in ("/console", "/console/api/session", "/console/static/console.js"):
            assert (await http.get(path)).status_code == 404


async def test_the_page_and_its_assets_come_from_the_ingress_alone(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/console")
    assert page.status_code == 200 and "Switchboard console" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    for asset in ("console.js", "console.css"):
        assert (await http.get(f"/console/static/{asset}")).status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from elsewhere


async def test_a_wrong_token_is_refused_slowly_counted_and_gets_no_cookie(
    http: httpx.AsyncClient,
) -> None:
    before = metric("switchboard_console_signins_total", outcome="refused")
    started = time.monotonic()
    replies = await asyncio.gather(
        *(http.post("/console/api/signin", json={"token": t}) for t in ("guess-1", "guess-2"))
    )
    elapsed = time.monotonic() - started
    assert [r.status_code for r in replies] == [401, 401]
    assert all(r.json() == {"error": WRONG} for r in replies)
    assert all("set-cookie" not in r.headers for r in replies)
    assert elapsed >= 2.0  # guesses wait in line, one a second, however many come at once
    assert metric("switchboard_console_signins_total", outcome="refused") == before + 2
    for body in (b"", b"not json", b'{"token": 5}', b"[]"):
        assert (await http.post("/console/api/signin", content=body)).status_code == 401


async def test_a_token_becomes_an_httponly_strict_cookie_and_is_never_sent_back(
    http: httpx.AsyncClient,
) -> None:
    before = metric("switchboard_console_signins_total", outcome="viewer")
    reply = await http.post("/console/api/signin", json={"token": VIEW_TOKEN})
    cookie = reply.headers["set-cookie"]
    assert reply.json()["role"] == "viewer"
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # loopback: plain HTTP from `make run`
    assert VIEW_TOKEN not in cookie and VIEW_TOKEN not in reply.text
    assert metric("switchboard_console_signins_total", outcome="viewer") == before + 1
    session = await http.get("/console/api/session")
    assert session.json() == {"role": "viewer", "csrf": reply.json()["csrf"]}

    remote = await http.post(
        "/console/api/signin", json={"token": VIEW_TOKEN}, headers={"host": "calls.example.com"}
    )
    assert "Secure" in remote.headers["set-cookie"]


async def test_actions_need_a_session_a_controller_the_csrf_token_and_our_origin(
    http: httpx.AsyncClient, console: Ingress
) -> None:
    hangup = "/console/api/calls/rtc_nosuchcall/hangup"
    assert (await http.post(hangup)).status_code == 401
    http.cookies.clear()
    view_csrf = await sign_in(http, VIEW_TOKEN)
    assert (await http.post(hangup, headers={"x-csrf-token": view_csrf})).status_code == 403
    http.cookies.clear()
    csrf = await sign_in(http, CONTROL_TOKEN)
    assert (await http.post(hangup)).status_code == 403
    assert (await http.post(hangup, headers={"x-csrf-token": "forged"})).status_code == 403
    assert (await http.post(hangup, headers={"x-csrf-token": view_csrf})).status_code == 403
    cross_site = {"x-csrf-token": csrf, "origin": "https://evil.example"}
    assert (await http.post(hangup, headers=cross_site)).status_code == 403
    # Through every check, the control API's own answer: no such live call.
    assert (await http.post(hangup, headers={"x-csrf-token": csrf})).status_code == 404
    bad = await http.post(
        "/console/api/calls/rtc_nosuchcall/transfer", headers={"x-csrf-token": csrf}, json={}
    )
    assert bad.status_code == 422
    assert (await http.post("/console/api/signout", headers={"x-csrf-token": csrf})).is_success
    assert (await http.get("/console/api/session")).status_code == 401


async def next_event(lines: AsyncIterator[str], name: str) -> Any:
    """The data of the next server-sent event called `name`."""
    current = None
    async for line in lines:
        if line.startswith("event: "):
            current = line.removeprefix("event: ")
        elif line.startswith("data: ") and current == name:
            return json.loads(line.removeprefix("data: "))
    raise AssertionError("stream ended")


async def test_the_feeds_show_calls_as_their_events_are_stored(
    http: httpx.AsyncClient, nats_server: NatsServer, console: Ingress
) -> None:
    nc = await nats.connect(nats_server.url)
    publisher = CallEventPublisher(nc.jetstream())
    await publisher.publish("rtc_old", "call.received", {"api": "realtime"})
    await publisher.publish("rtc_old", "call.ended", {"reason": "caller_hangup"})
    assert (await http.get("/console/api/stream")).status_code == 401
    await sign_in(http, VIEW_TOKEN)
    async with asyncio.timeout(10):
        async with http.stream("GET", "/console/api/stream") as table:
            lines = table.aiter_lines()
            snapshot = await next_event(lines, "snapshot")
            assert [(c["call_id"], c["state"]) for c in snapshot["calls"]] == [("rtc_old", "ended")]
            await publisher.publish("rtc_new", "call.accepted", {"agent": "salon"})
            changed = await next_event(lines, "calls")
            assert [(c["call_id"], c["agent"], c["live"]) for c in changed["calls"]] == [
                ("rtc_new", "salon", True)
            ]
        async with http.stream("GET", "/console/api/calls/rtc_new/stream") as one:
            lines = one.aiter_lines()
            past = await next_event(lines, "events")
            assert [e["type"] for e in past["events"]] == ["call.accepted"]
            await publisher.publish("rtc_new", "transcript.agent", {"text": "Hello"})
            live = await next_event(lines, "events")
            assert [(e["seq"], e["data"]["text"]) for e in live["events"]] == [(2, "Hello")]
    await nc.close()


async def test_after_a_nats_outage_the_table_is_rebuilt_from_the_stream(
    http: httpx.AsyncClient, nats_server: NatsServer, console: Ingress
) -> None:
    nc = await nats.connect(nats_server.url)
    publisher = CallEventPublisher(nc.jetstream())
    await publisher.publish("rtc_during", "call.accepted", {"agent": "salon"})
    await sign_in(http, VIEW_TOKEN)
    quiet_allowed = httpx.Timeout(10, read=None)  # the ingress takes a while to reconnect
    async with (
        asyncio.timeout(30),
        http.stream("GET", "/console/api/stream", timeout=quiet_allowed) as table,
    ):
        lines = table.aiter_lines()
        snapshot = await next_event(lines, "snapshot")
        assert [(c["call_id"], c["live"]) for c in snapshot["calls"]] == [("rtc_during", True)]

        await nc.close()
        nats_server.stop()
        nats_server.start()  # same port, same store
        # Published before the ingress is back (it retries every 0.5 s): it never sees it live.
        nc = await nats.connect(nats_server.url)
        publisher = CallEventPublisher(nc.jetstream())
        await publisher.publish("rtc_during", "call.ended", {"reason": "caller_hangup"})
        await wait_readiness(http, "", 200)
        await publisher.publish("rtc_after", "call.accepted", {"agent": "salon"})

        seen: dict[str, bool] = {}
        while seen.get("rtc_during", True) or "rtc_after" not in seen:
            async for line in lines:
                if line.startswith("data: "):
                    for call in json.loads(line.removeprefix("data: "))["calls"]:
                        seen[call["call_id"]] = call["live"]
                    break
    assert seen == {"rtc_during": False, "rtc_after": True}
    await nc.close()


async def test_stopping_the_ingress_ends_open_streams_at_once(
    http: httpx.AsyncClient, console: Ingress
) -> None:
    await sign_in(http, VIEW_TOKEN)
    async with http.stream("GET", "/console/api/stream") as table:
        await next_event(table.aiter_lines(), "snapshot")
        started = time.monotonic()
        await console.stop()
    assert time.monotonic() - started < 3  # not the server's 10 s graceful wait
