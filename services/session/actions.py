"""`CallActions`: what a live call does besides talking: tools, end_call, transfers, and
the operator's commands. One per `CallRunner`; the runner feeds it sideband events and
gives it four hooks (send, publish, hang up, do I own the call), so all of this is written
and tested apart from the socket loop.

Tool calls run as tasks (the socket must keep being read while a tool works); their
outputs go through the `TurnGate`, which sends them after the response that asked is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import openai

from services.session.control import ControlReply
from services.session.telephony import (
    PendingTransfer,
    TransferRefused,
    TransferTarget,
    builtin_tool,
    refer,
    resolve_model_target,
    resolve_operator_target,
)
from services.session.tools import (
    Publish,
    ToolCallRequest,
    ToolResult,
    ToolRunner,
    parse_arguments,
)
from services.session.turns import TurnGate
from shared import metrics
from shared.agents import AgentProfile, FunctionTool
from shared.events import CallEvent, EventType

log = logging.getLogger(__name__)

GOODBYE_LINE = "ending the call; say a brief goodbye now"


@dataclass
class CallHooks:
    """What the call runner lends its actions."""

    send: Callable[[dict[str, Any]], Awaitable[None]]  # to the attached sideband
    attached: Callable[[], bool]
    publish: Publish  # fenced by the lease
    hang_up: Callable[[str], Awaitable[None]]  # REST hangup + end reason
    owns_call: Callable[[], bool]


def unfinished_tool_calls(events: list[CallEvent]) -> list[CallEvent]:
    """`tool.called` events with no `tool.completed`: runs a dead worker left behind. Pure."""
    completed = {e.data.get("tool_call_id") for e in events if e.type == EventType.TOOL_COMPLETED}
    return [
        e
        for e in events
        if e.type == EventType.TOOL_CALLED and e.data.get("tool_call_id") not in completed
    ]


class CallActions:
    def __init__(
        self,
        call_id: str,
        agent: AgentProfile,
        runner: ToolRunner | None,
        openai_client: openai.AsyncOpenAI,
        hooks: CallHooks,
    ) -> None:
        self.call_id = call_id
        self.agent = agent
        self._runner = runner
        self._openai = openai_client
        self._hooks = hooks
        self.gate = TurnGate()
        self.transfer: PendingTransfer | None = None
        self._seen: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ending = False

    # -- from the runner ---------------------------------------------------------------------

    async def observe(self, event: dict[str, Any]) -> None:
        """Every sideband event, in order."""
        if event.get("type") == "response.function_call_arguments.done":
            self.tool_call(
                str(event.get("call_id", "")),
                str(event.get("name", "")),
                str(event.get("arguments") or "{}"),
            )
            return
        if self.gate.observe(event):
            await self._end("agent_hangup")
            return
        await self.flush()

    async def attached(self, reattach: bool) -> None:
        """A sideband was opened: after a drop, assume no response is in progress."""
        if reattach:
            self.gate.reattached()
        await self.flush()

    async def resume(self, events: list[CallEvent]) -> None:
        """On a call taken over from another worker: answer the tool calls it left open.
        The runner returns their stored result, or closes a dead run as interrupted."""
        for event in unfinished_tool_calls(events):
            data = event.data
            arguments = data.get("arguments")
            text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
            self.tool_call(str(data.get("tool_call_id", "")), str(data.get("name", "")), text)

    def call_left(self) -> bool:
        """The sideband answered 404: True if that is our transfer succeeding."""
        return self.transfer is not None

    async def transferred(self) -> None:
        """Record the transfer that made the call leave."""
        pending, self.transfer = self.transfer, None
        if pending is None:
            return
        metrics.TRANSFERS.labels("transferred").inc()
        await self._hooks.publish(
            EventType.CALL_TRANSFERRED,
            {"target": pending.target.name, "uri": pending.target.uri, "reason": "call_left"},
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def flush(self) -> None:
        if not self._hooks.attached():
            return
        for outgoing in self.gate.take():
            await self._hooks.send(outgoing)

    # -- tool calls ------------------------------------------------------------------------

    def tool_call(self, tool_call_id: str, name: str, arguments: str) -> None:
        if not tool_call_id or tool_call_id in self._seen:
            return  # a duplicated event: the first one is being (or was) handled
        self._seen.add(tool_call_id)
        self.gate.tool_started(tool_call_id)
        self._spawn(self._run_tool(tool_call_id, name, arguments))

    async def _run_tool(self, tool_call_id: str, name: str, arguments: str) -> None:
        goodbye = False
        try:
            if name == "end_call" and builtin_tool(self.agent, "end_call") is not None:
                result, goodbye = self._end_call(), True
            elif name == "transfer_call":
                result = await self._model_transfer(tool_call_id, arguments)
                if result is None:
                    return  # the outcome decides; see _watch_transfer
            else:
                result = await self._business_tool(tool_call_id, name, arguments)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("tool %s failed", name)
            result = ToolResult(error=f"{name} failed")
        self.gate.tool_finished(tool_call_id, result.model_text(), goodbye=goodbye)
        await self.flush()

    async def _business_tool(self, tool_call_id: str, name: str, arguments: str) -> ToolResult:
        tool = next(
            (t for t in self.agent.tools if isinstance(t, FunctionTool) and t.name == name), None
        )
        if tool is None or self._runner is None:
            return ToolResult(error=f"tool {name} is not available")
        request = ToolCallRequest(
            call_id=self.call_id,
            tool_call_id=tool_call_id,
            name=name,
            arguments=arguments,
            agent=self.agent.name,
            timeout_s=tool.timeout_s,
        )
        return await self._runner.run(request, self._hooks.publish)

    def _end_call(self) -> ToolResult:
        """Let the goodbye play (the gate hangs up at its `output_audio_buffer.stopped`);
        hang up anyway after the tool's timeout."""
        tool = builtin_tool(self.agent, "end_call")
        timeout = tool.timeout_s if tool is not None else 10.0
        self._spawn(self._hang_up_later(timeout))
        return ToolResult(output=GOODBYE_LINE)

    async def _hang_up_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._end("agent_hangup")

    async def _end(self, reason: str) -> None:
        if self._ending:
            return
        self._ending = True
        try:
            await self._hooks.hang_up(reason)
        except Exception as error:  # lease lost: the new owner decides
            log.warning("hangup not sent: %s", type(error).__name__)

    # -- transfers -------------------------------------------------------------------------

    async def _model_transfer(self, tool_call_id: str, arguments: str) -> ToolResult | None:
        decision = resolve_model_target(self.agent, parse_arguments(arguments))
        if isinstance(decision, TransferRefused):
            await self._transfer_failed(decision.target, decision.reason)
            return ToolResult(error=decision.message)
        failure = await self._start_transfer(decision, tool_call_id)
        if failure is not None:
            return ToolResult(error=failure)
        return None

    async def _start_transfer(self, target: TransferTarget, tool_call_id: str | None) -> str | None:
        """REFER; None when it was sent (the outcome comes later), else what went wrong."""
        if self.transfer is not None:
            return "a transfer is already in progress"
        tool = builtin_tool(self.agent, "transfer_call")
        timeout = tool.timeout_s if tool is not None else 10.0
        status = await refer(self._openai, self.call_id, target.uri)
        if status != "200":
            await self._transfer_failed(target.name, f"refer_{status}")
            return "the transfer could not be started"
        self.transfer = PendingTransfer(target, time.monotonic() + timeout, tool_call_id)
        self._spawn(self._watch_transfer(self.transfer))
        return None

    async def _watch_transfer(self, pending: PendingTransfer) -> None:
        """REFER may answer 200 and do nothing: if the call is still ours at the deadline,
        the transfer failed."""
        await asyncio.sleep(max(0.0, pending.deadline - time.monotonic()))
        if self.transfer is not pending:
            return
        self.transfer = None
        await self._transfer_failed(pending.target.name, "timeout")
        if pending.tool_call_id is not None:
            result = ToolResult(error="the transfer did not go through; the caller is still here")
            self.gate.tool_finished(pending.tool_call_id, result.model_text())
            await self.flush()

    async def _transfer_failed(self, target: str, reason: str) -> None:
        metrics.TRANSFERS.labels("failed").inc()
        await self._hooks.publish(EventType.TRANSFER_FAILED, {"target": target, "reason": reason})

    # -- the operator (services.session.control.Controllable) -------------------------------

    def owns_call(self) -> bool:
        return self._hooks.owns_call()

    async def operator_hangup(self) -> ControlReply:
        await self._end("operator_hangup")
        return ControlReply(ok=True, status="ended")

    async def operator_transfer(self, target: str) -> ControlReply:
        decision = resolve_operator_target(self.agent, target)
        if isinstance(decision, TransferRefused):
            return ControlReply(ok=False, status="refused", error=decision.message)
        failure = await self._start_transfer(decision, None)
        if failure is not None:
            return ControlReply(ok=False, status="failed", error=failure)
        return ControlReply(ok=True, status="transferring")

    async def operator_say(self, instructions: str) -> ControlReply:
        self.gate.say(instructions)
        await self.flush()
        queued = bool(self.gate.instructions)
        return ControlReply(ok=True, status="queued" if queued else "sent")

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        with contextlib.suppress(Exception):
            log.warning("call action failed: %s", type(task.exception()).__name__)
