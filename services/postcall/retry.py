"""What to do after one delivery attempt: done, retry later, give up, or disable. Pure.

Delays follow `SWITCHBOARD_WEBHOOKS_RETRY_SCHEDULE` (seconds; the last one repeats) with
±20 % jitter, so endpoints that failed together do not all come back in the same second.
A receiver's `Retry-After` wins when it asks for longer. Retries go on until the event has
waited `SWITCHBOARD_WEBHOOKS_MAX_AGE_S` (24 h by default): a delay that would land later
is cut to a last try at that age, and a failure after it is a dead letter. 410 Gone means
"stop": the endpoint is disabled.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

JITTER = 0.2


class Step(StrEnum):
    DONE = "done"  # 2xx: acknowledged
    RETRY = "retry"  # try again after `delay_s`
    DEAD = "dead"  # given up: a dead letter
    DISABLE = "disable"  # 410: a dead letter, and the endpoint is disabled


@dataclass(frozen=True)
class Decision:
    step: Step
    delay_s: float = 0.0


def schedule_delay(schedule: list[float], attempt: int) -> float:
    """The base delay after the `attempt`-th failed try (1-based); the last one repeats."""
    return schedule[min(max(attempt, 1), len(schedule)) - 1]


def jittered(delay_s: float, rng: random.Random) -> float:
    return delay_s * (1 + rng.uniform(-JITTER, JITTER))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def decide(
    status: int | None,
    *,
    attempt: int,
    age_s: float,
    schedule: list[float],
    max_age_s: float,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> Decision:
    """After try number `attempt` of an event queued `age_s` ago answered `status` (None:
    no answer: refused, timed out, unsafe address)."""
    if status is not None and 200 <= status < 300:
        return Decision(Step.DONE)
    if status == 410:
        return Decision(Step.DISABLE)
    delay = jittered(schedule_delay(schedule, attempt), rng or random.Random())
    if retry_after_s is not None and retry_after_s > delay:
        delay = retry_after_s
    remaining = max_age_s - age_s
    if remaining <= 0:
        return Decision(Step.DEAD)
    # A delay past the give-up age becomes one last try at it.
    return Decision(Step.RETRY, min(delay, remaining))
