"""One simulated GPT-Live SIP session: its life cycle, its sideband sockets, what it emits.

As with OpenAI, the session (not a socket) owns the state: a sideband is only an observer,
detaching never ends the call, and events emitted while no sideband is attached are lost
(unless `LiveRules.replay_events` says an attach replays some). The call ends with
`session.closed` (a caller hang-up is `remote_hangup`), after which an attach is a 404.
Every event sent is checked against the SDK's types first (simulator/live/contract.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from simulator.callers import CallerScript
from simulator.live.contract import check_server_event

if TYPE_CHECKING:
    from simulator.live.model import LiveModel
    from simulator.live.surface import LiveSurface

LiveState = Literal[
    "ringing", "dialing", "accepted", "rejected", "missed", "ended", "superseded"
]  # dialing: an outbound call (simulator/live/outbound.py) before its callee answers
CloseReason = Literal["close_requested", "expired", "content", "remote_hangup", "connection_lost"]
TERMINAL = frozenset({"rejected", "missed", "ended", "superseded"})
_NO_EVENT_ID = frozenset({"session.input_audio.append", "session.output_audio.delta"})


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class _Socket:
    __slots__ = ("graceful", "transport", "ws")

    def __init__(self, ws: web.WebSocketResponse, transport: Any, graceful: bool) -> None:
        self.ws = ws
        self.transport = transport
        self.graceful = graceful

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a network drop)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class LiveSession:
    """A phone call as GPT-Live sees it, with a scripted caller on the line."""

    def __init__(
        self,
        surface: LiveSurface,
        session_id: str,
        script: CallerScript,
        to: str,
        from_: str,
        sip_call_id: str,
    ) -> None:
        self.surface = surface
        self.call_id = session_id  # what the simulator's bookkeeping calls every call
        self.session_id = session_id
        self.script = script
        self.to = to
        self.from_ = from_
        self.sip_call_id = sip_call_id
        self.partner: str | None = None  # the Realtime call id of the same SIP call, if any
        self.state: LiveState = "ringing"
        self.config: dict[str, Any] = {}  # the accepted `session`
        self.accept_count = 0
        self.accept_attempts = 0
        self.reject_status: int | None = None
        self.close_reason: CloseReason | None = None
        self.client_events: list[dict[str, Any]] = []
        self.attach_count = 0
        self.refer_targets: list[str] = []
        self.agent_transcripts: list[str] = []
        self.webhook_attempts: list[tuple[str, int | None, float]] = []
        self.started_at = time.monotonic()
        self._history: set[str] = {"ringing"}
        self._changed: asyncio.Event | None = None
        self._sockets: dict[web.WebSocketResponse, _Socket] = {}
        self._recent: deque[str] = deque(maxlen=64)  # for LiveRules.replay_events
        self._timers: list[asyncio.TimerHandle] = []
        self.model: LiveModel | None = None
        # Outbound calls: the created session, and the callee's progress, started by the
        # first sideband (or `start_after`).
        self.outbound_config: dict[str, Any] = {}
        self.on_first_attach: Callable[[], Any] | None = None

    def __repr__(self) -> str:
        return f"<LiveSession {self.session_id} {self.state} {self.close_reason or ''}>"

    @property
    def live(self) -> bool:
        return self.state == "accepted"

    @property
    def attachable(self) -> bool:
        return self.state in ("accepted", "dialing")

    def start_after(self, delay_s: float) -> None:
        """An outbound callee's phone rings even if no sideband attaches."""
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(delay_s, self._start_progress))

    def _start_progress(self) -> None:
        start, self.on_first_attach = self.on_first_attach, None
        if start is not None:
            start()

    async def emit_transport(self, event: dict[str, Any]) -> None:
        """An outbound call's `transport.*` event (sent while it is not answered yet)."""
        await self._emit_now({**event, "session_id": self.session_id})

    @property
    def sockets_open(self) -> int:
        return len(self._sockets)

    def session_ms(self) -> int:
        """Now on the session's timeline (events carry it as start_ms/end_ms)."""
        return int((time.monotonic() - self.started_at) * 1000)

    # -- waiting, for tests ------------------------------------------------------------------

    def notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_until(
        self, predicate: Callable[[LiveSession], bool], timeout: float | None = 10.0
    ) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                if self._changed is None:
                    self._changed = asyncio.Event()
                await self._changed.wait()

    async def wait_for(self, state: LiveState, timeout: float = 10.0) -> None:
        await self.wait_until(lambda s: state in s._history, timeout)

    def _set_state(self, state: LiveState) -> None:
        self.state = state
        self._history.add(state)
        self.notify()

    # -- REST-side transitions ---------------------------------------------------------------

    def start_ringing(self, window_s: float) -> None:
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(window_s, self._ring_out))

    def _ring_out(self) -> None:
        if self.state == "ringing":
            self.finish("missed")

    def accept(self, session: dict[str, Any]) -> None:
        self.accept_count += 1
        if self.state not in ("ringing", "dialing"):
            self.notify()
            return
        self.config = session
        self._set_state("accepted")
        loop = asyncio.get_running_loop()
        expires = self.surface.rules.expires_after_s
        self._timers.append(loop.call_later(expires, self._expire))

    def _expire(self) -> None:
        self.surface.spawn(self.close("expired"))

    def reject(self, status_code: int) -> None:
        self.reject_status = status_code
        self.finish("rejected")

    def supersede(self) -> None:
        """The SIP call was answered through Realtime: this id is done with."""
        if self.state == "ringing":
            self.finish("superseded")

    async def hang_up(self) -> None:
        """The caller hangs up: `session.closed` (remote_hangup), then the sockets go."""
        if self.state in ("ringing", "dialing"):
            self.finish("missed")
        else:
            await self.close("remote_hangup")

    async def close(self, reason: CloseReason) -> None:
        """End an answered session: the terminal `session.closed`, then the sockets close."""
        if self.state != "accepted":
            return
        self.close_reason = reason
        self._set_state("ended")  # nothing else is emitted or accepted from here on
        await self._emit_now(
            {
                "type": "session.closed",
                "event_id": new_id("event"),
                "reason": reason,
                "session": self.resource(),
                "usage": {"seconds": float(int(time.monotonic() - self.started_at))},
            }
        )
        self.finish("ended")

    def finish(self, state: LiveState) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self.model is not None:
            self.model.stop()
        sockets = list(self._sockets.values())
        self._sockets.clear()
        for sock in sockets:
            if sock.graceful or self.surface.rules.close_without_graceful == "close":
                self.surface.spawn(sock.ws.close())
            else:
                sock.abort()
        self._set_state(state)
        self.surface.finished(self)

    def resource(self) -> dict[str, Any]:
        """The session as `SessionResource` types it."""
        resource: dict[str, Any] = {
            "id": self.session_id,
            "expires_at": int(time.time() + self.surface.rules.expires_after_s),
            "model": self.config.get("model", "gpt-live-1"),
            "status": "active",
            "audio": {
                "output": {
                    "voice": self.config.get("audio", {}).get("output", {}).get("voice", "marin")
                }
            },
            "instructions": self.config.get("instructions"),
            "store": bool(self.config.get("store", False)),
        }
        if self.config.get("delegation") is not None:
            resource["delegation"] = self.config["delegation"]
        return resource

    # -- sockets -----------------------------------------------------------------------------

    async def attach(self, ws: web.WebSocketResponse, transport: Any, graceful: bool) -> None:
        rules = self.surface.rules
        sock = self._sockets[ws] = _Socket(ws, transport, graceful)
        self.attach_count += 1
        self.notify()
        drop_after = self.surface.faults.drop_sideband_after_s  # shared with Realtime
        if drop_after is not None:
            self._timers.append(asyncio.get_running_loop().call_later(drop_after, sock.abort))
        started = rules.session_started
        if started == "every_attach" or (started == "first_attach" and self.attach_count == 1):
            await self._send_to(ws, {"type": "session.started", "session": self.resource()})
        if rules.replay_events:
            for text in list(self._recent)[-rules.replay_events :]:
                await self._send_text(ws, text)
        if self.model is not None:
            self.model.attached()
        self._start_progress()

    def detach(self, ws: web.WebSocketResponse) -> None:
        self._sockets.pop(ws, None)
        if not self._sockets and self.model is not None:
            self.model.detached()
        self.notify()

    async def drop_sideband(self) -> None:
        """Drop every sideband without a close frame; the call goes on."""
        for sock in list(self._sockets.values()):
            sock.abort()

    async def emit(self, event: dict[str, Any]) -> None:
        """Send a server event to every attached sideband (lost with none attached)."""
        if self.state != "accepted":
            return
        await self._emit_now(event)

    async def _emit_now(self, event: dict[str, Any]) -> None:
        if event["type"] not in _NO_EVENT_ID:
            event = {"event_id": new_id("event"), **event}
        check_server_event(event)
        text = json.dumps(event)
        self._recent.append(text)
        for ws in list(self._sockets):
            await self._send_text(ws, text)

    async def emit_raw(self, text: str) -> None:
        """A pre-checked event (reflected audio: its shape is checked once, at import)."""
        if self.state != "accepted":
            return
        for ws in list(self._sockets):
            await self._send_text(ws, text)

    async def _send_to(self, ws: web.WebSocketResponse, event: dict[str, Any]) -> None:
        event = {"event_id": new_id("event"), **event}
        check_server_event(event)
        await self._send_text(ws, json.dumps(event))

    @staticmethod
    async def _send_text(ws: web.WebSocketResponse, text: str) -> None:
        if ws.closed:
            return
        try:
            await ws.send_str(text)
        except (ConnectionError, RuntimeError):
            pass
