"""Free-slot reports in the `worker_slots` bucket, and who can take a handed-off call. Pure.

Every worker writes `{"free", "capacity", "active", "draining", "at", "unbooked"}` under its
id with a
short TTL (the acceptor's admission control reads the same values). A draining worker
hands a call off only while other workers report free slots, so a hand-off lands at once;
a report older than `max_age_s` is ignored (its worker may be gone).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SlotReport:
    worker: str
    free: int
    capacity: int
    active: int
    draining: bool
    at: float  # wall clock of the report
    unbooked: int = 0  # active calls no admission book holds

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "free": self.free,
                "capacity": self.capacity,
                "active": self.active,
                "draining": self.draining,
                "at": round(self.at, 3),
                "unbooked": self.unbooked,
            }
        ).encode()

    @classmethod
    def parse(cls, worker: str, raw: bytes | None) -> SlotReport | None:
        """None for anything unreadable: a bad report must not stop a drain."""
        try:
            data: dict[str, Any] = json.loads(raw or b"")
            return cls(
                worker=worker,
                free=int(data.get("free", 0)),
                capacity=int(data.get("capacity", 0)),
                active=int(data.get("active", 0)),
                draining=bool(data.get("draining", False)),
                at=float(data.get("at", 0.0)),
                unbooked=int(data.get("unbooked", 0)),
            )
        except (ValueError, TypeError, AttributeError):
            return None


def free_elsewhere(reports: list[SlotReport], me: str, now: float, max_age_s: float) -> int:
    """Free slots on other live, non-draining workers with a recent report."""
    return sum(
        max(0, r.free)
        for r in reports
        if r.worker != me and not r.draining and now - r.at <= max_age_s
    )


def handoff_budget(free_elsewhere: int, in_flight: int, waiting: int) -> int:
    """How many more calls to hand off now: never more than others can take right away,
    counting the hand-offs not yet taken (they will use some of those free slots)."""
    return max(0, min(waiting, free_elsewhere - in_flight))
