"""The simulated OpenAI misbehaves, end to end: ingress, acceptor and a session worker on a
real nats-server, each call from its signed webhook to its report.

Whatever OpenAI does (fails accepts, answers slowly, drops the sideband mid-conversation,
repeats webhooks, or a tool service is slow or absent), each call is accepted once, ends
once and is reported once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import yaml
from nats.aio.msg import Msg

from simulator import CallerScript, Faults, SimulatedCall
from switchboard.nats_server import NatsServer
from tests.stack import Stack

CONVERSATION = CallerScript.model_validate(
    {
        "name": "faults",
        "greeting_wait_s": 1.0,
        "steps": [
            {"say": "Do you open on Sundays?", "reply": "Yes, from ten."},
            {"say": "And until when?", "reply": "Until four."},
            {"say": "Thanks, bye.", "reply": "Goodbye!"},
            {"hangup": True},
        ],
    }
)
CALLER_LINES = ["Do you open on Sundays?", "And until when?", "Thanks, bye."]


@asynccontextmanager
async def running(
    nats_server: NatsServer, faults: Faults, **overrides: Any
) -> AsyncIterator[Stack]:
    stack = await Stack(nats_server.url, faults=faults, settings_overrides=overrides).start()
    try:
        yield stack
    finally:
        await stack.stop()


async def place(
    stack: Stack, count: int, script: CallerScript = CONVERSATION
) -> list[SimulatedCall]:
    assert stack.simulator is not None
    return await stack.simulator.place_calls(script, count, rate_per_s=20)


async def assert_each_once(stack: Stack, calls: list[SimulatedCall], end: str) -> None:
    """Every call: accepted once, one attach chain, exactly one call.ended and call.report."""
    await stack.events.wait_all([c.call_id for c in calls], "call.report", timeout=30)
    for call in calls:
        types = stack.events.types(call.call_id)
        assert call.accept_count == 1, (call.call_id, call.accept_attempts, types)
        for type in ("call.accepted", "call.ended", "call.report"):
            assert types.count(type) == 1, (call.call_id, type, types)
        assert types[-2:] == ["call.ended", "call.report"], types
        ended = stack.events.of_type(call.call_id, "call.ended")[0]
        assert ended.data["reason"] == end, (call.call_id, ended.data)
        seqs = sorted(e.seq for e in stack.events.by_call[call.call_id])
        assert seqs == list(range(1, len(seqs) + 1)), (call.call_id, types)


def caller_lines(stack: Stack, call: SimulatedCall) -> list[str]:
    return [e.data["text"] for e in stack.events.of_type(call.call_id, "transcript.caller")]


# -- accepts ---------------------------------------------------------------------------------


async def test_accept_500s_are_retried_until_one_accept(nats_server: NatsServer) -> None:
    faults = Faults(accept_status=500, accept_fail_times=2)
    async with running(nats_server, faults) as stack:
        calls = await place(stack, 5)
        await assert_each_once(stack, calls, "caller_hangup")
        assert [c.accept_attempts for c in calls] == [3] * 5  # two 500s, then the 200


async def test_slow_accepts_are_waited_for_not_repeated(nats_server: NatsServer) -> None:
    faults = Faults(accept_delay_s=1.0)  # under the acceptor's 2 s request timeout
    async with running(nats_server, faults) as stack:
        calls = await place(stack, 5)
        await assert_each_once(stack, calls, "caller_hangup")
        assert [c.accept_attempts for c in calls] == [1] * 5


async def first_decision(stack: Stack, call_id: str, timeout: float = 20) -> str:
    """The acceptor's first decision event for a call (accepted, failed, missed, rejected)."""
    decisions = ("call.accepted", "call.failed", "call.missed", "call.rejected")
    log = stack.events
    await log.wait_until(lambda: any(t in decisions for t in log.types(call_id)), timeout)
    return next(t for t in log.types(call_id) if t in decisions)


async def test_accepts_slower_than_the_request_timeout_still_answer_once(
    nats_server: NatsServer,
) -> None:
    faults = Faults(accept_delay_s=2.5)  # over the acceptor's 2 s request timeout
    async with running(nats_server, faults) as stack:
        (call,) = await place(stack, 1)
        decision = await first_decision(stack, call.call_id)
        assert (decision, call.accept_count) == ("call.accepted", 1), (
            call.accept_attempts,
            stack.events.types(call.call_id),
        )
        await assert_each_once(stack, [call], "caller_hangup")


# -- sideband --------------------------------------------------------------------------------


async def test_a_sideband_dropped_mid_conversation_is_reattached(nats_server: NatsServer) -> None:
    async with running(nats_server, Faults()) as stack:
        (call,) = await place(stack, 1)
        await call.wait_until(lambda c: c.step_index >= 1 and c.sockets_open == 1, timeout=15)
        await call.drop_sideband()
        await assert_each_once(stack, [call], "caller_hangup")
        assert call.attach_count >= 2
        assert caller_lines(stack, call) == CALLER_LINES  # no turn lost, none repeated
        assert call.sockets_open == 0


