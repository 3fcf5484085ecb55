"""The per-call event envelope and the publisher that numbers events without gaps or repeats.

`seq` counts from 1 per call and must never skip or repeat, even when two processes publish
for the same call at once (the acceptor and a worker, or a stale worker and its
successor). JetStream gives that with optimistic concurrency on the subject: each publish
carries `Nats-Expected-Last-Subject-Sequence`; a publish that lost a race is refused, and
the publisher reloads the call's last event and numbers again. `Nats-Msg-Id` makes a retry
of the same event idempotent.

Publishers write to the call's journal subject `calls.journal.<call_id>`, which only the
`CALL_EVENTS` stream listens to; the stream republishes each event it *stored* to
`calls.events.<call_id>`. So a plain subscriber on `calls.events.>` sees every event once,
in order, and never an attempt JetStream refused (a core NATS subscriber on the publish
subject itself would see those too).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, Header
from nats.js.errors import APIError, NotFoundError
from pydantic import BaseModel, Field

from shared.ids import is_call_id
from shared.limits import MAX_MESSAGE_BYTES, shrink
from shared.nats import lost_race

CALL_EVENTS_STREAM = "CALL_EVENTS"
CALL_EVENTS_SUBJECT = "calls.events"  # the live feed: every stored event, once (contract)
CALL_JOURNAL_SUBJECT = "calls.journal"  # where publishers write and the stream stores


class EventType(StrEnum):
    CALL_RECEIVED = "call.received"
    CALL_ACCEPTED = "call.accepted"
    CALL_REJECTED = "call.rejected"
    CALL_MISSED = "call.missed"
    CALL_FAILED = "call.failed"
    CALL_SUPERSEDED = "call.superseded"  # the other API's webhook of an answered SIP call
    SESSION_ATTACHED = "session.attached"
    SESSION_DETACHED = "session.detached"
    TRANSCRIPT_CALLER = "transcript.caller"
    TRANSCRIPT_AGENT = "transcript.agent"
    DTMF = "dtmf"
    TOOL_CALLED = "tool.called"
    TOOL_COMPLETED = "tool.completed"
    CALL_TRANSFERRED = "call.transferred"
    TRANSFER_FAILED = "transfer.failed"
    CALL_ENDED = "call.ended"
    CALL_REPORT = "call.report"
    RESPONSE_FAILED = "response.failed"
    # Outbound calls (services/dialler).
    CALL_REQUESTED = "call.requested"
    CALL_DIALING = "call.dialing"
    CALL_RINGING = "call.ringing"
    CALL_ANSWERED = "call.answered"


class EndReason(StrEnum):
    """`call.ended`'s `reason` (external contract); each is produced by the session worker
    (services/session/conversation.py), and means what `END_REASON_MEANINGS` says."""

    CALLER_HANGUP = "caller_hangup"
    AGENT_HANGUP = "agent_hangup"
    OPERATOR_HANGUP = "operator_hangup"
    TRANSFERRED = "transferred"
    MAX_DURATION = "max_duration"
    IDLE = "idle"
    ERROR = "error"
    LOST = "lost"


END_REASON_MEANINGS = {
    EndReason.CALLER_HANGUP: "the call left with nothing of ours pending",
    EndReason.AGENT_HANGUP: "the model's end_call, after its goodbye",
    EndReason.OPERATOR_HANGUP: "the control API",
    EndReason.TRANSFERRED: "the call left while our transfer was pending",
    EndReason.MAX_DURATION: "the agent's max_duration_s or OpenAI's session cap",
    EndReason.IDLE: "the caller stayed silent through the idle prompt",
    EndReason.ERROR: "OpenAI refused the sideband for good",
    EndReason.LOST: "the sideband stayed unreachable; the call's fate is unknown",
}


class CallEvent(BaseModel):
    """The envelope on `calls.events.<call_id>` (external contract)."""

    type: str
    call_id: str
    seq: int = Field(ge=1)
    ts: datetime
    data: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


_KNOWN_TYPES = frozenset(t.value for t in EventType)


def event_subject(call_id: str) -> str:
    """The live subject of a call's events, for subscribers."""
    return f"{CALL_EVENTS_SUBJECT}.{call_id}"


def journal_subject(call_id: str) -> str:
    """The subject a call's events are published to and stored under."""
    return f"{CALL_JOURNAL_SUBJECT}.{call_id}"


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Tail:
    stream_seq: int  # JetStream sequence of the call's last event (0: none yet)
    event_seq: int  # its `seq`


