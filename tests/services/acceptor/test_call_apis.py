"""An accept sent with the body made once per profile is the request the SDK's
`calls.accept` / `sessions.accept` would send (the same headers and JSON, captured by a real
HTTP server on loopback), and a profile's body is made once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from openai import AsyncOpenAI

from services.acceptor.call_apis import AcceptBodies, LiveSessions, RealtimeCalls
from shared.accept_body import accept_body
from shared.agents import AgentProfile
from shared.live_accept import live_session

# What differs between two requests by design (the SDK numbers and times each one).
_PER_REQUEST = {"x-stainless-retry-count", "x-stainless-read-timeout", "content-length"}

REALTIME = AgentProfile.model_validate(
    {
        "name": "support",
        "model": "gpt-realtime",
        "voice": "marin",
        "instructions": "You answer for Bella Salon. ¿Hablas español? ✓",
        "greeting": "Bella Salon, how can I help?",
        "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
        "turn_detection": None,
        "tools": [
            {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
            {"builtin": "transfer_call", "targets": {"desk": "sip:+15550001@pbx.example"}},
            {"builtin": "end_call"},
        ],
    }
)
LIVE = AgentProfile.model_validate(
    {
        "name": "reminders",
        "model": "gpt-live",
        "api": "live",
        "voice": "marin",
        "instructions": "You call customers to confirm appointments.",
        "greeting": "Hi, this is Bella Salon.",
        "delegation": {"model": "gpt-5-mini", "instructions": "Use the tools."},
        "tools": [{"builtin": "end_call"}],
    }
)


class Captured:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append((request.path, headers, await request.read()))
        return web.Response(status=200)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Captured, AsyncOpenAI]]:
    captured = Captured()
    app = web.Application()
    app.router.add_post("/v1/{tail:.*}", captured.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = AsyncOpenAI(api_key="sk-test", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    try:
        yield captured, client
    finally:
        await client.close()
        await runner.cleanup()


def _comparable(request: tuple[str, dict[str, str], bytes]) -> tuple[dict[str, str], Any]:
    _, headers, body = request
    return {k: v for k, v in headers.items() if k not in _PER_REQUEST}, json.loads(body)


async def test_a_realtime_accept_is_the_request_calls_accept_sends(
    server: tuple[Captured, AsyncOpenAI],
) -> None:
    captured, client = server
    await RealtimeCalls(client).accept("rtc_ours", REALTIME, 2.0)
    await client.realtime.calls.accept("rtc_sdks", **accept_body(REALTIME), timeout=2.0)
    ours, sdks = captured.requests
    assert ours[0] == "/v1/realtime/calls/rtc_ours/accept"
    assert sdks[0] == "/v1/realtime/calls/rtc_sdks/accept"
    assert _comparable(ours) == _comparable(sdks)


async def test_a_live_accept_is_the_request_sessions_accept_sends(
    server: tuple[Captured, AsyncOpenAI],
) -> None:
    captured, client = server
    await LiveSessions(client).accept("live_ours", LIVE, 2.0)
    session: Any = live_session(LIVE)
    await client.live.sessions.accept("live_sdks", session=session, timeout=2.0)
    ours, sdks = captured.requests
    assert ours[0] == "/v1/live/sessions/live_ours/accept"
    assert sdks[0] == "/v1/live/sessions/live_sdks/accept"
    assert _comparable(ours) == _comparable(sdks)


def test_a_profile_s_body_is_made_once_and_a_new_profile_gets_its_own() -> None:
    made: list[str] = []

    def make(agent: AgentProfile) -> dict[str, Any]:
        made.append(agent.name)
        return accept_body(agent)

    bodies = AcceptBodies(make, size=2)
    first = bodies(REALTIME)
    assert bodies(REALTIME) is first
    reloaded = REALTIME.model_copy(update={"instructions": "Reloaded."})
    assert bodies(reloaded)["instructions"] == "Reloaded."
    assert made == ["support", "support"]
    bodies(LIVE.model_copy(update={"api": "realtime", "delegation": None}))  # full: starts over
    assert bodies(REALTIME) == first
    assert len(made) == 4
