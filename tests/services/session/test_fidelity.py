"""What a phone agent must not ignore in OpenAI's event stream, end to end: the caller
cutting the goodbye short, a turn OpenAI could not transcribe, OpenAI's own idle prompts,
a response that failed, a session that is not what the agent asked for, the session cap.

The whole stack runs in-process against a real nats-server; the simulator plays OpenAI.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.session import conversation
from shared import metrics
from shared.settings import DEFAULT_GREETING
from simulator import CallerScript, Faults
from switchboard.nats_server import NatsServer
from tests.services.session.conftest import STAYS_ON, greetings, until
from tests.stack import Stack

AGENTS = """
agents:
  - name: goodbye
    numbers: ["+15550000003"]
    tools: [{builtin: end_call, timeout_s: 20}]
  - name: prompted
    numbers: ["+15550000004"]
    turn_detection: {type: server_vad, idle_timeout_ms: 300}
    limits: {idle_timeout_s: 1.5}
"""
GOODBYE_LINE = "+15550000003"
PROMPTED_LINE = "+15550000004"


async def _stack(nats_url: str, tmp_path: Path, faults: Faults | None = None) -> Stack:
    agents = tmp_path / "agents.yaml"
    agents.write_text(AGENTS)
    overrides = {"switchboard_agents_file": agents}
    return await Stack(nats_url, faults=faults or Faults(), settings_overrides=overrides).start()


@pytest.fixture
async def agents_stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Stack]:
    running = await _stack(nats_server.url, tmp_path)
    yield running
    await running.stop()


async def test_a_goodbye_the_caller_talks_over_still_ends_the_call_at_once(
    agents_stack: Stack,
) -> None:
    """No `output_audio_buffer.stopped` ever comes for a goodbye that was cut: the call
    ends at the cut, not when the model's answer to the caller has played (3 s) nor at
    end_call's timeout (20 s)."""
    stack = agents_stack
    assert stack.simulator is not None
    script = CallerScript.model_validate(
        {
            "agent_speech_s": 3.0,
            "steps": [
                {"tool_call": {"name": "end_call"}, "reply": "Goodbye, and thanks for calling!"},
                {"barge_in": {"say": "Oh wait, one more thing", "after_s": 0.2}},
            ],
        }
    )
    call = await stack.simulator.place_call(script, to=GOODBYE_LINE)

    await stack.events.wait_for(call.call_id, "call.report", timeout=30)

    ended = stack.events.of_type(call.call_id, "call.ended")
    assert [e.data["reason"] for e in ended] == ["agent_hangup"]
    assert call.end_reason == "hangup"
    assert call.timeline["ended"] - call.timeline["audio_cut"] < 2.0


async def test_a_turn_openai_could_not_transcribe_is_in_the_events_and_the_report(
    agents_stack: Stack,
) -> None:
    stack = agents_stack
    assert stack.simulator is not None
    before = metrics.TRANSCRIPTIONS_FAILED._value.get()
    script = CallerScript.model_validate(
        {"steps": [{"say": "mumble", "transcription_fails": True}, {"hangup": True}]}
    )
    call = await stack.simulator.place_call(script)

    await stack.events.wait_for(call.call_id, "call.report", timeout=20)

    [caller] = stack.events.of_type(call.call_id, "transcript.caller")
    assert caller.data["failed"] is True
    assert caller.data["error"]["code"] == "audio_unintelligible"
    report = stack.events.of_type(call.call_id, "call.report")[0].data
    lines = [line for line in report["transcript"] if line["speaker"] == "caller"]
    assert lines == [
        {"speaker": "caller", "text": "", "failed": True, "error": caller.data["error"]}
    ]
    assert report["turns"] == 1
    assert metrics.TRANSCRIPTIONS_FAILED._value.get() == before + 1


async def test_openai_idle_prompts_do_not_keep_a_silent_callers_call_alive(
    agents_stack: Stack,
) -> None:
    """OpenAI prompts the silent caller every 300 ms by itself; the worker's guard counts
    caller speech, so it still prompts once and hangs up after idle_timeout_s."""
    stack = agents_stack
    assert stack.simulator is not None
    call = await stack.simulator.place_call(CallerScript(), to=PROMPTED_LINE)

    await stack.events.wait_for(call.call_id, "call.report", timeout=30)

    ended = stack.events.of_type(call.call_id, "call.ended")
    assert [e.data["reason"] for e in ended] == ["idle"]
    assert call.agent_transcripts.count("Hello? Can you hear me?") >= 2  # OpenAI's own
    assert call.agent_transcripts.count("Are you still there?") == 1  # the worker's


