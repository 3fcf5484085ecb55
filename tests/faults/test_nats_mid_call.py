"""nats-server stops answering mid-call (a long GC pause, a stalled disk), long enough for
the call's lease to lapse, or restarts: the worker that owns the call keeps it, and no word
said meanwhile is lost.

Before, a lease renewal that timed out in the pause but landed after it made the next
renewal fail its compare-and-set: the worker took its own lease for another's, dropped the
sideband, and what was said until the call was re-attached was in no transcript.
"""

from __future__ import annotations

import asyncio
import json

import nats
from nats.js.api import DeliverPolicy

from shared.events import CALL_EVENTS_STREAM, journal_subject
from shared.streams import CALL_LEASES_BUCKET
from simulator import SimulatedCall
from switchboard.nats_server import NatsServer
from tests.faults.test_openai_faults import CALLER_LINES
from tests.faults.test_openai_faults import CONVERSATION as FAULTS_CONVERSATION
from tests.processes import stopped
from tests.stack import Stack

# The fault suite's conversation, its replies spoken slowly enough to span the pause.
CONVERSATION = FAULTS_CONVERSATION.model_copy(update={"agent_speech_s": 0.5})


async def test_a_second_of_silence_from_nats_keeps_the_call_and_every_word(
    nats_server: NatsServer, stack: Stack
) -> None:
    assert nats_server.process is not None
    call = await in_conversation(stack)

    # Half the lease's TTL: renewals time out meanwhile, and nothing lapses on the server.
    with stopped(nats_server.process.pid):
        await asyncio.sleep(stack.settings().session_lease_ttl_s / 2)  # the fault's length

    await stack.events.wait_for(call.call_id, "call.report", timeout=30)
    types = stack.events.types(call.call_id)
    assert types.count("session.attached") == 1, types
    said = [e.data["text"] for e in stack.events.of_type(call.call_id, "transcript.caller")]
    assert said == CALLER_LINES
    replies = [e.data["text"] for e in stack.events.of_type(call.call_id, "transcript.agent")]
    assert replies[-3:] == ["Yes, from ten.", "Until four.", "Goodbye!"]
    report = stack.events.of_type(call.call_id, "call.report")[0].data
    assert report["end_reason"] == "caller_hangup"
    assert report["attempts"] == 1


async def test_a_lease_that_lapsed_mid_call_is_taken_back_with_every_word(
    nats_server: NatsServer, stack: Stack
) -> None:
    """The lease's key lapses on the server (as after a silence longer than its TTL) while
    nobody else takes the call: its owner takes it back and keeps its sideband. Before, it
    dropped the call, and the words said until a redelivery re-attached it were lost (the
    whole rest of the call, when the caller hung up first)."""
    call = await in_conversation(stack)

    nc = await nats.connect(nats_server.url)
    try:
        await (await nc.jetstream().key_value(CALL_LEASES_BUCKET)).purge(call.call_id)
    finally:
        await nc.close()

    types, said = await journal_until_report(nats_server, call.call_id)
    assert types.count("session.attached") == 1, types
    assert said == CALLER_LINES
    assert types[-2:] == ["call.ended", "call.report"]


async def test_a_nats_restart_mid_call_keeps_the_call_and_every_word(
    nats_server: NatsServer, stack: Stack
) -> None:
    call = await in_conversation(stack)

    await asyncio.to_thread(nats_server.restart)  # the same store, down for a moment

    # The live feed of the test's own client misses what is published while it reconnects:
    # the call's journal, read from the stream, is the record.
    types, said = await journal_until_report(nats_server, call.call_id)
    assert types.count("session.attached") == 1, types
    assert said == CALLER_LINES
    assert types[-2:] == ["call.ended", "call.report"]


async def in_conversation(stack: Stack) -> SimulatedCall:
    """A call, once the caller has said the first line."""
    assert stack.simulator is not None
    call = await stack.simulator.place_call(CONVERSATION)
    await stack.events.wait_for(call.call_id, "transcript.caller", timeout=30)
    return call


async def journal_until_report(server: NatsServer, call_id: str) -> tuple[list[str], list[str]]:
    """The call's event types and caller lines, read from its journal until its report."""
    nc = await nats.connect(server.url)
    try:
        sub = await nc.jetstream().subscribe(
            journal_subject(call_id),
            stream=CALL_EVENTS_STREAM,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        types: list[str] = []
        said: list[str] = []
        while "call.report" not in types:
            event = json.loads((await sub.next_msg(timeout=30)).data)
            types.append(event["type"])
            if event["type"] == "transcript.caller":
                said.append(event["data"]["text"])
        return types, said
    finally:
        await nc.close()
