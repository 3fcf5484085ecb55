"""Fixtures for testing against the simulated OpenAI: reusable by any test that needs it.

- `webhook_receiver`: a tiny aiohttp server on loopback that records webhooks and answers
  with a status (and delay) the test controls.
- `simulator`: a started `Simulator` sending to that receiver; stopped (no leaks) afterwards.
- `worker`: a minimal client of the simulator's REST API and sideband, playing our side.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets
from aiohttp import web
from websockets.asyncio.client import ClientConnection

from simulator import Faults, Simulator

API_KEY = "sk-test-simulator"
WEBHOOK_SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
GA_BODY: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-realtime-2.1",
    "instructions": "You are a friendly receptionist.",
    "audio": {
        "input": {
            "transcription": {"model": "gpt-4o-mini-transcribe"},
            "turn_detection": {"type": "semantic_vad", "eagerness": "auto"},
        },
        "output": {"voice": "marin"},
    },
    "tools": [
        {
            "type": "function",
            "name": "check_availability",
            "description": "Free slots on a day.",
            "parameters": {"type": "object", "properties": {"day": {"type": "string"}}},
        }
    ],
}


@dataclass
class WebhookReceiver:
    """Records every webhook; `status(n)` / `delay(n)` decide the answer to the n-th (0-based)."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: Callable[[int], int] = lambda n: 200
    delay: Callable[[int], float] = lambda n: 0.0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        n = len(self.received)
        self.received.append((dict(request.headers), await request.read()))
        self._arrived.set()
        if self.delay(n):
            await asyncio.sleep(self.delay(n))
        return web.Response(status=self.status(n))

    async def wait_count(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    app = web.Application()
    app.router.add_post("/webhook", receiver.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhook"
    yield receiver
    await runner.cleanup()


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
async def simulator(webhook_receiver: WebhookReceiver, faults: Faults) -> AsyncIterator[Simulator]:
    sim = Simulator(
        api_key=API_KEY,
        webhook_secret=WEBHOOK_SECRET,
        webhook_url=webhook_receiver.url,
        faults=faults,
        webhook_timeout_s=1.0,
        webhook_retry_base_s=0.05,
        webhook_max_attempts=4,
        accept_window_s=5.0,
    )
    await sim.start(host="127.0.0.1", port=0)
    yield sim
    await sim.stop()


class Worker:
    """Our side of the call, reduced to raw REST and WebSocket calls."""

    def __init__(self, sim: Simulator, http: httpx.AsyncClient) -> None:
        self.sim = sim
        self.http = http

    async def post(
        self, call_id: str, action: str, body: Any = None, key: str | None = API_KEY
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return await self.http.post(
            f"{self.sim.base_url}/realtime/calls/{call_id}/{action}",
            json=body,
            headers=headers,
        )

    async def accept(self, call_id: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.post(call_id, "accept", GA_BODY if body is None else body)

    def sideband_url(self, call_id: str) -> str:
        return self.sim.base_url.replace("http://", "ws://") + f"/realtime?call_id={call_id}"

    async def attach(
        self, call_id: str, key: str | None = API_KEY, extra: dict[str, str] | None = None
    ) -> ClientConnection:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        headers.update(extra or {})
        return await websockets.connect(
            self.sideband_url(call_id), additional_headers=headers, open_timeout=5
        )


async def send(ws: ClientConnection, event: dict[str, Any]) -> None:
    await ws.send(json.dumps(event))


async def recv_until(ws: ClientConnection, type_: str, timeout: float = 5.0) -> list[dict]:
    """Read events up to and including the first of `type_`; return all read."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            seen.append(event)
            if event["type"] == type_:
                return seen


@pytest.fixture
async def worker(simulator: Simulator) -> AsyncIterator[Worker]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield Worker(simulator, http)
