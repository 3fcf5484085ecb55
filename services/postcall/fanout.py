"""From the call events to each endpoint's outbox, and to the call index.

One durable consumer (`postcall` on `CALL_EVENTS`) reads every stored event once, in
order. For each event: a copy to the outbox of every endpoint that wants it (de-duplicated
on `<endpoint>:<call_id>:<seq>`, so a redelivered batch queues nothing twice), and, when
the call has finished, its summary to the call index. The event is acknowledged only after
all of that is durable. Nothing here waits for an endpoint: that is the outbox' job.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import Header
from pydantic import ValidationError

from services.postcall.view import EndpointView
from shared import metrics
from shared.call_index import TERMINAL_TYPES, summarize
from shared.endpoints import wants
from shared.events import CALL_EVENTS_STREAM, CallEvent, EventType, read_call_events
from shared.postcall import (
    INDEX_STREAM,
    OUTBOX_STREAM,
    POSTCALL_CONSUMER,
    index_subject,
    outbox_subject,
)

log = logging.getLogger(__name__)

BATCH = 256
FETCH_WAIT_S = 1.0
NATS_RETRY_S = 0.5
REMEMBERED_CALLS = 20_000  # calls in progress whose facts are kept (a few hundred bytes each)
_FIRST_EVENT_FIELDS = ("api", "direction", "to", "from", "agent")


def _slim(first: CallEvent) -> CallEvent:
    """What the index needs of a call's first event: its numbers, not all 64 SIP headers."""
    headers = [
        h for h in first.data.get("sip_headers") or []
        if isinstance(h, dict) and str(h.get("name", "")).lower() in ("to", "from")
    ]  # fmt: skip
    data = {k: first.data[k] for k in _FIRST_EVENT_FIELDS if k in first.data}
    return first.model_copy(update={"data": {**data, "sip_headers": headers}})


@dataclass
class CallFacts:
    """What the fan-out has seen of a call: enough to name its agent and index it."""

    events: list[CallEvent] = field(default_factory=list)  # the first, the agent's, the last
    agent: str | None = None
    complete: bool = False  # the first event was seen here

    def observe(self, event: CallEvent) -> None:
        agent = event.data.get("agent")
        if event.seq == 1:
            self.complete = True
            self.events.append(_slim(event))
        elif isinstance(agent, str) and self.agent is None:
            self.events.append(event)
        elif event.type in TERMINAL_TYPES:
            self.events.append(event)
        if isinstance(agent, str) and self.agent is None:
            self.agent = agent


class Fanout:
    def __init__(self, js: JetStreamContext, view: EndpointView) -> None:
        self._js = js
        self._view = view
        self._calls: OrderedDict[str, CallFacts] = OrderedDict()

    async def run(self) -> None:
        while True:
            try:
                sub = await self._js.pull_subscribe_bind(
                    durable=POSTCALL_CONSUMER, stream=CALL_EVENTS_STREAM
                )
                break
            except Exception as error:
                log.warning("event consumer not ready (%s)", type(error).__name__)
                await asyncio.sleep(NATS_RETRY_S)
        try:
            while True:
                try:
                    messages = await sub.fetch(BATCH, timeout=FETCH_WAIT_S)
                except (NatsTimeout, TimeoutError):
                    continue
                try:
                    await self._view.refresh()
                    await self.handle(messages)
                except Exception as error:  # NATS away: the batch comes back
                    log.warning("fan-out of %d events failed (%s)", len(messages),
                                type(error).__name__)  # fmt: skip
                    for msg in messages:
                        await _quietly(msg.nak(delay=NATS_RETRY_S))
                    await asyncio.sleep(NATS_RETRY_S)
        finally:
            await _quietly(sub.unsubscribe())

    async def handle(self, messages: list[Msg]) -> None:
        """Queue and index a batch, then acknowledge it."""
        publishes = []
        for msg in messages:
            try:
                event = CallEvent.model_validate_json(msg.data)
            except ValidationError:
                log.error("not a call event on %s; skipped", msg.subject)
                continue
            facts = self._facts(event.call_id)
            facts.observe(event)
            stored_at = msg.metadata.timestamp
            for endpoint in self._view.endpoints.values():
                agent = facts.agent
                if endpoint.agents and agent is None:
                    agent = (await self._complete(event)).agent
                if wants(endpoint, event.type, agent, stored_at):
                    publishes.append(self._queue(endpoint.id, event, msg.data))
            if event.type in TERMINAL_TYPES:
                publishes.append(self._index(event))
        await asyncio.gather(*publishes)
        for msg in messages:
            await msg.ack()

    def _facts(self, call_id: str) -> CallFacts:
        facts = self._calls.get(call_id)
        if facts is None:
            facts = self._calls[call_id] = CallFacts()
            while len(self._calls) > REMEMBERED_CALLS:
                self._calls.popitem(last=False)
        else:
            self._calls.move_to_end(call_id)
        return facts

    async def _complete(self, event: CallEvent) -> CallFacts:
        """The call's facts up to `event`, read from its events if this process missed
        its start (a restart, or a call older than the cache)."""
        facts = self._facts(event.call_id)
        if facts.complete:
            return facts
        fresh = CallFacts()
        for earlier in await read_call_events(self._js, event.call_id):
            if earlier.seq <= event.seq:
                fresh.observe(earlier)
        fresh.complete = True
        self._calls[event.call_id] = fresh
        return fresh

    async def _queue(self, endpoint_id: str, event: CallEvent, body: bytes) -> None:
        await self._js.publish(
            outbox_subject(endpoint_id), body, stream=OUTBOX_STREAM,
            headers={Header.MSG_ID.value: f"{endpoint_id}:{event.call_id}:{event.seq}"},
        )  # fmt: skip

    async def _index(self, event: CallEvent) -> None:
        facts = await self._complete(event)
        summary = summarize([e for e in facts.events if e.seq <= event.seq])
        if summary is None:
            return
        await self._js.publish(
            index_subject(event.call_id),
            summary.model_dump_json(by_alias=True).encode(),
            stream=INDEX_STREAM,
            headers={Header.MSG_ID.value: f"index:{event.call_id}:{event.seq}"},
        )
        metrics.CALLS_INDEXED.inc()
        if event.type == EventType.CALL_REPORT:
            self._calls.pop(event.call_id, None)  # its last event: nothing more to know


async def _quietly(awaitable: object) -> None:
    try:
        await awaitable  # type: ignore[misc]
    except Exception:
        pass
