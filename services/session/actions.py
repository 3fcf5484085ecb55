"""`CallActions`: what a live call does besides talking: business tools, `end_call`,
`transfer_call`, and the operator's commands. One per `CallRunner`, which feeds it the
model's tool calls and lends it a few hooks (answer a tool call, ask for a response, hang
up, publish, do I own the call), so all of this is written and tested apart from the
socket loop, and without knowing which OpenAI API the call is on. Tool calls run as
tasks: the socket must keep being read while a tool works.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from services.session.history import OpenTool
from services.session.sideband import Speak
from services.session.telephony import (
    PendingTransfer,
    TransferRefused,
    TransferTarget,
    builtin_tool,
    resolve_model_target,
    resolve_operator_target,
)
from services.session.tools import (
    INTERRUPTED,
    Publish,
    ToolCallRequest,
    ToolResult,
    ToolRunner,
    elapsed_ms,
    parse_arguments,
    publish_tool_called,
    publish_tool_completed,
)
from shared import metrics
from shared.agents import BUILTIN_TOOL_NAMES, AgentProfile, FunctionTool
from shared.control import ControlReply
from shared.events import EndReason, EventType
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)

GOODBYE_LINE = "ending the call; say a brief goodbye now"
TRANSFER_FAILED_LINE = "the transfer did not go through; the caller is still on the line"


@dataclass
class CallHooks:
    """What the call runner lends its actions."""

    publish: Publish  # a call event, fenced by the lease
    answer: Callable[[str, str], Awaitable[None]]  # (tool_call_id, output): after the response
    respond: Callable[[Speak], Awaitable[None]]  # the agent speaks, in its turn
    end_after_goodbye: Callable[[], None]  # hang up once the goodbye has played
    hang_up: Callable[[EndReason], Awaitable[None]]  # REST hangup with this end reason
    transfer: Callable[[str], Awaitable[str]]  # SIP REFER to a URI: the HTTP status as text
    owns_call: Callable[[], bool]


class CallActions:
    def __init__(
        self,
        call_id: str,
        agent: AgentProfile,
        runner: ToolRunner | None,
        hooks: CallHooks,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.call_id = call_id
        self.context = context  # an outbound call's request context, given to its tools
        self.agent = agent
        self.runner = runner
        self._hooks = hooks
        self.transfer: PendingTransfer | None = None
        self._seen: set[str] = set()
        self._started: dict[str, float] = {}  # built-in tool_call_id → when it was called
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- from the runner ---------------------------------------------------------------------

    def tool_call(self, tool_call_id: str, name: str, arguments: str) -> None:
        """The model called a tool (`response.function_call_arguments.done`)."""
        if not tool_call_id or tool_call_id in self._seen:
            return  # a duplicated event: the first one is being (or was) handled
        self._seen.add(tool_call_id)
        self._spawn(self._run_tool(tool_call_id, name[:64], arguments))

    def resume(self, open_tools: Iterable[OpenTool]) -> None:
        """Tool calls an earlier owner of the call started and never answered (it died
        mid-way): answered now, through the queue like any other. A business tool's run
        record decides (its stored result, or "interrupted" once it is overdue: never run
        twice); a built-in is not repeated, the model is told it was interrupted."""
        for tool in open_tools:
            if not tool.tool_call_id or tool.tool_call_id in self._seen:
                continue
            self._seen.add(tool.tool_call_id)
            self._spawn(self._resume_tool(tool))

    async def _resume_tool(self, tool: OpenTool) -> None:
        name = tool.name[:64]
        if name in BUILTIN_TOOL_NAMES:
            result = ToolResult(error=INTERRUPTED)
        else:
            try:
                result = await self._business_tool(tool.tool_call_id, name, tool.arguments)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("tool %s failed", name)
                result = ToolResult(error=f"{name} failed")
        # Deduplicated by its id when the runner (or the earlier owner) published it.
        await self._completed(name, tool.tool_call_id, result)
        await self._hooks.answer(tool.tool_call_id, result.model_text())

    def call_left(self) -> bool:
        """The sideband answered 404: True when that is our transfer succeeding."""
        return self.transfer is not None

    async def transferred(self) -> None:
        """Record the transfer that made the call leave us."""
        pending, self.transfer = self.transfer, None
        if pending is None:
            return
        metrics.TRANSFERS.labels("transferred").inc()
        await self._hooks.publish(
            EventType.CALL_TRANSFERRED,
            {"target": pending.target.name, "uri": pending.target.uri, "reason": "call_left"},
        )
        if pending.tool_call_id is not None:
            await self._completed("transfer_call", pending.tool_call_id, ToolResult("transferred"))

    async def close(self) -> None:
        await cancel_and_wait(*self._tasks)

    # -- tool calls ------------------------------------------------------------------------

    async def _run_tool(self, tool_call_id: str, name: str, arguments: str) -> None:
        if name in BUILTIN_TOOL_NAMES and self.runner is not None:
            if not await self.runner.claim(self.call_id, tool_call_id, name):
                log.info("built-in %s %s already ran: not again", name, tool_call_id)
                return
        try:
            if name == "end_call" and builtin_tool(self.agent, "end_call") is not None:
                result: ToolResult | None = await self._end_call(tool_call_id, arguments)
            elif name == "transfer_call":
                result = await self._model_transfer(tool_call_id, arguments)
            else:
                result = await self._business_tool(tool_call_id, name, arguments)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("tool %s failed", name)
            result = ToolResult(error=f"{name} failed")
        if result is not None:  # None: a transfer whose outcome answers later
            await self._hooks.answer(tool_call_id, result.model_text())

    async def _business_tool(self, tool_call_id: str, name: str, arguments: str) -> ToolResult:
        tool = next(
            (t for t in self.agent.tools if isinstance(t, FunctionTool) and t.name == name), None
        )
        if tool is None or self.runner is None:
            await self._called(name, tool_call_id, arguments)
            result = ToolResult(error=f"tool {name} is not available")
            await self._completed(name, tool_call_id, result)
            return result
        request = ToolCallRequest(
            call_id=self.call_id,
            tool_call_id=tool_call_id,
            name=name,
            arguments=arguments,
            agent=self.agent.name,
            timeout_s=tool.timeout_s,
            context=self.context,
        )
        return await self.runner.run(request, self._hooks.publish)

    async def _end_call(self, tool_call_id: str, arguments: str) -> ToolResult:
        """The goodbye plays first: the runner hangs up at its `output_audio_buffer.stopped`,
        or after the tool's `timeout_s` at the latest."""
        await self._called("end_call", tool_call_id, arguments)
        self._hooks.end_after_goodbye()
        result = ToolResult(output=GOODBYE_LINE)
        await self._completed("end_call", tool_call_id, result)
        return result

    async def _called(self, name: str, tool_call_id: str, arguments: str) -> None:
        self._started.setdefault(tool_call_id, time.time())
        await publish_tool_called(self._hooks.publish, self.call_id, name, tool_call_id, arguments)

    async def _completed(self, name: str, tool_call_id: str, result: ToolResult) -> None:
        # A built-in this owner called runs from its `tool.called`; one left by an earlier
        # owner (answered as interrupted) had no run here: 0.
        started = self._started.pop(tool_call_id, None)
        duration_ms = elapsed_ms(started) if started is not None else 0
        await publish_tool_completed(
            self._hooks.publish, self.call_id, name, tool_call_id, result, duration_ms
        )

    # -- transfers -------------------------------------------------------------------------

    async def _model_transfer(self, tool_call_id: str, arguments: str) -> ToolResult | None:
        await self._called("transfer_call", tool_call_id, arguments)
        decision = resolve_model_target(self.agent, parse_arguments(arguments))
        if isinstance(decision, TransferRefused):
            await self._transfer_failed(decision.target, decision.reason)
            failure: str | None = decision.message
        else:
            failure = await self._start_transfer(decision, tool_call_id)
        if failure is None:
            return None
        result = ToolResult(error=failure)
        await self._completed("transfer_call", tool_call_id, result)
        return result

    async def _start_transfer(self, target: TransferTarget, tool_call_id: str | None) -> str | None:
        """REFER; None when it was sent (the outcome comes later), else what went wrong."""
        if self.transfer is not None:
            return "a transfer is already in progress"
        tool = builtin_tool(self.agent, "transfer_call")
        timeout = tool.timeout_s if tool is not None else 10.0
        if not self._hooks.owns_call():
            return "this worker no longer holds the call"
        status = await self._hooks.transfer(target.uri)
        if status != "200":
            await self._transfer_failed(target.name, f"refer_{status}")
            return "the transfer could not be started"
        self.transfer = PendingTransfer(target, time.monotonic() + timeout, tool_call_id)
        self._spawn(self._watch_transfer(self.transfer))
        return None

    async def _watch_transfer(self, pending: PendingTransfer) -> None:
        """REFER may answer 200 and do nothing: if the call is still ours at the deadline,
        the transfer failed and the model is told."""
        await asyncio.sleep(max(0.0, pending.deadline - time.monotonic()))
        if self.transfer is not pending:
            return
        self.transfer = None
        await self._transfer_failed(pending.target.name, "timeout")
        if pending.tool_call_id is not None:
            result = ToolResult(error=TRANSFER_FAILED_LINE)
            await self._completed("transfer_call", pending.tool_call_id, result)
            await self._hooks.answer(pending.tool_call_id, result.model_text())

    async def _transfer_failed(self, target: str, reason: str) -> None:
        metrics.TRANSFERS.labels("failed").inc()
        await self._hooks.publish(EventType.TRANSFER_FAILED, {"target": target, "reason": reason})

    # -- the operator (services.session.control.Controllable) -------------------------------

    def owns_call(self) -> bool:
        return self._hooks.owns_call()

    async def operator_hangup(self) -> ControlReply:
        await self._hooks.hang_up(EndReason.OPERATOR_HANGUP)
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
        await self._hooks.respond(Speak("operator", instructions))
        return ControlReply(ok=True, status="queued")

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("call action failed: %s", type(task.exception()).__name__)
