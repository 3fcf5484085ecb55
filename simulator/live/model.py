"""The simulated GPT-Live model and caller of one session: what it says and does.

- The voice model speaks when told to (`session.instructions.append` or
  `session.commentary.append` quoting a line: "Greet the caller: …", "Say: …"), and after a
  delegated task's results are in; its words arrive as `session.output_transcript.delta`.
- The caller follows its script: speech as `session.input_transcript.delta`, keys as
  `transport.dtmf.received`, a hang-up as `session.closed` (`remote_hangup`).
- A tool call goes the Responses-delegation way: `session.delegation.created`, then
  `response.event` envelopes (`response.created`, `response.output_item.done` with the
  function call, `response.completed`); the model answers once `response.item.create`
  brought the output and `response.create` asked it to go on.
- Audio is reflected both ways at the real rate (24 kHz PCM16 mono, base64).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from functools import cache
from typing import TYPE_CHECKING, Any

from simulator.callers import Step
from simulator.live.contract import ContractError, check_client_event, check_server_event
from simulator.live.session import new_id
from simulator.model import spoken_text

if TYPE_CHECKING:
    from simulator.live.session import LiveSession

log = logging.getLogger("simulator.live")

SAMPLE_RATE = 24_000
BYTES_PER_MS = SAMPLE_RATE * 2 // 1000  # PCM16 mono


@cache
def _audio_templates(chunk_ms: int) -> tuple[str, str]:
    """The two reflected-audio events for one chunk (silence), checked once per size."""
    audio = base64.b64encode(bytes(BYTES_PER_MS * chunk_ms)).decode()
    caller = {"type": "session.input_audio.append", "audio": audio}
    agent = {"type": "session.output_audio.delta", "delta": audio, "start_ms": 0, "end_ms": 1}
    check_server_event(caller)
    check_server_event(agent)
    head = json.dumps({"type": agent["type"], "delta": audio})[:-1]
    return json.dumps(caller), head + ', "start_ms": %d, "end_ms": %d}'


def audio_events(chunk_ms: int, start_ms: int) -> tuple[str, str]:
    """One chunk of reflected caller and agent audio, as sent on the wire."""
    caller, agent = _audio_templates(chunk_ms)
    return caller, agent % (start_ms, start_ms + chunk_ms)


class LiveModel:
    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.step_index = 0  # survives re-attach: the caller goes on where it was
        self.tool_outputs: dict[str, str] = {}  # call_id → output the worker sent
        self._pending: str | None = None  # the function call waiting for its output
        self._continue = asyncio.Event()
        self._greeted = asyncio.Event()
        self._attached = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[Any]] = []

    def attached(self) -> None:
        self._attached.set()
        if not self._tasks:
            spawn = self.session.surface.spawn
            self._tasks = [spawn(self._run_script())]
            if self.session.surface.rules.reflect_audio:
                self._tasks.append(spawn(self._reflect_audio()))

    def detached(self) -> None:
        """No sideband is attached: the caller waits before the next step (as with OpenAI,
        what is said meanwhile would be lost to us, and the script would move on)."""
        self._attached.clear()

    def stop(self) -> None:
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()

    # -- the worker's commands ---------------------------------------------------------------

    async def handle_client(self, text: str) -> None:
        try:
            event = check_client_event(json.loads(text))
        except ValueError as error:
            if isinstance(error, ContractError):
                await self._error(error.code, error.message, error.param, None)
            else:
                await self._error("invalid_json", "The message is not valid JSON.", None, None)
            return
        self.session.client_events.append(event)
        self.session.notify()
        kind = event["type"]
        reply: dict[str, Any] = {}
        if event.get("event_id"):
            reply["client_event_id"] = event["event_id"]
        if kind in ("session.instructions.append", "session.commentary.append"):
            now = self.session.session_ms()
            ack = kind.replace(".append", ".appended")
            await self.session.emit({"type": ack, "start_ms": now, "end_ms": now, **reply})
            text = spoken_text(event["content"]) if kind.startswith("session.instr") else None
            line = text or (event["content"] if kind == "session.commentary.append" else None)
            if line:
                self.session.surface.spawn(self._speak(line))
        elif kind == "session.thinking.append":
            now = self.session.session_ms()
            await self.session.emit(
                {"type": "session.thinking.appended", "start_ms": now, "end_ms": now, **reply}
            )
        elif kind == "response.item.create":
            item = event["item"]
            if item.get("type") == "function_call_output":
                self.tool_outputs[str(item.get("call_id"))] = str(item.get("output"))
        elif kind == "response.create":
            if self._pending is not None and self._pending in self.tool_outputs:
                self._continue.set()
        elif kind == "session.close":
            await self.session.close("close_requested")
        elif kind == "transport.dtmf.send":
            await self.session.emit(
                {"type": "transport.dtmf.sent", "event": event["event"], **reply}
            )
        elif kind == "session.update":
            self.session.config = {**self.session.config, **event["session"]}
            await self.session.emit(
                {"type": "session.updated", "session": self.session.resource(), **reply}
            )
        elif kind in ("session.input_audio.mute", "session.input_audio.unmute"):
            ack = kind.replace("mute", "muted")
            await self.session.emit({"type": ack, **reply})
        else:
            await self._error(
                "unsupported", f"'{kind}' is not simulated.", "type", event.get("event_id")
            )

    async def _error(self, code: str, message: str, param: str | None, event_id: Any) -> None:
        error: dict[str, Any] = {"type": "invalid_request_error", "code": code, "message": message}
        if param is not None:
            error["param"] = param
        if event_id is not None:
            error["client_event_id"] = event_id
        await self.session.emit({"type": "error", "error": error})

    # -- the model speaking ------------------------------------------------------------------

    async def _speak(self, text: str) -> None:
        """One spoken turn, its transcript in a few deltas over `agent_speech_s`."""
        self._idle.clear()
        try:
            await asyncio.sleep(self.session.script.agent_latency_s)
            words = text.split(" ")
            step = max(1, len(words) // 3)
            for i in range(0, len(words), step):
                delta = " ".join(words[i : i + step]) + (" " if i + step < len(words) else "")
                now = self.session.session_ms()
                await self.session.emit(
                    {"type": "session.output_transcript.delta", "delta": delta,
                     "start_ms": now, "end_ms": now + 100}
                )  # fmt: skip
            self.session.agent_transcripts.append(text)
            self.session.notify()
            await asyncio.sleep(self.session.script.agent_speech_s)
        finally:
            self._idle.set()
            self._greeted.set()

    # -- the caller --------------------------------------------------------------------------

    async def _run_script(self) -> None:
        try:
            async with asyncio.timeout(self.session.script.greeting_wait_s):
                await self._greeted.wait()
        except TimeoutError:
            pass
        steps = self.session.script.steps
        while self.step_index < len(steps) and self.session.live:
            await self._attached.wait()
            await self._idle.wait()
            step = steps[self.step_index]
            self.step_index += 1
            await self._play(step)

    async def _play(self, step: Step) -> None:
        session = self.session
        if step.say is not None:
            words = step.say.split(" ")
            half = max(1, len(words) // 2)
            for part in (" ".join(words[:half]) + " ", " ".join(words[half:])):
                if part.strip():
                    now = session.session_ms()
                    await session.emit(
                        {"type": "session.input_transcript.delta", "delta": part,
                         "start_ms": now, "end_ms": now + 100}
                    )  # fmt: skip
            await self._speak(step.reply or session.script.default_reply)
        elif step.tool_call is not None:
            await self._tool_call(step)
        elif step.pause is not None:
            await asyncio.sleep(step.pause)
        elif step.dtmf is not None:
            for digit in step.dtmf:
                await session.emit({"type": "transport.dtmf.received", "event": digit})
        elif step.chatter is not None:
            await self._chatter(step.chatter.rate, step.chatter.duration_s)
        elif step.hangup:
            await session.hang_up()

    async def _tool_call(self, step: Step) -> None:
        assert step.tool_call is not None
        session = self.session
        delegation_id, response_id, call_id = new_id("deleg"), new_id("resp"), new_id("call")
        self._pending = call_id
        self._continue.clear()
        await session.emit(
            {"type": "session.delegation.created", "offset_ms": session.session_ms(),
             "delegation": {"id": delegation_id, "type": "delegation", "target": "responses",
                            "response_id": response_id}}
        )  # fmt: skip
        item = {
            "id": new_id("fc"), "type": "function_call", "status": "completed",
            "call_id": call_id, "name": step.tool_call.name,
            "arguments": json.dumps(step.tool_call.arguments),
        }  # fmt: skip
        for number, inner in enumerate(
            (
                {"type": "response.created", "response": _snapshot(response_id, "in_progress")},
                {"type": "response.output_item.done", "output_index": 0, "item": item},
                {"type": "response.completed", "response": _snapshot(response_id, "completed")},
            )
        ):
            await session.emit(
                {"type": "response.event", "delegation_id": delegation_id,
                 "event": {**inner, "sequence_number": number}}
            )  # fmt: skip
        try:
            async with asyncio.timeout(session.script.tool_timeout_s):
                await self._continue.wait()
        except TimeoutError:
            log.info("session %s: no output for tool call %s", session.session_id, call_id)
            return
        finally:
            self._pending = None
        # The backend goes on with the results (a new response), then the voice speaks.
        follow_up = new_id("resp")
        for number, inner in enumerate(
            (
                {"type": "response.created", "response": _snapshot(follow_up, "in_progress")},
                {"type": "response.completed", "response": _snapshot(follow_up, "completed")},
            )
        ):
            await session.emit(
                {"type": "response.event", "delegation_id": delegation_id,
                 "event": {**inner, "sequence_number": number}}
            )  # fmt: skip
        await self._speak(step.reply or session.script.default_reply)

    async def _chatter(self, rate: float, duration_s: float) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(int(rate * duration_s)):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            seconds = float(int(time.monotonic() - self.session.started_at))
            await self.session.emit(
                {"type": "session.usage.updated", "usage": {"seconds": seconds}}
            )

    async def _reflect_audio(self) -> None:
        """Both directions of audio at the real rate, paced by the clock, not by sleeps'
        accumulated drift."""
        chunk_ms = self.session.surface.rules.audio_chunk_ms
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        while self.session.live:
            caller, agent = audio_events(chunk_ms, self.session.session_ms())
            await self.session.emit_raw(caller)
            await self.session.emit_raw(agent)
            sent += 1
            delay = start + sent * chunk_ms / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)


def _snapshot(response_id: str, status: str) -> dict[str, Any]:
    """A Responses lifecycle snapshot, emptied as Live sends it (`response_event.py`)."""
    return {
        "id": response_id, "object": "response", "created_at": int(time.time()),
        "model": "gpt-5-mini", "status": status, "output": [], "tools": [],
        "parallel_tool_calls": True, "tool_choice": "auto",
    }  # fmt: skip
