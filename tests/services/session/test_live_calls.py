"""GPT-Live calls on session workers (the call runner with `LiveSideband`): tools once,
`end_call`, transfers, and a tool call left by a killed worker, against the simulated
GPT-Live on a real nats-server with the salon tool service over NATS."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.session.tools import INTERRUPTED
from services.session.worker import SessionWorker
from simulator import CallerScript, Faults
from switchboard.nats_server import NatsServer
from tests.services.session.conftest import WorkerProcess, assert_seq_continuous, until
from tests.services.session.live_bench import (
    RECEPTION,
    LiveBench,
    greetings,
    live_agent,
    live_outputs,
)
from tests.services.session.test_tools_calls import salon  # noqa: F401  (fixture)


def script(*steps: dict[str, Any], **options: Any) -> CallerScript:
    return CallerScript.model_validate(
        {"steps": list(steps), "tool_timeout_s": 15, "agent_speech_s": 0.01, **options}
    )


@pytest.fixture
async def bench(nats_server: NatsServer) -> AsyncIterator[LiveBench]:
    running = await LiveBench(nats_server.url).start()
    yield running
    await running.stop()


def events_of(bench: LiveBench, call_id: str, type: str) -> list[dict[str, Any]]:
    return [e.data for e in bench.events.of_type(call_id, type)]


async def test_a_delegated_tool_runs_once_and_its_output_goes_back_as_live_expects(
    bench: LiveBench,
    salon,  # noqa: F811
) -> None:
    session = await bench.live_call(
        script(
            {"say": "Is Monday free?", "reply": "Let me check."},
            {
                "tool_call": {"name": "check_availability", "arguments": {"day": "Monday"}},
                "reply": "Monday we have ten.",
            },
            {"hangup": True},
        ),
        live_agent(),
    )
    await bench.events.wait_for(session.session_id, "call.report", timeout=20)

    sid = session.session_id
    called = events_of(bench, sid, "tool.called")
    completed = events_of(bench, sid, "tool.completed")
    assert [c["name"] for c in called] == ["check_availability"]
    assert len(completed) == 1 and "output" in completed[0]
    [output] = live_outputs(session)
    assert output["call_id"] == called[0]["tool_call_id"]
    assert "10:00" in output["output"] or "free" in output["output"]
    creates = [e for e in session.client_events if e["type"] == "response.create"]
    assert len(creates) == 1  # one continuation after the outputs
    assert greetings(session) == 1
    agent = [e["text"] for e in events_of(bench, sid, "transcript.agent")]
    assert agent == ["Hi, this is Bella Salon.", "Let me check.", "Monday we have ten."]
    assert [e["text"] for e in events_of(bench, sid, "transcript.caller")] == ["Is Monday free?"]
    assert [e["reason"] for e in events_of(bench, sid, "call.ended")] == ["caller_hangup"]
    assert_seq_continuous(bench.events.by_call[sid])


async def test_end_call_lets_the_goodbye_play_then_hangs_up(
    bench: LiveBench,
    salon,  # noqa: F811
) -> None:
    session = await bench.live_call(
        script({"tool_call": {"name": "end_call", "arguments": {}}, "reply": "Goodbye, see you!"}),
        live_agent(),
    )
    await bench.events.wait_for(session.session_id, "call.report", timeout=20)

    assert session.close_reason == "close_requested"  # our hang-up, not the caller's
    sid = session.session_id
    assert [e["reason"] for e in events_of(bench, sid, "call.ended")] == ["agent_hangup"]
    assert session.agent_transcripts[-1] == "Goodbye, see you!"
    assert events_of(bench, sid, "transcript.agent")[-1]["text"] == "Goodbye, see you!"


async def test_transfer_to_a_named_target(nats_server: NatsServer, salon) -> None:  # noqa: F811
    bench = await LiveBench(nats_server.url, Faults(refer_outcome="transfer")).start()
    try:
        session = await bench.live_call(
            script({"tool_call": {"name": "transfer_call", "arguments": {"target": "reception"}}}),
            live_agent(),
        )
        await bench.events.wait_for(session.session_id, "call.report", timeout=20)
    finally:
        await bench.stop()
    sid = session.session_id
    assert session.refer_targets == [RECEPTION]
    transferred = events_of(bench, sid, "call.transferred")
    assert transferred == [{"target": "reception", "uri": RECEPTION, "reason": "call_left"}]
    assert [e["reason"] for e in events_of(bench, sid, "call.ended")] == ["transferred"]


async def test_a_tool_call_left_by_a_killed_worker_is_answered_once_by_the_next_owner(
    nats_server: NatsServer,
    salon,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Nothing is replayed on re-attach: the new owner finds the unanswered `tool.called`
    in the call's events and answers it (interrupted); the tool is never run twice."""
    bench = await LiveBench(nats_server.url, workers=0).start()
    doomed = WorkerProcess(bench, "doomed", 5, tmp_path)  # type: ignore[arg-type]
    try:
        await doomed.wait_ready()
        session = await bench.live_call(
            script(
                {"tool_call": {"name": "slow_lookup", "arguments": {"q": "x"}}, "reply": "Sorry."},
                {"hangup": True},
            ),
            live_agent(tool_timeout_s=1.0),
        )
        sid = session.session_id
        await bench.events.wait_for(sid, "tool.called", timeout=15)
        tool_call_id = events_of(bench, sid, "tool.called")[0]["tool_call_id"]
        await until(lambda: len(salon["slow"]) == 1, timeout=10)  # the tool is working

        doomed.signal(signal.SIGKILL)
        survivor = SessionWorker(bench.settings(), 5, "survivor")
        bench.workers.append(survivor)
        await survivor.start()
        await bench.events.wait_for(sid, "call.report", timeout=30)
    finally:
        doomed.stop()
        await bench.stop()

    attached = events_of(bench, sid, "session.attached")
    assert [(a["worker"], a["attempt"]) for a in attached] == [("doomed", 1), ("survivor", 2)]
    assert len(salon["slow"]) == 1  # never run twice
    completed = events_of(bench, sid, "tool.completed")
    assert [(c["tool_call_id"], c["error"]) for c in completed] == [(tool_call_id, INTERRUPTED)]
    outputs = live_outputs(session)
    assert [o["call_id"] for o in outputs] == [tool_call_id]
    assert json.loads(outputs[0]["output"]) == {"error": INTERRUPTED}
    assert "Sorry." in session.agent_transcripts  # the response.create followed
    assert greetings(session) == 1
    assert [e["reason"] for e in events_of(bench, sid, "call.ended")] == ["caller_hangup"]
    assert_seq_continuous(bench.events.by_call[sid])


