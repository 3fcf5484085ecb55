"""One worker and the simulator: drops, hang-ups, guards, the session cap, `end_call`, an
events stream that refuses writes for a while.

The whole stack runs in-process against a real nats-server; the simulator plays OpenAI.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import nats
import pytest
from nats.js import JetStreamContext

from shared.events import CALL_EVENTS_STREAM
from shared.streams import CALL_LEASES_BUCKET
from simulator import CallerScript
from switchboard.nats_server import NatsServer
from tests.services.session.conftest import (
    QUIET_LINE,
    SHORT_LINE,
    STAYS_ON,
    assert_seq_continuous,
    attaches,
    greetings,
    until,
)
from tests.stack import Stack


async def test_a_dropped_socket_is_reattached_by_its_owner(stack: Stack) -> None:
    assert stack.simulator is not None
    call = await stack.simulator.place_call(STAYS_ON)
    await stack.events.wait_for(call.call_id, "transcript.caller", timeout=20)

    await call.drop_sideband()  # a network drop: no close frame, the call stays alive
    await stack.events.wait_for(call.call_id, "session.attached", count=2, timeout=20)

    first, second = attaches(stack, call.call_id)
    assert second.data["worker"] == first.data["worker"]
    assert second.data["attempt"] == first.data["attempt"] == 1
    assert second.data["reconnects"] >= 1
    assert call.live and call.attach_count == 2
    assert greetings(call) == 1

    await call.hang_up()
    await stack.events.wait_for(call.call_id, "call.report", timeout=20)
    ended = stack.events.of_type(call.call_id, "call.ended")
    assert [e.data["reason"] for e in ended] == ["caller_hangup"]
    assert_seq_continuous(stack.events.by_call[call.call_id])


async def test_a_caller_hangup_ends_the_call_once_and_frees_the_slot(stack: Stack) -> None:
    assert stack.simulator is not None
    worker = stack.session_workers[0]
    calls = [await stack.simulator.place_call(STAYS_ON) for _ in range(3)]
    await stack.events.wait_all([c.call_id for c in calls], "transcript.caller", timeout=20)
    assert worker.active_calls == 3

    for call in calls:
        await call.hang_up()
    await stack.events.wait_all([c.call_id for c in calls], "call.report", timeout=20)

    for call in calls:
        reasons = [e.data["reason"] for e in stack.events.of_type(call.call_id, "call.ended")]
        assert reasons == ["caller_hangup"]
        report = stack.events.of_type(call.call_id, "call.report")[0].data
        assert report["end_reason"] == "caller_hangup"
        assert report["attempts"] == 1
        assert report["turns"] == 1
        assert_seq_continuous(stack.events.by_call[call.call_id])
    await until(lambda: worker.active_calls == 0, timeout=10)  # freed once the job is acked


async def test_max_duration_says_goodbye_then_hangs_up(guarded_stack: Stack) -> None:
    stack = guarded_stack
    assert stack.simulator is not None
    call = await stack.simulator.place_call(STAYS_ON, to=SHORT_LINE)

    await stack.events.wait_for(call.call_id, "call.report", timeout=20)

    ended = stack.events.of_type(call.call_id, "call.ended")
    assert [e.data["reason"] for e in ended] == ["max_duration"]
    assert call.end_reason == "hangup"  # we hung up over REST
    goodbyes = [
        e
        for e in call.client_events
        if e["type"] == "response.create"
        and "goodbye" in str((e.get("response") or {}).get("instructions", "")).lower()
    ]
    assert len(goodbyes) == 1
    assert "goodbye" in call.agent_transcripts[-1].lower()  # it was said before the hang-up


async def test_a_silent_caller_is_prompted_once_then_hung_up(guarded_stack: Stack) -> None:
    stack = guarded_stack
    assert stack.simulator is not None
    silent = CallerScript.model_validate({"name": "silent", "steps": []})
    call = await stack.simulator.place_call(silent, to=QUIET_LINE)

    await stack.events.wait_for(call.call_id, "call.report", timeout=20)

    ended = stack.events.of_type(call.call_id, "call.ended")
    assert [e.data["reason"] for e in ended] == ["idle"]
    prompts = [t for t in call.agent_transcripts if "still there" in t]
    assert prompts == ["Are you still there?"]
    assert call.end_reason == "hangup"


async def test_openai_session_cap_ends_the_call_without_a_crash(stack: Stack) -> None:
    assert stack.simulator is not None
    stack.simulator.faults.session_cap_s = 1.0
    call = await stack.simulator.place_call(STAYS_ON)

    await stack.events.wait_for(call.call_id, "call.report", timeout=20)
    assert call.end_reason == "session_cap"
    assert len(stack.events.of_type(call.call_id, "call.ended")) == 1

    # The worker carries on with the next call.
    stack.simulator.faults.session_cap_s = 3600.0
    after = await stack.simulator.place_call(STAYS_ON)
    await stack.events.wait_for(after.call_id, "transcript.caller", timeout=20)
    await after.hang_up()
    await stack.events.wait_for(after.call_id, "call.report", timeout=20)


async def test_end_call_lets_the_goodbye_play_then_hangs_up(stack: Stack) -> None:
    assert stack.simulator is not None
    script = CallerScript.model_validate(
        {
            "name": "bye",
            "steps": [
                {"say": "That's all, thanks.", "reply": "Okay."},
                {"tool_call": {"name": "end_call"}, "reply": "Goodbye, have a nice day!"},
            ],
        }
    )
    call = await stack.simulator.place_call(script)

    await stack.events.wait_for(call.call_id, "call.report", timeout=20)

    assert stack.events.types(call.call_id)[-4:] == [
        "tool.completed",
        "transcript.agent",
        "call.ended",
        "call.report",
    ]
    ended = stack.events.of_type(call.call_id, "call.ended")
    assert [e.data["reason"] for e in ended] == ["agent_hangup"]
    assert call.agent_transcripts[-1] == "Goodbye, have a nice day!"
    report = stack.events.of_type(call.call_id, "call.report")[0].data
    assert [t["name"] for t in report["tools"]] == ["end_call"]
    assert_seq_continuous(stack.events.by_call[call.call_id])


async def test_an_event_the_journal_cannot_take_yet_is_published_late_not_lost(
    nats_server: NatsServer, stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """The events stream stops taking writes for longer than a few retries (its leader
    elected anew on a cluster): the caller's words wait in the worker, are published once
    the stream is back, and the call goes on with the same owner."""
    assert stack.simulator is not None
    call = await stack.simulator.place_call(STAYS_ON)
    await stack.events.wait_for(call.call_id, "transcript.caller", timeout=20)
    nc = await nats.connect(nats_server.url)
    try:
        async with journal_refuses_writes(nc.jetstream()):
            await call.emit(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": "item_during_outage",
                    "content_index": 0,
                    "transcript": "Can I bring my dog?",
                    "usage": {"type": "duration", "seconds": 1.0},
                }
            )
            await until(lambda: caplog.text.count("event publish failed") >= 6, timeout=20)
    finally:
        await nc.close()

    await stack.events.wait_for(call.call_id, "transcript.caller", count=2, timeout=20)
    said = stack.events.of_type(call.call_id, "transcript.caller")
    assert [e.data["item_id"] for e in said][-1] == "item_during_outage"
    assert len(attaches(stack, call.call_id)) == 1 and call.live
    await call.hang_up()
    await stack.events.wait_for(call.call_id, "call.report", timeout=20)
    assert_seq_continuous(stack.events.by_call[call.call_id])


@contextlib.asynccontextmanager
async def journal_refuses_writes(js: JetStreamContext) -> AsyncIterator[None]:
    """The CALL_EVENTS stream stops listening on the journal, then listens again; what it
    stored stays."""
    config = (await js.stream_info(CALL_EVENTS_STREAM)).config
    subjects = config.subjects
    await js.update_stream(replace(config, subjects=["calls.outage"], republish=None))
    try:
        yield
    finally:
        await js.update_stream(replace(config, subjects=subjects))


async def test_the_lease_names_the_attempt_before_the_call_is_attached(
    stack: Stack, nats_server: NatsServer
) -> None:
    """`GET /calls` reads the lease: it must say the attempt `session.attached` says."""
    assert stack.simulator is not None
    call = await stack.simulator.place_call(STAYS_ON)
    await stack.events.wait_for(call.call_id, "session.attached", timeout=20)
    nc = await nats.connect(nats_server.url)
    try:
        leases = await nc.jetstream().key_value(CALL_LEASES_BUCKET)
        lease = json.loads((await leases.get(call.call_id)).value or b"{}")
    finally:
        await nc.close()
    (attached,) = attaches(stack, call.call_id)
    assert lease["attempt"] == attached.data["attempt"] == 1
    await call.hang_up()
    await stack.events.wait_for(call.call_id, "call.report", timeout=20)
