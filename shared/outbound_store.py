"""Where outbound calls wait and what they are: the `OUTBOUND` work queue (one message per
try), the `outbound_keys` bucket (Idempotency-Key → call_id, kept beyond JetStream's
dedupe window) and the `outbound_calls` bucket (each call's state, compare-and-set). A
call's tries travel on `outbound.requests.<call_id>`.

The record, not the message, is the truth: a message only says "look at this call's try
n". A duplicate or stale message finds the record past that try and is dropped, so a
message delivered twice, or a request sent again, never dials twice.
"""

from __future__ import annotations

from collections.abc import Callable

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import (
    BadRequestError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue
from pydantic import BaseModel

from shared.outbound import (
    DIALLER_CONSUMER,
    KEYS_TTL_S,
    OUTBOUND_CALLS_BUCKET,
    OUTBOUND_KEYS_BUCKET,
    OUTBOUND_STREAM,
    OUTBOUND_SUBJECT,
    OutboundCall,
)

DIALLER_ACK_WAIT_S = 6.0
_ALREADY_IN_USE = 10058


class TryMessage(BaseModel):
    """`outbound.requests`: dial try `attempt` of `call_id` (when its record says so)."""

    call_id: str
    attempt: int


async def declare_outbound(js: JetStreamContext, replicas: int = 1) -> None:
    config = StreamConfig(
        name=OUTBOUND_STREAM,
        subjects=[f"{OUTBOUND_SUBJECT}.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=120.0,
        max_age=KEYS_TTL_S,
    )
    try:
        await js.add_stream(config)
    except BadRequestError as error:
        if error.err_code != _ALREADY_IN_USE:
            raise
        await js.update_stream(config)
    await js.add_consumer(
        OUTBOUND_STREAM,
        ConsumerConfig(
            durable_name=DIALLER_CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=DIALLER_ACK_WAIT_S,
            max_deliver=-1,
            max_ack_pending=10_000,
            num_replicas=replicas,
        ),
    )
    for bucket in (OUTBOUND_KEYS_BUCKET, OUTBOUND_CALLS_BUCKET):
        await js.create_key_value(
            KeyValueConfig(
                bucket=bucket, history=1, ttl=KEYS_TTL_S, replicas=replicas,
                storage=StorageType.FILE,
            )
        )  # fmt: skip


def try_subject(call_id: str) -> str:
    """One subject per call, so that whether a try of it waits in the queue can be asked."""
    return f"{OUTBOUND_SUBJECT}.{call_id}"


async def try_pending(js: JetStreamContext, call_id: str) -> bool:
    """Whether a try of this call waits in (or is being worked from) the work queue."""
    try:
        await js.get_last_msg(OUTBOUND_STREAM, try_subject(call_id))
    except NotFoundError:
        return False
    return True


async def publish_try(js: JetStreamContext, call_id: str, attempt: int) -> None:
    """Ask for try `attempt` (deduplicated: the same try is one message)."""
    await js.publish(
        try_subject(call_id),
        TryMessage(call_id=call_id, attempt=attempt).model_dump_json().encode(),
        stream=OUTBOUND_STREAM,
        headers={"Nats-Msg-Id": f"try:{call_id}:{attempt}"},
        timeout=2.0,
    )


class CallRecords:
    """`outbound_calls`, read and changed by compare-and-set on the revision."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, call_id: str) -> tuple[OutboundCall, int] | None:
        try:
            entry = await self.kv.get(call_id)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return OutboundCall.model_validate_json(entry.value), entry.revision or 0

    async def create(self, record: OutboundCall) -> bool:
        """False when the call already has a record."""
        try:
            await self.kv.create(record.call_id, record.encode())
        except KeyWrongLastSequenceError:
            return False
        return True

    async def change(
        self, call_id: str, decide: Callable[[OutboundCall], OutboundCall | None]
    ) -> OutboundCall | None:
        """Apply `decide(current)` (None: no change) by compare-and-set; returns the record
        written, or None when there was none to write (or no record)."""
        while True:
            current = await self.get(call_id)
            if current is None:
                return None
            record, revision = current
            new = decide(record)
            if new is None:
                return None
            try:
                await self.kv.update(call_id, new.encode(), last=revision)
            except KeyWrongLastSequenceError:
                continue
            return new
