"""Delivering one endpoint's outbox: its own durable consumer, its own slots, its own pace.

Each endpoint is served by one `EndpointDelivery` with up to `concurrency` attempts in
flight, so a slow or dead endpoint ties up only its own slots and never another endpoint
or a call. A message is acknowledged only after the endpoint answered 2xx, or after its
dead letter is durable, so a crash at any point means a redelivery (with the same
`webhook-id`), never a loss. A failed attempt is handed back to JetStream with the
schedule's delay (`nak(delay)`), so a retry waiting for an hour holds no memory here and
survives restarts of this process and of NATS.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import Header
from pydantic import BaseModel, ValidationError

from services.postcall.retry import Step, decide, parse_retry_after
from services.postcall.sender import Attempt, Sender
from services.postcall.signing import signed_headers, webhook_id
from shared import metrics
from shared.endpoints import Endpoint, EndpointStore, now_utc
from shared.events import CallEvent
from shared.logging import bound
from shared.postcall import (
    DEAD_STREAM,
    OUTBOX_STREAM,
    dead_subject,
    endpoint_consumer,
    ensure_endpoint_consumer,
    outbox_subject,
)
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)

FETCH_WAIT_S = 1.0
NATS_RETRY_S = 0.5


@dataclass(frozen=True)
class RetryPolicy:
    schedule: list[float]
    max_age_s: float
    timeout_s: float


class DeadLetter(BaseModel):
    """A delivery given up (`postcall.dead.<endpoint_id>`); replay re-sends the event."""

    endpoint_id: str
    webhook_id: str
    reason: str  # max_age | gone
    attempts: int
    last_status: int | None
    last_outcome: str
    queued_at: datetime
    dead_at: datetime
    event: CallEvent


class EndpointDelivery:
    def __init__(
        self,
        js: JetStreamContext,
        endpoint: Endpoint,
        sender: Sender,
        policy: RetryPolicy,
        store: EndpointStore,
        *,
        concurrency: int,
        replicas: int = 1,
    ) -> None:
        self.endpoint = endpoint
        self._js = js
        self._sender = sender
        self._policy = policy
        self._store = store
        self._concurrency = concurrency
        self._replicas = replicas
        self._rng = random.Random()
        self._attempts: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        # Zero from the start: "no success in 15 minutes" needs a series to compare.
        metrics.WEBHOOK_DELIVERIES.labels(endpoint.id, "ok")
        for reason in ("max_age", "gone"):
            metrics.WEBHOOK_DEAD_LETTERS.labels(endpoint.id, reason)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"deliver-{self.endpoint.id}")

    async def stop(self) -> None:
        """Stop fetching and let the attempts in flight finish (each is bounded by the
        request timeout); whatever is not acknowledged is redelivered later."""
        # A fetch waits through `wait_for`, which may swallow one cancel (shared/tasks.py).
        await cancel_and_wait(self._task)
        if self._attempts:
            await asyncio.gather(*self._attempts, return_exceptions=True)
        await self._sender.close()

    async def _run(self) -> None:
        endpoint_id = self.endpoint.id
        with bound(endpoint=endpoint_id):
            while True:
                try:
                    await ensure_endpoint_consumer(
                        self._js, endpoint_id, ack_wait_s=self._policy.timeout_s + 20.0,
                        replicas=self._replicas,
                    )  # fmt: skip
                    sub = await self._js.pull_subscribe_bind(
                        durable=endpoint_consumer(endpoint_id), stream=OUTBOX_STREAM
                    )
                    break
                except Exception as error:
                    log.warning("endpoint consumer not ready (%s)", type(error).__name__)
                    await asyncio.sleep(NATS_RETRY_S)
            try:
                await self._pump(sub)
            finally:
                await sub.unsubscribe()

    async def _pump(self, sub: JetStreamContext.PullSubscription) -> None:
        while self.endpoint.disabled is None:
            free = self._concurrency - len(self._attempts)
            if free <= 0:
                await asyncio.wait(self._attempts, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                messages = await sub.fetch(free, timeout=FETCH_WAIT_S)
            except (NatsTimeout, TimeoutError):
                continue
            except Exception as error:  # NATS away: the client reconnects by itself
                log.warning("outbox fetch failed (%s)", type(error).__name__)
                await asyncio.sleep(NATS_RETRY_S)
                continue
            for msg in messages:
                attempt = asyncio.create_task(self._deliver(msg))
                self._attempts.add(attempt)
                attempt.add_done_callback(self._attempts.discard)

    async def _deliver(self, msg: Msg) -> None:
        endpoint = self.endpoint
        try:
            event = CallEvent.model_validate_json(msg.data)
        except ValidationError:
            log.error("outbox message is not a call event; dropped")
            await msg.term()
            return
        message_id = webhook_id(endpoint.id, event.call_id, event.seq)
        with bound(call_id=event.call_id, webhook_id=message_id):
            try:
                await self._attempt(msg, endpoint, event, message_id)
            except Exception as error:  # NATS refused an ack or a dead letter: redelivered
                log.warning("delivery bookkeeping failed (%s)", type(error).__name__)

    async def _attempt(
        self, msg: Msg, endpoint: Endpoint, event: CallEvent, message_id: str
    ) -> None:
        now = now_utc()
        headers = signed_headers(endpoint.signing_secrets(now), message_id, msg.data, now)
        started = time.perf_counter()
        answer = await self._sender.post(endpoint.url, headers, msg.data)
        metrics.WEBHOOK_DELIVERY_SECONDS.observe(time.perf_counter() - started)
        metrics.WEBHOOK_DELIVERIES.labels(endpoint.id, answer.outcome).inc()
        meta = msg.metadata
        now = now_utc()
        decision = decide(
            answer.status,
            attempt=meta.num_delivered,
            age_s=(now - meta.timestamp).total_seconds(),
            schedule=self._policy.schedule,
            max_age_s=self._policy.max_age_s,
            retry_after_s=parse_retry_after(answer.retry_after, now),
            rng=self._rng,
        )
        if decision.step is Step.DONE:
            await msg.ack_sync()
            metrics.WEBHOOK_LAG_SECONDS.observe(max(0.0, (now - event.ts).total_seconds()))
            log.debug("delivered %s", event.type)
            return
        if decision.step is Step.RETRY:
            log.info(
                "attempt %d failed (%s%s); next in %.1f s", meta.num_delivered, answer.outcome,
                f" {answer.detail!r}" if answer.detail else "", decision.delay_s,
            )  # fmt: skip
            await msg.nak(delay=decision.delay_s)
            return
        reason = "gone" if decision.step is Step.DISABLE else "max_age"
        await self._dead_letter(msg, endpoint, event, message_id, answer, reason)
        if decision.step is Step.DISABLE:
            await self._disable(endpoint, "gone")
        await msg.ack_sync()

    async def _dead_letter(
        self, msg: Msg, endpoint: Endpoint, event: CallEvent, message_id: str,
        answer: Attempt, reason: str,
    ) -> None:  # fmt: skip
        meta = msg.metadata
        record = DeadLetter(
            endpoint_id=endpoint.id, webhook_id=message_id, reason=reason,
            attempts=meta.num_delivered, last_status=answer.status, last_outcome=answer.outcome,
            queued_at=meta.timestamp, dead_at=now_utc(), event=event,
        )  # fmt: skip
        await self._js.publish(
            dead_subject(endpoint.id),
            record.model_dump_json().encode(),
            stream=DEAD_STREAM,
            headers={Header.MSG_ID.value: f"dead:{message_id}:{meta.sequence.stream}"},
        )
        metrics.WEBHOOK_DEAD_LETTERS.labels(endpoint.id, reason).inc()
        log.warning(
            "gave up on %s after %d attempts (%s, last %s)",
            event.type, meta.num_delivered, reason, answer.outcome,
        )  # fmt: skip

    async def _disable(self, endpoint: Endpoint, why: str) -> None:
        current = await self._store.get(endpoint.id) or endpoint
        if current.disabled is None:
            await self._store.put(current.model_copy(update={"disabled": why}))
            log.warning("endpoint disabled: it answered 410 Gone")
        self.endpoint = current.model_copy(update={"disabled": why})


async def backlog(js: JetStreamContext, endpoint_id: str) -> tuple[int, float]:
    """(events waiting or being retried, age in seconds of the oldest) for one endpoint."""
    info = await js.consumer_info(OUTBOX_STREAM, endpoint_consumer(endpoint_id))
    waiting = info.num_pending + info.num_ack_pending
    if waiting == 0:
        return 0, 0.0
    first = (info.ack_floor.stream_seq or 0) + 1
    oldest = await js.get_msg(
        OUTBOX_STREAM, seq=first, subject=outbox_subject(endpoint_id), next=True
    )
    age = (now_utc() - oldest.time).total_seconds() if oldest.time else 0.0
    return waiting, max(0.0, age)
