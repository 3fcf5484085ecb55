"""One simulated call: its life cycle as OpenAI sees it, with a scripted caller on the line.

The call, not the socket, owns all state (script position, active response, pending tool
call), exactly like OpenAI: a worker may lose its socket and re-attach, and the call goes
on. The parts: `SidebandSockets` (simulator/sockets.py), `SidebandProtocol` (the worker's
client events, simulator/sideband.py), `SimulatedModel` (simulator/model.py) and
`ScriptedCaller` (simulator/scripted_caller.py). The simulator that hosts the call is
reached only through `CallHost`, so this module does not import the server.

Per-call cost is kept small (a few events, timers and at most two tasks, no threads) because
the simulator is also the load generator for thousands of concurrent calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal, Protocol

from aiohttp import web

from simulator.callers import CallerScript
from simulator.faults import Faults
from simulator.model import SimulatedModel
from simulator.scripted_caller import ScriptedCaller
from simulator.sideband import SidebandProtocol
from simulator.sockets import SidebandSockets

CallState = Literal["ringing", "accepted", "rejected", "missed", "ended"]
EndReason = Literal["caller_hangup", "hangup", "transferred", "session_cap"]
STATES: tuple[str, ...] = ("ringing", "accepted", "rejected", "missed", "ended")
TERMINAL = frozenset({"rejected", "missed", "ended"})


class CallStateError(RuntimeError):
    """`wait_for` asked for a state that this call can no longer reach."""


class CallHost(Protocol):
    """What a call needs of the simulator that hosts it."""

    faults: Faults

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    def call_finished(self, call: SimulatedCall) -> None: ...


class SimulatedCall:
    """A phone call as OpenAI sees it, with a scripted caller on the line."""

    def __init__(
        self, host: CallHost, call_id: str, script: CallerScript, to: str, from_: str
    ) -> None:
        self._host = host
        self.call_id = call_id
        self.script = script
        self.to = to
        self.from_ = from_
        self.state: CallState = "ringing"
        self.accept_body: dict[str, Any] | None = None
        self.accept_count = 0  # accepts answered 200
        self.accept_attempts = 0  # every accept request, failed ones included
        self.reject_status: int | None = None
        self.reject_attempts = 0  # every reject request, refused ones included
        self.end_reason: EndReason | None = None
        self.attach_count = 0
        self.refer_targets: list[str] = []
        self.webhook_attempts: list[tuple[str, int | None, float]] = []
        self.timeline: dict[str, float] = {}
        self.agent_transcripts: list[str] = []  # what the model said, in order

        self._history: set[str] = {"ringing"}
        self._changed: asyncio.Event | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._driver: asyncio.Task[None] | None = None
        self.sockets = SidebandSockets()
        self.model = SimulatedModel(
            self.sockets,
            script,
            host.spawn,
            lambda: host.faults,
            self._said,
            idle_timeout_ms=lambda: self.sideband.idle_timeout_ms,
            mark=self.mark,
        )
        self.sideband = SidebandProtocol(self.sockets, self.model, self.notify)
        self.caller = ScriptedCaller(
            call_id,
            script,
            self.sockets,
            self.model,
            live=lambda: self.live,
            hang_up=self.hang_up,
            transcribing=lambda: self.sideband.transcribing,
        )

    def __repr__(self) -> str:
        return f"<SimulatedCall {self.call_id} {self.state} {self.end_reason or ''}>"

    # -- what tests look at -----------------------------------------------------------------

    @property
    def live(self) -> bool:
        return self.state == "accepted"

    @property
    def sockets_open(self) -> int:
        return len(self.sockets)

    @property
    def step_index(self) -> int:
        """The caller's next script step."""
        return self.caller.step_index

    @property
    def session(self) -> dict[str, Any]:
        return self.sideband.session

    @property
    def client_events(self) -> list[dict[str, Any]]:
        """Every client event the worker sent, in order."""
        return self.sideband.client_events

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

    def mark(self, name: str) -> None:
        """Note when something first happened (`timeline`), for `wait_until` too."""
        if name not in self.timeline:
            self.timeline[name] = time.monotonic()
            self.notify()

    # -- life cycle ---------------------------------------------------------------------------

    def start_ringing(self, accept_window_s: float) -> None:
        self.mark("ringing")
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(accept_window_s, self._miss))

    def _miss(self) -> None:
        if self.state == "ringing":
            self.finish("missed", None, abort=True)

    def accept(self, body: dict[str, Any]) -> None:
        """Apply a validated accept body (a repeated accept is only counted)."""
        self.accept_count += 1
        self.mark("accept_received")
        if self.state != "ringing":
            self.notify()
            return
        self.accept_body = body
        self.sideband.start_session(body, transcription=not self._host.faults.transcription_off)
        self._set_state("accepted")
        loop = asyncio.get_running_loop()
        cap = self._host.faults.session_cap_s
        self._timers.append(loop.call_later(cap, lambda: self._host.spawn(self._expire())))

    def reject(self, status_code: int) -> None:
        self.reject_status = status_code
        self.finish("rejected", None, abort=True)

    def refer(self, target: str) -> None:
        """A REFER was accepted for `target` (whether the call moves is the server's call)."""
        self.refer_targets.append(target)
        self.notify()

    async def hang_up(self) -> None:
        """The caller hangs up now: sockets are dropped without a close frame, like OpenAI."""
        if self.state == "ringing":
            self.finish("missed", "caller_hangup", abort=True)
        else:
            self.finish("ended", "caller_hangup", abort=True)

    async def drop_sideband(self) -> None:
        """Drop every attached socket abruptly (a network drop); the call stays alive."""
        self.sockets.drop_all()

    def finish(self, state: CallState, reason: EndReason | None, abort: bool) -> None:
        """End the call once; abort (hang-up) or close (our hangup, transfer, cap) sockets."""
        if self.state in TERMINAL:
            return
        self.end_reason = reason
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._driver is not None and self._driver is not asyncio.current_task():
            self._driver.cancel()
        self.model.stop()
        self.sockets.end_all(abort=abort, spawn=self._host.spawn)
        self._set_state(state)
        self._host.call_finished(self)

    async def _expire(self) -> None:
        """OpenAI's session cap: an error on the sideband, then the call ends."""
        await self.sockets.error(
            "session_expired",
            "Your session hit the maximum duration of 60 minutes.",
            event_type="invalid_request_error",
        )
        self.finish("ended", "session_cap", False)

    def _set_state(self, state: CallState) -> None:
        self.state = state
        self._history.add(state)
        self.mark(state)
        self.notify()

    def _said(self, text: str) -> None:
        self.agent_transcripts.append(text)
        self.notify()

    # -- sideband sockets ---------------------------------------------------------------------

    def attach(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None) -> None:
        self.sockets.attach(ws, transport, self._host.faults.drop_sideband_after_s)
        self.attach_count += 1
        self.mark("first_attach")
        self.notify()
        if self._driver is None:
            self._driver = self._host.spawn(self.caller.run())

    def detach(self, ws: web.WebSocketResponse) -> None:
        self.sockets.detach(ws)
        self.notify()

    async def emit(self, event: dict[str, Any]) -> None:
        """Send a server event to every attached socket (tests inject events with it)."""
        await self.sockets.emit(event)
