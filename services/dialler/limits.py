"""An agent's outbound cap and rate, held in KV bucket `outbound_limits` so that they hold
across every dialler replica: `cap.<agent>` (the calls dialling or live) and
`rate.<agent>` (the next free dial time), each changed only by compare-and-set."""

from __future__ import annotations

import asyncio
import logging
import time

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from services.dialler.policy import leave_place, next_dial, take_place
from shared.admission import JsonCell

log = logging.getLogger(__name__)

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
