"""The dialler's decisions, without I/O: the window, the retry, what OpenAI's failure codes
mean, and the body of a dial. (The cap and the rate, which the session worker also
touches, are in shared/outbound_limits.py.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from openai.types.live.media_session_config_param import MediaSessionConfigParam

from shared.accept_body import tool_definitions
from shared.agents import AgentProfile
from shared.live_agent import voice_param
from shared.outbound import CallingWindow, FailReason, RetryPolicy
from shared.sdk_types import check_params

# -- the window ----------------------------------------------------------------------------


def window_opens(window: CallingWindow | None, now: datetime) -> datetime:
    """`now` if a call may be dialled now, else when the window next opens (UTC)."""
    if window is None:
        return now
    zone = ZoneInfo(window.timezone)
    local = now.astimezone(zone)
    today = local.time().replace(tzinfo=None)
    start, end = window.start, window.end
    inside = start <= today < end if start <= end else (today >= start or today < end)
    if inside:
        return now
    opening = datetime.combine(local.date(), start, tzinfo=zone)
    if opening <= local:
        opening = datetime.combine(local.date() + timedelta(days=1), start, tzinfo=zone)
    return opening.astimezone(UTC)


# -- outcomes ------------------------------------------------------------------------------

_CODE_REASONS: tuple[tuple[tuple[str, ...], FailReason], ...] = (
    (("busy",), "busy"),
    (("no_answer", "noanswer", "timeout", "unanswered", "not_answered"), "no_answer"),
    (("declin", "reject", "forbidden", "cancel", "hangup", "hung_up"), "rejected"),
)


def failure_reason(code: str) -> FailReason:
    """Our reason for OpenAI's `transport.failed` code (its values are unverified: matched
    by the words they carry; anything else is the trunk's fault)."""
    lowered = code.lower()
    for words, reason in _CODE_REASONS:
        if any(word in lowered for word in words):
            return reason
    return "trunk_error"


def retry_delay(reason: FailReason, tries: int, policy: RetryPolicy) -> float | None:
    """Seconds until the next try, or None: busy and no answer are tried `policy.busy` /
    `policy.no_answer` more times; nothing else is retried."""
    extra = {"busy": policy.busy, "no_answer": policy.no_answer}.get(reason)
    if extra is None or tries > extra:
        return None
    return policy.delay_s


# -- the dial ------------------------------------------------------------------------------


def context_note(context: dict[str, Any]) -> str:
    return "Context of this call (from the request that placed it): " + json.dumps(
        context, ensure_ascii=False, separators=(",", ":")
    )


def outbound_session(agent: AgentProfile, context: dict[str, Any]) -> dict[str, Any]:
    """`session` of the dial: the agent's Live session (no `type`, unlike accept), with the
    request's context after its instructions; checked against the SDK's type."""
    instructions = agent.instructions
    if context:
        instructions = f"{instructions}\n\n{context_note(context)}".strip()
    session: dict[str, Any] = {
        "model": agent.model,
        "audio": {"output": {"voice": voice_param(agent.voice)}},
    }
    if instructions:
        session["instructions"] = instructions
    if agent.delegation is not None:
        session["delegation"] = {
            "type": "responses",
            "responses": agent.delegation.responses_config(tool_definitions(agent)),
        }
    if agent.store is not None:
        session["store"] = agent.store
    check_params(MediaSessionConfigParam, session)
    return session


def sip_transport(agent: AgentProfile, to: str, password: str) -> dict[str, Any]:
    """`transport` of the dial (reference §3.1); the SDK types only WebRTC here."""
    assert agent.outbound is not None
    trunk = agent.outbound.trunk
    return {
        "type": "sip",
        "destination": to,
        "trunk": {
            "provider_url": trunk.provider_url,
            "caller_number": trunk.caller_number,
            "auth": {"type": "digest", "username": trunk.username, "password": password},
        },
    }
