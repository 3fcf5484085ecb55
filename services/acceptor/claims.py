"""The claim of one call id in KV `call_claims`: created once (so one accept per call,
across replicas and redeliveries), then moved along as the decision progresses.

`accepting`: the webhook is being decided (an accept may have gone out: a redelivery that
finds it asks the call's sideband before accepting, `CallAcceptor._accepted_before`);
`done`: decided and, if accepted, handed to the workers. A redelivery of the very webhook
resumes from `accepting`; any other delivery for the call is a duplicate.

`accepted` (with `agent`: OpenAI accepted, the hand-off may be unfinished) is no longer
written: it cost every accepted call a write that the sideband's answer makes redundant.
Claims that say it, written before, are still finished by their redelivery.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ValidationError

from shared.agents import AgentProfile

ClaimState = Literal["accepting", "accepted", "done"]


class Claim(BaseModel):
    webhook_id: str
    state: ClaimState
    agent: AgentProfile | None = None  # in an `accepted` claim

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
