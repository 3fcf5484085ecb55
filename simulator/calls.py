"""One simulated call: its life cycle, its sideband sockets, and the simulated model.

The call, not the socket, owns all state (script position, active response, pending tool
call), exactly like OpenAI: a worker may lose its socket and re-attach, and the call goes on.
Events emitted while no socket is attached are lost, as they are with OpenAI.

Per-call cost is kept small (a few events, timers and at most two tasks, no threads) because
the simulator is also the load generator for thousands of concurrent calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from simulator.callers import CallerScript, Step
from simulator.validation import AcceptError, validate_accept_body

if TYPE_CHECKING:
    from simulator.server import Simulator

log = logging.getLogger("simulator.calls")

CallState = Literal["ringing", "accepted", "rejected", "missed", "ended"]
EndReason = Literal["caller_hangup", "hangup", "transferred", "session_cap"]
STATES: tuple[str, ...] = ("ringing", "accepted", "rejected", "missed", "ended")
TERMINAL = frozenset({"rejected", "missed", "ended"})

# `Greet the caller: Hello there` / `Say: ...` -> the model says the text after the colon.
_SPOKEN_TEXT = re.compile(r"(?:greet|greeting|say)[^:\n]*:\s*(.+)", re.IGNORECASE | re.DOTALL)


def new_id(prefix: str) -> str:
    """An id shaped like OpenAI's (`item_…`, `resp_…`, `event_…`, `call_…`)."""
    return f"{prefix}_{secrets.token_hex(10)}"


def spoken_text(instructions: str | None) -> str | None:
    """The line the model will say for `instructions`, if they quote one."""
    if not instructions:
        return None
    match = _SPOKEN_TEXT.search(instructions)
    if match is None:
        return None
    return match.group(1).strip().strip("\"'“”").strip() or None


class CallStateError(RuntimeError):
    """`wait_for` asked for a state that this call can no longer reach."""


class _Conn:
    """One attached sideband socket."""

    __slots__ = ("drop_timer", "transport", "ws")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None):
        self.ws = ws
        self.transport = transport
        self.drop_timer: asyncio.TimerHandle | None = None

    def abort(self) -> None:
        """Drop the TCP connection without a close frame, like a hang-up or a network drop."""
        if self.drop_timer is not None:
            self.drop_timer.cancel()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()  # type: ignore[attr-defined]


