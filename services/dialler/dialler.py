"""One outbound try, top to bottom: wait for its time, take a place in the agent's cap, the
rate and a session slot, claim the try in the call's record, dial, watch the ringing, and
hand an answered call to the session workers (or fail it, or schedule the retry).

(Over 350 lines: read top to bottom like the acceptor, one try's steps in one place.)

At most one dial per try, whatever crashes: the record is claimed (`queued` → `dialing`,
compare-and-set) before the request goes to OpenAI, and a claimed try is never dialled
again. A dialler that dies before it knows the session id leaves the try `unconfirmed`
(it may or may not have rung): reported as `call.failed` and never repeated. One that dies
after it leaves the session id: the next dialler hands the call to the session workers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import openai
from nats.js import JetStreamContext

from services.dialler.dial import Progress, Watch, create_session, hang_up
from services.dialler.policy import (
    failure_reason,
    outbound_session,
    retry_delay,
    sip_transport,
    window_opens,
)
from shared.agents import AgentProfile
from shared.calls import SessionJob
from shared.events import CallEventPublisher, EventType
from shared.logging import bound, fields
from shared.outbound import FailReason, OutboundCall
from shared.outbound_limits import OutboundLimits
from shared.outbound_store import CallRecords, publish_try
from shared.reservations import Admission, Reservation
from shared.settings import Settings
from shared.streams import SESSION_JOB_SUBJECT, SESSIONS_STREAM

log = logging.getLogger(__name__)

# A try waiting for its time (a retry's delay, the calling window) goes back to the queue
# when the wait is longer than this, and holds nothing meanwhile.
HOLD_MAX_S = 5.0
# A full cap or no free session slot: the try is looked at again this soon.
BUSY_RETRY_S = 0.5

Verdict = Literal["done", "later"]


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    delay_s: float = 0.0  # for "later": when to look again
    detail: str = ""


class TryDialler:
    def __init__(
        self,
        *,
        settings: Settings,
        js: JetStreamContext,
        records: CallRecords,
        limits: OutboundLimits,
        admission: Admission,
        events: CallEventPublisher,
        client: openai.AsyncOpenAI,
        agents: Any,  # name → AgentProfile (`AgentDirectory.named`)
        dialler_id: str,
    ) -> None:
        self._settings = settings
        self._js = js
        self._records = records
        self._limits = limits
        self._admission = admission
        self._events = events
        self._client = client
        self._agents = agents
        self._id = dialler_id

    async def handle(self, call_id: str, attempt: int, message_seq: int) -> Outcome:
        with bound(call_id=call_id):
            current = await self._records.get(call_id)
            if current is None:
                return Outcome("done", detail="no such call")
            record, _ = current
            if record.state == "dialing" and record.claim_seq == message_seq:
                return await self._recover(record)  # its dialler stopped (we got it back)
            if record.state == "queued" and record.tries == attempt:
                # This try failed and was re-queued, but its dialler stopped before the next
                # try's message went out: send it (deduplicated) and let this one go.
                await publish_try(self._js, call_id, attempt + 1)
                return Outcome("done", detail="next try queued")
            if record.state != "queued" or record.tries + 1 != attempt:
                return Outcome("done", detail=f"stale ({record.state}, try {record.tries})")
            agent = self._agents(record.agent)
            if agent is None or agent.outbound is None:
                await self._fail(record, "trunk_error", {"detail": "agent cannot dial"})
                return Outcome("done", detail="agent gone")
            wait = self._time_to_wait(record, agent)
            if wait > HOLD_MAX_S:
                return Outcome("later", wait - HOLD_MAX_S / 2, "not yet")
            return await self._dial_when_free(record, agent, attempt, message_seq)

    def _time_to_wait(self, record: OutboundCall, agent: AgentProfile) -> float:
        assert agent.outbound is not None
        now = datetime.now(UTC)
        opens = window_opens(agent.outbound.window, now)
        return max(record.not_before - now.timestamp(), (opens - now).total_seconds(), 0.0)

    async def _dial_when_free(
        self, record: OutboundCall, agent: AgentProfile, attempt: int, message_seq: int
    ) -> Outcome:
        config = agent.outbound
        assert config is not None
        if not await self._limits.take_place(agent.name, record.call_id, config.max_concurrent):
            return Outcome("later", BUSY_RETRY_S, "cap full")
        reservation = await self._admission.reserve(record.call_id, agent)
        if not reservation.admitted:
            await self._limits.leave(agent.name, record.call_id)
            return Outcome("later", BUSY_RETRY_S, reservation.reason or "no slot")
        wait = self._time_to_wait(record, agent)
        if wait > 0:
            await asyncio.sleep(wait)  # a retry's delay or the window: seconds at most here
        await self._limits.wait_turn(agent.name, config.rate_per_s)

        def claim(current: OutboundCall) -> OutboundCall | None:
            if current.state != "queued" or current.tries + 1 != attempt:
                return None
            return current.model_copy(
                update={"state": "dialing", "tries": attempt, "dialler": self._id,
                        "session_id": None, "claim_seq": message_seq,
                        "booking": reservation.booking, "counted_agent": reservation.agent}
            )  # fmt: skip

        claimed = await self._records.change(record.call_id, claim)
        if claimed is None:  # cancelled meanwhile, or another dialler has it
            await self._give_back(agent, record.call_id, reservation)
            return Outcome("done", detail="not claimed")
        await self._publish(
            claimed, EventType.CALL_DIALING, {"to": claimed.to, "agent": agent.name,
                                              "try": attempt}, f"dialing:{attempt}",
        )  # fmt: skip
        return await self._dial(claimed, agent, reservation)

    async def _dial(
        self, record: OutboundCall, agent: AgentProfile, reservation: Reservation | None
    ) -> Outcome:
        assert agent.outbound is not None
        password = agent.outbound.trunk.password()
        if not password:
            await self._give_back(agent, record.call_id, reservation)
            detail = f"no trunk password in {agent.outbound.trunk.password_source}"
            await self._fail(record, "trunk_error", {"detail": detail})
            return Outcome("done", detail="no password")
        result = await create_session(
            self._client,
            outbound_session(agent, record.context),
            sip_transport(agent, record.to, password),
        )
        del password
        if result.kind == "not_sent":
            await self._give_back(agent, record.call_id, reservation)
            await self._records.change(record.call_id, _requeue(record.tries - 1, 0.0))
            return Outcome("later", 1.0, result.detail)
        if result.kind != "created":
            await self._give_back(agent, record.call_id, reservation)
            reason: FailReason = "trunk_error" if result.kind == "refused" else "unconfirmed"
            await self._fail(record, reason, {"detail": result.detail})
            return Outcome("done", detail=result.detail)
        session_id = result.session_id
        assert session_id is not None
        record = await self._records.change(
            record.call_id, lambda r: r.model_copy(update={"session_id": session_id})
        ) or record.model_copy(update={"session_id": session_id})
        return await self._watch(record, agent, reservation)

    async def _watch(
        self, record: OutboundCall, agent: AgentProfile, reservation: Reservation | None
    ) -> Outcome:
        assert agent.outbound is not None and record.session_id is not None
        watch = Watch(self._settings, record.session_id)
        deadline = time.monotonic() + agent.outbound.ring_timeout_s
        try:
            progress = await self._progress(record, watch, deadline)
        finally:
            await watch.close()
        if progress.kind in ("answered", "gone"):
            # `gone`: the sideband closed or the session is over before we saw the answer;
            # the session worker finds out which (an ended session is a 404 there).
            booking = reservation.booking if reservation is not None else None
            return await self._answered(record, agent, booking=booking)
        if progress.kind == "timeout":
            await hang_up(self._client, record.session_id)
            reason: FailReason = "no_answer"
        elif progress.code == "cancelled":
            reason = "cancelled"
        elif progress.kind == "closed":
            reason = "rejected"
        else:
            reason = failure_reason(progress.code)
        await self._give_back(agent, record.call_id, reservation)
        return await self._failed_try(record, agent, reason, progress.code)

    async def _progress(self, record: OutboundCall, watch: Watch, deadline: float) -> Progress:
        """Ringing is published as it comes; a cancel is looked for every second."""
        assert record.session_id is not None
        if not await watch.open():
            return Progress("gone")
        while True:
            current = await self._records.get(record.call_id)
            if current is not None and current[0].state == "cancelled":
                await hang_up(self._client, record.session_id)
                return Progress("failed", "cancelled")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Progress("timeout")
            progress = await watch.next(min(1.0, remaining))
            if progress.kind == "timeout":
                continue
            if progress.kind != "ringing":
                return progress
            await self._publish(record, EventType.CALL_RINGING, {}, f"ringing:{record.tries}")

    async def _answered(
        self,
        record: OutboundCall,
        agent: AgentProfile,
        *,
        seen: bool = True,
        booking: str | None = None,
    ) -> Outcome:
        """`booking`: the worker whose admission book holds the call, released there when
        the call ends."""

        def answered(current: OutboundCall) -> OutboundCall | None:
            if current.state not in ("dialing", "cancelled"):
                return None
            return current.model_copy(update={"state": "answered"})

        # Event, job, then record: each is deduplicated, so a dialler that dies in between
        # is finished by the next (the record stays `dialing` until the job is out).
        if seen:
            await self._publish(
                record, EventType.CALL_ANSWERED, {"session_id": record.session_id, "api": "live"},
                f"answered:{record.tries}",
            )  # fmt: skip
        job = SessionJob(
            call_id=record.call_id,
            agent=agent,
            received_at=datetime.now(UTC),
            accepted_at=datetime.now(UTC),
            events_tail=self._events.tail(record.call_id),
            direction="outbound",
            session_id=record.session_id,
            context=record.context or None,
            booking=booking,
        )
        await self._js.publish(
            SESSION_JOB_SUBJECT,
            job.model_dump_json().encode(),
            stream=SESSIONS_STREAM,
            headers={"Nats-Msg-Id": f"job:{record.call_id}"},
        )
        await self._records.change(record.call_id, answered)
        self._events.forget(record.call_id)  # the session worker publishes from here on
        return Outcome("done", detail="answered")

    async def _failed_try(
        self, record: OutboundCall, agent: AgentProfile, reason: FailReason, code: str
    ) -> Outcome:
        assert agent.outbound is not None
        delay = retry_delay(reason, record.tries, agent.outbound.retry)
        data: dict[str, Any] = {"reason": reason, "try": record.tries}
        if code:
            data["code"] = code
        if delay is None:
            await self._fail(record, reason, data)
            return Outcome("done", detail=reason)
        requeued = await self._records.change(
            record.call_id, _requeue(record.tries, time.time() + delay)
        )
        if requeued is None:  # cancelled while it rang
            await self._fail(record, "cancelled", {"try": record.tries})
            return Outcome("done", detail="cancelled")
        data.update(final=False, retry_in_s=delay)
        await self._publish(record, EventType.CALL_FAILED, data, f"failed:{record.tries}")
        await publish_try(self._js, record.call_id, record.tries + 1)
        return Outcome("done", detail=f"{reason}, retried")

    async def _recover(self, record: OutboundCall) -> Outcome:
        """A try claimed by a dialler that stopped: never dialled again."""
        agent = self._agents(record.agent)
        if record.session_id is None or agent is None or agent.outbound is None:
            await self._limits.leave(record.agent, record.call_id)
            held = Reservation(
                record.call_id, admitted=True, agent=record.counted_agent, booking=record.booking
            )
            await self._admission.release(held)
            await self._fail(record, "unconfirmed", {"detail": "dialler stopped mid-dial"})
            return Outcome("done", detail="unconfirmed")
        # Whether it was answered is not known (an attach replays nothing): the session
        # worker attaches and runs it, or finds it over, and releases the booking either way.
        log.info("dial recovered from a stopped dialler", extra=fields(session=record.session_id))
        return await self._answered(record, agent, seen=False, booking=record.booking)

    async def _fail(self, record: OutboundCall, reason: FailReason, data: dict[str, Any]) -> None:
        def failed(current: OutboundCall) -> OutboundCall | None:
            if current.state in ("answered", "failed"):
                return None
            state = "cancelled" if current.state == "cancelled" else "failed"
            return current.model_copy(update={"state": state, "reason": reason})

        await self._records.change(record.call_id, failed)
        await self._publish(
            record, EventType.CALL_FAILED, {"reason": reason, "final": True, **data},
            f"failed:{record.tries}",
        )  # fmt: skip
        await self._publish(
            record,
            EventType.CALL_REPORT,
            {"direction": "outbound", "tries": record.tries, "api": "live",
             "end_reason": reason, "duration_s": 0.0, "turns": 0, "transcript": [],
             "tools": [], "attempts": 0},
            "report",
        )  # fmt: skip
        self._events.forget(record.call_id)

    async def _give_back(
        self, agent: AgentProfile, call_id: str, reservation: Reservation | None
    ) -> None:
        await self._limits.leave(agent.name, call_id)
        if reservation is not None:
            await self._admission.release(reservation)

    async def _publish(
        self, record: OutboundCall, type: EventType, data: dict[str, Any], key: str
    ) -> None:
        await self._events.publish(record.call_id, type, data, msg_id=f"{key}:{record.call_id}")


def _requeue(tries: int, not_before: float) -> Callable[[OutboundCall], OutboundCall | None]:
    def decide(current: OutboundCall) -> OutboundCall | None:
        if current.state != "dialing":
            return None
        return current.model_copy(
            update={"state": "queued", "tries": tries, "not_before": not_before,
                    "session_id": None, "dialler": None}
        )  # fmt: skip

    return decide
