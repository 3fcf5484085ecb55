"""The control API against live calls on two workers: listing from KV, and hang-up,
transfer and say reaching whichever worker owns each call."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from simulator import CallerScript, Faults
from switchboard.nats_server import NatsServer
from tests.stack import Stack

TOKEN = "ctl-" + "s" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STAY_ON = CallerScript.model_validate({"steps": [{"say": "Hello?", "reply": "Hi there."}]})


@pytest.fixture
async def two_workers(nats_server: NatsServer) -> AsyncIterator[Stack]:
    running = await Stack(
        nats_server.url,
        workers=2,
        capacity=1,  # one call each: every call is on a different worker
        faults=Faults(refer_outcome="transfer"),
        settings_overrides={"switchboard_control_token": TOKEN},
    ).start()
    yield running
    await running.stop()


async def test_operator_lists_hangs_up_transfers_and_instructs(two_workers: Stack) -> None:
    stack = two_workers
    assert stack.simulator is not None and stack.ingress is not None
    first = await stack.simulator.place_call(STAY_ON)
    await stack.events.wait_for(first.call_id, "session.attached", timeout=20)
    second = await stack.simulator.place_call(STAY_ON)
    await stack.events.wait_for(second.call_id, "session.attached", timeout=20)
    owner = {
        c.call_id: stack.events.of_type(c.call_id, "session.attached")[0].data["worker"]
        for c in (first, second)
    }
    assert owner[first.call_id] != owner[second.call_id]

    base = f"http://127.0.0.1:{stack.ingress.http.port}"
    async with httpx.AsyncClient(base_url=base, timeout=15) as http:
        listed = (await http.get("/calls", headers=AUTH)).json()["calls"]
        assert {(c["call_id"], c["worker"]) for c in listed} == set(owner.items())
        one = (await http.get(f"/calls/{first.call_id}", headers=AUTH)).json()
        assert one["worker"] == owner[first.call_id] and one["last_event"]["seq"] >= 3

        refused = await http.post(f"/calls/{first.call_id}/hangup")
        assert refused.status_code == 401
        assert first.state == "accepted"

        said = await http.post(
            f"/calls/{first.call_id}/say",
            headers=AUTH,
            json={"instructions": "Say: Your car is ready."},
        )
        assert said.status_code == 200 and said.json()["worker"] == owner[first.call_id]
        await first.wait_until(lambda c: "Your car is ready." in c.agent_transcripts, 15)

        hung_up = await http.post(f"/calls/{first.call_id}/hangup", headers=AUTH)
        assert hung_up.json() == {"ok": True, "status": "ended", "worker": owner[first.call_id]}
        await stack.events.wait_for(first.call_id, "call.ended", timeout=15)

        moved = await http.post(
            f"/calls/{second.call_id}/transfer", headers=AUTH, json={"target": "tel:+61290000000"}
        )
        assert moved.status_code == 200 and moved.json()["status"] == "transferring"
        await stack.events.wait_for(second.call_id, "call.ended", timeout=15)

    assert first.end_reason == "hangup"
    assert stack.events.of_type(first.call_id, "call.ended")[0].data["reason"] == "operator_hangup"
    assert second.refer_targets == ["tel:+61290000000"]
    assert second.end_reason == "transferred"
    assert stack.events.of_type(second.call_id, "call.ended")[0].data["reason"] == "transferred"
    assert stack.events.of_type(second.call_id, "call.transferred")[0].data["target"] == (
        "tel:+61290000000"
    )