class SimulatedCall:
    """A phone call as OpenAI sees it, with a scripted caller on the line."""

    def __init__(
        self, sim: Simulator, call_id: str, script: CallerScript, to: str, from_: str
    ) -> None:
        self._sim = sim
        self.call_id = call_id
        self.script = script
        self.to = to
        self.from_ = from_
        self.state: CallState = "ringing"
        self.accept_body: dict[str, Any] | None = None
        self.accept_count = 0  # accepts answered 200
        self.accept_attempts = 0  # every accept request, failed ones included
        self.reject_status: int | None = None
        self.end_reason: EndReason | None = None
        self.client_events: list[dict[str, Any]] = []
        self.attach_count = 0
        self.refer_targets: list[str] = []
        self.webhook_attempts: list[tuple[str, int | None, float]] = []
        self.timeline: dict[str, float] = {}
        self.agent_transcripts: list[str] = []  # what the model said, in order
        self.step_index = 0  # next script step; survives re-attach
        self.session: dict[str, Any] = {}

        self._history: set[str] = {"ringing"}
        self._changed: asyncio.Event | None = None
        self._conns: dict[web.WebSocketResponse, _Conn] = {}
        self._attached = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._greeting_done = asyncio.Event()
        self._timers: list[asyncio.TimerHandle] = []
        self._driver: asyncio.Task[None] | None = None
        self._response: asyncio.Task[None] | None = None
        self._response_active = False
        self._response_id: str | None = None
        self._responses_started = 0
        self._pending_tool: str | None = None
        self._tool_output = False
        self._tool_replied: asyncio.Event | None = None
        self._queued_reply: str | None = None

    # ----------------------------------------------------------------- life cycle

    def __repr__(self) -> str:
        return f"<SimulatedCall {self.call_id} {self.state} {self.end_reason or ''}>"

    @property
    def live(self) -> bool:
        return self.state == "accepted"

    @property
    def sockets_open(self) -> int:
        return len(self._conns)

    def _mark(self, name: str) -> None:
        self.timeline.setdefault(name, time.monotonic())

    def _set_state(self, state: CallState) -> None:
        self.state = state
        self._history.add(state)
        self._mark(state)
        self.notify()

    def notify(self) -> None:
        """Wake `wait_until` waiters: something observable about the call changed."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_until(
        self, predicate: Callable[[SimulatedCall], bool], timeout: float | None = 10.0
    ) -> None:
        """Wait until `predicate(call)` holds; re-checked on every observable change.

        Tests use it instead of sleeping, e.g. `wait_until(lambda c: c.attach_count == 2)`.
        """
        async with asyncio.timeout(timeout):
            while not predicate(self):
                if self._changed is None:
                    self._changed = asyncio.Event()
                await self._changed.wait()

    async def wait_for(self, state: CallState, timeout: float = 10.0) -> None:
        """Wait until the call has reached `state` (now or earlier).

        Raises `CallStateError` at once if the call ended in a way that can never reach it,
        and `TimeoutError` (naming the current state) when `timeout` passes.
        """
        if state not in STATES:
            raise ValueError(f"unknown call state {state!r}; expected one of {STATES}")

        def reached(call: SimulatedCall) -> bool:
            if state in call._history:
                return True
            if call.state in TERMINAL:
                raise CallStateError(
                    f"call {call.call_id} is {call.state} ({call.end_reason}); "
                    f"it will never be {state}"
                )
            return False

        try:
            await self.wait_until(reached, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"call {self.call_id} not {state} after {timeout}s (state {self.state})"
            ) from None

    def start_ringing(self, accept_window_s: float) -> None:
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(accept_window_s, self._miss))

    def _miss(self) -> None:
        if self.state == "ringing":
            self._finish("missed", None, abort=True)

    def accept(self, body: dict[str, Any]) -> None:
        """Apply a validated accept body (a repeated accept is only counted)."""
        self.accept_count += 1
        self._mark("accept_received")
        if self.state != "ringing":
            self.notify()
            return
        self.accept_body = body
        self.session = {
            "type": "realtime",
            "object": "realtime.session",
            "id": new_id("sess"),
            **{k: v for k, v in body.items() if k != "type"},
        }
        self._set_state("accepted")
        loop = asyncio.get_running_loop()
        cap = self._sim.faults.session_cap_s
        self._timers.append(loop.call_later(cap, self._finish, "ended", "session_cap", False))

    def reject(self, status_code: int) -> None:
        self.reject_status = status_code
        self._finish("rejected", None, abort=True)

    async def hang_up(self) -> None:
        """The caller hangs up now: sockets are dropped without a close frame, like OpenAI."""
        if self.state == "ringing":
            self._finish("missed", "caller_hangup", abort=True)
        else:
            self._finish("ended", "caller_hangup", abort=True)

    async def drop_sideband(self) -> None:
        """Drop every attached socket abruptly (a network drop); the call stays alive."""
        for conn in list(self._conns.values()):
            conn.abort()

    def _finish(self, state: CallState, reason: EndReason | None, abort: bool) -> None:
        """End the call once; abort (hang-up) or close (our hangup, transfer, cap) sockets."""
        if self.state in TERMINAL:
            return
        self.end_reason = reason
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        current = asyncio.current_task()
        for task in (self._driver, self._response):
            if task is not None and task is not current:
                task.cancel()
        conns = list(self._conns.values())
        self._conns.clear()
        self._attached.clear()
        for conn in conns:
            if abort:
                conn.abort()
            else:
                if conn.drop_timer is not None:
                    conn.drop_timer.cancel()
                self._sim.spawn(conn.ws.close())
        self._set_state(state)
        self._sim.call_finished(self)

    # ----------------------------------------------------------------- sideband

    def attach(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None) -> None:
        conn = _Conn(ws, transport)
        self._conns[ws] = conn
        self.attach_count += 1
        self._mark("first_attach")
        self._attached.set()
        self.notify()
        drop_after = self._sim.faults.drop_sideband_after_s
        if drop_after is not None:
            conn.drop_timer = asyncio.get_running_loop().call_later(drop_after, conn.abort)
        if self._driver is None:
            self._driver = self._sim.spawn(self._run_script())

    def detach(self, ws: web.WebSocketResponse) -> None:
        conn = self._conns.pop(ws, None)
        if conn is not None and conn.drop_timer is not None:
            conn.drop_timer.cancel()
        if not self._conns:
            self._attached.clear()
        self.notify()

    async def emit(self, event: dict[str, Any]) -> None:
        """Send a server event to every attached socket; with none attached it is lost."""
        if not self._conns:
            return
        event = {"event_id": new_id("event"), **event}
        data = json.dumps(event)
        for conn in list(self._conns.values()):
            if conn.ws.closed:
                continue
            try:
                await conn.ws.send_str(data)
            except (ConnectionError, RuntimeError):
                pass

    async def _error(self, code: str, message: str, param: str | None = None, event_id=None):
        await self.emit(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": code,
                    "message": message,
                    "param": param,
                    "event_id": event_id,
                },
            }
        )

    async def session_created(self) -> None:
        await self.emit({"type": "session.created", "session": self.session})

    async def handle_client(self, text: str) -> None:
        """One JSON message from the worker; GA event names only."""
        try:
            event = json.loads(text)
        except ValueError:
            await self._error("invalid_json", "The message is not valid JSON.")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self._error("invalid_event", "An event must be a JSON object with a 'type'.")
            return
        self.client_events.append(event)
        self.notify()
        kind = event["type"]
        handler = _CLIENT_HANDLERS.get(kind)
        if handler is None:
            await self._error(
                "invalid_value",
                f"Invalid value: '{kind}'. Supported values are: "
                + ", ".join(f"'{name}'" for name in _CLIENT_HANDLERS)
                + ".",
                "type",
                event.get("event_id"),
            )
            return
        await handler(self, event)

    async def _on_session_update(self, event: dict[str, Any]) -> None:
        session = event.get("session")
        if not isinstance(session, dict) or session.get("type") != "realtime":
            await self._error(
                "missing_required_parameter",
                "Missing required parameter: 'session.type'. It must be 'realtime'.",
                "session.type",
                event.get("event_id"),
            )
            return
        try:
            validate_accept_body(session)
        except AcceptError as exc:
            param = f"session.{exc.param}" if exc.param else None
            await self._error(exc.code, exc.message, param, event.get("event_id"))
            return
        for key, value in session.items():
            if key == "audio" and isinstance(value, dict):
                audio = self.session.setdefault("audio", {})
                for side, part in value.items():
                    if isinstance(part, dict) and isinstance(audio.get(side), dict):
                        audio[side] = {**audio[side], **part}
                    else:
                        audio[side] = part
            else:
                self.session[key] = value
        await self.emit({"type": "session.updated", "session": self.session})

    async def _on_response_create(self, event: dict[str, Any]) -> None:
        if self._response_active:
            await self._error(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: "
                f"{self._response_id}. Wait until the response is finished before creating "
                "a new one.",
                None,
                event.get("event_id"),
            )
            return
        response = event.get("response") or {}
        instructions = response.get("instructions") if isinstance(response, dict) else None
        text = spoken_text(instructions)
        if text is None and self._tool_output and self._queued_reply is not None:
            text, self._queued_reply = self._queued_reply, None
            self._tool_output = False
            self._pending_tool = None
            if self._tool_replied is not None:
                self._tool_replied.set()
        self._start_speaking(text or self.script.default_reply, by_worker=True)

    async def _on_item_create(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            await self._error(
                "missing_required_parameter",
                "Missing required parameter: 'item.type'.",
                "item.type",
                event.get("event_id"),
            )
            return
        if item["type"] == "function_call_output":
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("output"), str):
                await self._error(
                    "invalid_value",
                    "A function_call_output item needs a string 'call_id' and 'output'.",
                    "item",
                    event.get("event_id"),
                )
                return
            if item["call_id"] == self._pending_tool:
                self._tool_output = True
        item = {"id": item.get("id") or new_id("item"), "object": "realtime.item", **item}
        item.setdefault("status", "completed")
        await self.emit({"type": "conversation.item.added", "previous_item_id": None, "item": item})
        await self.emit({"type": "conversation.item.done", "previous_item_id": None, "item": item})

    async def _on_response_cancel(self, event: dict[str, Any]) -> None:
        if not self._response_active or self._response is None:
            await self._error(
                "response_cancel_not_active",
                "Cancellation failed: no active response found.",
                None,
                event.get("event_id"),
            )
            return
        response_id = self._response_id
        self._response.cancel()
        self._response_active = False
        await self.emit(
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

    async def _on_audio_clear(self, event: dict[str, Any]) -> None:
        if self._response is not None and not self._response.done():
            self._response.cancel()
            self._response_active = False
        await self.emit({"type": "output_audio_buffer.cleared", "response_id": self._response_id})

    # ----------------------------------------------------------------- the model

    def _start_speaking(self, text: str, by_worker: bool = False) -> asyncio.Task[None]:
        self._response_active = True
        self._response_id = new_id("resp")
        self._idle.clear()
        first = by_worker and self._responses_started == 0
        if by_worker:
            self._responses_started += 1
        self._response = self._sim.spawn(self._speak(self._response_id, text, first))
        return self._response

    async def _speak(self, response_id: str, text: str, is_greeting: bool) -> None:
        """One spoken response, then `agent_speech_s` of playback before `stopped`."""
        try:
            item_id = new_id("item")
            await self.emit(
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
            await asyncio.sleep(self.script.agent_latency_s)
            await self.emit({"type": "output_audio_buffer.started", "response_id": response_id})
            where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
            words = text.split(" ")
            step = max(1, len(words) // 3)
            for i in range(0, len(words), step):
                delta = " ".join(words[i : i + step]) + (" " if i + step < len(words) else "")
                await self.emit(
                    {
                        "type": "response.output_audio_transcript.delta",
                        **where,
                        "content_index": 0,
                        "delta": delta,
                    }
                )
            await self.emit(
                {
                    "type": "response.output_audio_transcript.done",
                    **where,
                    "content_index": 0,
                    "transcript": text,
                }
            )
            self.agent_transcripts.append(text)
            self.notify()
            self._response_active = False
            await self.emit(
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
            await asyncio.sleep(self.script.agent_speech_s)
            await self.emit({"type": "output_audio_buffer.stopped", "response_id": response_id})
        finally:
            self._response_active = False
            self._idle.set()
            if is_greeting:
                self._greeting_done.set()

    async def _function_call(self, call_id: str, name: str, arguments: str) -> None:
        response_id = self._response_id
        try:
            item_id = new_id("item")
            response = {"id": response_id, "object": "realtime.response"}
            await self.emit(
                {
                    "type": "response.created",
                    "response": {**response, "status": "in_progress", "output": []},
                }
            )
            await asyncio.sleep(self.script.agent_latency_s)
            await self.emit(
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
            self._response_active = False
            item = {
                "id": item_id,
                "object": "realtime.item",
                "type": "function_call",
                "status": "completed",
                "call_id": call_id,
                "name": name,
                "arguments": arguments,
            }
            await self.emit(
                {
                    "type": "response.done",
                    "response": {**response, "status": "completed", "output": [item]},
                }
            )
        finally:
            self._response_active = False
            self._idle.set()

    # ----------------------------------------------------------------- the caller

    async def _run_script(self) -> None:
        """Play the caller's script once the greeting has played (or `greeting_wait_s`).

        The caller only starts a step while a sideband is attached, so a worker that
        re-attaches finds the script where it was left.
        """
        try:
            async with asyncio.timeout(self.script.greeting_wait_s):
                await self._greeting_done.wait()
        except TimeoutError:
            pass
        steps = self.script.steps
        while self.step_index < len(steps) and self.live:
            await self._attached.wait()
            await self._idle.wait()
            step = steps[self.step_index]
            self.step_index += 1
            await self._play(step)

    async def _play(self, step: Step) -> None:
        action = step.action
        if action == "say":
            assert step.say is not None
            item_id = new_id("item")
            await self.emit(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": 0,
                    "item_id": item_id,
                }
            )
            await self.emit(
                {
                    "type": "input_audio_buffer.speech_stopped",
                    "audio_end_ms": 1000,
                    "item_id": item_id,
                }
            )
            await self.emit(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item_id,
                    "content_index": 0,
                    "transcript": step.say,
                }
            )
            # Server VAD: the model answers on its own.
            await asyncio.wait({self._start_speaking(step.reply or self.script.default_reply)})
        elif action == "tool_call":
            assert step.tool_call is not None
            call_id = new_id("call")
            self._pending_tool = call_id
            self._tool_output = False
            self._queued_reply = step.reply or self.script.default_reply
            self._tool_replied = asyncio.Event()
            self._response_active = True
            self._response_id = new_id("resp")
            self._idle.clear()
            self._response = self._sim.spawn(
                self._function_call(
                    call_id, step.tool_call.name, json.dumps(step.tool_call.arguments)
                )
            )
            try:
                async with asyncio.timeout(self.script.tool_timeout_s):
                    await self._tool_replied.wait()
            except TimeoutError:
                log.info("call %s: no output for tool call %s", self.call_id, call_id)
                self._pending_tool = None
                self._queued_reply = None
        elif action == "pause":
            await asyncio.sleep(step.pause or 0)
        elif action == "dtmf":
            for digit in step.dtmf or "":
                await self.emit(
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
            await self.hang_up()

    async def _chatter(self, rate: float, duration_s: float) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        item_id = new_id("item")
        for i in range(int(rate * duration_s)):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if i % 2:
                await self.emit(
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
                await self.emit(
                    {
                        "type": "conversation.item.input_audio_transcription.delta",
                        "item_id": item_id,
                        "content_index": 0,
                        "delta": "um ",
                    }
                )


_CLIENT_HANDLERS = {
    "session.update": SimulatedCall._on_session_update,
    "response.create": SimulatedCall._on_response_create,
    "conversation.item.create": SimulatedCall._on_item_create,
    "response.cancel": SimulatedCall._on_response_cancel,
    "output_audio_buffer.clear": SimulatedCall._on_audio_clear,
}
