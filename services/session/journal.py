"""`CallJournal`: a call's events as one owner of the call writes and reads them.

Every publish is fenced by the lease and retried with the same `Nats-Msg-Id` while the
lease holds (a stream electing a leader refuses writes for seconds; the event exists
nowhere else). Once the lease lapses, `LeaseLost`: the call and its events are the next
owner's. The journal also says what the call's past holds for a new owner (history) and
writes its last words (`call.ended`, `call.report`), built from the events themselves so
they are complete across workers.

Reading a call's events back costs nats-server a consumer per call, so the report is built
from memory when that is exact: the worker took the call on its job's first delivery, the
job carried the acceptor's `call.accepted`, and each event this worker published was
numbered right after the one before (the publisher's optimistic concurrency renumbers an
event that another writer got ahead of, which breaks the chain). Anything else reads back.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections import deque
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.errors import NoStreamResponseError, NotFoundError

from services.session.history import CallHistory
from services.session.lease import CallLease
from services.session.report import as_read, build_report
from services.session.sideband import AgentTranscript, CallerTranscript, Dtmf
from shared.backoff import Backoff
from shared.events import (
    CALL_EVENTS_STREAM,
    CallEvent,
    CallEventPublisher,
    EventType,
    journal_subject,
    read_call_events,
)

log = logging.getLogger(__name__)

# A NATS publish that fails is retried (same Nats-Msg-Id) after these delays, the last one
# repeating, for as long as the lease holds.
PUBLISH_RETRY = Backoff(first_s=0.1, max_s=1.0)
RETRYABLE_NATS = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    NoStreamResponseError,
    asyncio.TimeoutError,
)


def call_event(
    event: CallerTranscript | AgentTranscript | Dtmf,
) -> tuple[EventType, dict[str, Any]]:
    """The call event (type and data) of a transcript or a key press."""
    if isinstance(event, Dtmf):
        return EventType.DTMF, {"digit": event.digit}
    if isinstance(event, AgentTranscript):
        return EventType.TRANSCRIPT_AGENT, {"text": event.text, "item_id": event.item_id}
    data: dict[str, Any] = {"text": event.text, "item_id": event.item_id}
    if event.failed:
        data |= {"failed": True, "error": event.error}
    return EventType.TRANSCRIPT_CALLER, data


class CallJournal:
    def __init__(self, js: JetStreamContext, events: CallEventPublisher, lease: CallLease) -> None:
        self._js = js
        self._events = events
        self._lease = lease
        self.call_id = lease.call_id
        # The call's events from `call.accepted` on while this worker alone wrote them (see
        # the module's docstring), as much of each as the report reads, and the last one's
        # `seq`; None: the report reads them back.
        self._written: list[CallEvent] | None = None
        self._last_seq = 0
        self._sent_ids: deque[str] = deque(maxlen=4)  # the last events' msg ids, as sent

    async def publish(
        self, type: EventType, data: dict[str, Any], *, msg_id: str | None = None
    ) -> None:
        """Publish a call event durably, while the lease holds; else `LeaseLost`."""
        msg_id = msg_id or uuid.uuid4().hex
        self._sent_ids.append(msg_id)
        for attempt in itertools.count():
            await self._lease.confirm()
            try:
                event = await self._events.publish(self.call_id, type, data, msg_id=msg_id)
            except RETRYABLE_NATS as error:
                log.warning("event publish failed (%s), retrying", error.__class__.__name__)
                await asyncio.sleep(PUBLISH_RETRY.delay(attempt))
                continue
            self._remember(event)
            return

    async def wrote_last(self) -> bool:
        """Whether the call's last stored event is one this journal sent (a publish whose
        reply was lost counts: it may have landed), so nobody else has written since."""
        try:
            last = await self._js.get_last_msg(CALL_EVENTS_STREAM, journal_subject(self.call_id))
        except NotFoundError:
            return False
        return (last.headers or {}).get(Header.MSG_ID.value) in self._sent_ids

    def _remember(self, event: CallEvent | None) -> None:
        written = self._written
        if written is None:
            return
        if event is None or event.seq != self._last_seq + 1:
            # A retry of a publish that had landed (its event unknown here), or another
            # writer's event between ours: only the journal knows the whole call now.
            self._written = None
            return
        self._last_seq = event.seq
        kept = as_read(event)
        if kept is not None:
            written.append(kept)

    async def history(
        self, delivery: int, tail: tuple[int, int] | None, accepted: CallEvent | None = None
    ) -> CallHistory:
        """What earlier owners did; on the job's first delivery nobody had the call before,
        and the acceptor said where its events stand (`tail`, and `accepted`, the event
        there), so nothing is read."""
        if delivery <= 1:
            if tail is not None:
                self._events.prime(self.call_id, *tail)
                if accepted is not None and accepted.seq == tail[1]:
                    self._written, self._last_seq = [accepted], accepted.seq
            return CallHistory()
        events = await read_call_events(self._js, self.call_id)
        await self._lease.confirm()
        return CallHistory.from_events(events)

    async def ended(self, reason: str, *, already: bool = False) -> None:
        """`call.ended` (unless a dead owner published it: `already`), then `call.report`
        unless one exists; both idempotent by their ids."""
        if not already:
            await self.publish(
                EventType.CALL_ENDED, {"reason": reason}, msg_id=f"ended:{self.call_id}"
            )
        events = self._written
        if events is None:
            events = await read_call_events(self._js, self.call_id)
        if not any(e.type == EventType.CALL_REPORT for e in events):
            await self.publish(
                EventType.CALL_REPORT,
                build_report(events, reason).data(),
                msg_id=f"report:{self.call_id}",
            )

    def forget(self) -> None:
        """The call is no longer ours: drop what the publisher remembers of it."""
        self._events.forget(self.call_id)
