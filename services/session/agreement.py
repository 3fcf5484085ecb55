"""Whether the session OpenAI reports is the one the agent asked for. Pure.

A setting that did not take (transcription off, another voice) changes what the caller
gets without any error: the worker logs and counts each difference it sees.
"""

from __future__ import annotations

from services.session.sideband import SessionConfigured, SessionField
from shared.agents import AgentProfile


def asked(agent: AgentProfile) -> dict[SessionField, str | None]:
    """The agent's settings, in the terms of `SessionConfigured`."""
    transcription = (agent.transcription or {}).get("model")
    turn = agent.turn_detection
    return {
        "model": agent.model,
        "voice": agent.voice,
        "instructions": agent.instructions,
        "transcription": str(transcription) if transcription else None,
        "turn_detection": str(turn.get("type")) if turn else None,
    }


def differences(agent: AgentProfile, session: SessionConfigured) -> list[SessionField]:
    """The fields the API reports otherwise than the agent asked, in a stable order."""
    wanted = asked(agent)
    return [name for name, value in session.reported.items() if wanted.get(name, value) != value]