async def test_every_sideband_dropped_after_a_while(nats_server: NatsServer) -> None:
    """`drop_sideband_after_s`: each new socket dies without a close frame after 1.5 s."""
    faults = Faults(drop_sideband_after_s=1.5)
    slow = CONVERSATION.model_copy(update={"agent_speech_s": 0.4})
    async with running(nats_server, faults) as stack:
        calls = await place(stack, 3, slow)
        await assert_each_once(stack, calls, "caller_hangup")
        for call in calls:
            assert caller_lines(stack, call) == CALLER_LINES
        assert max(c.attach_count for c in calls) >= 2  # the fault really fired


# -- webhooks --------------------------------------------------------------------------------


async def test_duplicate_webhook_storm_accepts_each_call_once(nats_server: NatsServer) -> None:
    faults = Faults(duplicate_webhooks=5, redeliver_new_id=3)  # 9 webhooks per call
    async with running(nats_server, faults) as stack:
        calls = await place(stack, 10)
        await assert_each_once(stack, calls, "caller_hangup")
        for call in calls:
            assert stack.events.types(call.call_id).count("session.attached") == 1
            await call.wait_until(lambda c: len(c.webhook_attempts) >= 9, timeout=10)
            assert all(status == 200 for _, status, _ in call.webhook_attempts)


# -- tools -----------------------------------------------------------------------------------

TOOL_CALL = CallerScript.model_validate(
    {
        "name": "tool",
        "greeting_wait_s": 1.0,
        "tool_timeout_s": 10,
        "steps": [
            {"say": "Is Friday free?"},
            {"tool_call": {"name": "lookup", "arguments": {"day": "friday"}}, "reply": "Noted."},
            {"say": "Bye.", "reply": "Goodbye!"},
            {"hangup": True},
        ],
    }
)


def agents_file(tmp_path: Path, timeout_s: float) -> Path:
    path = tmp_path / "agents.yaml"
    agent = {
        "name": "desk",
        "numbers": ["+18005551212"],
        "tools": [{"name": "lookup", "description": "Look a day up.", "timeout_s": timeout_s}],
    }
    path.write_text(yaml.safe_dump({"agents": [agent]}))
    return path


@asynccontextmanager
async def tool_service(
    url: str, answer: Callable[[dict[str, Any]], Any], delay: float
) -> AsyncIterator[list[dict[str, Any]]]:
    """A `tools.lookup` responder that answers after `delay` s; yields the requests seen."""
    seen: list[dict[str, Any]] = []
    nc = await nats.connect(url)

    async def respond(msg: Msg) -> None:
        request = json.loads(msg.data)
        seen.append(request)
        await asyncio.sleep(delay)  # the tool's own (simulated) slowness
        await msg.respond(json.dumps({"output": answer(request)}).encode())

    tasks: set[asyncio.Task[None]] = set()

    async def on_request(msg: Msg) -> None:  # answer concurrently, like a real service
        task = asyncio.create_task(respond(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    await nc.subscribe("tools.lookup", cb=on_request)
    try:
        yield seen
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await nc.close()


def tool_completed(stack: Stack, call: SimulatedCall) -> dict[str, Any]:
    (event,) = stack.events.of_type(call.call_id, "tool.completed")
    return event.data


async def test_a_slow_tool_within_its_timeout_answers_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    overrides = {"switchboard_agents_file": agents_file(tmp_path, timeout_s=5)}
    async with (
        tool_service(nats_server.url, lambda r: {"free": True}, delay=1.0) as seen,
        running(nats_server, Faults(), **overrides) as stack,
    ):
        (call,) = await place(stack, 1, TOOL_CALL)
        await assert_each_once(stack, [call], "caller_hangup")
        assert len(seen) == 1 and seen[0]["name"] == "lookup"
        assert seen[0]["arguments"] == {"day": "friday"}
        assert tool_completed(stack, call).get("output") == {"free": True}
        assert "Noted." in call.agent_transcripts  # the model got the output and went on


async def test_a_tool_slower_than_its_timeout_fails_the_tool_not_the_call(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    overrides = {"switchboard_agents_file": agents_file(tmp_path, timeout_s=1)}
    async with (
        tool_service(nats_server.url, lambda r: {"free": True}, delay=4.0) as seen,
        running(nats_server, Faults(), **overrides) as stack,
    ):
        (call,) = await place(stack, 1, TOOL_CALL)
        await assert_each_once(stack, [call], "caller_hangup")
        assert len(seen) == 1  # asked once, never again
        assert tool_completed(stack, call).get("error")
        assert "Noted." in call.agent_transcripts


async def test_a_dead_tool_service_fails_the_tool_not_the_call(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    overrides = {"switchboard_agents_file": agents_file(tmp_path, timeout_s=2)}
    async with running(nats_server, Faults(), **overrides) as stack:  # nobody on tools.lookup
        (call,) = await place(stack, 1, TOOL_CALL)
        await assert_each_once(stack, [call], "caller_hangup")
        assert tool_completed(stack, call).get("error")
        assert "Noted." in call.agent_transcripts
