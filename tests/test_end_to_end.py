"""A call from webhook to hang-up, through every service, on a real nats-server."""

from __future__ import annotations

from simulator import CallerScript
from tests.stack import Stack

CONVERSATION = CallerScript.model_validate(
    {
        "name": "e2e",
        "steps": [
            {"say": "Hi, do you have a table for two tonight?", "reply": "Yes, at eight."},
            {"dtmf": "5"},
            {"say": "Great, thanks. Bye!", "reply": "Goodbye!"},
            {"hangup": True},
        ],
    }
)


async def test_a_call_from_webhook_to_caller_hangup(stack: Stack) -> None:
    assert stack.simulator is not None
    call = await stack.simulator.place_call(CONVERSATION, to="+18005551212")

    await stack.events.wait_for(call.call_id, "call.report", timeout=20)

    assert stack.events.types(call.call_id) == [
        "call.received",
        "call.accepted",
        "session.attached",
        "transcript.agent",  # the greeting: the model does not speak first
        "transcript.caller",
        "transcript.agent",
        "dtmf",
        "transcript.caller",
        "transcript.agent",
        "call.ended",
        "call.report",
    ]
    events = sorted(stack.events.by_call[call.call_id], key=lambda e: e.seq)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert stack.events.of_type(call.call_id, "call.ended")[0].data["reason"] == "caller_hangup"
    assert stack.events.of_type(call.call_id, "dtmf")[0].data["digit"] == "5"
    callers = [e.data["text"] for e in stack.events.of_type(call.call_id, "transcript.caller")]
    assert callers == ["Hi, do you have a table for two tonight?", "Great, thanks. Bye!"]
    report = stack.events.of_type(call.call_id, "call.report")[0].data
    assert report["end_reason"] == "caller_hangup"
    assert report["turns"] == 2
    assert len(report["transcript"]) == 5
    assert report["attempts"] == 1
    assert call.accept_count == 1
    first = call.client_events[0]
    assert first["type"] == "response.create"
    assert "Greet the caller" in first["response"]["instructions"]
