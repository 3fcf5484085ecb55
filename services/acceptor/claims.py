"""The claim of one call id in KV `call_claims`: created once (so one accept per call,
across replicas and redeliveries), and not written again.

`accepting`: the webhook is decided by `owner`, one acceptor process. A redelivery of the
very webhook resumes from it; any other delivery for the call is a duplicate. What the
resumed handling finds decided is on the call's journal (the event that follows
`call.received`: `call.accepted`, whose hand-off is then done again, or any other
decision); with nothing there, an accept may still have gone out, so the call's sideband
is asked before accepting (`CallAcceptor._accepted_before`).

The owner tells a resumption whose earlier handling is known to be over (its own process's,
which failed and is tried again there) from one that may still be under way elsewhere (a
replica whose in-progress beats were lost): an accept of that one can still be in flight,
which no sideband shows yet, so the call is left to it until its deadline has passed.

`accepted` (with `agent`: OpenAI accepted, the hand-off may be unfinished) and `done`
(decided) are no longer written: each cost every call a write (a round trip costs more CPU
than the work in it) that the journal and the sideband make redundant. Claims that say
them, written before, are still read as they were: finished by their redelivery, and a
duplicate.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ValidationError

from shared.agents import AgentProfile
from shared.calls import IncomingCall

ClaimState = Literal["accepting", "accepted", "done"]
# A margin for the clocks of two machines, past the time another process's accept can land.
ELSEWHERE_MARGIN_S = 1.0


class DecidedElsewhere(Exception):
    """The call's claim belongs to another acceptor process, which may still be deciding it:
    the webhook is given back for `retry_in_s`."""

    def __init__(self, retry_in_s: float) -> None:
        super().__init__(f"left to its claim's owner for {retry_in_s:.1f}s")
        self.retry_in_s = retry_in_s


def left_to_owner_until(call: IncomingCall, accepts_land_within_s: float) -> float:
    """Until when (epoch seconds) a claim that another process may still be deciding is
    left to it: no accept of that process starts past the call's deadline, and one that did
    shows at OpenAI within `accepts_land_within_s` of the webhook's arrival."""
    return call.received_at.timestamp() + accepts_land_within_s + ELSEWHERE_MARGIN_S


class Claim(BaseModel):
    webhook_id: str
    state: ClaimState
    agent: AgentProfile | None = None  # in an `accepted` claim
    owner: str | None = None  # the acceptor process deciding it (None: an older version's)

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, data: bytes | None) -> Claim | None:
        """The stored claim, or None when it is not one (never raises)."""
        try:
            return cls.model_validate_json(data or b"")
        except ValidationError:
            return None

    def resumable_by(self, webhook_id: str) -> bool:
        """Whether a delivery of `webhook_id` takes up this claim (else: a duplicate)."""
        return self.webhook_id == webhook_id and self.state != "done"
