"""`ToolRunner`: one business tool call, run exactly once per `tool_call_id`.

(Over 350 lines: recording, asking, capping and closing a run are one exactly-once
protocol over one KV record; split, each part would need the others' invariants.)

A tool can move money or book a chair, so running it twice is worse than failing it. Before
anything happens, the run is recorded in the `tool_runs` KV bucket with a create-if-absent;
whoever creates the record runs the tool, anyone else (a duplicated event, a re-attached
worker) gets the stored result instead. The tool itself is asked over NATS request/reply
on `tools.<name>` so tool services are written in any language and scaled on their own.

A record still `running` after its deadline (plus a grace) belongs to a run that died with
its worker mid-way. We cannot know whether the tool acted, so it is never re-run: the run
is closed as failed ("interrupted") and the model is told, so it can say so or ask again.

A tool service is untrusted: its reply is capped (`TOOL_REPLY_MAX_BYTES`) and parsed with a
depth limit before anything is stored, and whatever goes wrong while asking, the run is
closed (`tool.completed` with an error, the record `done`, a metric), never left `running`.

Longer than most modules (~380 lines): the run record, its events and the runner that owns
both are one exactly-once protocol, read best in one place.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import nats.errors
from nats.aio.client import Client
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from shared import metrics
from shared.events import EventType
from shared.ids import fullmatch_key
from shared.limits import DEFAULT_TOOL_REPLY_MAX_BYTES, MAX_MESSAGE_BYTES, MAX_TOOL_ARGUMENTS_BYTES
from shared.streams import TOOL_RUNS_BUCKET
from shared.tools import ToolRequest, tool_subject
from shared.untrusted import UntrustedJsonError, parse_json

log = logging.getLogger(__name__)

# A `running` record older than its deadline by this much belongs to a dead run.
STALE_GRACE_S = 2.0
# How often a second runner looks at a record another runner is filling.
WAIT_POLL_S = 0.1
INTERRUPTED = "the tool run was interrupted; it may or may not have completed"

# What a run record may hold at most, its result included (checked before every write).
MAX_RECORD_BYTES = MAX_MESSAGE_BYTES

Outcome = Literal["ok", "error", "timeout", "too_large", "invalid", "interrupted"]


def run_key(call_id: str, tool_call_id: str) -> str:
    """The KV key of one run; ids that KV would refuse are hashed rather than rejected."""
    parts = []
    for part in (call_id, tool_call_id):
        safe = fullmatch_key(part, max_length=120)
        parts.append(part if safe else hashlib.sha256(part.encode("utf-8", "replace")).hexdigest())
    return ".".join(parts)


@dataclass(frozen=True)
class ToolResult:
    """What the model is told: exactly one of an output (any JSON) or an error message."""

    output: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {"output": self.output} if self.error is None else {"error": self.error}

    def model_text(self) -> str:
        """The `function_call_output.output` string."""
        return json.dumps(self.as_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolResult:
        if "error" in data:
            return cls(error=str(data["error"]))
        return cls(output=data.get("output"))


class ToolRun(BaseModel):
    """The `tool_runs` record of one tool call."""

    state: Literal["running", "done"]
    name: str
    worker: str
    started_at: float  # unix time
    deadline: float  # unix time after which a `running` run cannot answer any more
    result: dict[str, Any] | None = None
    duration_ms: int | None = None


# -- pure decisions -------------------------------------------------------------------------


def parse_arguments(text: str) -> dict[str, Any] | None:
    """The model's JSON arguments as an object, or None when they are not one (or too
    large or too deep: the caller can talk the model into anything)."""
    try:
        value = parse_json(text or "{}", max_bytes=MAX_TOOL_ARGUMENTS_BYTES)
    except UntrustedJsonError:
        return None
    return value if isinstance(value, dict) else None


def judge_reply(
    data: bytes, max_bytes: int = DEFAULT_TOOL_REPLY_MAX_BYTES
) -> tuple[ToolResult, Outcome]:
    """A tool service's reply and its outcome: `{"output": …}` or `{"error": "…"}` within
    `max_bytes` and the depth limit; anything else is an error the model is told."""
    if len(data) > max_bytes:
        return ToolResult(error=f"the tool's reply is larger than {max_bytes} bytes"), "too_large"
    try:
        reply = parse_json(data, max_bytes=max_bytes)
    except UntrustedJsonError as refused:
        return ToolResult(error=f"the tool's reply was refused: {refused.reason}"), "invalid"
    if not isinstance(reply, dict) or not ({"output", "error"} & reply.keys()):
        return ToolResult(error='the tool answered without "output" or "error"'), "invalid"
    if reply.get("error") is not None:
        return ToolResult(error=str(reply["error"])[:1000]), "error"
    return ToolResult(output=reply.get("output")), "ok"


def parse_reply(data: bytes, max_bytes: int = DEFAULT_TOOL_REPLY_MAX_BYTES) -> ToolResult:
    """A tool service's reply as the model is told it (see `judge_reply`)."""
    return judge_reply(data, max_bytes)[0]


