"""The optional per-call resolve hook: a NATS request to `agents.resolve`.

A business service may answer, within a short budget (250 ms by default), to pick another
agent profile by name or override fields of the one chosen (e.g. instructions that greet
a known caller by name). The hook can only make the call better, never lose it: no
responder, a timeout, an error or a reply that would make a profile OpenAI refuses all
fall back to the static profile of the dialled number. Replies are untrusted JSON: over
`MAX_HOOK_REPLY_BYTES` (64 KiB) or nested too deep, they are refused the same way.

Most deployments run no hook, and NATS then answers each request with "no responders": a
round trip per call through nats-server for nothing. After that answer the hook is not
asked again for `ABSENT_RECHECK_S`; a hook that starts answers calls from then on.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import nats.errors
from nats.aio.client import Client
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.agent_directory import AgentDirectory, OverrideRefused, apply_override
from shared.agents import AgentProfile
from shared.calls import IncomingCall, SipHeader
from shared.limits import MAX_HOOK_REPLY_BYTES
from shared.logging import clean, fields
from shared.numbers import dialled_number
from shared.untrusted import UntrustedJsonError, parse_json

log = logging.getLogger(__name__)

RESOLVE_SUBJECT = "agents.resolve"
# After "no responders", calls take the static profile without asking for this long.
ABSENT_RECHECK_S = 1.0


class ResolveRequest(BaseModel):
    """What the acceptor asks on `agents.resolve` (JSON)."""

    model_config = ConfigDict(populate_by_name=True)

    call_id: str
    webhook_id: str
    to: str | None = Field(None, description="the raw SIP To header (caller-controlled)")
    from_: str | None = Field(None, alias="from", description="the raw SIP From header")
    number: str | None = Field(None, description="the dialled number in E.164, if any")
    sip_headers: list[SipHeader] = Field(default_factory=list)
    agent: str = Field(description="the profile the agents file chose (the fallback)")


class ResolveReply(BaseModel):
    """What a hook may answer; an empty object keeps the static profile."""

    agent: str | None = Field(None, description="pick this profile (by name) instead")
    override: dict[str, Any] = Field(
        default_factory=dict,
        description="replace these fields of the chosen profile: model, voice, instructions, "
        "greeting, transcription, turn_detection, tools, limits (and for a GPT-Live agent "
        "delegation, store; its API stays the file's)",
    )
    error: str | None = Field(None, description="the hook failed: keep the static profile")


def resolve_request(call: IncomingCall, static: AgentProfile) -> ResolveRequest:
    to = call.header("To")
    return ResolveRequest(
        call_id=call.call_id,
        webhook_id=call.webhook_id,
        to=to,
        from_=call.header("From"),
        number=dialled_number(to),
        sip_headers=call.sip_headers,
        agent=static.name,
    )


def apply_reply(
    directory: AgentDirectory, static: AgentProfile, reply: ResolveReply
) -> AgentProfile:
    """The profile a valid reply asks for; raises `OverrideRefused` with the reason. Pure."""
    if reply.error is not None:
        raise OverrideRefused(f"hook error: {clean(reply.error, 200)}")
    chosen = static
    if reply.agent is not None:
        named = directory.named(reply.agent)
        if named is None:
            raise OverrideRefused(f"no agent named {clean(reply.agent, 64)!r}")
        chosen = named
    return apply_override(chosen, reply.override)


class AgentResolver:
    """Picks the agent for a call: the agents file by dialled number, then the hook."""

    def __init__(
        self,
        directory: AgentDirectory,
        nc: Client | None = None,
        hook_timeout_s: float = 0.25,
        subject: str = RESOLVE_SUBJECT,
        absent_recheck_s: float = ABSENT_RECHECK_S,
    ) -> None:
        self.directory = directory
        self._nc = nc
        self._timeout = hook_timeout_s
        self._subject = subject
        self._absent_recheck_s = absent_recheck_s
        self._absent_until = 0.0  # monotonic: no hook was listening, not asked until then

    def use_hook(self, nc: Client) -> None:
        """Ask `agents.resolve` over this connection from now on (if the hook is on)."""
        self._nc = nc

    def swap(self, directory: AgentDirectory) -> None:
        """Use new profiles from the next call on (calls in flight keep theirs)."""
        self.directory = directory

    async def __call__(self, call: IncomingCall) -> AgentProfile:
        directory = self.directory
        static = directory.for_to_header(call.header("To"), call.api)
        if self._nc is None or self._timeout <= 0 or time.monotonic() < self._absent_until:
            return static
        payload = resolve_request(call, static).model_dump_json(by_alias=True).encode()
        try:
            message = await self._nc.request(self._subject, payload, timeout=self._timeout)
        except nats.errors.NoRespondersError:
            # Nobody runs a hook: the common case, answered at once; not asked for a moment.
            self._absent_until = time.monotonic() + self._absent_recheck_s
            return static
        except (TimeoutError, nats.errors.TimeoutError):
            log.warning("agent hook: no reply within %.0f ms", self._timeout * 1000)
            return static
        except nats.errors.Error as error:
            log.warning("agent hook failed: %s", type(error).__name__)
            return static
        try:
            # Untrusted: capped and depth-limited before the model sees it (the reply ends
            # up in the session job, which must fit a NATS message).
            value = parse_json(message.data, max_bytes=MAX_HOOK_REPLY_BYTES)
            reply = ResolveReply.model_validate(value)
            return apply_reply(directory, static, reply)
        except UntrustedJsonError as refused:
            log.warning("agent hook: reply refused (%s); using %s", refused.reason, static.name)
        except ValidationError:
            log.warning("agent hook: reply is not a ResolveReply; using %s", static.name)
        except OverrideRefused as refused:
            log.warning(
                "agent hook reply refused; using %s",
                static.name,
                extra=fields(reason=str(refused)),
            )
        return static