class CallEventPublisher:
    """Publishes call events durably, numbered per call.

    One instance per process; a per-call lock keeps this process from racing itself, the
    expected-last-subject-sequence check keeps it from racing others. An event larger than
    `max_bytes` (a report of a very long call, a transcript from a runaway model) is stored
    cut down (`shared.limits.shrink`, `"truncated": true`) rather than refused by NATS.
    """

    def __init__(
        self, js: JetStreamContext, *, timeout: float = 2.0, max_bytes: int = MAX_MESSAGE_BYTES
    ) -> None:
        self._js = js
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._tails: dict[str, _Tail] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def publish(
        self,
        call_id: str,
        type: EventType | str,
        data: dict[str, Any] | None = None,
        *,
        msg_id: str | None = None,
    ) -> CallEvent | None:
        """Publish one event; returns it, or None when `msg_id` was already published."""
        if not is_call_id(call_id):  # a subject token: refused before it reaches NATS
            raise ValueError("not a valid call id")
        lock = self._locks.setdefault(call_id, asyncio.Lock())
        async with lock:
            return await self._publish(call_id, str(type), data or {}, msg_id or uuid.uuid4().hex)

    async def _publish(
        self, call_id: str, type: str, data: dict[str, Any], msg_id: str
    ) -> CallEvent | None:
        subject = journal_subject(call_id)
        tail = self._tails.get(call_id) or await self._load_tail(subject)
        trimmed = False
        while True:
            event = CallEvent(
                type=type, call_id=call_id, seq=tail.event_seq + 1, ts=now_utc(), data=data
            )
            payload = event.to_json()
            if len(payload) > self._max_bytes:
                # Cut down once; should that not do, the event keeps its type alone.
                data = {"truncated": True} if trimmed else self._trimmed(event)
                trimmed = True
                continue
            headers = {
                Header.MSG_ID.value: msg_id,
                Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: str(tail.stream_seq),
            }
            try:
                ack = await self._js.publish(
                    subject,
                    payload,
                    timeout=self._timeout,
                    stream=CALL_EVENTS_STREAM,
                    headers=headers,
                )
            except APIError as error:
                if not lost_race(error):
                    raise
                # Another publisher got there first: renumber after its event.
                tail = await self._load_tail(subject)
                continue
            if ack.duplicate:
                # Already published under this msg_id (a retry, or another process).
                self._tails.pop(call_id, None)
                return None
            self._tails[call_id] = _Tail(stream_seq=ack.seq, event_seq=event.seq)
            return event

    def _trimmed(self, event: CallEvent) -> dict[str, Any]:
        """The event's data cut down so that the event fits `max_bytes`."""
        envelope = len(event.model_copy(update={"data": {}}).to_json())
        room = self._max_bytes - envelope - 64  # a longer seq, the marker, rounding
        from shared import metrics  # here: shared.metrics imports EndReason from this module

        metrics.PAYLOADS_TRIMMED.labels(event.type if event.type in _KNOWN_TYPES else "other").inc()
        return {**shrink(event.data, max(room, 0)), "truncated": True}

    async def _load_tail(self, subject: str) -> _Tail:
        try:
            last = await self._js.get_last_msg(CALL_EVENTS_STREAM, subject)
        except NotFoundError:
            return _Tail(0, 0)
        return _Tail(stream_seq=last.seq or 0, event_seq=json.loads(last.data or b"{}")["seq"])

    def prime(self, call_id: str, stream_seq: int, event_seq: int) -> None:
        """Start from a known last event (handed over by the previous publisher) instead of
        reading the journal. A stale hint costs one refused publish, never a wrong `seq`."""
        self._tails.setdefault(call_id, _Tail(stream_seq=stream_seq, event_seq=event_seq))

    def tail(self, call_id: str) -> tuple[int, int] | None:
        """(JetStream sequence, `seq`) of the last event this process published for a call."""
        known = self._tails.get(call_id)
        return (known.stream_seq, known.event_seq) if known else None

    def forget(self, call_id: str) -> None:
        """Drop the cached tail of a call this process no longer publishes for."""
        self._tails.pop(call_id, None)
        self._locks.pop(call_id, None)


async def read_call_events(js: JetStreamContext, call_id: str) -> list[CallEvent]:
    """Every event of one call so far, in order (from the stream, not from memory)."""
    subject = journal_subject(call_id)
    try:
        await js.get_last_msg(CALL_EVENTS_STREAM, subject)
    except NotFoundError:
        return []
    events: list[CallEvent] = []
    sub = await js.subscribe(
        subject, stream=CALL_EVENTS_STREAM, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=2.0)
            except NatsTimeout:
                break
            events.append(CallEvent.model_validate_json(msg.data))
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return events
