"""The JetStream topology of what happens after a call: webhook outbox, dead letters, index.

Used by the post-call service (`switchboard postcall`), which fills them, and the ingress,
which serves the webhooks and history API from them.

- `POSTCALL_OUTBOX` (work queue, `postcall.outbox.<endpoint_id>`): one message per event
  and endpoint that wants it, the event envelope as stored in `CALL_EVENTS`. Each endpoint
  has its own durable consumer, so a slow or dead endpoint holds up nobody else.
- `POSTCALL_DEAD` (`postcall.dead.<endpoint_id>`): a record of each delivery given up.
- `CALL_INDEX` (`calls.index.<call_id>`, one message per call, the latest kept): a
  summary of each finished call, in the order calls finished; `GET /calls?since=…` reads it.
- KV `webhook_endpoints`: the subscriptions (endpoint id → `Endpoint`, with its secrets).
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from shared.events import CALL_EVENTS_STREAM, CALL_JOURNAL_SUBJECT
from shared.streams import EVENTS_RETENTION_S, ensure_stream

OUTBOX_STREAM = "POSTCALL_OUTBOX"
OUTBOX_SUBJECT = "postcall.outbox"
DEAD_STREAM = "POSTCALL_DEAD"
DEAD_SUBJECT = "postcall.dead"
INDEX_STREAM = "CALL_INDEX"
INDEX_SUBJECT = "calls.index"
ENDPOINTS_BUCKET = "webhook_endpoints"
# The post-call service's own consumer of every call event (fan-out and index).
POSTCALL_CONSUMER = "postcall"
POSTCALL_ACK_WAIT_S = 30.0
# Headers on an outbox message.
QUEUED_HEADER = "Switchboard-Queued-At"  # when the event was first queued (replays: anew)


def outbox_subject(endpoint_id: str) -> str:
    return f"{OUTBOX_SUBJECT}.{endpoint_id}"


def dead_subject(endpoint_id: str) -> str:
    return f"{DEAD_SUBJECT}.{endpoint_id}"


def index_subject(call_id: str) -> str:
    return f"{INDEX_SUBJECT}.{call_id}"


def endpoint_consumer(endpoint_id: str) -> str:
    return f"endpoint-{endpoint_id}"


async def declare_postcall_topology(
    js: JetStreamContext,
    *,
    replicas: int = 1,
    retention_s: float = EVENTS_RETENTION_S,
    max_age_s: float = 24 * 3600.0,
) -> None:
    """Create or update the post-call streams, bucket and the fan-out consumer."""
    await ensure_stream(
        js,
        StreamConfig(
            name=OUTBOX_STREAM,
            subjects=[f"{OUTBOX_SUBJECT}.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=120.0,
            # Kept past the give-up age, so the give-up is a dead letter, never an expiry.
            max_age=max(retention_s, max_age_s + 3600.0),
        ),
    )
    for name, subject in ((DEAD_STREAM, DEAD_SUBJECT), (INDEX_STREAM, INDEX_SUBJECT)):
        await ensure_stream(
            js,
            StreamConfig(
                name=name,
                subjects=[f"{subject}.*"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=replicas,
                duplicate_window=120.0,
                max_age=retention_s,
                max_msgs_per_subject=-1 if name == DEAD_STREAM else 1,
                allow_direct=True,
            ),
        )
    await js.create_key_value(
        KeyValueConfig(
            bucket=ENDPOINTS_BUCKET, history=1, replicas=replicas, storage=StorageType.FILE
        )
    )
    try:
        await js.consumer_info(CALL_EVENTS_STREAM, POSTCALL_CONSUMER)
    except NotFoundError:
        await js.add_consumer(
            CALL_EVENTS_STREAM,
            ConsumerConfig(
                durable_name=POSTCALL_CONSUMER,
                filter_subject=f"{CALL_JOURNAL_SUBJECT}.>",
                # First start: index the calls already retained; endpoints only get events
                # stored after they were created.
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=POSTCALL_ACK_WAIT_S,
                max_deliver=-1,
                max_ack_pending=2000,
                num_replicas=replicas,
            ),
        )


async def ensure_endpoint_consumer(
    js: JetStreamContext, endpoint_id: str, *, ack_wait_s: float, replicas: int = 1
) -> None:
    """The durable consumer of one endpoint's outbox (idempotent)."""
    await js.add_consumer(
        OUTBOX_STREAM,
        ConsumerConfig(
            durable_name=endpoint_consumer(endpoint_id),
            filter_subject=outbox_subject(endpoint_id),
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=-1,  # retries end by age (a dead letter), not by count
            max_ack_pending=1000,
            num_replicas=replicas,
        ),
    )


async def drop_endpoint_queue(js: JetStreamContext, endpoint_id: str) -> None:
    """Delete an endpoint's consumer and what waits in its outbox (idempotent)."""
    try:
        await js.delete_consumer(OUTBOX_STREAM, endpoint_consumer(endpoint_id))
    except NotFoundError:
        pass
    await js.purge_stream(OUTBOX_STREAM, subject=outbox_subject(endpoint_id))