async def test_a_dropped_sideband_is_reattached_and_a_replay_counts_once(
    bench: LiveBench,
) -> None:
    """The socket drops mid-call (no close frame); the call lives, the owner re-attaches,
    does not greet again, and an attach that replays the latest events (if OpenAI does)
    publishes nothing twice."""
    bench.simulator.live.rules.replay_events = 20
    bench.simulator.live.rules.session_started = "every_attach"
    session = await bench.live_call(
        script({"say": "Hello?", "reply": "Hi there."}, {"dtmf": "7"}), live_agent()
    )
    sid = session.session_id
    await bench.events.wait_for(sid, "dtmf", timeout=20)
    await session.drop_sideband()
    await bench.events.wait_for(sid, "session.attached", count=2, timeout=20)
    await session.hang_up()
    await bench.events.wait_for(sid, "call.report", timeout=20)

    attached = events_of(bench, sid, "session.attached")
    assert [(a["attempt"], a["reconnects"]) for a in attached] == [(1, 0), (1, 1)]
    assert greetings(session) == 1
    assert [e["text"] for e in events_of(bench, sid, "transcript.caller")] == ["Hello?"]
    assert [e["digit"] for e in events_of(bench, sid, "dtmf")] == ["7"]
    assert [e["reason"] for e in events_of(bench, sid, "call.ended")] == ["caller_hangup"]
    assert_seq_continuous(bench.events.by_call[sid])


@pytest.mark.parametrize(
    ("limits", "said", "reason"),
    [
        ({"max_duration_s": 2}, "we have reached the time limit", "max_duration"),
        ({"idle_timeout_s": 1}, "Are you still there?", "idle"),
    ],
)
async def test_guards_end_a_live_call(
    bench: LiveBench, limits: dict[str, float], said: str, reason: str
) -> None:
    """The goodbye or the idle prompt is steered with `session.instructions.append`, and the
    call is hung up over `client.live.sessions`."""
    agent = live_agent().model_copy(
        update={"limits": live_agent().limits.model_copy(update=limits)}
    )
    session = await bench.live_call(script({"say": "Hello?", "reply": "Hi."}), agent)
    await bench.events.wait_for(session.session_id, "call.report", timeout=20)

    sid = session.session_id
    assert [e["reason"] for e in events_of(bench, sid, "call.ended")] == [reason]
    appended = [e["content"] for e in session.client_events
                if e["type"] == "session.instructions.append"]  # fmt: skip
    assert any(said in content for content in appended), appended
    assert session.close_reason == "close_requested"  # our hang-up


async def test_every_live_sideband_dropped_after_a_while(nats_server: NatsServer) -> None:
    """`drop_sideband_after_s`: each new socket dies without a close frame; the call goes
    on, every caller turn is published once, one greeting, one `call.ended`."""
    bench = await LiveBench(nats_server.url, Faults(drop_sideband_after_s=1.0)).start()
    lines = ["Is Monday free?", "And Tuesday?", "Thanks, bye."]
    try:
        steps: list[dict[str, Any]] = []
        for line in lines:
            steps += [{"say": line, "reply": "Let me see."}, {"pause": 0.4}]
        session = await bench.live_call(script(*steps, {"hangup": True}), live_agent())
        await bench.events.wait_for(session.session_id, "call.report", timeout=30)
    finally:
        await bench.stop()
    sid = session.session_id
    assert session.attach_count >= 2  # the fault really fired
    assert [e["text"] for e in events_of(bench, sid, "transcript.caller")] == lines
    assert greetings(session) == 1
    assert [e["reason"] for e in events_of(bench, sid, "call.ended")] == ["caller_hangup"]
    assert_seq_continuous(bench.events.by_call[sid])
