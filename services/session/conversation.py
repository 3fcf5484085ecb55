"""`Conversation`: one owned call while it is live, over its `Sideband`.

(Over 350 lines: its reactions to the call's events, its timers and its hang-up share one
call's state; split further they would hand that state around.)

It attaches (greeting on the call's first attach only), acts on the call's events
(transcripts and key presses become call events, tool calls go to the call's actions,
responses feed the turn-taking), enforces the agent's guards with one timer task, hangs
up, and tells a dropped socket from a finished call by re-attaching: a live call lets us
back in, a finished one is gone. Which OpenAI API is behind the sideband does not matter.
Every side effect is fenced by the lease (`LeaseLost`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

from services.session.actions import CallActions, CallHooks
from services.session.agreement import differences
from services.session.guards import CallGuards, GuardAction
from services.session.journal import CallJournal, call_event
from services.session.lease import CallLease, LeaseLost
from services.session.sideband import (
    AgentAudioCleared,
    AgentAudioStopped,
    AgentTranscript,
    CallEnded,
    CallerSpeechStarted,
    CallerTranscript,
    CallGone,
    Command,
    Dtmf,
    IdlePrompted,
    ResponseConflict,
    ResponseDone,
    ResponseStarted,
    SessionConfigured,
    SessionExpiring,
    Sideband,
    SidebandError,
    SidebandEvent,
    SidebandRefused,
    SidebandUnavailable,
    Speak,
    ToolCallRequested,
    ToolOutput,
)
from services.session.tools import ToolRunner
from services.session.turns import Turns, goodbye, greeting, idle_prompt
from shared import metrics
from shared.agents import BuiltinTool
from shared.backoff import Backoff
from shared.calls import SessionJob
from shared.events import EndReason, EventType
from shared.logging import fields
from shared.tasks import wait_a_while

log = logging.getLogger(__name__)

# Re-attach after a dropped socket: the delay grows to a cap; after GIVE_UP_S of failures
# (not "gone": that ends the call at once) the call is declared lost.
REATTACH_BACKOFF = Backoff(first_s=0.05, max_s=2.0)
REATTACH_GIVE_UP_S = 30.0
HANGUP_ATTEMPTS = 3
HANGUP_BACKOFF = Backoff(first_s=0.2, max_s=0.8)
DEFAULT_GOODBYE_S = 10.0
Handoff = Literal["handoff"]


class _HandingOff(Exception):
    """A hand-off was asked for while the sideband was opening."""


class Conversation:
    def __init__(
        self,
        job: SessionJob,
        sideband: Sideband,
        journal: CallJournal,
        lease: CallLease,
        tools: ToolRunner,
        worker_id: str,
    ) -> None:
        self.job = job
        self.call_id = job.call_id
        self.sideband = sideband
        self.journal = journal
        self.lease = lease
        self.worker_id = worker_id
        self.attempt = 1
        self.greeted = False
        self.handing_off = False
        self.lost = False
        self.turns = Turns(responses_conflict=sideband.responses_conflict)
        limits = job.agent.limits
        self.guards = CallGuards(
            started_at=job.accepted_at.timestamp(),
            max_duration_s=limits.max_duration_s,
            idle_timeout_s=limits.idle_timeout_s,
            goodbye_s=_goodbye_s(job),
            last_activity=time.time(),
        )
        self._ended: EndReason | None = None
        self._hangup_after_audio: EndReason | None = None  # once the agent stops talking
        self._hangup_deadline: float | None = None  # monotonic; hang up even if still talking
        self._session_expired = False
        self._openai_prompting = False  # OpenAI's own idle prompt is playing
        self._regreeted = False
        self._mismatches: set[str] = set()  # session fields already reported different
        self._wake = asyncio.Event()  # re-plan the timers
        # Tools, transfers and operator commands (services/session/actions.py).
        self.actions = CallActions(
            job.call_id,
            job.agent,
            tools,
            CallHooks(
                publish=journal.publish,
                answer=self._answer_tool,
                respond=self._speak,
                end_after_goodbye=lambda: self._end_after_goodbye(
                    EndReason.AGENT_HANGUP, self.guards.goodbye_s
                ),
                hang_up=self._hang_up,
                transfer=self._transfer,
                owns_call=lease.held,
            ),
            context=job.context,
        )

    async def hand_off(self) -> None:
        """Stop talking now (drain): close our sideband; the call goes on elsewhere."""
        self.handing_off = True
        self._wake.set()
        await self.sideband.close()

    async def run(self) -> EndReason | Handoff:
        """Attach, pump, re-attach on a drop; the end reason, or "handoff"."""
        reconnects = failures = 0
        failing_since: float | None = None
        while True:
            if self.handing_off:
                return "handoff"
            if self._ended is not None:
                return self._ended
            try:
                await self._attach(reconnects)
            except CallGone:
                return await self._call_left()
            except _HandingOff:
                return "handoff"
            except SidebandRefused as error:
                log.error("sideband refused, ending the call: %s", error)
                await self._hang_up(EndReason.ERROR)  # not left in silence, if REST can
                return EndReason.ERROR
            except SidebandUnavailable as error:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since >= REATTACH_GIVE_UP_S:
                    log.error("sideband unreachable, giving up: %s", error)
                    await self._hang_up(EndReason.LOST)
                    return EndReason.LOST
                await asyncio.sleep(REATTACH_BACKOFF.delay(failures))
                failures += 1
                reconnects += 1
                continue
            failures, failing_since = 0, None
            try:
                ended = await self._pump()
            finally:
                self.turns.detached()
                await self.sideband.close()
            if self.lost:
                raise LeaseLost(self.call_id)
            if ended is not None:
                return ended
            # The socket closed: our hang-up, a hand-off, a caller hang-up or a network
            # drop. The loop re-attaches; a finished call is gone.
            reconnects += 1

    async def _attach(self, reconnects: int) -> None:
        kind = "first" if (self.attempt == 1 and reconnects == 0) else "reattach"
        await self.lease.confirm()
        started = time.perf_counter()
        try:
            await self.sideband.attach()
        except CallGone:
            metrics.SESSION_ATTACHES.labels(kind, "gone").inc()
            raise
        except (SidebandUnavailable, SidebandRefused):
            metrics.SESSION_ATTACHES.labels(kind, "error").inc()
            raise
        metrics.SESSION_ATTACH_SECONDS.labels(kind).observe(time.perf_counter() - started)
        metrics.SESSION_ATTACHES.labels(kind, "ok").inc()
        if self.handing_off:
            await self.sideband.close()
            raise _HandingOff
        first: Speak | None = None
        if not self.greeted:
            # Greet before `session.attached` is durable: a crash in between greets twice
            # (the next owner finds no attach), never zero times.
            self.greeted = True
            first = greeting(self.job.agent.greeting)
        await self._send(self.turns.attached(first))
        await self.journal.publish(
            EventType.SESSION_ATTACHED,
            {
                "worker": self.worker_id,
                "attempt": self.attempt,
                "reconnects": reconnects,
                "greeted": True,
            },
        )

    async def _pump(self) -> EndReason | None:
        """Act on the call's events until the socket closes; an end reason if the API said
        on the socket that the call is over."""
        async for event in self.sideband.events():
            ended = await self._on_event(event)
            if ended is not None:
                return ended
            if self._ended is not None:
                return None  # we hung up: the loop returns our reason
        return None

    async def _on_event(self, event: SidebandEvent) -> EndReason | None:
        """What one event of the call means for it; an end reason when it is over."""
        if isinstance(event, CallerTranscript | AgentTranscript | Dtmf):
            await self._record(event)
        elif isinstance(event, ToolCallRequested):
            # Run as a task (the socket must keep being read); answered via _answer_tool.
            self.actions.tool_call(event.tool_call_id, event.name, event.arguments)
        elif isinstance(event, ResponseStarted):
            self.turns.response_started()
            if not self._openai_prompting:  # OpenAI's own idle prompt is no activity
                self.guards.agent_started(time.time())
        elif isinstance(event, ResponseDone):
            await self._response_done(event)
        elif isinstance(event, ResponseConflict):
            self.turns.conflict()
        elif isinstance(event, AgentAudioStopped | AgentAudioCleared):
            await self._audio_ended(cut=isinstance(event, AgentAudioCleared))
        elif isinstance(event, CallerSpeechStarted):
            self.guards.caller_active(time.time())
            self._wake.set()
        elif isinstance(event, IdlePrompted):
            self._openai_prompting = True
        elif isinstance(event, SessionConfigured):
            self._check_session(event)
        elif isinstance(event, SessionExpiring):
            self._session_expired = True
        elif isinstance(event, SidebandError):
            log.warning("sideband error %s: %s", event.code[:64], event.message[:200])
        elif isinstance(event, CallEnded):
            return await self._call_left(event.cause)
        return None

    async def _record(self, event: CallerTranscript | AgentTranscript | Dtmf) -> None:
        """A transcript or a key press becomes a call event (caller ones are activity)."""
        arrived = time.perf_counter()
        if not isinstance(event, AgentTranscript):
            self.guards.caller_active(time.time())
        if isinstance(event, CallerTranscript) and event.failed:
            metrics.TRANSCRIPTIONS_FAILED.inc()
            code = (event.error or {}).get("code")
            log.warning("caller turn not transcribed: %s", code, extra=fields(item=event.item_id))
        await self.journal.publish(*call_event(event))
        metrics.EVENT_PUBLISH_SECONDS.observe(time.perf_counter() - arrived)

    async def _response_done(self, done: ResponseDone) -> None:
        """The next turn goes out; a response that failed is reported, a greeting that
        failed is asked for once more (a call must not stay silent)."""
        answered, commands = self.turns.response_done()
        if done.status != "completed":
            metrics.RESPONSES_NOT_COMPLETED.labels(done.status).inc()
        if done.status in ("failed", "incomplete"):
            purpose = answered.purpose if answered is not None else None
            log.warning(
                "response %s (%s): %s",
                done.status,
                purpose or "the model's own",
                done.error or done.reason,
            )
            data = {"status": done.status, "reason": done.reason, "error": done.error}
            data["purpose"] = purpose
            await self.journal.publish(
                EventType.RESPONSE_FAILED, {k: v for k, v in data.items() if v is not None}
            )
            if answered is not None and answered.purpose == "greeting" and not self._regreeted:
                self._regreeted = True
                commands += self.turns.speak(answered)
        elif done.status == "cancelled" and self._hangup_after_audio is not None:
            # The goodbye was cut before its audio played (the caller talked): end now.
            await self._hang_up(self._hangup_after_audio)
            return
        await self._send(commands)

    async def _audio_ended(self, *, cut: bool) -> None:
        """The agent's audio stopped playing, or was cut (the caller talked over it). A
        pending hang-up goes now: after the goodbye played, or at once when it was cut."""
        if not self._openai_prompting:
            self.guards.agent_finished(time.time())
        self._openai_prompting = False
        self._wake.set()
        pending = self._hangup_after_audio
        if pending is not None and (cut or not self.turns.responding):
            await self._hang_up(pending)

    def _check_session(self, session: SessionConfigured) -> None:
        for name in differences(self.job.agent, session):
            if name not in self._mismatches:
                self._mismatches.add(name)
                metrics.SESSION_MISMATCHES.labels(name).inc()
                log.warning("session %s is not what the agent asked for", name)

    async def _call_left(self, cause: str = "unknown") -> EndReason:
        if self.actions.call_left():  # our REFER worked: the call left us
            await self.actions.transferred()
            return EndReason.TRANSFERRED
        return self._gone_reason(cause)

    def _gone_reason(self, cause: str) -> EndReason:
        if self._ended is not None:
            return self._ended
        if self._session_expired or cause == "expired":
            return EndReason.MAX_DURATION
        if cause == "error":
            return EndReason.ERROR
        return EndReason.CALLER_HANGUP

    # -- speaking and answering tools (turn-taking in services/session/turns.py) -----------

    async def _speak(self, request: Speak) -> None:
        await self._send(self.turns.speak(request))

    async def _answer_tool(self, tool_call_id: str, output: str) -> None:
        """Answer a tool call; sent once the response that asked is done."""
        await self._send(self.turns.tool_output(ToolOutput(tool_call_id, output)))

    async def _send(self, commands: list[Command]) -> None:
        """Send in order; what the socket could not take waits for the next one."""
        for index, command in enumerate(commands):
            try:
                await self.lease.confirm()
            except LeaseLost:
                self.turns.unsent(commands[index:])
                raise
            if not await self.sideband.send(command):
                self.turns.unsent(commands[index:])
                return

    # -- guards and timers -----------------------------------------------------------------

    def _end_after_goodbye(self, reason: EndReason, within_s: float) -> None:
        """Hang up once the agent's goodbye has played, or after `within_s` at the latest."""
        self._hangup_after_audio = reason
        self._hangup_deadline = time.monotonic() + within_s
        self._wake.set()

    async def timers(self) -> None:
        """The guards and the goodbye deadline, in one task per call."""
        try:
            while self._ended is None:
                wake_at = self.guards.next_check() - time.time()
                if self._hangup_deadline is not None:
                    wake_at = min(wake_at, self._hangup_deadline - time.monotonic())
                if wake_at > 0:
                    self._wake.clear()
                    await wait_a_while(self._wake, wake_at)
                    continue
                if self._hangup_deadline is not None and time.monotonic() >= self._hangup_deadline:
                    await self._hang_up(self._hangup_after_audio or EndReason.AGENT_HANGUP)
                    return
                action = self.guards.due(time.time())
                if action == GuardAction.SAY_GOODBYE:
                    log.info("max duration reached: saying goodbye")
                    self._end_after_goodbye(EndReason.MAX_DURATION, self.guards.goodbye_s)
                    await self._speak(goodbye())
                elif action == GuardAction.PROMPT_IDLE:
                    await self._speak(idle_prompt())
                elif action == GuardAction.HANG_UP_IDLE:
                    await self._hang_up(EndReason.IDLE)
                    return
                elif action == GuardAction.HANG_UP_MAX_DURATION:
                    await self._hang_up(EndReason.MAX_DURATION)
                    return
        except LeaseLost:
            await self.lease_lost()
        except Exception:
            log.exception("call timers failed")

    # -- side effects, fenced by the lease --------------------------------------------------

    async def _hang_up(self, reason: EndReason) -> None:
        await self.lease.confirm()
        if self._ended is not None:
            return
        self._ended = reason
        for attempt in range(HANGUP_ATTEMPTS):
            status = await self.sideband.hang_up()
            if status in ("200", "404"):  # 404: already gone, the call is over either way
                break
            log.error("hangup failed with %s (try %d)", status, attempt + 1)
            await asyncio.sleep(HANGUP_BACKOFF.delay(attempt))
        await self.sideband.close()

    async def _transfer(self, uri: str) -> str:
        await self.lease.confirm()
        return await self.sideband.transfer(uri)

    async def lease_lost(self) -> None:
        """The lease is someone else's now: stop acting on the call."""
        self.lost = True
        await self.sideband.close()


def _goodbye_s(job: SessionJob) -> float:
    for tool in job.agent.tools:
        if isinstance(tool, BuiltinTool) and tool.builtin == "end_call":
            return tool.timeout_s
    return DEFAULT_GOODBYE_S
