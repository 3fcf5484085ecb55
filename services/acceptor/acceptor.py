"""One incoming call → at most one accept, fast, or an honest reject/miss.

The whole decision for one call, readable top to bottom: claim the call id (a KV create,
so replicas and redeliveries cannot accept twice), check the deadline, pick the agent,
accept with retries only while the call can still be answered, then hand the call to the
session workers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import openai
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from services.acceptor.accept_body import accept_body
from shared import metrics
from shared.agents import AgentProfile
from shared.calls import IncomingCall, SessionJob
from shared.events import CallEventPublisher, EventType
from shared.logging import bound, fields
from shared.streams import SESSION_JOB_SUBJECT, SESSIONS_STREAM

log = logging.getLogger(__name__)

RETRY_BASE_S = 0.1


@dataclass(frozen=True)
class AcceptOutcome:
    outcome: str  # accepted, duplicate, missed, failed, expired
    detail: str = ""


class CallAcceptor:
    def __init__(
        self,
        *,
        js: JetStreamContext,
        claims: KeyValue,
        events: CallEventPublisher,
        openai_client: openai.AsyncOpenAI,
        resolve_agent: AgentResolver,
        deadline_s: float,
        acceptor_id: str,
    ) -> None:
        self._js = js
        self._claims = claims
        self._events = events
        self._openai = openai_client
        self._resolve_agent = resolve_agent
        self._deadline_s = deadline_s
        self._acceptor_id = acceptor_id

    async def handle(self, call: IncomingCall) -> AcceptOutcome:
        with bound(call_id=call.call_id, webhook_id=call.webhook_id):
            outcome = await self._handle(call)
            metrics.ACCEPT_DECISIONS.labels(outcome.outcome).inc()
            log.info("call %s", outcome.outcome, extra=fields(detail=outcome.detail))
            return outcome

    async def _handle(self, call: IncomingCall) -> AcceptOutcome:
        deadline = call.received_at.timestamp() + self._deadline_s
        if time.time() >= deadline:
            await self._events.publish(
                call.call_id, EventType.CALL_MISSED, {"reason": "deadline"},
                msg_id=f"missed:{call.call_id}",
            )  # fmt: skip
            return AcceptOutcome("expired")
        if not await self._claim(call):
            return AcceptOutcome("duplicate")

        agent = await self._resolve_agent(call)
        result = await self._accept(call.call_id, agent, deadline)
        if result.outcome == "accepted":
            elapsed = time.time() - call.received_at.timestamp()
            metrics.WEBHOOK_TO_ACCEPT_SECONDS.observe(elapsed)
            await self._events.publish(
                call.call_id, EventType.CALL_ACCEPTED, {"agent": agent.name},
                msg_id=f"accepted:{call.call_id}",
            )  # fmt: skip
            job = SessionJob(
                call_id=call.call_id,
                agent=agent,
                received_at=call.received_at,
                accepted_at=datetime.now(UTC),
            )
            await self._js.publish(
                SESSION_JOB_SUBJECT,
                job.model_dump_json().encode(),
                stream=SESSIONS_STREAM,
                headers={Header.MSG_ID.value: f"job:{call.call_id}"},
            )
        elif result.outcome == "missed":
            await self._events.publish(
                call.call_id, EventType.CALL_MISSED, {"reason": result.detail},
                msg_id=f"missed:{call.call_id}",
            )  # fmt: skip
        else:
            await self._events.publish(
                call.call_id, EventType.CALL_FAILED, {"reason": result.detail},
                msg_id=f"failed:{call.call_id}",
            )  # fmt: skip
        await self._claims.put(call.call_id, _claim_value(call, "done"))
        return result

    async def _claim(self, call: IncomingCall) -> bool:
        """True if this delivery owns the call: a first claim, or the redelivery of the
        very webhook whose handling was interrupted before it finished."""
        try:
            await self._claims.create(call.call_id, _claim_value(call, "accepting"))
            return True
        except KeyWrongLastSequenceError:
            entry = await self._claims.get(call.call_id)
            claim = json.loads(entry.value or b"{}")
            return claim.get("webhook_id") == call.webhook_id and claim.get("state") == "accepting"

    async def _accept(self, call_id: str, agent: AgentProfile, deadline: float) -> AcceptOutcome:
        body = accept_body(agent)
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            status = "error"
            try:
                await self._openai.realtime.calls.accept(call_id, **body)
                status = "200"
                return AcceptOutcome("accepted", f"attempt {attempt}")
            except openai.NotFoundError:
                status = "404"
                return AcceptOutcome("missed", "caller_gone")
            except openai.BadRequestError as error:
                status = "400"
                log.error("accept refused by OpenAI: %s", error.message)
                return AcceptOutcome("failed", "accept_refused")
            except openai.APIStatusError as error:
                status = str(error.status_code)
                retryable = error.status_code >= 500 or error.status_code == 429
                if not retryable:
                    log.error("accept refused by OpenAI (%s): %s", status, error.message)
                    return AcceptOutcome("failed", f"accept_status_{status}")
            except openai.APITimeoutError:
                status = "timeout"
            except openai.APIConnectionError:
                status = "error"
            finally:
                metrics.OPENAI_REQUESTS.labels("accept", status).inc()
                metrics.OPENAI_REQUEST_SECONDS.labels("accept").observe(
                    time.perf_counter() - started
                )
            backoff = RETRY_BASE_S * 2 ** (attempt - 1)
            if time.time() + backoff >= deadline:
                return AcceptOutcome("failed", "accept_deadline")
            log.warning("accept failed (%s), retrying in %.2fs", status, backoff)
            await asyncio.sleep(backoff)


def _claim_value(call: IncomingCall, state: str) -> bytes:
    return json.dumps({"webhook_id": call.webhook_id, "state": state}).encode()


class AgentResolver:
    """Picks the agent for a call (the agents file and hook come with later work)."""

    def __init__(self, default: AgentProfile) -> None:
        self._default = default

    async def __call__(self, call: IncomingCall) -> AgentProfile:
        return self._default
