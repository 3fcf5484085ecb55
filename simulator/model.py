"""The simulated voice model of one call: one response at a time, spoken or a tool call.

(Over 350 lines: OpenAI's event order for a response, barge-in and idle prompts share
one response's state; split, they would hand it around.)

A response streams as OpenAI's does, in its order: `response.created`, `rate_limits.updated`,
the output item and its content part, audio playback starting, transcript deltas, the
audio and transcript done, the part and item done, `response.done` (with usage), and
`output_audio_buffer.stopped` once the audio has played (`agent_speech_s`). What it says
comes from the worker's instructions when they quote a line (`Greet the caller: …`,
`Say …: …`), else from the caller's script. A tool call waits for the worker's
`function_call_output` and a `response.create`, then speaks the step's reply.

It can also fail a response (`Faults.fail_responses`), be talked over (barge-in:
`output_audio_buffer.cleared`, and `response.done` `cancelled` if it was still running),
and prompt a silent caller by itself when the session's `idle_timeout_ms` passes
(`input_audio_buffer.timeout_triggered`), as OpenAI's server VAD does.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.callers import CallerScript
from simulator.faults import Faults
from simulator.sockets import SidebandSockets, Spawn, new_id

# `Greet the caller: Hello there` / `Say: ...` -> the model says the text after the colon.
_SPOKEN_TEXT = re.compile(r"(?:greet|greeting|say)[^:\n]*:\s*(.+)", re.IGNORECASE | re.DOTALL)
IDLE_PROMPT = "Hello? Can you hear me?"
USAGE = {"total_tokens": 60, "input_tokens": 40, "output_tokens": 20}


def spoken_text(instructions: str | None) -> str | None:
    """The line the model will say for `instructions`, if they quote one."""
    if not instructions:
        return None
    match = _SPOKEN_TEXT.search(instructions)
    if match is None:
        return None
    return match.group(1).strip().strip("\"'“”").strip() or None


@dataclass
class PendingTool:
    """A function call the model made and whose output it waits for."""

    call_id: str
    reply: str | None  # what the model says once it has the output
    output_received: bool = False
    replied: asyncio.Event = field(default_factory=asyncio.Event)


class SimulatedModel:
    def __init__(
        self,
        sockets: SidebandSockets,
        script: CallerScript,
        spawn: Spawn,
        faults: Callable[[], Faults],
        said: Callable[[str], None],
        idle_timeout_ms: Callable[[], int | None],
        mark: Callable[[str], None] = lambda name: None,
    ) -> None:
        self._sockets = sockets
        self._script = script
        self._spawn = spawn
        self._faults = faults
        self._said = said  # told each line the model finished saying
        self._idle_timeout_ms = idle_timeout_ms  # the session's server VAD idle timeout
        self._mark = mark  # notes when something first happened (the call's timeline)
        self.active = False  # a response is running: a new response.create conflicts
        self.response_id: str | None = None
        self.idle = asyncio.Event()  # no response running or playing
        self.idle.set()
        self.playing = asyncio.Event()  # the agent's audio is playing to the caller
        self.greeting_done = asyncio.Event()
        self.tool: PendingTool | None = None
        self._task: asyncio.Task[None] | None = None
        self._responses_started = 0  # asked for by the worker
        self._idle_timer: asyncio.TimerHandle | None = None

    # -- asked by the worker --------------------------------------------------------------

    def respond(self, instructions: str | None) -> None:
        """`response.create`: say the quoted line, or the reply a tool output was awaited for."""
        text = spoken_text(instructions)
        tool = self.tool
        if text is None and tool is not None and tool.output_received and tool.reply is not None:
            text, tool.reply = tool.reply, None
            self.tool = None
            tool.replied.set()
        self._start_speaking(text or self._script.default_reply, by_worker=True)

    def tool_output(self, call_id: str) -> None:
        """A `function_call_output` arrived for `call_id`."""
        if self.tool is not None and self.tool.call_id == call_id:
            self.tool.output_received = True

    async def cancel(self) -> bool:
        """`response.cancel`: False when no response is running."""
        if not self.active or self._task is None:
            return False
        await self._cut("client_cancelled")
        return True

    async def clear_audio(self) -> None:
        """`output_audio_buffer.clear`: stop talking now."""
        if self.response_id is None:
            return  # nothing was ever said: nothing to clear
        await self._cut(None)

    # -- prompted by the caller -----------------------------------------------------------

    def answer(self, text: str) -> asyncio.Task[None]:
        """Server VAD: the model answers the caller on its own."""
        return self._start_speaking(text)

    def call_tool(self, name: str, arguments: str, reply: str) -> PendingTool:
        """The model calls a tool; the returned record is settled by the worker's output."""
        self.caller_spoke()
        tool = self.tool = PendingTool(new_id("call"), reply)
        self.active = True
        self.response_id = new_id("resp")
        self.idle.clear()
        self._task = self._spawn(
            self._function_call(self.response_id, tool.call_id, name, arguments)
        )
        return tool

    def caller_spoke(self) -> None:
        """Caller activity: OpenAI's idle timeout starts again from the next silence."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    async def barge_in(self) -> None:
        """The caller talks over the agent: its audio is cut (`cleared`), and a response
        still running is cancelled (`turn_detected`)."""
        await self._cut("turn_detected")

    def stop(self) -> None:
        """The call ended: whatever the model was doing stops."""
        self.caller_spoke()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    # -- responses ------------------------------------------------------------------------

    async def _cut(self, cancel_reason: str | None) -> None:
        """Stop the running response and its audio, as OpenAI reports it."""
        response_id = self.response_id
        was_running = self.active
        was_playing = self.playing.is_set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self.active = False
        self.playing.clear()
        self.idle.set()
        # Audio is cleared when the caller (VAD) or the worker (`clear`) cuts it, not by
        # a `response.cancel`.
        cut_audio = cancel_reason is None or (was_playing and cancel_reason == "turn_detected")
        if response_id is not None and cut_audio:
            self._mark("audio_cut")
            await self._sockets.emit(
                {"type": "output_audio_buffer.cleared", "response_id": response_id}
            )
        if was_running and cancel_reason is not None:
            await self._emit_done(response_id, "cancelled", [], reason=cancel_reason)

    def _start_speaking(self, text: str, by_worker: bool = False) -> asyncio.Task[None]:
        self.caller_spoke()
        self.active = True
        self.response_id = new_id("resp")
        self.idle.clear()
        first = failing = False
        if by_worker:
            first = self._responses_started == 0
            self._responses_started += 1
            failing = self._responses_started <= self._faults().fail_responses
        coro = self._speak(self.response_id, text, first, failing)
        self._task = self._spawn(coro)
        return self._task

    async def _created(self, response_id: str) -> None:
        emit = self._sockets.emit
        response = {"id": response_id, "object": "realtime.response", "status": "in_progress"}
        await emit({"type": "response.created", "response": {**response, "output": []}})
        await emit(
            {
                "type": "rate_limits.updated",
                "rate_limits": [
                    {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.01},
                    {"name": "tokens", "limit": 100000, "remaining": 99000, "reset_seconds": 1.0},
                ],
            }
        )

    async def _emit_done(
        self,
        response_id: str | None,
        status: str,
        output: list[dict[str, Any]],
        *,
        reason: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        response: dict[str, Any] = {
            "id": response_id,
            "object": "realtime.response",
            "status": status,
            "output": output,
            "usage": USAGE,
        }
        if status != "completed":
            details: dict[str, Any] = {"type": status}
            if reason is not None:
                details["reason"] = reason
            if error is not None:
                details["error"] = error
            response["status_details"] = details
        await self._sockets.emit({"type": "response.done", "response": response})

    async def _speak(self, response_id: str, text: str, is_greeting: bool, failing: bool) -> None:
        """One spoken response, then `agent_speech_s` of playback before `stopped`."""
        emit = self._sockets.emit
        try:
            await self._created(response_id)
            await asyncio.sleep(self._script.agent_latency_s)
            if failing:
                await self._fail(response_id)
                return
            item_id = new_id("item")
            item = {
                "id": item_id,
                "object": "realtime.item",
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
            await emit({"type": "response.output_item.added", **_pick(where), "item": item})
            await emit({"type": "conversation.item.added", "item": item})
            part = {"type": "audio", "transcript": ""}
            await emit(
                {"type": "response.content_part.added", **where, "content_index": 0, "part": part}
            )
            await emit({"type": "output_audio_buffer.started", "response_id": response_id})
            self.playing.set()
            words = text.split(" ")
            step = max(1, len(words) // 3)
            for i in range(0, len(words), step):
                delta = " ".join(words[i : i + step]) + (" " if i + step < len(words) else "")
                await emit(
                    {
                        "type": "response.output_audio_transcript.delta",
                        **where,
                        "content_index": 0,
                        "delta": delta,
                    }
                )
            await emit({"type": "response.output_audio.done", **where, "content_index": 0})
            await emit(
                {
                    "type": "response.output_audio_transcript.done",
                    **where,
                    "content_index": 0,
                    "transcript": text,
                }
            )
            part = {"type": "audio", "transcript": text}
            await emit(
                {"type": "response.content_part.done", **where, "content_index": 0, "part": part}
            )
            done = {
                **item,
                "status": "completed",
                "content": [{"type": "output_audio", "transcript": text}],
            }
            await emit({"type": "response.output_item.done", **_pick(where), "item": done})
            await emit({"type": "conversation.item.done", "item": done})
            self._said(text)
            self.active = False
            await self._emit_done(response_id, "completed", [done])
            await asyncio.sleep(self._script.agent_speech_s)
            self.playing.clear()
            await emit({"type": "output_audio_buffer.stopped", "response_id": response_id})
            self._arm_idle_timer()
        finally:
            self.active = False
            self.playing.clear()
            self.idle.set()
            if is_greeting:
                self.greeting_done.set()

    async def _fail(self, response_id: str) -> None:
        status = self._faults().fail_responses_with
        if status == "failed":
            error = {"type": "server_error", "code": "server_error", "message": "simulated"}
            await self._emit_done(response_id, "failed", [], error=error)
        else:
            await self._emit_done(response_id, "incomplete", [], reason="max_output_tokens")

    async def _function_call(
        self, response_id: str, call_id: str, name: str, arguments: str
    ) -> None:
        emit = self._sockets.emit
        try:
            await self._created(response_id)
            await asyncio.sleep(self._script.agent_latency_s)
            item_id = new_id("item")
            item = {
                "id": item_id,
                "object": "realtime.item",
                "type": "function_call",
                "status": "in_progress",
                "call_id": call_id,
                "name": name,
                "arguments": "",
            }
            where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
            await emit({"type": "response.output_item.added", **_pick(where), "item": item})
            await emit({"type": "conversation.item.added", "item": item})
            await emit(
                {
                    "type": "response.function_call_arguments.delta",
                    **where,
                    "call_id": call_id,
                    "delta": arguments,
                }
            )
            await emit(
                {
                    "type": "response.function_call_arguments.done",
                    **where,
                    "call_id": call_id,
                    "name": name,
                    "arguments": arguments,
                }
            )
            done = {**item, "status": "completed", "arguments": arguments}
            await emit({"type": "response.output_item.done", **_pick(where), "item": done})
            await emit({"type": "conversation.item.done", "item": done})
            self.active = False
            await self._emit_done(response_id, "completed", [done])
        finally:
            self.active = False
            self.idle.set()

    # -- OpenAI's own idle prompt ---------------------------------------------------------

    def _arm_idle_timer(self) -> None:
        timeout_ms = self._idle_timeout_ms()
        if timeout_ms is None or self.tool is not None:
            return
        self.caller_spoke()
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(
            timeout_ms / 1000, lambda: self._spawn(self._idle_prompt(timeout_ms))
        )

    async def _idle_prompt(self, timeout_ms: int) -> None:
        """The caller was silent for `idle_timeout_ms`: OpenAI commits the silence and the
        model prompts the caller on its own."""
        self._idle_timer = None
        if self.active or not self._sockets.attached.is_set():
            return
        item_id = new_id("item")
        await self._sockets.emit(
            {
                "type": "input_audio_buffer.timeout_triggered",
                "audio_start_ms": 0,
                "audio_end_ms": timeout_ms,
                "item_id": item_id,
            }
        )
        await self._sockets.emit({"type": "input_audio_buffer.committed", "item_id": item_id})
        self._start_speaking(IDLE_PROMPT)


def _pick(where: dict[str, Any]) -> dict[str, Any]:
    """An output item event's location: the response and the output index (no item id)."""
    return {"response_id": where["response_id"], "output_index": where["output_index"]}
