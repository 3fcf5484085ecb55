"""The one backoff rule of every retry loop: exponential from `first_s`, capped at `max_s`.

A retry loop's delays are a policy (how soon a webhook comes back, how hard a failing
sideband is hammered), so each loop names its `Backoff` as a constant beside the reason
for its numbers, and asks it for the wait before retry `attempt` (0: the first retry).
No jitter: the delays are short and few, the retries of different calls are not in step
(each started when its own call failed), and tests and figures stay deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """`first_s`, then `factor` times more per retry, never more than `max_s`."""

    first_s: float
    max_s: float
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s or self.factor < 1:
            raise ValueError(f"not a backoff: {self}")

    def delay(self, attempt: int) -> float:
        """The wait before retry `attempt` (0: the first retry; negative counts as 0)."""
        # The exponent is bounded so that a loop retrying for hours never overflows a float.
        return min(self.first_s * self.factor ** min(max(attempt, 0), 64), self.max_s)
