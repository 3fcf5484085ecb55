"""The simulator holds many concurrent calls on one loop (no timing assertions here)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import websockets

from simulator import CallerScript, Simulator

from .conftest import API_KEY, GA_BODY, WebhookReceiver

CALLS = 1000


async def test_thousand_concurrent_calls_with_sidebands(
    simulator: Simulator, webhook_receiver: WebhookReceiver
) -> None:
    script = CallerScript.model_validate(
        {"greeting_wait_s": 0, "agent_speech_s": 0, "steps": [{"say": "hi"}, {"hangup": True}]}
    )
    simulator.accept_window_s = 120  # no call may be missed on a slow machine
    calls = await simulator.place_calls(script, CALLS, rate_per_s=0)
    await webhook_receiver.wait_count(CALLS, timeout=30)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    gate = asyncio.Semaphore(100)  # bounded connect concurrency, not a timing assumption
    sockets = []

    # aiohttp's client here: httpx's pool degrades badly with many queued requests.
    async with aiohttp.ClientSession(headers=headers) as http:

        async def accept_and_attach(call_id: str) -> None:
            async with gate:
                url = f"{simulator.base_url}/realtime/calls/{call_id}/accept"
                async with http.post(url, json=GA_BODY) as response:
                    assert response.status == 200
                ws_url = simulator.base_url.replace("http", "ws") + f"/realtime?call_id={call_id}"
                ws = await websockets.connect(ws_url, additional_headers=headers, open_timeout=30)
                sockets.append(ws)
                assert json.loads(await ws.recv())["type"] == "session.created"

        await asyncio.gather(*(accept_and_attach(call.call_id) for call in calls))

    assert all(call.state in ("accepted", "ended") for call in calls)
    assert sum(call.attach_count for call in calls) == CALLS
    # Every scripted caller says "hi", hears the default reply and hangs up.
    await simulator.wait_all_ended(timeout=30)
    assert {call.end_reason for call in calls} == {"caller_hangup"}
    assert all(call.agent_transcripts for call in calls)
    for ws in sockets:
        await ws.close()
