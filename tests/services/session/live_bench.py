"""A bench for GPT-Live calls on session workers: the simulated GPT-Live, worker(s) on a
real nats-server, and a job per call as the acceptor would publish it (accepted with the
agent's Live session first), so a test controls the agent and the caller exactly."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from shared.agents import AgentProfile, BuiltinTool, FunctionTool
from shared.calls import SessionJob
from shared.live_accept import live_session
from shared.streams import SESSION_JOB_SUBJECT, SESSIONS_STREAM
from simulator import CallerScript, Faults
from simulator.live import LiveSession
from tests.services.session.tools_bench import CallBench
from tests.stack import API_KEY

RECEPTION = "tel:+61290000000"


def live_agent(transfer_timeout_s: float = 10.0, tool_timeout_s: float = 5.0) -> AgentProfile:
    return AgentProfile(
        name="reminders",
        api="live",
        model="gpt-live-1",
        voice="marin",
        instructions="You confirm appointments.",
        greeting="Hi, this is Bella Salon.",
        delegation={"model": "gpt-5-mini", "instructions": "Use the tools."},  # type: ignore[arg-type]
        tools=[
            FunctionTool(
                name="check_availability",
                parameters={"type": "object", "properties": {"day": {"type": "string"}}},
                timeout_s=tool_timeout_s,
            ),
            FunctionTool(name="slow_lookup", timeout_s=tool_timeout_s),
            BuiltinTool(builtin="end_call", timeout_s=5.0),
            BuiltinTool(
                builtin="transfer_call",
                targets={"reception": RECEPTION},
                timeout_s=transfer_timeout_s,
            ),
        ],
    )


class LiveBench(CallBench):
    def __init__(self, nats_url: str, faults: Faults | None = None, workers: int = 1) -> None:
        super().__init__(nats_url, faults, workers)
        # Light reflected audio keeps the bench honest (frames flow) without loading CI.
        self.simulator.live.rules.audio_chunk_ms = 100

    async def live_call(self, script: CallerScript, agent: AgentProfile) -> LiveSession:
        """Ring, accept with the agent's Live session, and hand the call to the workers."""
        assert self._nc is not None
        session = await self.simulator.live.place_call(script, send_webhooks=False)
        received = datetime.now(UTC)
        async with httpx.AsyncClient(timeout=5) as http:
            reply = await http.post(
                f"{self.simulator.base_url}/live/sessions/{session.session_id}/accept",
                json={"session": live_session(agent)},
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
        reply.raise_for_status()
        job = SessionJob(
            call_id=session.session_id,
            agent=agent,
            received_at=received,
            accepted_at=datetime.now(UTC),
        )
        await self._nc.jetstream().publish(
            SESSION_JOB_SUBJECT, job.model_dump_json().encode(), stream=SESSIONS_STREAM
        )
        return session


def live_outputs(session: LiveSession) -> list[dict]:
    """The function_call_output items the worker sent to the delegation backend, in order."""
    return [
        e["item"]
        for e in session.client_events
        if e.get("type") == "response.item.create"
        and e.get("item", {}).get("type") == "function_call_output"
    ]


def greetings(session: LiveSession) -> int:
    """How many greetings the simulated GPT-Live received for this session."""
    return sum(
        1
        for e in session.client_events
        if e.get("type") == "session.instructions.append"
        and str(e.get("content", "")).startswith("Greet the caller")
    )
