"""GPT-Live calls from webhook to hang-up, through every service, on a real nats-server,
with the simulated GPT-Live and the salon tool service over NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from faststream.nats import NatsBroker

from examples.salon_tools import salon_service
from simulator import CallerScript, Faults
from switchboard.nats_server import NatsServer
from tests.stack import Stack

LIVE_NUMBER = "+61468002103"
REALTIME_NUMBER = "+61468002102"
AGENTS = f"""agents:
  - name: reminders
    api: live
    numbers: ["{LIVE_NUMBER}"]
    voice: marin
    instructions: "You confirm appointments for Bella Salon."
    greeting: "Hi, this is Bella Salon."
    delegation: {{model: gpt-5-mini, instructions: "Check availability before offering."}}
    tools:
      - name: check_availability
        parameters: {{type: object, properties: {{day: {{type: string}}}}, required: [day]}}
      - builtin: end_call
  - name: salon
    numbers: ["{REALTIME_NUMBER}"]
    voice: marin
    instructions: "You book appointments."
    greeting: "Bella Salon, hello!"
"""
CONVERSATION = CallerScript.model_validate(
    {
        "name": "live-e2e",
        "agent_speech_s": 0.01,
        "steps": [
            {"say": "Hi, is Friday free?", "reply": "Let me check."},
            {"tool_call": {"name": "check_availability", "arguments": {"day": "friday"}},
             "reply": "Friday at nine is free."},
            {"dtmf": "5"},
            {"say": "Great, thanks. Bye!", "reply": "Goodbye!"},
            {"hangup": True},
        ],
    }
)  # fmt: skip


@pytest.fixture
async def live_stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Stack]:
    agents = tmp_path / "agents.yaml"
    agents.write_text(AGENTS)
    tools = salon_service(broker=NatsBroker(nats_server.url))
    await tools.start()
    running = await Stack(
        nats_server.url, settings_overrides={"switchboard_agents_file": agents}
    ).start()
    assert running.simulator is not None
    running.simulator.live.rules.audio_chunk_ms = 100
    yield running
    await running.stop()
    await tools.stop()


async def test_a_live_call_from_webhook_to_caller_hangup(live_stack: Stack) -> None:
    stack = live_stack
    assert stack.simulator is not None
    session = await stack.simulator.live.place_call(CONVERSATION, to=LIVE_NUMBER)
    sid = session.session_id

    await stack.events.wait_for(sid, "call.report", timeout=30)

    assert sid.startswith("live_")
    assert stack.events.types(sid) == [
        "call.received",
        "call.accepted",
        "session.attached",
        "transcript.agent",  # the greeting, asked with session.instructions.append
        "transcript.caller",
        "transcript.agent",
        "tool.called",
        "tool.completed",
        "transcript.agent",
        "dtmf",
        "transcript.caller",
        "transcript.agent",
        "call.ended",
        "call.report",
    ]
    events = sorted(stack.events.by_call[sid], key=lambda e: e.seq)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].data["api"] == "live"
    assert stack.events.of_type(sid, "call.accepted")[0].data == {
        "agent": "reminders",
        "api": "live",
    }
    [ended] = stack.events.of_type(sid, "call.ended")
    assert ended.data["reason"] == "caller_hangup"
    [report] = stack.events.of_type(sid, "call.report")
    assert report.data["api"] == "live" and report.data["end_reason"] == "caller_hangup"
    assert report.data["turns"] == 2 and report.data["attempts"] == 1
    assert [t["name"] for t in report.data["tools"]] == ["check_availability"]
    callers = [e.data["text"] for e in stack.events.of_type(sid, "transcript.caller")]
    assert callers == ["Hi, is Friday free?", "Great, thanks. Bye!"]
    assert session.accept_count == 1
    first = session.client_events[0]
    assert first == {
        "type": "session.instructions.append",
        "content": "Greet the caller: Hi, this is Bella Salon.",
        "delegation_id": None,
    }
    assert session.config["delegation"]["responses"]["model"] == "gpt-5-mini"


@pytest.mark.parametrize("number", [LIVE_NUMBER, REALTIME_NUMBER])
async def test_one_sip_call_through_both_apis_is_answered_once(
    live_stack: Stack, number: str
) -> None:
    stack = live_stack
    assert stack.simulator is not None
    script = CallerScript.model_validate(
        {"agent_speech_s": 0.01, "steps": [{"say": "Hello?", "reply": "Hi!"}, {"hangup": True}]}
    )
    session = await stack.simulator.live.place_call(script, to=number, also_realtime=True)
    assert session.partner is not None
    realtime = stack.simulator.calls[session.partner]
    answering, other = (
        (session.session_id, realtime.call_id)
        if number == LIVE_NUMBER
        else (realtime.call_id, session.session_id)
    )

    await stack.events.wait_for(answering, "call.report", timeout=30)
    await stack.events.wait_for(other, "call.superseded", timeout=30)

    assert session.accept_count + realtime.accept_count == 1
    assert stack.events.types(other) == ["call.received", "call.superseded"]
    assert [e.data["reason"] for e in stack.events.of_type(answering, "call.ended")] == [
        "caller_hangup"
    ]


async def test_the_operator_says_hangs_up_and_transfers_live_calls(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    agents = tmp_path / "agents.yaml"
    agents.write_text(AGENTS)
    token = "ctl-" + "s" * 32
    auth = {"Authorization": f"Bearer {token}"}
    stack = await Stack(
        nats_server.url,
        faults=Faults(refer_outcome="transfer"),
        settings_overrides={"switchboard_agents_file": agents, "switchboard_control_token": token},
    ).start()
    try:
        assert stack.simulator is not None and stack.ingress is not None
        stay_on = CallerScript.model_validate(
            {"agent_speech_s": 0.01, "steps": [{"say": "Hello?", "reply": "Hi there."}]}
        )
        first = await stack.simulator.live.place_call(stay_on, to=LIVE_NUMBER)
        second = await stack.simulator.live.place_call(stay_on, to=LIVE_NUMBER)
        for session in (first, second):
            await stack.events.wait_for(session.session_id, "transcript.caller", timeout=20)
        base = f"http://127.0.0.1:{stack.ingress.http.port}"
        async with httpx.AsyncClient(base_url=base, timeout=15) as http:
            said = await http.post(
                f"/calls/{first.session_id}/say", headers=auth,
                json={"instructions": "Say: Your booking is confirmed."},
            )  # fmt: skip
            assert said.status_code == 200
            await first.wait_until(
                lambda s: "Your booking is confirmed." in s.agent_transcripts, 15
            )
            hung_up = await http.post(f"/calls/{first.session_id}/hangup", headers=auth)
            assert hung_up.json()["status"] == "ended"
            moved = await http.post(
                f"/calls/{second.session_id}/transfer", headers=auth,
                json={"target": "tel:+61290000000"},
            )  # fmt: skip
            assert moved.status_code == 200
            for session in (first, second):
                await stack.events.wait_for(session.session_id, "call.report", timeout=20)
    finally:
        await stack.stop()
    said_events = [e for e in first.client_events if e["type"] == "session.instructions.append"]
    assert said_events[-1]["content"] == "Say: Your booking is confirmed."
    assert first.close_reason == "close_requested"
    ended = stack.events.of_type(first.session_id, "call.ended")
    assert [e.data["reason"] for e in ended] == ["operator_hangup"]
    assert second.refer_targets == ["tel:+61290000000"]
    moved_ended = stack.events.of_type(second.session_id, "call.ended")
    assert [e.data["reason"] for e in moved_ended] == ["transferred"]
