"""The simulated voice model of one call: one response at a time, spoken or a tool call.

A response is "spoken" as OpenAI streams it: `response.created`, audio playback starting,
transcript deltas, the transcript, `response.done`, and `output_audio_buffer.stopped`
once the audio has played (`agent_speech_s`). What it says comes from the worker's
instructions when they quote a line (`Greet the caller: …`, `Say …: …`), else from the
caller's script. A tool call waits for the worker's `function_call_output` and a
`response.create`, then speaks the step's reply.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.callers import CallerScript
from simulator.sockets import SidebandSockets, Spawn, new_id

# `Greet the caller: Hello there` / `Say: ...` -> the model says the text after the colon.
_SPOKEN_TEXT = re.compile(r"(?:greet|greeting|say)[^:\n]*:\s*(.+)", re.IGNORECASE | re.DOTALL)


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
        said: Callable[[str], None],
    ) -> None:
        self._sockets = sockets
        self._script = script
        self._spawn = spawn
        self._said = said  # told each line the model finished saying
        self.active = False  # a response is running: a new response.create conflicts
        self.response_id: str | None = None
        self.idle = asyncio.Event()  # no response running or playing
        self.idle.set()
        self.greeting_done = asyncio.Event()
        self.tool: PendingTool | None = None
        self._task: asyncio.Task[None] | None = None
        self._responses_started = 0

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
        response_id = self.response_id
        self._task.cancel()
        self.active = False
        await self._sockets.emit(
            {
                "type": "response.done",
                "response": {
                    "id": response_id,
                    "object": "realtime.response",
                    "status": "cancelled",
                    "status_details": {"type": "cancelled", "reason": "client_cancelled"},
                    "output": [],
                },
            }
        )
        return True

    async def clear_audio(self) -> None:
        """`output_audio_buffer.clear`: stop talking now."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            self.active = False
        await self._sockets.emit(
            {"type": "output_audio_buffer.cleared", "response_id": self.response_id}
        )

    # -- prompted by the caller -----------------------------------------------------------

    def answer(self, text: str) -> asyncio.Task[None]:
        """Server VAD: the model answers the caller on its own."""
        return self._start_speaking(text)

    def call_tool(self, name: str, arguments: str, reply: str) -> PendingTool:
        """The model calls a tool; the returned record is settled by the worker's output."""
        tool = self.tool = PendingTool(new_id("call"), reply)
        self.active = True
        self.response_id = new_id("resp")
        self.idle.clear()
        self._task = self._spawn(self._function_call(tool.call_id, name, arguments))
        return tool

    def stop(self) -> None:
        """The call ended: whatever the model was doing stops."""
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    # -- responses ------------------------------------------------------------------------

    def _start_speaking(self, text: str, by_worker: bool = False) -> asyncio.Task[None]:
        self.active = True
        self.response_id = new_id("resp")
        self.idle.clear()
        first = by_worker and self._responses_started == 0
        if by_worker:
            self._responses_started += 1
        self._task = self._spawn(self._speak(self.response_id, text, first))
        return self._task

    async def _speak(self, response_id: str, text: str, is_greeting: bool) -> None:
        """One spoken response, then `agent_speech_s` of playback before `stopped`."""
        emit = self._sockets.emit
        try:
            item_id = new_id("item")
            await emit(
                {
                    "type": "response.created",
                    "response": {
                        "id": response_id,
                        "object": "realtime.response",
                        "status": "in_progress",
                        "output": [],
                    },
                }
            )
            await asyncio.sleep(self._script.agent_latency_s)
            await emit({"type": "output_audio_buffer.started", "response_id": response_id})
            where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
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
            await emit(
                {
                    "type": "response.output_audio_transcript.done",
                    **where,
                    "content_index": 0,
                    "transcript": text,
                }
            )
            self._said(text)
            self.active = False
            await emit(
                {
                    "type": "response.done",
                    "response": {
                        "id": response_id,
                        "object": "realtime.response",
                        "status": "completed",
                        "output": [
                            {
                                "id": item_id,
                                "object": "realtime.item",
                                "type": "message",
                                "role": "assistant",
                                "status": "completed",
                                "content": [{"type": "output_audio", "transcript": text}],
                            }
                        ],
                    },
                }
            )
            await asyncio.sleep(self._script.agent_speech_s)
            await emit({"type": "output_audio_buffer.stopped", "response_id": response_id})
        finally:
            self.active = False
            self.idle.set()
            if is_greeting:
                self.greeting_done.set()

    async def _function_call(self, call_id: str, name: str, arguments: str) -> None:
        response_id = self.response_id
        emit = self._sockets.emit
        try:
            item_id = new_id("item")
            response: dict[str, Any] = {"id": response_id, "object": "realtime.response"}
            await emit(
                {
                    "type": "response.created",
                    "response": {**response, "status": "in_progress", "output": []},
                }
            )
            await asyncio.sleep(self._script.agent_latency_s)
            await emit(
                {
                    "type": "response.function_call_arguments.done",
                    "response_id": response_id,
                    "item_id": item_id,
                    "output_index": 0,
                    "call_id": call_id,
                    "name": name,
                    "arguments": arguments,
                }
            )
            self.active = False
            item = {
                "id": item_id,
                "object": "realtime.item",
                "type": "function_call",
                "status": "completed",
                "call_id": call_id,
                "name": name,
                "arguments": arguments,
            }
            await emit(
                {
                    "type": "response.done",
                    "response": {**response, "status": "completed", "output": [item]},
                }
            )
        finally:
            self.active = False
            self.idle.set()
