"""An agent's outbound cap and rate, held in KV bucket `outbound_limits` so that they hold
across every dialler replica: `cap.<agent>` (the calls dialling or live) and
`rate.<agent>` (the next free dial time), each changed only by compare-and-set.

The dialler takes places and dial times; the session worker gives a place back when an
answered outbound call ends (`release_place`). The changes themselves are pure functions
of the document, tested without a server."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from shared.admission import JsonCell

log = logging.getLogger(__name__)

Document = dict[str, Any]
# A place in the cap is kept at most this long after it was taken, even if its end was
# never recorded (a dial's ring time plus the longest call OpenAI allows, and a margin).
PLACE_HOLD_S = 3600.0 + 600.0 + 120.0


# -- the cap: outbound calls dialling or live, across replicas ----------------------------


def places(document: Document | None, now: float) -> dict[str, float]:
    calls = (document or {}).get("calls", {})
    return {call_id: until for call_id, until in calls.items() if until > now}


def take_place(
    document: Document | None, call_id: str, now: float, cap: int
) -> tuple[Document | None, bool]:
    """Count `call_id` among the agent's outbound calls if fewer than `cap` are; a call
    already counted (a redelivered request) keeps its place without a write."""
    held = places(document, now)
    if call_id in held:
        return None, True
    if len(held) >= cap:
        return None, False
    held[call_id] = now + PLACE_HOLD_S
    return {"calls": held}, True


def leave_place(
    document: Document | None, call_id: str, now: float
) -> tuple[Document | None, None]:
    if call_id not in (document or {}).get("calls", {}):
        return None, None
    held = places(document, now)
    held.pop(call_id, None)
    return {"calls": held}, None


# -- the rate: dials per second, across replicas -------------------------------------------


def next_dial(document: Document | None, now: float, rate_per_s: float) -> tuple[Document, float]:
    """Book the next dial time: never sooner than 1/rate after the last one booked. Returns
    the new document and when this dial may go (now, or later)."""
    last = float((document or {}).get("next", 0.0))
    at = max(now, last)
    return {"next": at + 1.0 / rate_per_s}, at


# -- in KV ---------------------------------------------------------------------------------

OUTBOUND_LIMITS_BUCKET = "outbound_limits"


async def limits_bucket(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    return await js.create_key_value(
        KeyValueConfig(
            bucket=OUTBOUND_LIMITS_BUCKET, history=1, replicas=replicas, storage=StorageType.FILE
        )
    )


class OutboundLimits:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._cells: dict[str, JsonCell] = {}

    def _cell(self, key: str) -> JsonCell:
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = JsonCell(self._kv, key)
        return cell

    async def take_place(self, agent: str, call_id: str, cap: int) -> bool:
        return await self._cell(f"cap.{agent}").change(
            lambda doc: take_place(doc, call_id, time.time(), cap)
        )

    async def leave(self, agent: str, call_id: str) -> None:
        await self._cell(f"cap.{agent}").change(lambda doc: leave_place(doc, call_id, time.time()))

    async def wait_turn(self, agent: str, rate_per_s: float) -> None:
        """Book this dial's time in the agent's rate and wait for it."""
        at = await self._cell(f"rate.{agent}").change(
            lambda doc: next_dial(doc, time.time(), rate_per_s)
        )
        delay = at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)  # the rate itself: dials are spaced, not synchronised


async def release_place(js: JetStreamContext, agent: str, call_id: str) -> None:
    """An answered outbound call ended: its place in the cap is free (the session worker
    calls this). Never raises: a place never released lapses by itself."""
    try:
        kv = await js.key_value(OUTBOUND_LIMITS_BUCKET)
        await OutboundLimits(kv).leave(agent, call_id)
    except BucketNotFoundError:
        return
    except Exception as error:
        log.warning("outbound place not released (lapses later): %s", type(error).__name__)
