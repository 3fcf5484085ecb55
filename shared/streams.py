"""The JetStream topology: streams, consumers and KV buckets, declared idempotently.

Every service calls `declare_topology()` at start-up; whichever starts first creates
things, the others find them as they are (or update them to this declaration). Names here
are internal but documented in the README and the AsyncAPI document.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    KeyValueConfig,
    RePublish,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError

from shared.events import CALL_EVENTS_STREAM, CALL_EVENTS_SUBJECT, CALL_JOURNAL_SUBJECT
from shared.settings import Settings

log = logging.getLogger(__name__)

# Verified webhooks, one message per `webhook-id` (Nats-Msg-Id), consumed by the acceptor.
WEBHOOKS_STREAM = "WEBHOOKS"
INCOMING_CALL_SUBJECT = "webhooks.realtime.call.incoming"
ACCEPTOR_CONSUMER = "acceptor"
# GPT-Live's incoming calls (`live.transport.incoming`, and the deprecated
# `live.call.incoming`), consumed by the acceptor through a consumer of their own.
LIVE_INCOMING_CALL_SUBJECT = "webhooks.live.transport.incoming"
ACCEPTOR_LIVE_CONSUMER = "acceptor-live"
ACCEPTOR_ACK_WAIT_S = 5.0
ACCEPTOR_MAX_DELIVER = 60

# Accepted calls waiting for (or held by) a session worker: a work queue.
SESSIONS_STREAM = "SESSIONS"
SESSION_JOB_SUBJECT = "sessions.jobs"
SESSION_CONSUMER = "session-workers"

# KV buckets.
CALL_CLAIMS_BUCKET = "call_claims"  # call_id → acceptor's claim: one accept per call
CALL_LEASES_BUCKET = "call_leases"  # call_id → the session worker that owns it (TTL'd)
WORKER_SLOTS_BUCKET = "worker_slots"  # worker id → free slots (TTL'd), for admission
TOOL_RUNS_BUCKET = "tool_runs"  # tool_call_id → run record: one run per tool call
SIP_CALLS_BUCKET = "sip_calls"  # SIP Call-ID → the API that answers it (both webhooks)

_ALREADY_IN_USE = 10058


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError as error:
        if error.err_code != _ALREADY_IN_USE:
            raise
        await js.update_stream(config)


EVENTS_RETENTION_S = 7 * 24 * 3600.0  # default of SWITCHBOARD_EVENTS_RETENTION_S


async def declare_configured_topology(js: JetStreamContext, settings: Settings) -> None:
    """`declare_topology` as the settings say. Every service declares with the same values:
    one left at a default would undo, at its start, the retention another was given."""
    await declare_topology(
        js,
        replicas=settings.nats_replicas,
        session_ack_wait_s=settings.session_ack_wait_s,
        events_retention_s=settings.switchboard_events_retention_s,
    )


async def declare_topology(
    js: JetStreamContext,
    *,
    replicas: int = 1,
    session_ack_wait_s: float = 6.0,
    events_retention_s: float = EVENTS_RETENTION_S,
) -> None:
    """Create or update every stream, consumer and bucket Switchboard uses."""
    await ensure_stream(
        js,
        StreamConfig(
            name=WEBHOOKS_STREAM,
            subjects=["webhooks.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=120.0,
            max_age=24 * 3600.0,
        ),
    )
    await ensure_stream(
        js,
        StreamConfig(
            name=CALL_EVENTS_STREAM,
            subjects=[f"{CALL_JOURNAL_SUBJECT}.>"],
            # Stored events only reach `calls.events.<call_id>` subscribers, each once.
            republish=RePublish(src=f"{CALL_JOURNAL_SUBJECT}.>", dest=f"{CALL_EVENTS_SUBJECT}.>"),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=120.0,
            max_age=events_retention_s,
            allow_direct=True,
        ),
    )
    await ensure_stream(
        js,
        StreamConfig(
            name=SESSIONS_STREAM,
            subjects=[SESSION_JOB_SUBJECT],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=120.0,
            discard=DiscardPolicy.OLD,
            max_age=24 * 3600.0,
        ),
    )
    # One durable consumer per API's incoming calls, alike (one backlog never holds up the
    # other's).
    for durable, subject in (
        (ACCEPTOR_CONSUMER, INCOMING_CALL_SUBJECT),
        (ACCEPTOR_LIVE_CONSUMER, LIVE_INCOMING_CALL_SUBJECT),
    ):
        await js.add_consumer(
            WEBHOOKS_STREAM,
            ConsumerConfig(
                durable_name=durable,
                filter_subject=subject,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ACCEPTOR_ACK_WAIT_S,
                # Failed handlings come back after up to 1 s (services/acceptor/retries.py
                # redelivery_delay): about a minute of tries, past any ring time and election.
                max_deliver=ACCEPTOR_MAX_DELIVER,
                max_ack_pending=1000,
                num_replicas=replicas,
            ),
        )
    await js.add_consumer(
        SESSIONS_STREAM,
        ConsumerConfig(
            durable_name=SESSION_CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=session_ack_wait_s,
            max_deliver=-1,
            max_ack_pending=-1,
            num_replicas=replicas,
        ),
    )
    for bucket, ttl in (
        (CALL_CLAIMS_BUCKET, 3600.0),
        (CALL_LEASES_BUCKET, 24 * 3600.0),
        (WORKER_SLOTS_BUCKET, 3600.0),
        (TOOL_RUNS_BUCKET, 24 * 3600.0),
        (SIP_CALLS_BUCKET, 3600.0),
    ):
        await js.create_key_value(
            KeyValueConfig(
                bucket=bucket, history=1, ttl=ttl, replicas=replicas, storage=StorageType.FILE
            )
        )
