"""`CallRunner`: one live call on one worker, from claim to `call.ended` (or to a hand-off).

Holds the lease (renewed with the JetStream delivery), opens the sideband, greets on the
first attach of the call only (whichever worker that is: the call's events say whether it
was greeted), turns sideband events into call events, enforces the agent's guards, and
tells a dropped socket from a finished call by trying to re-attach: a live call lets us
back in, a finished one answers 404.

Every side effect (an event, a message on the sideband, a hang-up, an ack) is fenced by
the lease: a worker whose lease lapsed (it was paused, or cut off from NATS) stops acting
on the call the moment it notices, and never acks or naks a delivery that is no longer its.

Tools: `_on_tool_call` is the seam where a tool call from the model arrives; its answer
goes through `_queue_tool_output`, which sends it (and the follow-up `response.create`)
once the response that asked is done. Only the built-in `end_call` is run here.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import nats.errors
import openai
import websockets
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.session.actions import CallActions, CallHooks
from services.session.control import CallControl
from services.session.guards import CallGuards, GuardAction
from services.session.history import CallHistory
from services.session.lease import CallLease, LeaseLost
from services.session.report import build_report
from services.session.sideband_events import (
    KNOWN_TYPES,
    AudioStopped,
    CallerSpoke,
    Publish,
    ResponseDone,
    ResponseStarted,
    ServerError,
    ToolCall,
    canonical_type,
    goodbye_event,
    greeting_event,
    idle_prompt_event,
    interpret,
    response_create,
    tool_output_item,
)
from services.session.tasks import cancel_and_wait, wait_a_while
from services.session.tools import ToolRunner
from shared import metrics
from shared.admission import release_call
from shared.agents import BuiltinTool
from shared.call_control import call_control
from shared.calls import SessionJob
from shared.events import CallEventPublisher, EventType, read_call_events
from shared.logging import bind, fields
from shared.settings import Settings

log = logging.getLogger(__name__)

# Re-attach after a dropped socket: the delay grows to a cap; after GIVE_UP_S of failures
# (not 404s: those end the call at once) the call is declared lost.
REATTACH_BACKOFF_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
REATTACH_GIVE_UP_S = 30.0
# A NATS publish that fails is retried (same Nats-Msg-Id) after these delays, the last one
# repeating, for as long as the lease holds.
PUBLISH_RETRY_S = (0.1, 0.25, 0.5, 1.0)
HANGUP_ATTEMPTS = 3
DEFAULT_GOODBYE_S = 10.0
_RETRYABLE_NATS = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    NoStreamResponseError,
    asyncio.TimeoutError,
)


class CallGone(Exception):
    """The sideband answered 404: the call is over."""


class _HandingOff(Exception):
    """A hand-off was asked for while the sideband was opening."""


class RunOutcome(StrEnum):
    ENDED = "ended"  # call.ended published, job acked
    HANDED_OFF = "handed_off"  # lease released, job returned for another worker
    LOST_LEASE = "lost_lease"  # another worker owns the call now; we did nothing more
    BUSY = "busy"  # another worker held the lease; the job was returned for later


@dataclass
class WorkerContext:
    """What every call on a worker shares."""

    settings: Settings
    worker_id: str
    nc: Client
    js: JetStreamContext
    leases: Any  # nats KeyValue of call leases
    events: CallEventPublisher
    openai_client: openai.AsyncOpenAI
    tools: ToolRunner  # one per worker: runs each tool call once, whichever worker asks


class CallRunner:
    def __init__(self, job: SessionJob, msg: Msg, ctx: WorkerContext) -> None:
        self.job = job
        self.msg = msg
        self.ctx = ctx
        self.call_id = job.call_id
        self.delivery = msg.metadata.num_delivered if msg.metadata else 1
        self.attempt = 1
        self.lease = CallLease(
            ctx.js, ctx.leases, job.call_id, ctx.worker_id, ctx.settings.session_lease_ttl_s
        )
        limits = job.agent.limits
        self.guards = CallGuards(
            started_at=job.accepted_at.timestamp(),
            max_duration_s=limits.max_duration_s,
            idle_timeout_s=limits.idle_timeout_s,
            goodbye_s=self._goodbye_s(),
            last_activity=time.time(),
        )
        self.attached = asyncio.Event()  # set while a sideband is attached
        self._greeted = False
        self._ws: ClientConnection | None = None
        self._handoff = False
        self._lost = False
        self._ended_reason: str | None = None
        self._hangup_after_audio: str | None = None  # end reason once the agent stops talking
        self._hangup_deadline: float | None = None  # monotonic; hang up even if still talking
        self._session_expired = False
        self._response_active = False
        self._responses: deque[dict[str, Any]] = deque()  # response.create waiting their turn
        self._last_response: dict[str, Any] | None = None
        self._tool_outputs: list[dict[str, Any]] = []
        self._wake = asyncio.Event()  # re-plan the timers
        # Tools, transfers and operator commands (services/session/actions.py).
        self.actions = CallActions(
            job.call_id,
            job.agent,
            None,
            ctx.openai_client,
            CallHooks(
                publish=self._publish,
                answer=self._queue_tool_output,
                respond=self._request_response,
                end_after_goodbye=lambda: self._end_after_goodbye(
                    "agent_hangup", self.guards.goodbye_s
                ),
                hang_up=self._hang_up,
                owns_call=self.lease.held,
            ),
        )

    def _goodbye_s(self) -> float:
        for tool in self.job.agent.tools:
            if isinstance(tool, BuiltinTool) and tool.builtin == "end_call":
                return tool.timeout_s
        return DEFAULT_GOODBYE_S

    # -- the whole life of the call -------------------------------------------------------

    async def run(self) -> RunOutcome:
        bind(call_id=self.call_id, worker=self.ctx.worker_id)
        try:
            taken = await self._take_lease()
        except _RETRYABLE_NATS as error:
            # The leases bucket cannot answer (electing a leader, say): try again soon
            # rather than after the delivery's ack wait.
            log.warning("lease not taken (%s), call returned for later", type(error).__name__)
            await self.msg.nak(delay=1.0)
            return RunOutcome.BUSY
        if not taken:
            if self._handoff:
                await self.msg.nak()
                return RunOutcome.HANDED_OFF
            log.info("call owned elsewhere, returned for later")
            await self.msg.nak(delay=1.0)
            return RunOutcome.BUSY
        try:
            history = await self._history()
        except LeaseLost:
            return self._after_lease_lost()
        if history.ended_reason is not None:
            # A previous owner ended the call but died before its ack: finish its paperwork.
            return await self._finish(history.ended_reason, already_ended=True)
        self.attempt = self.lease.attempt = history.next_attempt
        self._greeted = history.greeted
        self.actions.runner = self.ctx.tools
        # The model never asks again for a tool call an earlier owner left unanswered.
        self.actions.resume(history.open_tools)
        control = CallControl(self.ctx.nc, self.call_id, self.actions, self.ctx.worker_id)
        await control.start()  # operator commands follow the call to whoever owns it
        heartbeat = asyncio.create_task(self._heartbeat())
        timers = asyncio.create_task(self._timers())
        try:
            reason = await self._converse()
        except LeaseLost:
            reason = None
        finally:
            # Not cancel() + gather(): a cancel that meets a lease renewal's reply is
            # swallowed on 3.11, and the heartbeat would then keep the call ours for ever.
            await cancel_and_wait(heartbeat, timers)
            await control.stop()
            await self.actions.close()
            await self._close_socket()
        if self._lost or reason is None:
            return self._after_lease_lost()
        if reason == "handoff":
            return await self._give_back()
        return await self._finish(reason)

    async def hand_off(self) -> None:
        """Give the call to another worker now (drain): close our sideband, keep the call."""
        self._handoff = True
        self._wake.set()
        await self._close_socket()

    async def _take_lease(self) -> bool:
        """The lease, waiting a little for a dead owner's to lapse (its job was redelivered
        about when its lease expires), with +WPI so the delivery stays ours meanwhile."""
        if await self.lease.acquire():
            return True
        deadline = time.monotonic() + self.lease.ttl_s + 1.5
        beat = time.monotonic()
        while time.monotonic() < deadline and not self._handoff:
            if time.monotonic() - beat >= 1.0:
                beat = time.monotonic()
                await self.msg.in_progress()
            if await self.lease.acquire_within(0.5):
                return True
        return False

    async def _history(self) -> CallHistory:
        if self.delivery <= 1:
            # The first delivery of the job: nobody had the call before, and the acceptor
            # said where the call's events stand.
            if self.job.events_tail is not None:
                self.ctx.events.prime(self.call_id, *self.job.events_tail)
            return CallHistory()
        events = await read_call_events(self.ctx.js, self.call_id)
        if not self.lease.held():
            raise LeaseLost(self.call_id)
        return CallHistory.from_events(events)

    def _after_lease_lost(self) -> RunOutcome:
        log.warning("lease lost: another worker owns the call now")
        self.ctx.events.forget(self.call_id)
        return RunOutcome.LOST_LEASE

    async def _give_back(self) -> RunOutcome:
        try:
            await self._publish(
                EventType.SESSION_DETACHED, {"reason": "handoff", "worker": self.ctx.worker_id}
            )
        except LeaseLost:
            return self._after_lease_lost()
        await self.lease.release()
        await self.msg.nak()
        self.ctx.events.forget(self.call_id)
        log.info("call handed off")
        return RunOutcome.HANDED_OFF

    async def _finish(self, reason: str, *, already_ended: bool = False) -> RunOutcome:
        try:
            if not already_ended:
                metrics.CALLS_ENDED.labels(reason).inc()
                metrics.CALL_DURATION_SECONDS.observe(time.time() - self.guards.started_at)
                await self._publish(
                    EventType.CALL_ENDED, {"reason": reason}, msg_id=f"ended:{self.call_id}"
                )
            events = await read_call_events(self.ctx.js, self.call_id)
            if not any(e.type == EventType.CALL_REPORT for e in events):
                await self._publish(
                    EventType.CALL_REPORT,
                    build_report(events, reason),
                    msg_id=f"report:{self.call_id}",
                )
        except LeaseLost:
            return self._after_lease_lost()
        await release_call(self.ctx.js, self.call_id, self.job.agent)  # agent limit
        if self.lease.held():
            await self.msg.ack()
        await self.lease.release()
        self.ctx.events.forget(self.call_id)
        log.info("call ended", extra=fields(reason=reason, attempt=self.attempt))
        return RunOutcome.ENDED

    async def _converse(self) -> str:
        """Attach, pump, re-attach on a drop; the end reason, or "handoff"."""
        reconnects = 0
        failures = 0
        failing_since: float | None = None
        while True:
            if self._handoff:
                return "handoff"
            if self._ended_reason is not None:
                return self._ended_reason
            try:
                ws = await self._attach(reconnects)
            except CallGone:
                if self.actions.call_left():  # our REFER worked: the call left us
                    await self.actions.transferred()
                    return "transferred"
                return self._gone_reason()
            except _HandingOff:
                return "handoff"
            except (OSError, InvalidStatus, TimeoutError, websockets.InvalidHandshake) as error:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since >= REATTACH_GIVE_UP_S:
                    log.error("sideband unreachable, giving up: %s", type(error).__name__)
                    return "lost"
                await asyncio.sleep(REATTACH_BACKOFF_S[min(failures, len(REATTACH_BACKOFF_S) - 1)])
                failures += 1
                reconnects += 1
                continue
            failures = 0
            failing_since = None
            try:
                await self._pump(ws)
            except ConnectionClosed:
                pass
            finally:
                self.attached.clear()
                await self._close_socket()
            if self._lost:
                raise LeaseLost(self.call_id)
            # The socket closed: our hang-up, a hand-off, a caller hang-up or a network
            # drop. The loop re-attaches; a finished call answers 404.
            reconnects += 1

    def _gone_reason(self) -> str:
        if self._ended_reason is not None:
            return self._ended_reason
        if self._session_expired:
            return "max_duration"
        return "caller_hangup"

    async def _attach(self, reconnects: int) -> ClientConnection:
        kind = "first" if (self.attempt == 1 and reconnects == 0) else "reattach"
        if not self.lease.held():
            raise LeaseLost(self.call_id)
        started = time.perf_counter()
        try:
            ws = await websockets.connect(
                self.ctx.settings.sideband_url(self.call_id),
                additional_headers={
                    "Authorization": f"Bearer {self.ctx.settings.openai_api_key.get_secret_value()}"
                },
                open_timeout=5,
                close_timeout=1,
                max_size=4 * 1024 * 1024,
                ping_interval=20,
                compression=None,
            )
        except InvalidStatus as error:
            status = error.response.status_code
            metrics.SESSION_ATTACHES.labels(kind, "gone" if status == 404 else "error").inc()
            if status == 404:
                raise CallGone from None
            raise
        except (OSError, TimeoutError, websockets.InvalidHandshake):
            metrics.SESSION_ATTACHES.labels(kind, "error").inc()
            raise
        metrics.SESSION_ATTACH_SECONDS.labels(kind).observe(time.perf_counter() - started)
        metrics.SESSION_ATTACHES.labels(kind, "ok").inc()
        self._ws = ws
        if self._handoff:
            await self._close_socket()
            raise _HandingOff
        # Whatever was running before the drop, a new socket starts with no response we
        # know of; a conflict error tells us otherwise and the request waits its turn.
        self._response_active = False
        if not self._greeted:
            # Greet before `session.attached` is durable: a crash in between greets twice
            # (the next owner finds no attach), never zero times.
            self._greeted = True
            self._responses.appendleft(greeting_event(self.job.agent.greeting))
        await self._next_response()
        await self._publish(
            EventType.SESSION_ATTACHED,
            {
                "worker": self.ctx.worker_id,
                "attempt": self.attempt,
                "reconnects": reconnects,
                "greeted": True,
            },
        )
        self.attached.set()
        await self._flush_tool_outputs()
        return ws

    async def _pump(self, ws: ClientConnection) -> None:
        async for raw in ws:
            arrived = time.perf_counter()
            try:
                event = json.loads(raw)
            except (TypeError, ValueError):
                continue
            if not isinstance(event, dict):
                continue
            kind = canonical_type(event)
            metrics.SIDEBAND_EVENTS.labels(kind if kind in KNOWN_TYPES else "other").inc()
            meaning = interpret(event)
            if meaning is None:
                continue
            if isinstance(meaning, Publish):
                if meaning.type in (EventType.TRANSCRIPT_CALLER, EventType.DTMF):
                    self.guards.caller_active(time.time())
                await self._publish(meaning.type, meaning.data)
                metrics.EVENT_PUBLISH_SECONDS.observe(time.perf_counter() - arrived)
            elif isinstance(meaning, ToolCall):
                await self._on_tool_call(meaning)
            elif isinstance(meaning, ResponseStarted):
                self._response_active = True
                self.guards.agent_started(time.time())
            elif isinstance(meaning, ResponseDone):
                self._response_active = False
                self._last_response = None
                await self._flush_tool_outputs()
                await self._next_response()
            elif isinstance(meaning, AudioStopped):
                self.guards.agent_finished(time.time())
                self._wake.set()
                if self._hangup_after_audio is not None and not self._response_active:
                    await self._hang_up(self._hangup_after_audio)
                    return
            elif isinstance(meaning, CallerSpoke):
                self.guards.caller_active(time.time())
                self._wake.set()
            elif isinstance(meaning, ServerError):
                self._on_server_error(meaning)

    def _on_server_error(self, error: ServerError) -> None:
        if error.response_conflict:
            # Our response.create met a running response: it goes again after that one.
            self._response_active = True
            if self._last_response is not None:
                self._responses.appendleft(self._last_response)
                self._last_response = None
            return
        if error.session_expired:
            self._session_expired = True
        log.warning("sideband error %s: %s", error.code[:64], error.message[:200])

    # -- responses: one at a time, in order -------------------------------------------------

    async def _request_response(self, event: dict[str, Any]) -> None:
        self._responses.append(event)
        await self._next_response()

    async def _next_response(self) -> None:
        if self._response_active or not self._responses or self._ws is None:
            return
        event = self._responses.popleft()
        self._last_response = event
        self._response_active = True
        if not await self._send(event):
            self._responses.appendleft(event)
            self._response_active = False

    # -- tools (the built-in end_call; business tools are the seam below) ------------------

    async def _on_tool_call(self, call: ToolCall) -> None:
        """A function call from the model: run as a task by the call's actions (business
        tools once per tool_call_id, end_call, transfer_call); answers come back through
        `_queue_tool_output`."""
        self.actions.tool_call(call.tool_call_id, call.name, call.arguments)

    async def _queue_tool_output(self, tool_call_id: str, output: str) -> None:
        """Answer a tool call; sent at once if no response is running, else after it."""
        self._tool_outputs.append(tool_output_item(tool_call_id, output))
        if not self._response_active:
            await self._flush_tool_outputs()

    async def _flush_tool_outputs(self) -> None:
        """Tool outputs go after the response that asked is done, else the server refuses
        the follow-up response.create as a conflict."""
        if not self._tool_outputs or self._ws is None or self._response_active:
            return
        outputs, self._tool_outputs = self._tool_outputs, []
        for item in outputs:
            if not await self._send(item):
                self._tool_outputs = outputs  # the socket went: send them after re-attach
                return
        await self._request_response(response_create())

    # -- guards and timers -----------------------------------------------------------------

    def _end_after_goodbye(self, reason: str, within_s: float) -> None:
        """Hang up once the agent's goodbye has played, or after `within_s` at the latest."""
        self._hangup_after_audio = reason
        self._hangup_deadline = time.monotonic() + within_s
        self._wake.set()

    async def _timers(self) -> None:
        """The guards and the goodbye deadline, in one task per call."""
        try:
            while self._ended_reason is None:
                wake_at = self.guards.next_check() - time.time()
                if self._hangup_deadline is not None:
                    wake_at = min(wake_at, self._hangup_deadline - time.monotonic())
                if wake_at > 0:
                    self._wake.clear()
                    await wait_a_while(self._wake, wake_at)
                    continue
                if self._hangup_deadline is not None and time.monotonic() >= self._hangup_deadline:
                    await self._hang_up(self._hangup_after_audio or "agent_hangup")
                    return
                action = self.guards.due(time.time())
                if action == GuardAction.SAY_GOODBYE:
                    log.info("max duration reached: saying goodbye")
                    self._end_after_goodbye("max_duration", self.guards.goodbye_s)
                    await self._request_response(goodbye_event())
                elif action == GuardAction.PROMPT_IDLE:
                    await self._request_response(idle_prompt_event())
                elif action == GuardAction.HANG_UP_IDLE:
                    await self._hang_up("idle")
                    return
                elif action == GuardAction.HANG_UP_MAX_DURATION:
                    await self._hang_up("max_duration")
                    return
        except LeaseLost:
            await self._on_lease_lost()
        except Exception:
            log.exception("call timers failed")

    async def _hang_up(self, reason: str) -> None:
        if not self.lease.held():
            raise LeaseLost(self.call_id)
        if self._ended_reason is not None:
            return
        self._ended_reason = reason
        for attempt in range(HANGUP_ATTEMPTS):
            answer = await call_control(
                "hangup", self.ctx.openai_client.realtime.calls.hangup(self.call_id)
            )
            status = answer.status
            if status in ("200", "404"):  # 404: already gone, the call is over either way
                break
            log.error("hangup failed with %s (try %d)", status, attempt + 1)
            await asyncio.sleep(0.2 * (attempt + 1))
        await self._close_socket()

    # -- side effects, fenced by the lease --------------------------------------------------

    async def _publish(
        self, kind: EventType, data: dict[str, Any], *, msg_id: str | None = None
    ) -> None:
        """Publish a call event durably; retried with the same id while the lease holds (a
        stream electing a leader refuses writes for seconds; the event exists nowhere else).
        Once the lease lapses, LeaseLost: the call and its events are the next owner's."""
        msg_id = msg_id or uuid.uuid4().hex
        for attempt in itertools.count():
            if not self.lease.held():
                raise LeaseLost(self.call_id)
            try:
                await self.ctx.events.publish(self.call_id, kind, data, msg_id=msg_id)
                return
            except _RETRYABLE_NATS as error:
                log.warning("event publish failed (%s), retrying", type(error).__name__)
                await asyncio.sleep(PUBLISH_RETRY_S[min(attempt, len(PUBLISH_RETRY_S) - 1)])

    async def _send(self, event: dict[str, Any]) -> bool:
        """Send on the sideband; False when no socket is attached (the caller retries)."""
        if not self.lease.held():
            raise LeaseLost(self.call_id)
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(json.dumps(event))
        except ConnectionClosed:
            return False
        return True

    async def _close_socket(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    async def _on_lease_lost(self) -> None:
        self._lost = True
        await self._close_socket()

    async def _heartbeat(self) -> None:
        """Keep the lease and the JetStream delivery alive while the call lives; the
        delivery only while the lease holds (acks are not fenced by JetStream)."""
        period = min(self.ctx.settings.session_ack_wait_s, self.lease.ttl_s) / 3
        while True:
            await asyncio.sleep(period)
            try:
                await self.lease.renew()
            except LeaseLost:
                await self._on_lease_lost()
                return
            except Exception as error:  # NATS hiccup: the next beat may succeed
                log.warning("lease renewal failed: %s", type(error).__name__)
                if not self.lease.held():
                    await self._on_lease_lost()
                    return
                continue
            try:
                await self.msg.in_progress()
            except Exception as error:
                log.warning("in-progress ack failed: %s", type(error).__name__)
