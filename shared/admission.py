"""Admission bookkeeping shared by the acceptor (which reserves) and the session worker
(which releases when a call ends), kept in the KV bucket `admissions`.

Two kinds of key, each a small JSON document changed only by compare-and-set on its
revision, so that acceptor replicas and restarts cannot overbook (KV, not memory):

- `agent.<name>`: the calls an agent with `limits.max_concurrent_calls` has now,
  `{"calls": {call_id: until}}`. A call enters at the accept decision and leaves when its
  session worker finishes it (`release_call`). `until` (epoch seconds) is a safety net: a
  call whose end was never recorded stops counting once it cannot be alive any more
  (OpenAI ends every session after 60 minutes).
- `slots`: session slots reserved by recent accepts that the workers' own reports
  (`worker_slots`, refreshed every 2 s) may not show yet, `{"<epoch second>": count}`,
  counted until that second. Time-bucketed so the document stays tiny at any call rate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.agents import OPENAI_SESSION_CAP_S, AgentProfile

log = logging.getLogger(__name__)

ADMISSIONS_BUCKET = "admissions"
SLOTS_KEY = "slots"
# A call's entry outlives its longest possible life by this much.
LEDGER_MARGIN_S = 120.0
_CAS_ATTEMPTS = 100

T = TypeVar("T")
Document = dict[str, Any]


def agent_key(agent_name: str) -> str:
    return f"agent.{agent_name}"


def counts_toward_limit(agent: AgentProfile) -> bool:
    return agent.limits.max_concurrent_calls is not None


def call_until(agent: AgentProfile, now: float) -> float:
    """When a call of `agent` admitted `now` stops counting even if its end went unrecorded."""
    return now + min(agent.limits.max_duration_s, OPENAI_SESSION_CAP_S) + LEDGER_MARGIN_S


# -- pure changes to the documents --------------------------------------------------------


def live_calls(document: Document | None, now: float) -> dict[str, float]:
    calls = (document or {}).get("calls", {})
    return {call_id: until for call_id, until in calls.items() if until > now}


def without_call(document: Document | None, call_id: str, now: float) -> Document | None:
    """The agent document without `call_id` (and expired calls); None when nothing changes."""
    calls = (document or {}).get("calls", {})
    if call_id not in calls:
        return None
    remaining = live_calls(document, now)
    remaining.pop(call_id, None)
    return {"calls": remaining}


def live_reservations(document: Document | None, now: float) -> dict[str, int]:
    return {
        second: count
        for second, count in (document or {}).items()
        if int(second) >= int(now) and count > 0
    }


# -- compare-and-set on one key -----------------------------------------------------------


class JsonCell:
    """One KV key holding a JSON document, changed only by compare-and-set.

    The last value and revision are cached, so a change is one round trip when nobody
    else wrote in between; a lost race reloads and decides again. Changes from this
    process are serialised by a lock instead of racing each other.
    """

    def __init__(self, kv: KeyValue, key: str) -> None:
        self._kv = kv
        self.key = key
        self._revision: int | None = None  # None: not loaded; 0: the key does not exist
        self._document: Document | None = None
        self._lock = asyncio.Lock()

    async def _load(self) -> None:
        try:
            entry = await self._kv.get(self.key)
        except KeyNotFoundError as missing:
            # A deleted key: create() would fail, so compare against the delete marker.
            marker = missing.entry
            self._revision = (marker.revision or 0) if marker is not None else 0
            self._document = None
            return
        self._revision = entry.revision or 0
        self._document = json.loads(entry.value) if entry.value else None

    async def change(self, decide: Callable[[Document | None], tuple[Document | None, T]]) -> T:
        """Apply `decide(current) -> (new document or None for no write, result)`."""
        async with self._lock:
            for _ in range(_CAS_ATTEMPTS):
                fresh = self._revision is None
                if fresh:
                    await self._load()
                new, result = decide(self._document)
                if new is None:
                    if not fresh:
                        # A decision not to write is not checked by the compare-and-set:
                        # make it on the current document, not on this process's cache.
                        self._revision = None
                        continue
                    return result
                value = json.dumps(new, separators=(",", ":")).encode()
                try:
                    if self._revision == 0:
                        revision = await self._kv.create(self.key, value)
                    else:
                        revision = await self._kv.update(self.key, value, last=self._revision)
                except KeyWrongLastSequenceError:
                    self._revision = None  # someone else wrote: reload and decide again
                    continue
                except BaseException:
                    self._revision = None  # unknown outcome: never trust the cache
                    raise
                self._revision, self._document = revision, new
                return result
            raise RuntimeError(f"admission key {self.key} is contended beyond reason")


async def admissions_bucket(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    """The bucket, created if absent (idempotent; keys carry their own expiry)."""
    return await js.create_key_value(
        KeyValueConfig(
            bucket=ADMISSIONS_BUCKET, history=1, replicas=replicas, storage=StorageType.FILE
        )
    )


async def release_call(js: JetStreamContext, call_id: str, agent: AgentProfile) -> None:
    """The call has ended: it no longer counts toward its agent's concurrent-call limit.

    Called once by the session worker that finishes the call. Never raises: a release that
    fails is healed by the entry's own expiry, and must not disturb the call's end.
    """
    if not counts_toward_limit(agent):
        return
    try:
        kv = await js.key_value(ADMISSIONS_BUCKET)
        cell = JsonCell(kv, agent_key(agent.name))
        await cell.change(lambda doc: (without_call(doc, call_id, time.time()), None))
    except BucketNotFoundError:
        return
    except Exception as error:
        log.warning("admission release failed (heals by expiry): %s", type(error).__name__)