Verdict = Literal["replay", "wait", "interrupted"]


def judge_existing(run: ToolRun, now: float) -> Verdict:
    """What to do about a run someone else already recorded."""
    if run.state == "done":
        return "replay"
    if now > run.deadline + STALE_GRACE_S:
        return "interrupted"
    return "wait"


# -- the runner -----------------------------------------------------------------------------


class Publish(Protocol):
    async def __call__(
        self, type: EventType, data: dict[str, Any], *, msg_id: str | None = None
    ) -> None: ...


# `tool.called` and `tool.completed`: one builder each, for the tools run here and the
# built-ins alike. The message id is the run's, so an owner that publishes one again (after
# a hand-off) is deduplicated by the stream.


async def publish_tool_called(
    publish: Publish, call_id: str, name: str, tool_call_id: str, arguments: str
) -> None:
    parsed = parse_arguments(arguments)
    await publish(
        EventType.TOOL_CALLED,
        {
            "name": name,
            "tool_call_id": tool_call_id,
            "arguments": parsed if parsed is not None else arguments[:1000],
        },
        msg_id=f"tool.called:{run_key(call_id, tool_call_id)}",
    )


async def publish_tool_completed(
    publish: Publish,
    call_id: str,
    name: str,
    tool_call_id: str,
    result: ToolResult,
    duration_ms: int,
) -> None:
    await publish(
        EventType.TOOL_COMPLETED,
        {
            "name": name,
            "tool_call_id": tool_call_id,
            **result.as_dict(),
            "duration_ms": duration_ms,
        },
        msg_id=f"tool.completed:{run_key(call_id, tool_call_id)}",
    )


def elapsed_ms(since: float) -> int:
    """Milliseconds since `since` (a `time.time()`), never negative."""
    return max(0, round((time.time() - since) * 1000))


@dataclass(frozen=True)
class ToolCallRequest:
    """One tool call the model made."""

    call_id: str
    tool_call_id: str
    name: str
    arguments: str  # JSON text, as the model wrote it
    agent: str
    timeout_s: float
    context: dict[str, Any] | None = None  # an outbound call's request context