@pytest.mark.parametrize("failures", [1, 2])
async def test_a_failed_greeting_is_retried_once_and_reported(
    nats_server: NatsServer, tmp_path: Path, failures: int
) -> None:
    stack = await _stack(nats_server.url, tmp_path, Faults(fail_responses=failures))
    try:
        assert stack.simulator is not None
        call = await stack.simulator.place_call(STAYS_ON)
        await stack.events.wait_for(call.call_id, "response.failed", count=failures, timeout=20)
        # The caller spoke meanwhile (the model answers it: "Sure.").
        await stack.events.wait_for(call.call_id, "transcript.agent", timeout=20)

        def said() -> list[str]:
            return [e.data["text"] for e in stack.events.of_type(call.call_id, "transcript.agent")]

        if failures == 1:  # the retry greets
            await until(lambda: DEFAULT_GREETING in said(), timeout=20)
        assert greetings(call) >= 2  # asked twice (a request met by a conflict goes again)
        failed = stack.events.of_type(call.call_id, "response.failed")
        assert len(failed) == failures
        assert failed[0].data["status"] == "failed"
        assert failed[0].data["purpose"] == "greeting"
        assert failed[0].data["error"]["type"] == "server_error"
        await call.hang_up()
        await stack.events.wait_for(call.call_id, "call.report", timeout=20)
        if failures == 2:  # the retry failed too: reported, not asked again
            assert DEFAULT_GREETING not in said()
            assert len(stack.events.of_type(call.call_id, "response.failed")) == 2
    finally:
        await stack.stop()


async def test_a_session_unlike_the_agent_is_logged_and_counted(
    nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    before = metrics.SESSION_MISMATCHES.labels("transcription")._value.get()
    stack = await _stack(nats_server.url, tmp_path, Faults(transcription_off=True))
    try:
        assert stack.simulator is not None
        call = await stack.simulator.place_call(STAYS_ON)
        await stack.events.wait_for(call.call_id, "transcript.agent", count=2, timeout=20)
        assert stack.events.of_type(call.call_id, "transcript.caller") == []
        await call.hang_up()
        await stack.events.wait_for(call.call_id, "call.report", timeout=20)
    finally:
        await stack.stop()
    assert "session transcription is not what the agent asked for" in caplog.text
    assert metrics.SESSION_MISMATCHES.labels("transcription")._value.get() == before + 1


async def test_the_session_cap_ends_the_call_as_max_duration(agents_stack: Stack) -> None:
    stack = agents_stack
    assert stack.simulator is not None
    stack.simulator.faults.session_cap_s = 1.0
    call = await stack.simulator.place_call(STAYS_ON)

    await stack.events.wait_for(call.call_id, "call.report", timeout=20)

    ended = stack.events.of_type(call.call_id, "call.ended")
    assert [e.data["reason"] for e in ended] == ["max_duration"]


async def test_a_sideband_openai_refuses_for_good_ends_the_call_as_error(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """403 on the sideband (a key without access, say) cannot be mended by retrying."""
    stack = await _stack(nats_server.url, tmp_path, Faults(sideband_status=403))
    try:
        assert stack.simulator is not None
        call = await stack.simulator.place_call(STAYS_ON)
        await stack.events.wait_for(call.call_id, "call.report", timeout=20)
        ended = stack.events.of_type(call.call_id, "call.ended")
        assert [e.data["reason"] for e in ended] == ["error"]
        assert call.attach_count == 0
        assert call.end_reason == "hangup"  # the caller is not left in silence
    finally:
        await stack.stop()


async def test_a_sideband_that_stays_unreachable_ends_the_call_as_lost(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """503 on every attach: retried with backoff until the give-up time (shortened here)."""
    monkeypatch.setattr(conversation, "REATTACH_GIVE_UP_S", 1.0)
    stack = await _stack(nats_server.url, tmp_path, Faults(sideband_status=503))
    try:
        assert stack.simulator is not None
        call = await stack.simulator.place_call(STAYS_ON)
        await stack.events.wait_for(call.call_id, "call.report", timeout=20)
        ended = stack.events.of_type(call.call_id, "call.ended")
        assert [e.data["reason"] for e in ended] == ["lost"]
        assert call.end_reason == "hangup"
    finally:
        await stack.stop()
