"""Per-agent guards on a live call: maximum duration and caller silence. Pure.

The clock is passed in, so the decisions are tested without a call, a socket or a sleep.
The call's start is its accept time (carried in the session job), not the moment this
worker attached, so a call that moved between workers keeps its original deadline.

- `max_duration_s`: the agent says goodbye, then we hang up (`max_duration`). If the
  goodbye does not finish playing within `goodbye_s`, we hang up anyway.
- `idle_timeout_s`: no caller activity (speech, transcript, DTMF) for that long after the
  agent last spoke → one prompt ("are you still there?"); still nothing for another
  `idle_timeout_s` → hang up (`idle`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class GuardAction(StrEnum):
    SAY_GOODBYE = "say_goodbye"  # max duration reached: ask the agent to say goodbye
    PROMPT_IDLE = "prompt_idle"  # the caller is silent: ask once if they are there
    HANG_UP_IDLE = "hang_up_idle"  # still silent after the prompt
    HANG_UP_MAX_DURATION = "hang_up_max_duration"  # the goodbye did not finish in time


@dataclass
class CallGuards:
    started_at: float  # wall-clock seconds of the accept
    max_duration_s: float
    idle_timeout_s: float | None
    goodbye_s: float = 10.0
    last_activity: float = 0.0  # wall clock: caller activity or the agent finishing a turn
    idle_prompted: bool = False
    goodbye_sent_at: float | None = None

    def __post_init__(self) -> None:
        self.last_activity = max(self.last_activity, self.started_at)

    def caller_active(self, now: float) -> None:
        self.last_activity = now
        self.idle_prompted = False

    def agent_finished(self, now: float) -> None:
        """The agent's audio stopped: the caller's silence is counted from here."""
        self.last_activity = max(self.last_activity, now)

    def agent_started(self, now: float) -> None:
        """The agent is talking: the caller is not idle while it does."""
        self.last_activity = max(self.last_activity, now)

    def next_check(self) -> float:
        """The wall-clock time at which `due` may next return an action."""
        times = [self.started_at + self.max_duration_s]
        if self.goodbye_sent_at is not None:
            times = [self.goodbye_sent_at + self.goodbye_s]
        elif self.idle_timeout_s is not None:
            times.append(self.last_activity + self.idle_timeout_s)
        return min(times)

    def due(self, now: float) -> GuardAction | None:
        """What to do now, if anything; records that it was decided."""
        if self.goodbye_sent_at is not None:
            if now >= self.goodbye_sent_at + self.goodbye_s:
                return GuardAction.HANG_UP_MAX_DURATION
            return None
        if now >= self.started_at + self.max_duration_s:
            self.goodbye_sent_at = now
            return GuardAction.SAY_GOODBYE
        if self.idle_timeout_s is not None and now >= self.last_activity + self.idle_timeout_s:
            if self.idle_prompted:
                return GuardAction.HANG_UP_IDLE
            self.idle_prompted = True
            self.last_activity = now
            return GuardAction.PROMPT_IDLE
        return None
