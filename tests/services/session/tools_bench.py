"""A bench for calls with an agent of the test's choosing: session workers on a real
nats-server, the simulator as OpenAI, and jobs published the way the acceptor does
(accept over REST, then a `SessionJob` on the work queue), without the ingress or acceptor.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import httpx
import nats
from nats.aio.client import Client

from services.session.worker import SessionWorker
from shared.accept_body import accept_body
from shared.agents import AgentProfile
from shared.calls import SessionJob
from shared.settings import Settings
from shared.streams import SESSION_JOB_SUBJECT, SESSIONS_STREAM
from simulator import CallerScript, Faults, SimulatedCall, Simulator
from tests.stack import API_KEY, EventLog, new_webhook_secret


class CallBench:
    def __init__(self, nats_url: str, faults: Faults | None = None, workers: int = 1) -> None:
        self.nats_url = nats_url
        self.faults = faults or Faults()
        self.workers_wanted = workers
        self.events = EventLog()
        self.simulator = Simulator(
            API_KEY,
            new_webhook_secret(),
            "http://127.0.0.1:9/unused",  # jobs are published directly, not via webhooks
            faults=self.faults,
            webhook_max_attempts=1,
            webhook_timeout_s=0.5,
        )
        self.workers: list[SessionWorker] = []
        self._nc: Client | None = None

    def settings(self) -> Settings:
        return Settings(
            _env_file=None,  # type: ignore[call-arg]
            nats_url=self.nats_url,
            openai_api_key=API_KEY,
            openai_base_url=self.simulator.base_url,
            log_format="text",
            session_ack_wait_s=3.0,
            session_lease_ttl_s=2,
            session_drain_deadline_s=2.0,
        )

    async def start(self) -> CallBench:
        await self.events.start(self.nats_url)
        await self.simulator.start()
        for _ in range(self.workers_wanted):
            worker = SessionWorker(self.settings(), 5, f"worker-{secrets.token_hex(3)}")
            await worker.start()
            self.workers.append(worker)
        self._nc = await nats.connect(self.nats_url)
        return self

    async def stop(self) -> None:
        for worker in self.workers:
            await worker.stop()
        await self.simulator.stop()
        if self._nc is not None:
            await self._nc.close()
        await self.events.stop()

    @property
    def nc(self) -> Client:
        """The bench's own NATS connection (publishing jobs, reading buckets)."""
        assert self._nc is not None
        return self._nc

    async def call(self, script: CallerScript, agent: AgentProfile) -> SimulatedCall:
        """Ring, accept with `agent`, and hand the call to the session workers."""
        assert self._nc is not None
        call = await self.simulator.place_call(script)
        received = datetime.now(UTC)
        async with httpx.AsyncClient(timeout=5) as http:
            reply = await http.post(
                f"{self.simulator.base_url}/realtime/calls/{call.call_id}/accept",
                json=accept_body(agent),
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
        reply.raise_for_status()
        job = SessionJob(
            call_id=call.call_id, agent=agent, received_at=received, accepted_at=datetime.now(UTC)
        )
        await self._nc.jetstream().publish(
            SESSION_JOB_SUBJECT, job.model_dump_json().encode(), stream=SESSIONS_STREAM
        )
        return call


async def wait_ended(call: SimulatedCall, timeout: float = 20.0) -> None:
    await call.wait_until(lambda c: c.state == "ended", timeout)


def outputs_sent(call: SimulatedCall) -> list[dict]:
    """The function_call_output items the worker sent to the model, in order."""
    return [
        e["item"]
        for e in call.client_events
        if e.get("type") == "conversation.item.create"
        and e.get("item", {}).get("type") == "function_call_output"
    ]
