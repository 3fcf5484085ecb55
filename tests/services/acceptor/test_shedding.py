"""Overload sheds, it does not miss: a deliberately slowed acceptor (every accept takes a
second at the simulated OpenAI, and it decides 16 at once: about 16 calls a second) gets a
burst far beyond that. The calls it cannot decide in time are refused at once as `overloaded`; every
call gets an answer before its deadline, and none is `call.missed`."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from services.acceptor.config import AcceptorSettings
from simulator import Faults
from tests.services.acceptor.conftest import Rig

pytestmark = pytest.mark.slow

CONCURRENT_ACCEPTS = 16
CALLS = 12 * CONCURRENT_ACCEPTS  # twelve rounds of 1 s accepts: unshed, the last would miss


@pytest.mark.parametrize("faults", [Faults(accept_delay_s=1.0)])
async def test_calls_beyond_the_acceptors_rate_are_refused_at_once_and_none_missed(
    rig: Rig,
) -> None:
    await rig.stop_acceptor(rig.acceptor)
    # Shed at 3 s, with 7 s to spare before the deadline: a CI machine that starves this
    # process for seconds delays decisions, and must neither turn a shed into a miss nor
    # shed the first calls (at 1.5 s, a starved run once shed all 192: ring, ingress and
    # acceptor share this process's loop).
    rig.settings_overrides["accept_deadline_s"] = 10.0
    rig.options = AcceptorSettings(
        _env_file=None,
        switchboard_agents_poll_s=0.05,
        switchboard_shed_after_s=3.0,
        switchboard_concurrent_accepts=CONCURRENT_ACCEPTS,  # type: ignore[call-arg]
    )
    await rig.add_acceptor()
    await rig.workers(CALLS)
    calls = await asyncio.gather(*(rig.ring() for _ in range(CALLS)))
    outcomes = [await rig.outcome(call, timeout=30) for call in calls]
    assert Counter(outcomes).keys() <= {"call.accepted", "call.rejected"}, Counter(outcomes)
    shed = [c for c, o in zip(calls, outcomes, strict=True) if o == "call.rejected"]
    assert shed, "nothing was shed: the acceptor was not behind"
    assert outcomes.count("call.accepted") >= 1  # all it could take in time (48 if unstarved)
    for call in shed:
        assert rig.decision(call) == {
            "reason": "overloaded",
            "status_code": 486,
            "agent": "support",
        }
        assert call.state == "rejected" and call.accept_attempts == 0  # refused, not tried
