"""One incoming call → at most one accept, fast, or an honest reject/miss.

The whole decision for one call, readable top to bottom: claim the call id (a KV create,
so replicas and redeliveries cannot accept twice; a claim another process may still be
deciding is left to it until its deadline) while the agent is picked and the API that
answers the SIP call chosen, check the deadline, admit it (a session slot and the agent's
limit, reserved in KV), accept with retries only while the call can still be answered,
then hand the call to the session workers. Every decision ends in an event on the call's
journal (`call.accepted`, `call.rejected`, ...): a redelivered webhook reads what was
decided there, so the claim is written once per call.

(Over 350 lines: the decision stays in one file, so that it reads top to bottom.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import openai
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from services.acceptor.call_apis import call_apis
from services.acceptor.claims import Claim, DecidedElsewhere, left_to_owner_until
from services.acceptor.probe import SidebandProbe
from services.acceptor.retries import until_written
from services.acceptor.sip_calls import Choice, SipCalls
from shared import metrics
from shared.agents import AgentProfile
from shared.backoff import Backoff
from shared.call_control import call_control
from shared.calls import IncomingCall, SessionJob
from shared.events import (
    CALL_EVENTS_STREAM,
    CallEvent,
    CallEventPublisher,
    EventType,
    journal_subject,
)
from shared.logging import bound, fields
from shared.reservations import Admission, Reservation
from shared.streams import SESSION_JOB_SUBJECT, SESSIONS_STREAM

log = logging.getLogger(__name__)

# A call-control request failing with 5xx/429/timeouts is retried until the call's deadline.
CALL_CONTROL_RETRY = Backoff(first_s=0.1, max_s=2.0)
# After an accept timed out, how often and how long past the deadline to ask the sideband
# whether it went through.
PROBE_PERIOD_S = 0.25
PROBE_GRACE_S = 3.0
# Never start a call-control request with less time than this left before the deadline.
MIN_REQUEST_S = 0.05
# `call.rejected` reason of a call refused because it waited too long to be decided in time.
OVERLOADED = "overloaded"

AgentResolverFn = Callable[[IncomingCall], Awaitable[AgentProfile]]


Outcome = Literal["accepted", "rejected", "duplicate", "missed", "failed", "expired", "superseded"]
# How a call-control request (with its retries) ended; `unknown`: an accept timed out and
# may or may not have been applied.
ResultKind = Literal["ok", "gone", "refused", "deadline", "unknown"]


@dataclass(frozen=True)
class AcceptOutcome:
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True)
class _Result:
    """How one call-control request (with its retries) ended."""

    kind: ResultKind
    detail: str = ""


class CallAcceptor:
    def __init__(
        self,
        *,
        js: JetStreamContext,
        claims: KeyValue,
        events: CallEventPublisher,
        openai_client: openai.AsyncOpenAI,
        resolve_agent: AgentResolverFn,
        admission: Admission,
        deadline_s: float,
        reject_status: int = 486,
        request_timeout_s: float = 2.0,
        probe: SidebandProbe | None = None,
        sip_calls: SipCalls | None = None,
        shed_after_s: float = 0.0,
        owner: str,
    ) -> None:
        self._owner = owner  # this process, in the claims it writes
        self._js = js
        self._claims = claims
        self._events = events
        self._openai = openai_client
        self._resolve_agent = resolve_agent
        self._admission = admission
        self._deadline_s = deadline_s
        self._reject_status = reject_status
        self._request_timeout_s = request_timeout_s
        self._probe = probe
        self._apis = call_apis(openai_client)  # by IncomingCall.api
        self._sip_calls = sip_calls
        self._shed_after_s = shed_after_s

    async def handle(self, call: IncomingCall) -> AcceptOutcome:
        """Decide the call; raises when that could not be finished (the webhook is then
        redelivered, after `redelivery_delay`, and resumes from the claim)."""
        with bound(call_id=call.call_id, webhook_id=call.webhook_id):
            try:
                outcome = await self._handle(call)
            except DecidedElsewhere as elsewhere:
                log.info("call %s", elsewhere)
                raise
            except Exception as error:
                log.warning("call not decided yet (%s), tried again", type(error).__name__)
                raise
            finally:
                self._events.forget(call.call_id)  # the worker publishes from here on
            metrics.ACCEPT_DECISIONS.labels(outcome.outcome).inc()
            log.info("call %s", outcome.outcome, extra=fields(detail=outcome.detail))
            return outcome

    async def _handle(self, call: IncomingCall) -> AcceptOutcome:
        # The agent is asked for, and the API that answers the SIP call chosen, while the
        # claim is written: the requests share socket writes and waits (each round trip to
        # NATS costs more CPU than the work in it; a duplicate's are made in vain, and the
        # SIP call's record is idempotent for a webhook it already names).
        claimed, (agent, choice) = await asyncio.gather(
            self._claim(call), self._resolve_and_choose(call)
        )
        if claimed is None:
            return AcceptOutcome("duplicate")
        claim, resumed = claimed
        if claim.state == "accepted" and claim.agent is not None:
            # An earlier version's claim: OpenAI accepted, the paperwork may be unfinished.
            return await self._finish_accepted(call, claim.agent, "resumed after a failed write")
        if resumed:
            decided = await self._decided_before(call)
            if decided == EventType.CALL_ACCEPTED:
                # Accepted, and the hand-off may be unfinished: made sure of (idempotent).
                return await self._finish_accepted(call, agent, "accepted before", "duplicate")
            if decided is not None:
                return AcceptOutcome("duplicate", f"decided before: {decided}")
        if resumed and claim.owner != self._owner:
            # Another process's handling, maybe still under way: its accept can be in flight,
            # which the sideband does not show yet. Left to it until none can land.
            left = left_to_owner_until(call, self._deadline_s + PROBE_GRACE_S) - time.time()
            if left > 0:
                raise DecidedElsewhere(left)
        if resumed and await self._accepted_before(call):
            # An earlier handling's accept went through and it stopped before it said so
            # (it died, or JetStream refused writes for longer than we retried): accepting
            # again would answer the call twice.
            return await self._finish_accepted(call, agent, "confirmed by the sideband")
        deadline = self._deadline(call)
        if time.time() >= deadline:
            await self._publish(call, EventType.CALL_MISSED, {"reason": "deadline"}, "missed")
            return AcceptOutcome("expired")
        if call.received_stream_seq:
            self._events.prime(call.call_id, call.received_stream_seq, 1)

        if choice is None:  # (past the deadline when asked; the clock stepped back since)
            choice = await self._choose_api(call, agent)
        if not choice.answers:
            # The other API's webhook of this SIP call answers it: this one is on record.
            data = choice.superseded_data(call)
            await self._publish(call, EventType.CALL_SUPERSEDED, data, "superseded")
            return AcceptOutcome("superseded", f"answered through {choice.api}")
        if self._shed_after_s and time.time() - call.received_at.timestamp() >= self._shed_after_s:
            # This webhook waited so long that calls arrive faster than we decide them: refuse
            # it now (a reject is cheap), so it is answered in time and the queue catches up,
            # instead of letting it and those behind it ring out past the deadline. After the
            # API choice: only the webhook that answers the SIP call may reject it.
            shed = Reservation(call.call_id, False, OVERLOADED)
            outcome = await self._reject(call, agent, shed, deadline)
            return outcome
        reservation = await self._admission.reserve(call.call_id, agent, deadline)
        if not reservation.admitted:
            outcome = await self._reject(call, agent, reservation, deadline)
        else:
            outcome = await self._accept(call, agent, reservation, deadline)
        return outcome

    async def _finish_accepted(
        self, call: IncomingCall, agent: AgentProfile, detail: str, outcome: Outcome = "accepted"
    ) -> AcceptOutcome:
        """The hand-off of a call an earlier handling accepted (idempotent: msg ids)."""
        await self._hand_to_workers(call, agent, self._admission.booking_of(call.call_id))
        return AcceptOutcome(outcome, detail)

    async def _accepted_before(self, call: IncomingCall) -> bool:
        """Whether OpenAI holds the call accepted already, for a webhook whose earlier
        handling was interrupted before its claim said. Raises when the sideband cannot
        tell (the webhook comes back later): guessing either way loses or doubles a call."""
        if self._probe is None:
            return False
        accepted = await self._probe.is_accepted(call.call_id, timeout=1.0, api=call.api)
        if accepted is None:
            raise RuntimeError("cannot tell whether an earlier accept went through")
        return accepted

    def _deadline(self, call: IncomingCall) -> float:
        """When the call can no longer be answered (epoch seconds)."""
        return call.received_at.timestamp() + self._deadline_s

    async def _resolve_and_choose(self, call: IncomingCall) -> tuple[AgentProfile, Choice | None]:
        """The agent, and which API answers the SIP call; no choice once the call cannot be
        answered in time (so it leaves no record that would supersede the other API's)."""
        agent = await self._resolve_agent(call)
        if time.time() >= self._deadline(call):
            return agent, None
        return agent, await self._choose_api(call, agent)

    async def _choose_api(self, call: IncomingCall, agent: AgentProfile) -> Choice:
        """Whether this webhook's API answers the call (services/acceptor/sip_calls.py)."""
        if self._sip_calls is None:
            return Choice(agent.api == call.api, agent.api, agent.name)
        return await self._sip_calls.choose(call, agent)

    async def _accept(
        self, call: IncomingCall, agent: AgentProfile, reservation: Reservation, deadline: float
    ) -> AcceptOutcome:
        api = self._apis[call.api]
        result = await self._call_control(
            "accept",
            lambda timeout: api.accept(call.call_id, agent, timeout),
            deadline,
        )
        if result.kind == "unknown":
            result = await self._confirm_accept(call, deadline)
        if result.kind == "ok":
            metrics.WEBHOOK_TO_ACCEPT_SECONDS.observe(time.time() - call.received_at.timestamp())
            # From here the call is answered: it must reach a worker, whatever fails next.
            # No claim write says so: a handling cut short before `call.accepted` leaves the
            # claim `accepting`, and its redelivery asks the sideband (`_accepted_before`).
            await self._hand_to_workers(call, agent, reservation.booking)
            return AcceptOutcome("accepted", result.detail)
        # No call came of it: give the slot and the agent's place back.
        await self._admission.release(reservation)
        if result.kind == "gone":
            await self._publish(call, EventType.CALL_MISSED, {"reason": "caller_gone"}, "missed")
            return AcceptOutcome("missed", "caller_gone")
        reason = {"refused": "accept_refused", "unknown": "accept_unconfirmed"}.get(
            result.kind, "accept_deadline"
        )
        data = {"reason": reason, "agent": agent.name}
        if result.detail:
            data["detail"] = result.detail
        await self._publish(call, EventType.CALL_FAILED, data, "failed")
        return AcceptOutcome("failed", reason)

    async def _hand_to_workers(
        self, call: IncomingCall, agent: AgentProfile, booking: str | None
    ) -> None:
        """`call.accepted` and the session job; both carry msg ids, so redoing them after a
        failure (here, or on a redelivery) never doubles them."""
        accepted = await until_written(
            lambda: self._publish(
                call, EventType.CALL_ACCEPTED, {"agent": agent.name, "api": call.api}, "accepted"
            )
        )
        job = SessionJob(
            call_id=call.call_id,
            agent=agent,
            received_at=call.received_at,
            accepted_at=accepted.ts if accepted is not None else datetime.now(UTC),
            events_tail=self._events.tail(call.call_id),
            accepted_event=accepted,  # None when published before (a resumed decision)
            booking=booking,
        )
        await until_written(
            lambda: self._js.publish(
                SESSION_JOB_SUBJECT,
                job.model_dump_json().encode(),
                stream=SESSIONS_STREAM,
                headers={Header.MSG_ID.value: f"job:{call.call_id}"},
            )
        )

    async def _reject(
        self, call: IncomingCall, agent: AgentProfile, reservation: Reservation, deadline: float
    ) -> AcceptOutcome:
        reason = reservation.reason or "rejected"
        metrics.ACCEPT_REJECTS.labels(reason).inc()
        status = self._reject_status
        api = self._apis[call.api]
        result = await self._call_control(
            "reject", lambda timeout: api.reject(call.call_id, status, timeout), deadline
        )
        if result.kind != "ok":
            # The caller hears a rejection or gives up either way; the decision stands.
            log.warning("reject not confirmed (%s %s)", result.kind, result.detail)
        await self._publish(
            call,
            EventType.CALL_REJECTED,
            {"reason": reason, "status_code": status, "agent": agent.name},
            "rejected",
        )
        return AcceptOutcome("rejected", reason)

    async def _call_control(
        self,
        endpoint: str,
        request: Callable[[float], Awaitable[Any]],
        deadline: float,
    ) -> _Result:
        """One call-control request: retried with backoff on 5xx/429/timeouts, only while
        the call can still be answered; 404 = the call is gone; other 4xx = refused."""
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.time()
            if remaining < MIN_REQUEST_S:
                return _Result("deadline", f"{attempt - 1} attempts")
            answer = await call_control(endpoint, request(min(self._request_timeout_s, remaining)))
            status = answer.status
            if answer.ok:
                return _Result("ok", f"attempt {attempt}")
            if status == "404":
                return _Result("gone")
            if status == "timeout" and endpoint == "accept" and self._probe is not None:
                # It may have been applied: never send it twice, find out instead.
                return _Result("unknown", f"attempt {attempt} timed out")
            if not answer.retryable:
                log.error("%s refused by OpenAI (%s): %s", endpoint, status, answer.message)
                return _Result("refused", f"status {status}")
            backoff = CALL_CONTROL_RETRY.delay(attempt - 1)
            if time.time() + backoff + MIN_REQUEST_S >= deadline:
                return _Result("deadline", f"{attempt} attempts, last {status}")
            log.warning("%s failed (%s), retrying in %.2fs", endpoint, status, backoff)
            await asyncio.sleep(backoff)

    async def _confirm_accept(self, call: IncomingCall, deadline: float) -> _Result:
        """Ask the sideband until the accept shows (the call is ours) or time runs out."""
        assert self._probe is not None
        while time.time() < deadline + PROBE_GRACE_S:
            if await self._probe.is_accepted(call.call_id, timeout=1.0, api=call.api):
                return _Result("ok", "confirmed by the sideband")
            await asyncio.sleep(PROBE_PERIOD_S)
        return _Result("unknown", "accept timed out and never showed")

    async def _claim(self, call: IncomingCall) -> tuple[Claim, bool] | None:
        """The claim this delivery works under, and whether it resumes one: a first claim,
        or the redelivery of the very webhook whose handling was interrupted (`accepting`:
        no accept is on record, one may have gone out; `accepted`: OpenAI accepted, the rest
        was not done); None for a duplicate."""
        claim = Claim(webhook_id=call.webhook_id, state="accepting", owner=self._owner)
        try:
            await self._claims.create(call.call_id, claim.encode())
            return claim, False
        except KeyWrongLastSequenceError:
            entry = await self._claims.get(call.call_id)
            stored = Claim.decode(entry.value)
            if stored is None or not stored.resumable_by(call.webhook_id):
                return None
            return stored, True

    async def _decided_before(self, call: IncomingCall) -> str | None:
        """What an earlier handling of this webhook decided: the type of the call's last
        event when it follows `call.received` (the decision, or what came of it), else None."""
        try:
            last = await self._js.get_last_msg(CALL_EVENTS_STREAM, journal_subject(call.call_id))
        except NotFoundError:
            return None
        event = CallEvent.model_validate_json(last.data or b"")
        return None if event.type == EventType.CALL_RECEIVED else event.type

    async def _publish(
        self, call: IncomingCall, type: EventType, data: dict[str, Any], key: str
    ) -> CallEvent | None:
        """The event as stored; None when it was stored before (a resumed decision)."""
        return await self._events.publish(call.call_id, type, data, msg_id=f"{key}:{call.call_id}")
