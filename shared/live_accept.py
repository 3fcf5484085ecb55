"""The GPT-Live accept `session`, built from an agent profile. Pure.

Live wraps the session (`{"session": {"type": "live", …}}`), has no tools, turn detection,
transcription or audio format on the voice model: tools go to the delegation backend (a
Responses model) as function tools, and SIP negotiates the media format. Built here and
checked against the SDK's own type (`openai.types.live.session_accept_params.Session`),
so a profile that would be refused fails at load, not on a ringing call.
"""

from __future__ import annotations

from typing import Any

from openai.types.live.session_accept_params import Session

from shared.accept_body import tool_definitions
from shared.agents import AgentProfile
from shared.live_agent import voice_param
from shared.sdk_types import SdkTypeError, check_params


def live_session(agent: AgentProfile) -> dict[str, Any]:
    """`session` for `client.live.sessions.accept(session_id, session=…)`."""
    session: dict[str, Any] = {
        "type": "live",
        "model": agent.model,
        "audio": {"output": {"voice": voice_param(agent.voice)}},
    }
    if agent.instructions:
        session["instructions"] = agent.instructions
    if agent.delegation is not None:
        tools = tool_definitions(agent)
        session["delegation"] = {
            "type": "responses",
            "responses": agent.delegation.responses_config(tools),
        }
    if agent.store is not None:
        session["store"] = agent.store
    return session


def live_session_problem(agent: AgentProfile) -> str | None:
    """Why OpenAI's types refuse this agent's accept session, or None."""
    try:
        check_params(Session, live_session(agent))
    except SdkTypeError as error:
        return f"the accept session is refused at {error}"
    return None
