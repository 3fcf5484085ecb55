"""`CallRunner`: one call's job on one worker, from claim to `call.ended` (or a hand-off).

Read `run` top to bottom: take the call's lease (services/session/lease.py), learn its
past from its events (a crashed owner's call is taken over: no second greeting, its
unanswered tool calls answered), keep the lease and the job's delivery alive while the
`Conversation` (services/session/conversation.py) talks to the call through its
`Sideband`, then end it (`call.ended`, `call.report`, ack) or give it back (hand-off).

Every side effect (an event, a command on the sideband, a hang-up, an ack) is fenced by
the lease: a worker whose lease lapsed (it was paused, or cut off from NATS) stops acting
on the call the moment it notices, and never acks or naks a delivery that is no longer its.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import openai
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.session import lease as leases
from services.session.control import CallControl
from services.session.conversation import Conversation, Handoff
from services.session.journal import RETRYABLE_NATS, CallJournal
from services.session.lease import CallLease, LeaseLost
from services.session.sidebands import open_sideband
from services.session.tools import ToolRunner
from shared import metrics
from shared.admission import BookReleases
from shared.calls import SessionJob
from shared.events import CallEventPublisher, EndReason, EventType
from shared.logging import bind, fields
from shared.outbound_limits import release_place
from shared.settings import Settings
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)


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
    bookings: BookReleases  # gives an ended call's booking and agent-limit place back


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
        self.journal = CallJournal(ctx.js, ctx.events, self.lease)
        self.lease.wrote_last = self.journal.wrote_last  # may a lapsed lease be taken back?
        self.talk = Conversation(
            job,
            open_sideband(job, ctx.settings, ctx.openai_client),
            self.journal,
            self.lease,
            ctx.tools,
            ctx.worker_id,
        )

    # -- the whole life of the call -------------------------------------------------------

    async def run(self) -> RunOutcome:
        bind(call_id=self.call_id, worker=self.ctx.worker_id)
        if self.delivery <= 1:
            self.lease.attempt = 1  # nobody had the call before: the lease names it at once
        try:
            taken = await leases.take(self.lease, self.msg, lambda: self.talk.handing_off)
        except RETRYABLE_NATS as error:
            # The leases bucket cannot answer (electing a leader, say): try again soon
            # rather than after the delivery's ack wait.
            log.warning("lease not taken (%s), call returned for later", type(error).__name__)
            await self.msg.nak(delay=1.0)
            return RunOutcome.BUSY
        if not taken:
            return await self._not_ours()
        try:
            history = await self.journal.history(
                self.delivery, self.job.events_tail, self.job.accepted_event
            )
        except LeaseLost:
            return self._after_lease_lost()
        if history.ended_reason is not None:
            # A previous owner ended the call but died before its ack: finish its paperwork.
            return await self._finish(history.ended_reason, already_ended=True)
        if history.next_attempt != self.lease.attempt:
            # The lease was created before the history told the attempt: name it now,
            # before `session.attached`, so `GET /calls` agrees with the events.
            self.lease.attempt = history.next_attempt
            try:
                with contextlib.suppress(*RETRYABLE_NATS):  # else the heartbeat names it
                    await self.lease.renew()
            except LeaseLost:
                return self._after_lease_lost()
        self.attempt = self.talk.attempt = history.next_attempt
        self.talk.greeted = history.greeted
        # The model never asks again for a tool call an earlier owner left unanswered.
        self.talk.actions.resume(history.open_tools)
        outcome = await self._live()
        if outcome is None:
            return self._after_lease_lost()
        if outcome == "handoff":
            return await self._give_back()
        return await self._finish(outcome)

    async def hand_off(self) -> None:
        """Give the call to another worker now (drain): close our sideband, keep the call."""
        await self.talk.hand_off()

    async def _live(self) -> EndReason | Handoff | None:
        """The call while we own it: the end reason, "handoff", or None (lease lost)."""
        talk = self.talk
        control = CallControl(self.ctx.nc, self.call_id, talk.actions, self.ctx.worker_id)
        await control.start()  # operator commands follow the call to whoever owns it
        period = min(self.ctx.settings.session_ack_wait_s, self.lease.ttl_s) / 3
        heartbeat = asyncio.create_task(leases.keep(self.lease, self.msg, period, talk.lease_lost))
        timers = asyncio.create_task(talk.timers())
        try:
            reason: EndReason | Handoff | None = await talk.run()
        except LeaseLost:
            reason = None
        finally:
            # Not cancel() + gather(): a cancel that meets a lease renewal's reply is
            # swallowed on 3.11, and the heartbeat would then keep the call ours for ever.
            await cancel_and_wait(heartbeat, timers)
            await control.stop()
            await talk.actions.close()
            await talk.sideband.close()
        return None if talk.lost else reason

    # -- before and after the call ------------------------------------------------------------

    async def _not_ours(self) -> RunOutcome:
        await self.msg.nak(delay=None if self.talk.handing_off else 1.0)
        if self.talk.handing_off:
            return RunOutcome.HANDED_OFF
        log.info("call owned elsewhere, returned for later")
        return RunOutcome.BUSY

    def _after_lease_lost(self) -> RunOutcome:
        log.warning("lease lost: another worker owns the call, or will once it lapses")
        self.journal.forget()
        return RunOutcome.LOST_LEASE

    async def _give_back(self) -> RunOutcome:
        try:
            await self.journal.publish(
                EventType.SESSION_DETACHED, {"reason": "handoff", "worker": self.ctx.worker_id}
            )
        except LeaseLost:
            return self._after_lease_lost()
        await self.lease.release()
        await self.msg.nak()
        self.journal.forget()
        log.info("call handed off")
        return RunOutcome.HANDED_OFF

    async def _finish(self, reason: str, *, already_ended: bool = False) -> RunOutcome:
        if not already_ended:
            metrics.CALLS_ENDED.labels(reason).inc()
            metrics.CALL_DURATION_SECONDS.observe(time.time() - self.talk.guards.started_at)
        # The call is over: what it held in admission is given back while its last events
        # are written. Independent writes, made together, share socket writes and waits (a
        # round trip costs more CPU than the work in it). The booking goes before the worker
        # reports the slot free, so the books never show less than the truth.
        releases = [
            self.ctx.bookings.release(self.call_id, self.job.booking),
            self.ctx.bookings.release_limit(self.call_id, self.job.agent),
        ]
        if self.job.direction == "outbound":  # its place in the agent's outbound cap
            releases.append(release_place(self.ctx.js, self.job.agent.name, self.call_id))
        given_back = asyncio.gather(*releases)  # none of them raises
        try:
            await self.journal.ended(reason, already=already_ended)
        except LeaseLost:
            await given_back
            return self._after_lease_lost()
        acked = [self.msg.ack()] if self.lease.held() else []
        await asyncio.gather(*acked, self.lease.release(), given_back)
        self.journal.forget()
        log.info("call ended", extra=fields(reason=reason, attempt=self.attempt))
        return RunOutcome.ENDED
