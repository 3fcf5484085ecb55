"""One reminder call end to end, and the same Idempotency-Key sent five times."""

from __future__ import annotations

import asyncio

import nats

from shared.outbound import (
    OUTBOUND_CALLS_BUCKET,
    OUTBOUND_KEYS_BUCKET,
    CallRequest,
    KeyRecord,
    OutboundCall,
    key_id,
)
from shared.outbound_store import publish_try
from simulator import CallerScript
from tests.services.dialler.conftest import CALLEE, Outbound

CALLEE_SCRIPT = CallerScript.model_validate(
    {
        "name": "callee",
        "agent_speech_s": 0.01,
        "steps": [
            {"say": "Hello? Yes, that's me.", "reply": "Let me check your booking."},
            {"tool_call": {"name": "check_booking", "arguments": {"name": "Ana"}},
             "reply": "Friday at nine it is."},
            {"say": "Perfect, thanks. Bye!", "reply": "Goodbye!"},
            {"hangup": True},
        ],
    }
)  # fmt: skip


async def test_one_reminder_end_to_end(outbound: Outbound) -> None:
    stack = outbound.stack
    assert stack.simulator is not None
    stack.simulator.live.outbound.callees.caller = CALLEE_SCRIPT
    tool_requests: list[bytes] = []
    nc = await nats.connect(stack.nats_url)

    async def check_booking(msg: nats.aio.msg.Msg) -> None:
        tool_requests.append(msg.data)
        await msg.respond(b'{"output": {"booking": "Friday 09:00"}}')

    await nc.subscribe("tools.check_booking", cb=check_booking)
    context = {"customer": "Ana", "appointment": "Friday 09:00"}

    answer = await outbound.request("reminder-1", context=context)

    assert answer.status_code == 202, answer.text
    call_id = answer.json()["call_id"]
    assert answer.json()["status"] == "queued"
    await stack.events.wait_for(call_id, "call.report", timeout=30)
    types = stack.events.types(call_id)
    assert types[:4] == ["call.requested", "call.dialing", "call.ringing", "call.answered"]
    assert types[4] == "session.attached"
    assert types[-2:] == ["call.ended", "call.report"]
    assert "tool.completed" in types
    report = stack.events.of_type(call_id, "call.report")[0].data
    assert report["direction"] == "outbound"
    assert report["tries"] == 1
    assert report["api"] == "live"
    assert report["end_reason"] == "caller_hangup"
    # The dial as OpenAI got it: the SIP transport, and the context in the instructions.
    dials = stack.simulator.live.outbound.dials
    assert [d.destination for d in dials] == [CALLEE]
    assert "Friday 09:00" in dials[0].session["instructions"]
    assert dials[0].caller_number == "+61290000001"
    # The context reached the tool too.
    assert tool_requests and b'"customer":"Ana"' in tool_requests[0]
    await nc.close()


async def test_the_same_key_five_times_is_one_call(outbound: Outbound) -> None:
    stack = outbound.stack
    assert stack.simulator is not None
    answers = await asyncio.gather(*(outbound.request("same-key") for _ in range(5)))
    assert {a.status_code for a in answers} == {202}
    call_ids = {a.json()["call_id"] for a in answers}
    assert len(call_ids) == 1
    (call_id,) = call_ids
    await stack.events.wait_for(call_id, "call.answered", timeout=20)
    again = await outbound.request("same-key")
    assert again.json()["call_id"] == call_id
    await stack.events.wait_for(call_id, "call.report", timeout=30)
    assert stack.simulator.live.outbound.dialled(CALLEE) == 1
    assert stack.events.types(call_id).count("call.requested") == 1
    assert stack.events.types(call_id).count("call.dialing") == 1


async def test_a_request_cut_short_before_its_try_was_queued_is_finished_by_the_retry(
    outbound: Outbound,
) -> None:
    """The ingress died after binding the key and writing the record, before queueing try 1
    (the client saw no 202): the same request again, however late, queues it, once."""
    stack = outbound.stack
    assert stack.simulator is not None
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    request = CallRequest(to="+61400000042", agent="reminders")
    bound = KeyRecord(call_id="out_" + "ab" * 16, fingerprint=request.fingerprint())
    keys = await js.key_value(OUTBOUND_KEYS_BUCKET)
    await keys.create(key_id("cut-short"), bound.model_dump_json().encode())
    records = await js.key_value(OUTBOUND_CALLS_BUCKET)
    record = OutboundCall(call_id=bound.call_id, to=request.to, agent="reminders")
    await records.create(bound.call_id, record.encode())

    answers = [await outbound.request("cut-short", to="+61400000042") for _ in range(3)]

    assert {a.json()["call_id"] for a in answers} == {bound.call_id}
    await stack.events.wait_for(bound.call_id, "call.report", timeout=30)
    assert stack.simulator.live.outbound.dialled("+61400000042") == 1
    assert stack.events.types(bound.call_id).count("call.dialing") == 1
    await nc.close()


async def test_a_retry_whose_message_was_lost_with_its_dialler_is_still_dialled(
    outbound: Outbound,
) -> None:
    """Try 1 failed and the call was re-queued, then the dialler died before queueing try 2:
    try 1's message comes back and queues try 2 (once)."""
    stack = outbound.stack
    assert stack.simulator is not None
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    call_id = "out_" + "cd" * 16
    record = OutboundCall(call_id=call_id, to="+61400000043", agent="reminders", tries=1)
    await (await js.key_value(OUTBOUND_CALLS_BUCKET)).create(call_id, record.encode())

    await publish_try(js, call_id, 1)

    await stack.events.wait_for(call_id, "call.answered", timeout=30)
    (dialing,) = stack.events.of_type(call_id, "call.dialing")
    assert dialing.data["try"] == 2
    assert stack.simulator.live.outbound.dialled("+61400000043") == 1
    await nc.close()
