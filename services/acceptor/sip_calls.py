"""One SIP call, two webhooks: which API answers it.

A project subscribed to both voice APIs gets `realtime.call.incoming` (`rtc_…`) and
`live.transport.incoming` (`live_…`) for the same SIP call, with ids that share nothing;
the first successful accept on either API selects it. The only thing the two have in
common is the SIP INVITE, so they are matched by its `Call-ID` header.

The first webhook of a SIP call to be decided records the API its agent names, in KV
(`sip_calls`, created only if absent); the other webhook follows that record whatever its
own resolution says (a reload or a hook could answer differently a moment later). The
webhook of the chosen API is accepted as usual; the other one is recorded as
`call.superseded` on its own id, never accepted, rejected or counted as missed. Without a
`Call-ID` the agent's API decides alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.agents import AgentProfile
from shared.calls import IncomingCall

SIP_CALL_ID_HEADER = "Call-ID"
_CAS_ATTEMPTS = 50


@dataclass(frozen=True)
class Choice:
    """What this webhook's call is: answered here, or superseded by the other API's."""

    answers: bool
    api: str  # the API that answers the SIP call
    agent: str  # the agent it was chosen for
    other_call_id: str | None = None  # the answering webhook's id, when known

    def superseded_data(self, call: IncomingCall) -> dict[str, Any]:
        data: dict[str, Any] = {"api": call.api, "by_api": self.api, "agent": self.agent}
        if self.other_call_id is not None:
            data["by_call_id"] = self.other_call_id
        return data


def sip_call_key(call: IncomingCall) -> str | None:
    """A KV key for the call's SIP `Call-ID` (caller-controlled text: hashed), or None."""
    value = call.header(SIP_CALL_ID_HEADER)
    if not value:
        return None
    return "sip." + hashlib.sha256(value.encode()).hexdigest()[:40]


def choose(
    record: dict[str, Any] | None, call: IncomingCall, agent: AgentProfile
) -> tuple[dict[str, Any] | None, Choice]:
    """(the record to write or None, this webhook's choice). Pure."""
    if record is None:
        record = {"api": agent.api, "agent": agent.name, "calls": {call.api: call.call_id}}
        return record, Choice(agent.api == call.api, agent.api, agent.name)
    api, name = str(record.get("api")), str(record.get("agent"))
    calls = dict(record.get("calls") or {})
    answers = api == call.api and agent.api == call.api
    other = calls.get(api) if api != call.api else None
    if calls.get(call.api) == call.call_id:
        return None, Choice(answers, api, name, other)
    calls.setdefault(call.api, call.call_id)
    return {**record, "calls": calls}, Choice(answers, api, name, other)


class SipCalls:
    """The KV side of `choose`: one record per SIP call, changed only by compare-and-set."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def choose(self, call: IncomingCall, agent: AgentProfile) -> Choice:
        key = sip_call_key(call)
        if key is None:
            return Choice(agent.api == call.api, agent.api, agent.name)
        # Written first and read only when that fails: the first webhook of a SIP call (the
        # usual case) costs one round trip.
        record: dict[str, Any] | None = None
        revision: int | None = None
        for _ in range(_CAS_ATTEMPTS):
            new, choice = choose(record, call, agent)
            if new is None:
                return choice
            try:
                if revision is None:
                    await self._kv.create(key, json.dumps(new).encode())
                else:
                    await self._kv.update(key, json.dumps(new).encode(), last=revision)
                return choice
            except KeyWrongLastSequenceError:
                pass  # the other webhook (or this one's earlier delivery) wrote first
            try:
                entry = await self._kv.get(key)
                record, revision = json.loads(entry.value or b"{}"), entry.revision
            except KeyNotFoundError:  # and it lapsed since
                record, revision = None, None
        raise RuntimeError("sip call record kept changing")  # redelivered, decided then
