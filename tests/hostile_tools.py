"""A hostile tool service: it answers `tools.hostile` with whatever the model's arguments
ask for, the way a broken or malicious service would. Plain nats-py request/reply, so it
can send bytes no well-behaved tool kit would produce.

Arguments: `{"reply": kind}` with kind one of `HOSTILE_REPLIES`:
- `huge`: a reply of exactly `HUGE_REPLY_BYTES` (under NATS's 1 MiB limit, over ours),
- `deep`: `{"output": [[[…]]]}` nested 100,000 levels (200 KB, under the size cap),
- `invalid`: bytes that are not JSON (and not UTF-8),
- `late`: a good reply, but only after the tool's timeout,
- `ok`: `{"output": {"fine": true}}`.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from shared.agents import FunctionTool

NAME = "hostile"
HUGE_REPLY_BYTES = 1_048_394  # the size that cut a worker off from NATS for good
DEEP_LEVELS = 100_000  # 200 KB: under the reply cap, so the depth is what refuses it
HOSTILE_REPLIES = ("huge", "deep", "invalid", "late", "ok")


def hostile_tool(timeout_s: float = 1.0) -> FunctionTool:
    return FunctionTool(
        name=NAME,
        parameters={"type": "object", "properties": {"reply": {"type": "string"}}},
        timeout_s=timeout_s,
    )


def reply_bytes(kind: str) -> bytes:
    if kind == "huge":
        head, tail = b'{"output": "', b'"}'
        return head + b"x" * (HUGE_REPLY_BYTES - len(head) - len(tail)) + tail
    if kind == "deep":
        return b'{"output": ' + b"[" * DEEP_LEVELS + b"]" * DEEP_LEVELS + b"}"
    if kind == "invalid":
        return b"\xff\xfe not json {"
    return json.dumps({"output": {"fine": True}}).encode()


class HostileTools:
    def __init__(self, nats_url: str, late_s: float = 2.0) -> None:
        self.nats_url = nats_url
        self.late_s = late_s
        self.asked: Counter[str] = Counter()
        self._nc: Client | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> HostileTools:
        self._nc = await nats.connect(self.nats_url)
        await self._nc.subscribe(f"tools.{NAME}", queue="switchboard-tools", cb=self._on_request)
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._nc is not None:
            await self._nc.close()

    async def _on_request(self, msg: Msg) -> None:
        kind = str(json.loads(msg.data)["arguments"].get("reply", "ok"))
        self.asked[kind] += 1
        if kind == "late":  # answer after the worker gave up, without holding others up
            task = asyncio.create_task(self._answer_late(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        await msg.respond(reply_bytes(kind))

    async def _answer_late(self, msg: Msg) -> None:
        await asyncio.sleep(self.late_s)  # the hostile part: later than the tool's timeout
        await msg.respond(reply_bytes("ok"))
