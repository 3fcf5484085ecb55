"""`CallRunner`: one live call on one worker, from claim to `call.ended`.

Holds the lease (renewed with the JetStream delivery), opens the sideband, greets on the
first attach only, turns sideband events into call events, and tells a dropped socket
from a finished call by trying to re-attach: a live call lets us back in, a finished
one answers 404.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import openai
import websockets
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.session.lease import CallLease, LeaseLost
from services.session.report import build_report
from services.session.sideband_events import (
    KNOWN_TYPES,
    AudioStopped,
    Publish,
    ResponseDone,
    ServerError,
    ToolCall,
    canonical_type,
    greeting_event,
    interpret,
)
from shared import metrics
from shared.admission import release_call
from shared.calls import SessionJob
from shared.events import CallEventPublisher, EventType, read_call_events
from shared.logging import bind, fields
from shared.settings import Settings

log = logging.getLogger(__name__)

REATTACH_BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0, 2.0, 2.0)
GOODBYE_WAIT_S = 10.0


class CallGone(Exception):
    """The sideband answered 404: the call is over."""


@dataclass
class WorkerContext:
    """What every call on a worker shares."""

    settings: Settings
    worker_id: str
    js: JetStreamContext
    leases: Any  # nats KeyValue of call leases
    events: CallEventPublisher
    openai_client: openai.AsyncOpenAI


@dataclass
class _State:
    greeted: bool = False
    ended_reason: str | None = None
    pending_tool_outputs: list[dict[str, Any]] = field(default_factory=list)
    hangup_after_audio: bool = False


class CallRunner:
    def __init__(self, job: SessionJob, msg: Msg, ctx: WorkerContext) -> None:
        self.job = job
        self.msg = msg
        self.ctx = ctx
        self.call_id = job.call_id
        self.attempt = msg.metadata.num_delivered if msg.metadata else 1
        self.lease = CallLease(
            ctx.js, ctx.leases, job.call_id, ctx.worker_id, ctx.settings.session_lease_ttl_s
        )
        self._state = _State(greeted=self.attempt > 1)
        self._ws: ClientConnection | None = None
        self._handoff = False
        self._lost = False

    # -- the whole life of the call -------------------------------------------------------

    async def run(self) -> None:
        bind(call_id=self.call_id, worker=self.ctx.worker_id)
        if not await self.lease.acquire(self.attempt):
            # Another worker holds it (its lease has not expired yet): try again later.
            log.info("call owned elsewhere, retrying later")
            await self.msg.nak(delay=1.0)
            return
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            reason = await self._converse()
        except LeaseLost:
            reason = None
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
        if self._lost or reason is None:
            log.warning("lease lost: another worker owns the call now")
            self.ctx.events.forget(self.call_id)
            return
        if self._handoff:
            await self.lease.release()
            await self.msg.nak()
            self.ctx.events.forget(self.call_id)
            log.info("call handed off")
            return
        await self._finish(reason)

    async def hand_off(self) -> None:
        """Give the call to another worker now (drain): close our sideband, keep the call."""
        self._handoff = True
        if self._ws is not None:
            await self._ws.close()

    async def _finish(self, reason: str) -> None:
        duration = time.time() - self.job.accepted_at.timestamp()
        metrics.CALLS_ENDED.labels(reason).inc()
        metrics.CALL_DURATION_SECONDS.observe(duration)
        await self._publish(
            EventType.CALL_ENDED, {"reason": reason}, msg_id=f"ended:{self.call_id}"
        )
        events = await read_call_events(self.ctx.js, self.call_id)
        await self._publish(
            EventType.CALL_REPORT, build_report(events, reason), msg_id=f"report:{self.call_id}"
        )
        await release_call(self.ctx.js, self.call_id, self.job.agent)  # agent limit
        await self.lease.release()
        await self.msg.ack()
        self.ctx.events.forget(self.call_id)
        log.info("call ended", extra=fields(reason=reason))

    async def _converse(self) -> str:
        reconnects = 0
        while True:
            try:
                self._ws = await self._attach(reconnects)
            except CallGone:
                return "caller_hangup"
            except (OSError, InvalidStatus, TimeoutError, websockets.InvalidHandshake) as error:
                if reconnects >= len(REATTACH_BACKOFF_S):
                    log.error("sideband unreachable, giving up: %s", type(error).__name__)
                    return "lost"
                await asyncio.sleep(REATTACH_BACKOFF_S[reconnects])
                reconnects += 1
                continue
            try:
                await self._pump(self._ws)
            except ConnectionClosed:
                pass
            finally:
                self._ws = None
            if self._lost:
                raise LeaseLost(self.call_id)
            if self._handoff:
                return "handoff"
            if self._state.ended_reason is not None:
                return self._state.ended_reason
            # The socket closed under us: a caller hang-up or a network drop. Re-attach tells.
            reconnects += 1
            if reconnects > len(REATTACH_BACKOFF_S):
                return "lost"

    async def _attach(self, reconnects: int) -> ClientConnection:
        kind = "first" if (self.attempt == 1 and reconnects == 0) else "reattach"
        started = time.perf_counter()
        try:
            ws = await websockets.connect(
                self.ctx.settings.sideband_url(self.call_id),
                additional_headers={
                    "Authorization": f"Bearer {self.ctx.settings.openai_api_key.get_secret_value()}"
                },
                open_timeout=5,
                max_size=4 * 1024 * 1024,
                ping_interval=20,
            )
        except InvalidStatus as error:
            status = error.response.status_code
            result = "gone" if status == 404 else "error"
            metrics.SESSION_ATTACHES.labels(kind, result).inc()
            if status == 404:
                raise CallGone from None
            raise
        metrics.SESSION_ATTACH_SECONDS.labels(kind).observe(time.perf_counter() - started)
        metrics.SESSION_ATTACHES.labels(kind, "ok").inc()
        await self._publish(
            EventType.SESSION_ATTACHED,
            {"worker": self.ctx.worker_id, "attempt": self.attempt, "reconnects": reconnects},
        )
        if not self._state.greeted:
            self._state.greeted = True
            await self._send(ws, greeting_event(self.job.agent.greeting))
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
            if isinstance(meaning, Publish):
                await self._publish(meaning.type, meaning.data)
                metrics.EVENT_PUBLISH_SECONDS.observe(time.perf_counter() - arrived)
            elif isinstance(meaning, ToolCall):
                await self._on_tool_call(ws, meaning)
            elif isinstance(meaning, ResponseDone):
                await self._flush_tool_outputs(ws)
            elif isinstance(meaning, AudioStopped) and self._state.hangup_after_audio:
                await self._hang_up("agent_hangup")
                return
            elif isinstance(meaning, ServerError):
                log.warning("sideband error %s: %s", meaning.code, meaning.message[:200])

    # -- tools (the built-in end_call; business tools come over NATS) ----------------------

    async def _on_tool_call(self, ws: ClientConnection, call: ToolCall) -> None:
        if call.name == "end_call":
            self._state.hangup_after_audio = True
            asyncio.get_running_loop().call_later(
                GOODBYE_WAIT_S, lambda: asyncio.ensure_future(self._goodbye_timeout())
            )
            output: dict[str, Any] = {"output": "ending the call; say goodbye briefly"}
        else:
            output = {"error": f"tool {call.name} is not available"}
        self._state.pending_tool_outputs.append(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": call.tool_call_id,
                    "output": json.dumps(output),
                },
            }
        )

    async def _flush_tool_outputs(self, ws: ClientConnection) -> None:
        """Tool outputs go after the response that asked is done, else the server refuses
        the follow-up response.create as a conflict."""
        if not self._state.pending_tool_outputs:
            return
        outputs, self._state.pending_tool_outputs = self._state.pending_tool_outputs, []
        for item in outputs:
            await self._send(ws, item)
        await self._send(ws, {"type": "response.create"})

    async def _goodbye_timeout(self) -> None:
        if self._state.hangup_after_audio and self._state.ended_reason is None:
            await self._hang_up("agent_hangup")

    async def _hang_up(self, reason: str) -> None:
        if not self.lease.held():
            raise LeaseLost(self.call_id)
        self._state.ended_reason = reason
        started = time.perf_counter()
        status = "200"
        try:
            await self.ctx.openai_client.realtime.calls.hangup(self.call_id)
        except openai.NotFoundError:
            status = "404"  # already gone: the call is over either way
        except openai.APIStatusError as error:
            status = str(error.status_code)
            log.error("hangup failed with %s", status)
        except (openai.APITimeoutError, openai.APIConnectionError):
            status = "timeout"
            log.error("hangup timed out")
        finally:
            metrics.OPENAI_REQUESTS.labels("hangup", status).inc()
            metrics.OPENAI_REQUEST_SECONDS.labels("hangup").observe(time.perf_counter() - started)
        if self._ws is not None:
            await self._ws.close()

    # -- side effects, fenced by the lease --------------------------------------------------

    async def _publish(
        self, type: EventType, data: dict[str, Any], *, msg_id: str | None = None
    ) -> None:
        if not self.lease.held():
            raise LeaseLost(self.call_id)
        await self.ctx.events.publish(self.call_id, type, data, msg_id=msg_id)

    async def _send(self, ws: ClientConnection, event: dict[str, Any]) -> None:
        if not self.lease.held():
            raise LeaseLost(self.call_id)
        await ws.send(json.dumps(event))

    async def _heartbeat(self) -> None:
        """Keep the JetStream delivery and the lease alive while the call lives."""
        period = min(self.ctx.settings.session_ack_wait_s, self.lease.ttl_s) / 3
        while True:
            await asyncio.sleep(period)
            try:
                await self.lease.renew()
                await self.msg.in_progress()
            except LeaseLost:
                self._lost = True
                if self._ws is not None:
                    await self._ws.close()
                return
            except Exception as error:  # NATS hiccup: the next beat may succeed
                log.warning("heartbeat failed: %s", type(error).__name__)
                if not self.lease.held():
                    self._lost = True
                    if self._ws is not None:
                        await self._ws.close()
                    return
