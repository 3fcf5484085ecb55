"""The person on the line: plays a `CallerScript` step by step against the simulated model.

A caller turn is OpenAI's server-VAD stream for it: speech started and stopped, the audio
committed, the user item added and done, then its transcription (deltas and completed,
or failed) when the session transcribes.

The caller starts once the greeting has played (or after `greeting_wait_s`) and only
starts a step while a sideband is attached and the model is quiet, so a worker that
re-attaches finds the script where it was left.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

from simulator.callers import CallerScript, Step
from simulator.model import SimulatedModel
from simulator.sockets import SidebandSockets, new_id

log = logging.getLogger("simulator.calls")


class ScriptedCaller:
    def __init__(
        self,
        call_id: str,
        script: CallerScript,
        sockets: SidebandSockets,
        model: SimulatedModel,
        *,
        live: Callable[[], bool],
        hang_up: Callable[[], Awaitable[None]],
        transcribing: Callable[[], bool],
    ) -> None:
        self._call_id = call_id
        self._script = script
        self._sockets = sockets
        self._model = model
        self._live = live
        self._hang_up = hang_up
        self._transcribing = transcribing  # the session transcribes caller audio
        self.step_index = 0  # next script step; survives re-attach

    async def run(self) -> None:
        try:
            async with asyncio.timeout(self._script.greeting_wait_s):
                await self._model.greeting_done.wait()
        except TimeoutError:
            pass
        steps = self._script.steps
        while self.step_index < len(steps) and self._live():
            await self._sockets.attached.wait()
            step = steps[self.step_index]
            if step.barge_in is None:
                await self._model.idle.wait()
            self.step_index += 1
            await self._play(step)

    async def _play(self, step: Step) -> None:
        emit = self._sockets.emit
        action = step.action
        if action == "say":
            assert step.say is not None
            await self._turn(step.say, barge_in=False, fails=bool(step.transcription_fails))
            # Server VAD: the model answers on its own.
            await asyncio.wait({self._model.answer(step.reply or self._script.default_reply)})
        elif action == "barge_in":
            assert step.barge_in is not None
            await self._model.playing.wait()
            await asyncio.sleep(step.barge_in.after_s)
            await self._turn(step.barge_in.say, barge_in=True, fails=False)
            await asyncio.wait({self._model.answer(step.reply or self._script.default_reply)})
        elif action == "tool_call":
            assert step.tool_call is not None
            arguments = json.dumps(step.tool_call.arguments)
            reply = step.reply or self._script.default_reply
            tool = self._model.call_tool(step.tool_call.name, arguments, reply)
            try:
                async with asyncio.timeout(self._script.tool_timeout_s):
                    await tool.replied.wait()
            except TimeoutError:
                log.info("call %s: no output for tool call %s", self._call_id, tool.call_id)
                if self._model.tool is tool:
                    self._model.tool = None
        elif action == "pause":
            await asyncio.sleep(step.pause or 0)
        elif action == "dtmf":
            for digit in step.dtmf or "":
                await emit(
                    {
                        "type": "input_audio_buffer.dtmf_event_received",
                        "event": digit,
                        "received_at": int(time.time()),
                    }
                )
        elif action == "chatter":
            assert step.chatter is not None
            await self._chatter(step.chatter.rate, step.chatter.duration_s)
        elif action == "hangup":
            await self._hang_up()

    async def _turn(self, text: str, *, barge_in: bool, fails: bool) -> None:
        """One caller turn as OpenAI's server VAD reports it, in its order."""
        emit = self._sockets.emit
        item_id = new_id("item")
        self._model.caller_spoke()
        await emit(
            {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": item_id}
        )
        if barge_in:
            await self._model.barge_in()
        await emit(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 1000, "item_id": item_id}
        )
        await emit({"type": "input_audio_buffer.committed", "item_id": item_id})
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await emit({"type": "conversation.item.added", "item": item})
        await emit({"type": "conversation.item.done", "item": item})
        if not self._transcribing():
            return
        where = {"item_id": item_id, "content_index": 0}
        if fails:
            error = {
                "type": "transcription_error",
                "code": "audio_unintelligible",
                "message": "The audio could not be transcribed.",
                "param": None,
            }
            await emit(
                {
                    "type": "conversation.item.input_audio_transcription.failed",
                    **where,
                    "error": error,
                }
            )
            return
        await emit(
            {"type": "conversation.item.input_audio_transcription.delta", **where, "delta": text}
        )
        await emit(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                **where,
                "transcript": text,
                "usage": {"type": "duration", "seconds": 1.0},
            }
        )

    async def _chatter(self, rate: float, duration_s: float) -> None:
        """A stream of small server events (benchmarks load the worker with it)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        item_id = new_id("item")
        for i in range(int(rate * duration_s)):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if i % 2:
                await self._sockets.emit(
                    {
                        "type": "rate_limits.updated",
                        "rate_limits": [
                            {
                                "name": "tokens",
                                "limit": 100000,
                                "remaining": 99000,
                                "reset_seconds": 1.0,
                            }
                        ],
                    }
                )
            else:
                await self._sockets.emit(
                    {
                        "type": "conversation.item.input_audio_transcription.delta",
                        "item_id": item_id,
                        "content_index": 0,
                        "delta": "um ",
                    }
                )
