"""Operator commands for one call, received by whichever worker owns the call right now.

The ingress cannot know which worker holds a call, and the call may move (drain, crash).
So each `CallRunner` subscribes to `calls.control.<call_id>` while it holds the lease and
answers NATS requests there: wherever the call goes, its commands follow. A runner that is
no longer sure it owns the call stays silent rather than answering, so a stale owner can
never answer for the real one (the requester sees the real answer, or a timeout).
"""

from __future__ import annotations

import logging
from typing import Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from shared.control import ControlCommand, ControlReply, control_subject

log = logging.getLogger(__name__)


class Controllable(Protocol):
    """What a call offers its operator (implemented by the call's actions)."""

    def owns_call(self) -> bool: ...

    async def operator_hangup(self) -> ControlReply: ...

    async def operator_transfer(self, target: str) -> ControlReply: ...

    async def operator_say(self, instructions: str) -> ControlReply: ...


async def dispatch(call: Controllable, command: ControlCommand) -> ControlReply:
    if command.action == "hangup":
        return await call.operator_hangup()
    if command.action == "transfer":
        if not command.target:
            return ControlReply(ok=False, status="refused", error="target is required")
        return await call.operator_transfer(command.target)
    if not command.instructions:
        return ControlReply(ok=False, status="refused", error="instructions are required")
    return await call.operator_say(command.instructions)


class CallControl:
    """The subscription of one owned call to its control subject."""

    def __init__(self, nc: Client, call_id: str, call: Controllable, worker: str) -> None:
        self._nc = nc
        self._call_id = call_id
        self._call = call
        self._worker = worker
        self._sub: Subscription | None = None

    async def start(self) -> None:
        if self._sub is None:
            self._sub = await self._nc.subscribe(control_subject(self._call_id), cb=self._on_msg)

    async def stop(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except Exception as error:  # connection closing: the interest dies with it
                log.debug("control unsubscribe failed: %s", type(error).__name__)

    async def _on_msg(self, msg: Msg) -> None:
        if not msg.reply or not self._call.owns_call():
            return
        try:
            command = ControlCommand.model_validate_json(msg.data)
        except ValidationError:
            reply = ControlReply(ok=False, status="refused", error="malformed command")
        else:
            try:
                reply = await dispatch(self._call, command)
            except Exception:
                log.exception("control command failed")
                reply = ControlReply(ok=False, status="failed", error="command failed")
        reply.worker = self._worker
        await msg.respond(reply.model_dump_json().encode())