class ToolRunner:
    """Runs business tools for the calls of one worker, once per `tool_call_id`."""

    def __init__(
        self,
        nc: Client,
        runs: KeyValue,
        worker: str,
        clock: Callable[[], float] = time.time,
        reply_max_bytes: int = DEFAULT_TOOL_REPLY_MAX_BYTES,
    ) -> None:
        self._nc = nc
        self._runs = runs
        self._worker = worker
        self._clock = clock
        self._reply_max_bytes = reply_max_bytes

    @classmethod
    async def for_worker(
        cls, nc: Client, worker: str, reply_max_bytes: int = DEFAULT_TOOL_REPLY_MAX_BYTES
    ) -> ToolRunner:
        """A runner on the worker's own connection."""
        runs = await nc.jetstream().key_value(TOOL_RUNS_BUCKET)
        return cls(nc, runs, worker, reply_max_bytes=reply_max_bytes)

    async def claim(self, call_id: str, tool_call_id: str, name: str) -> bool:
        """For a built-in (end_call, transfer_call), which acts on the call itself: True
        for the first worker to ask, False for any other (a duplicate event, a re-attach)."""
        now = self._clock()
        record = ToolRun(
            state="done", name=name, worker=self._worker, started_at=now, deadline=now,
            result={"output": "built-in"},
        )  # fmt: skip
        try:
            await self._runs.create(
                run_key(call_id, tool_call_id), record.model_dump_json().encode()
            )
        except KeyWrongLastSequenceError:
            return False
        return True

    async def run(self, call: ToolCallRequest, publish: Publish) -> ToolResult:
        """The tool's result: run now, or the stored result of the one run there was."""
        key = run_key(call.call_id, call.tool_call_id)
        started = self._clock()
        record = ToolRun(
            state="running",
            name=call.name,
            worker=self._worker,
            started_at=started,
            deadline=started + call.timeout_s,
        )
        try:
            revision = await self._runs.create(key, record.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            return await self._existing(key, call, publish)
        await publish_tool_called(
            publish, call.call_id, call.name, call.tool_call_id, call.arguments
        )
        arguments = parse_arguments(call.arguments)
        perf = time.perf_counter()
        result, outcome = await self._outcome(call, arguments)
        elapsed = time.perf_counter() - perf
        metrics.TOOL_RUNS.labels(call.name, outcome).inc()
        metrics.TOOL_SECONDS.labels(call.name).observe(elapsed)
        duration_ms = round(elapsed * 1000)
        done = record.model_copy(
            update={"state": "done", "result": result.as_dict(), "duration_ms": duration_ms}
        )
        if len(done.model_dump_json()) > MAX_RECORD_BYTES:  # a cap set near the limit
            result = ToolResult(error="the tool's reply is too large to keep")
            done = done.model_copy(update={"result": result.as_dict()})
        try:
            await self._runs.update(key, done.model_dump_json().encode(), last=revision)
        except KeyWrongLastSequenceError:
            # Someone closed our run as interrupted while we were slow: theirs is the truth.
            stored, _ = await self._load(key)
            if stored is not None and stored.result is not None:
                return ToolResult.from_dict(stored.result)
        await publish_tool_completed(
            publish, call.call_id, call.name, call.tool_call_id, result, duration_ms
        )
        return result

    async def _outcome(
        self, call: ToolCallRequest, arguments: dict[str, Any] | None
    ) -> tuple[ToolResult, Outcome]:
        """What the run comes to; never raises, so the run is always closed."""
        if len(call.arguments.encode("utf-8", "replace")) > MAX_TOOL_ARGUMENTS_BYTES:
            too_large = f"the arguments are larger than {MAX_TOOL_ARGUMENTS_BYTES} bytes"
            return ToolResult(error=too_large), "too_large"
        if arguments is None:
            return ToolResult(error="the arguments are not a JSON object"), "error"
        try:
            return await self._ask(call, arguments)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("tool %s request failed: %s", call.name, type(error).__name__)
            return ToolResult(error=f"{call.name} failed"), "error"

    async def _ask(
        self, call: ToolCallRequest, arguments: dict[str, Any]
    ) -> tuple[ToolResult, Outcome]:
        request = ToolRequest(
            call_id=call.call_id,
            tool_call_id=call.tool_call_id,
            name=call.name,
            arguments=arguments,
            agent=call.agent,
            context=call.context,
        )
        try:
            reply = await self._nc.request(
                tool_subject(call.name),
                request.model_dump_json(exclude_none=True).encode(),
                timeout=call.timeout_s,
            )
        except nats.errors.NoRespondersError:
            return ToolResult(error=f"the {call.name} service is not available"), "error"
        except nats.errors.TimeoutError:
            return ToolResult(error=f"{call.name} did not answer in time"), "timeout"
        return judge_reply(reply.data, self._reply_max_bytes)

    async def _existing(self, key: str, call: ToolCallRequest, publish: Publish) -> ToolResult:
        """Another runner recorded this tool call: wait for its result; never run again."""
        while True:
            run, revision = await self._load(key)
            if run is None:  # expired from the bucket: a day-old duplicate
                return ToolResult(error=INTERRUPTED)
            verdict = judge_existing(run, self._clock())
            if verdict == "replay":
                assert run.result is not None
                return ToolResult.from_dict(run.result)
            if verdict == "interrupted":
                return await self._close_interrupted(key, run, revision, call, publish)
            await asyncio.sleep(WAIT_POLL_S)

    async def _close_interrupted(
        self, key: str, run: ToolRun, revision: int, call: ToolCallRequest, publish: Publish
    ) -> ToolResult:
        result = ToolResult(error=INTERRUPTED)
        closed = run.model_copy(update={"state": "done", "result": result.as_dict()})
        try:
            await self._runs.update(key, closed.model_dump_json().encode(), last=revision)
        except KeyWrongLastSequenceError:
            # It finished (or was closed) meanwhile.
            return await self._existing(key, call, publish)
        metrics.TOOL_RUNS.labels(call.name, "interrupted").inc()
        await publish_tool_completed(
            publish, call.call_id, call.name, call.tool_call_id, result, elapsed_ms(run.started_at)
        )
        return result

    async def _load(self, key: str) -> tuple[ToolRun | None, int]:
        try:
            entry = await self._runs.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return None, 0
        if entry.value is None:
            return None, 0
        return ToolRun.model_validate_json(entry.value), entry.revision or 0
