"""Payloads that travel between the services over JetStream.

`IncomingCall`: ingress → acceptor, one per verified incoming-call webhook
(`realtime.call.incoming`, `live.transport.incoming` or the deprecated `live.call.incoming`).
`SessionJob`: acceptor → session workers, one per accepted call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from shared.agents import AgentProfile
from shared.events import CallEvent
from shared.live_agent import Api
from shared.outbound import Direction
from shared.text import strip_invisible

MAX_SIP_HEADERS = 64
MAX_SIP_HEADER_NAME = 128
MAX_SIP_HEADER_VALUE = 1024


def _printable(text: str) -> str:
    """SIP headers are caller-controlled: no control, format, private-use, tag or other
    invisible character (`shared.text`) may reach events, logs, the hook or prompts."""
    return strip_invisible(text)


class SipHeader(BaseModel):
    name: Annotated[str, Field(max_length=MAX_SIP_HEADER_NAME), AfterValidator(_printable)]
    value: Annotated[str, Field(max_length=MAX_SIP_HEADER_VALUE), AfterValidator(_printable)]


class IncomingCall(BaseModel):
    """A verified incoming call, as the ingress made it durable."""

    webhook_id: str
    call_id: str  # Realtime's `rtc_…` call id, or GPT-Live's `live_…` session id
    api: Api = "realtime"  # the API whose webhook this is (and whose id `call_id` is)
    received_at: datetime  # when the webhook reached the ingress (UTC)
    sip_headers: list[SipHeader] = Field(default_factory=list, max_length=MAX_SIP_HEADERS)
    # JetStream sequence of the `call.received` this ingress stored (seq 1), when it did:
    # the acceptor then numbers its events without reading the call's journal first.
    received_stream_seq: int | None = None

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for header in self.sip_headers:
            if header.name.lower() == wanted:
                return header.value
        return None


class SessionJob(BaseModel):
    """An accepted call waiting for a session worker to run its sideband."""

    call_id: str
    agent: AgentProfile
    received_at: datetime
    accepted_at: datetime
    # The call's last event when the job was made ((JetStream sequence, seq)), so the
    # worker's first publish needs no read of the journal. A hint only: a stale one is
    # caught by the journal's optimistic concurrency.
    events_tail: tuple[int, int] | None = None
    # The `call.accepted` the job was made with (the event at `events_tail`). A worker that
    # alone writes the call's events after it builds the report from them and this one,
    # instead of reading the journal back (services/session/journal.py). None: read back.
    accepted_event: CallEvent | None = None
    # Outbound calls (services/dialler): our `out_…` call id differs from OpenAI's `live_…`
    # session id; the request's context reaches the agent and its tools.
    direction: Direction = "inbound"
    session_id: str | None = None
    context: dict[str, Any] | None = None

    # The worker whose admission book holds the call (`shared/admission.py`): the worker
    # that ends the call releases it there. None in jobs made before books existed.
    booking: str | None = None

    @property
    def openai_id(self) -> str:
        """The id OpenAI knows the call by (sideband, hang-up, transfer)."""
        return self.session_id or self.call_id
