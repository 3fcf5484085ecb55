"""Hot reload of the agents file: on change and on SIGHUP, never dropping a call, and a
bad file keeps the old profiles."""

from __future__ import annotations

import asyncio
import os
import signal

from tests.services.acceptor.conftest import AGENTS, Rig

NEW_INSTRUCTIONS = "You are the NEW booking assistant."


async def test_a_changed_file_is_used_from_the_next_call_without_dropping_any(
    rig: Rig,
) -> None:
    reloader = rig.acceptor.reloader
    assert reloader is not None
    await rig.workers(50)
    before = reloader.reloads + reloader.failures
    in_flight = [asyncio.ensure_future(rig.ring("+18005551212")) for _ in range(10)]
    rig.agents_file.write_text(
        AGENTS.replace("You are the booking assistant of Bella Salon.", NEW_INSTRUCTIONS)
    )
    await reloader.wait_reloaded(before + 1)
    calls = await asyncio.gather(*in_flight)
    assert [await rig.outcome(call) for call in calls] == ["call.accepted"] * 10

    salon = await rig.ring("+61468002102")
    assert await rig.outcome(salon) == "call.accepted"
    assert salon.accept_body is not None
    assert salon.accept_body["instructions"] == NEW_INSTRUCTIONS


async def test_a_bad_file_keeps_the_old_profiles_and_says_why(rig: Rig) -> None:
    reloader = rig.acceptor.reloader
    assert reloader is not None
    await rig.workers(5)
    before = reloader.reloads + reloader.failures
    rig.agents_file.write_text(
        AGENTS.replace('voice: marin', 'voice: marin\n    turn_detection: {type: server_vad, '
                       'prefix_padding_ms: 300}')
    )  # fmt: skip
    await reloader.wait_reloaded(before + 1)
    assert reloader.failures == 1
    assert reloader.last_error is not None
    assert ":5: agents[0].turn_detection: OpenAI refuses 'prefix_padding_ms'" in (
        reloader.last_error
    )
    salon = await rig.ring("+61468002102")
    assert await rig.outcome(salon) == "call.accepted"
    assert rig.decision(salon)["agent"] == "salon"


async def test_sighup_reloads_now(rig: Rig) -> None:
    reloader = rig.acceptor.reloader
    assert reloader is not None and reloader.signal_installed
    before = reloader.reloads
    os.kill(os.getpid(), signal.SIGHUP)
    await reloader.wait_reloaded(before + reloader.failures + 1)
    assert reloader.reloads == before + 1
