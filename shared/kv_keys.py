"""The keys of a KV bucket that hold a value now, without nats-py's watcher race.

nats-py's `KeyValue.keys()` watches the bucket through a push consumer and decides that
it has seen everything when a callback has run for each message the consumer had pending
at creation. Messages already buffered on the subscription but not yet handed to that
callback are missed, so `keys()` now and then returns a short list, or none at all
(nats-io/nats.py#842). A short list here is a live call missing from `GET /calls`, or an
endpoint the post-call service never delivers to. So this asks a pull consumer for the
last message of every key, as many as it says it holds, and counts them in.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from nats.nuid import NUID

# How a client marks a key deleted or purged, and how the server marks one it removed.
_KV_OPERATION, _GONE_OPERATIONS = "KV-Operation", {"DEL", "PURGE"}
_MARKER_REASON = "Nats-Marker-Reason"
_BATCH = 256
_FETCH_TIMEOUT_S = 5.0


async def live_keys(js: JetStreamContext, bucket: str) -> list[str]:
    """Every key of `bucket` whose last entry is a value (not a delete or purge), sorted.

    Raises nats' TimeoutError when JetStream does not hand over what it said it holds."""
    stream, prefix = f"KV_{bucket}", f"$KV.{bucket}."
    name = NUID().next().decode()
    info = await js.add_consumer(
        stream,
        config=ConsumerConfig(
            name=name,
            filter_subject=prefix + ">",
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=AckPolicy.NONE,
            headers_only=True,
            mem_storage=True,
            inactive_threshold=30.0,  # gone by itself if we are cut off before deleting it
        ),
    )
    keys: list[str] = []
    try:
        remaining = info.num_pending or 0
        if remaining == 0:
            return keys
        sub = await js.pull_subscribe_bind(consumer=name, stream=stream)
        try:
            while remaining > 0:
                for msg in await sub.fetch(min(remaining, _BATCH), timeout=_FETCH_TIMEOUT_S):
                    remaining = msg.metadata.num_pending
                    headers = msg.headers or {}
                    if headers.get(_KV_OPERATION) in _GONE_OPERATIONS or _MARKER_REASON in headers:
                        continue
                    keys.append(msg.subject.removeprefix(prefix))
        finally:
            await sub.unsubscribe()
    finally:
        try:
            await js.delete_consumer(stream, name)
        except NotFoundError:
            pass
    return sorted(keys)
