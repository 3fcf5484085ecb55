"""Transcript turns from GPT-Live's delta streams. Pure: time comes in as an argument.

GPT-Live sends what the caller and the agent say as deltas, with no turn boundaries and no
"done" event. A turn ends when the other side speaks, when nothing was added for
`TURN_QUIET_S`, or when the caller of `flush` says so (a key press, a delegation, the
session's end). An agent turn that ends means its audio stopped playing: that is when an
agent's goodbye has played out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from services.session.sideband import (
    AgentAudioStopped,
    AgentTranscript,
    CallerSpeechStarted,
    CallerTranscript,
)

TURN_QUIET_S = 0.8
Speaker = Literal["caller", "agent"]


@dataclass
class _Turn:
    speaker: Speaker
    parts: list[str] = field(default_factory=list)
    last_at: float = 0.0
    first_start_ms: int | None = None


class Turns:
    """Transcript deltas of both sides, grouped into turns."""

    def __init__(self, quiet_s: float = TURN_QUIET_S) -> None:
        self._quiet_s = quiet_s
        self._open: _Turn | None = None

    def add(self, speaker: Speaker, delta: str, start_ms: int | None, now: float) -> list[Any]:
        """The delta's events: the other side's finished turn, and caller speech starting."""
        events: list[Any] = []
        if self._open is not None and self._open.speaker != speaker:
            events += self.flush()
        if self._open is None:
            self._open = _Turn(speaker, first_start_ms=start_ms)
            if speaker == "caller":
                events.append(CallerSpeechStarted())
        self._open.parts.append(delta)
        self._open.last_at = now
        return events

    def deadline(self) -> float | None:
        """When the open turn ends if nothing more is said (the caller's clock)."""
        return None if self._open is None else self._open.last_at + self._quiet_s

    def due(self, now: float) -> list[Any]:
        deadline = self.deadline()
        return self.flush() if deadline is not None and now >= deadline else []

    def flush(self) -> list[Any]:
        turn, self._open = self._open, None
        if turn is None:
            return []
        text = " ".join("".join(turn.parts).split())
        item_id = f"turn_{turn.first_start_ms}" if turn.first_start_ms is not None else None
        if turn.speaker == "caller":
            return [CallerTranscript(text, item_id)] if text else []
        return ([AgentTranscript(text, item_id)] if text else []) + [AgentAudioStopped()]
