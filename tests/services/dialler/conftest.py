"""An outbound stack: ingress (with `POST /calls`), acceptor, session workers and dialler on
a real nats-server, the simulated GPT-Live as OpenAI, and an agents file with a trunk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.dialler.main import Dialler
from simulator import CallerScript
from switchboard.nats_server import NatsServer
from tests.stack import Stack

TOKEN = "control-token-" + "t" * 16
TRUNK_PASSWORD = "s3cret-trunk-pa55word-" + "p" * 12
CALLEE = "+61400000001"
# A callee who answers, says one thing and hangs up.
SHORT_CALL = CallerScript.model_validate(
    {"name": "callee", "agent_speech_s": 0.01, "greeting_wait_s": 1.0,
     "steps": [{"say": "Yes, see you then.", "reply": "Great, bye!"}, {"hangup": True}]}
)  # fmt: skip


def agents_yaml(max_concurrent: int = 10, rate: float = 50.0, retry: str = "") -> str:
    return f"""agents:
  - name: reminders
    api: live
    numbers: ["+61468002103"]
    voice: marin
    instructions: "You call customers to confirm appointments for Bella Salon."
    greeting: "Hi, this is Bella Salon calling about your appointment."
    delegation: {{model: gpt-5-mini, instructions: "Look bookings up with the tools."}}
    tools:
      - name: check_booking
        parameters: {{type: object, properties: {{name: {{type: string}}}}}}
        timeout_s: 5
      - builtin: end_call
    outbound:
      trunk:
        provider_url: "sips:trunk.example.com"
        caller_number: "+61290000001"
        username: "acme"
        password_env: TRUNK_PASSWORD
      max_concurrent: {max_concurrent}
      rate_per_s: {rate}
      {retry}
  - name: inbound_only
    api: live
    numbers: ["+61468002104"]
    voice: marin
    instructions: "You answer."
    greeting: "Hello."
"""


class Outbound:
    """The stack, its dialler(s) and a client for the control API."""

    def __init__(self, stack: Stack, agents: Path) -> None:
        self.stack = stack
        self.agents = agents
        self.diallers: list[Dialler] = []
        base = f"http://127.0.0.1:{stack.ingress.http.port}" if stack.ingress else ""
        self.http = httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )

    async def add_dialler(self) -> Dialler:
        dialler = Dialler(self.stack.settings(), metrics_port=0, host="127.0.0.1")
        await dialler.start()
        self.diallers.append(dialler)
        return dialler

    async def request(
        self, key: str, to: str = CALLEE, agent: str = "reminders", **extra: Any
    ) -> httpx.Response:
        body = {"to": to, "agent": agent, **extra}
        return await self.http.post("/calls", json=body, headers={"Idempotency-Key": key})

    async def stop(self) -> None:
        for dialler in self.diallers:
            await dialler.stop()
        await self.http.aclose()


async def outbound_stack(
    nats_server: NatsServer, tmp_path: Path, yaml: str, *, workers: int = 1, capacity: int = 20
) -> tuple[Stack, Outbound]:
    agents = tmp_path / "agents.yaml"
    agents.write_text(yaml)
    stack = await Stack(
        nats_server.url,
        workers=workers,
        capacity=capacity,
        settings_overrides={"switchboard_agents_file": agents, "switchboard_control_token": TOKEN},
    ).start()
    assert stack.simulator is not None
    stack.simulator.live.rules.reflect_audio = False
    stack.simulator.live.outbound.callees.caller = SHORT_CALL
    return stack, Outbound(stack, agents)


@pytest.fixture
async def outbound(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Outbound]:
    monkeypatch.setenv("TRUNK_PASSWORD", TRUNK_PASSWORD)
    stack, out = await outbound_stack(nats_server, tmp_path, agents_yaml())
    await out.add_dialler()
    yield out
    await out.stop()
    await stack.stop()
