"""Bad requests are refused with the reason and queue nothing; a call cancelled while
queued is never dialled; busy, then answered on the retry; the trunk password nowhere."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from shared.outbound import OUTBOUND_STREAM
from switchboard.nats_server import NatsServer
from tests.services.dialler.conftest import (
    CALLEE,
    TRUNK_PASSWORD,
    Outbound,
    agents_yaml,
    outbound_stack,
)


async def _stream_messages(outbound: Outbound) -> int:
    import nats

    nc = await nats.connect(outbound.stack.nats_url)
    try:
        info = await nc.jetstream().stream_info(OUTBOUND_STREAM)
        return info.state.messages
    finally:
        await nc.close()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"to": "0400 000 001", "agent": "reminders"}, "E.164"),
        ({"to": "sip:bob@example.com", "agent": "reminders"}, "E.164"),
        ({"to": CALLEE, "agent": "nobody"}, "unknown agent"),
        ({"to": CALLEE, "agent": "inbound_only"}, "no outbound trunk"),
        ({"to": CALLEE, "agent": "reminders", "context": "not an object"}, "context:"),
        ({"to": CALLEE, "agent": "reminders", "extra": 1}, "extra: Extra inputs"),
    ],
)
async def test_a_bad_request_is_422_with_the_reason_and_nothing_queued(
    outbound: Outbound, body: dict, reason: str
) -> None:
    answer = await outbound.http.post("/calls", json=body, headers={"Idempotency-Key": "k1"})
    assert answer.status_code == 422
    assert reason in answer.json()["error"]
    assert await _stream_messages(outbound) == 0
    assert outbound.stack.events.by_call == {}


async def test_no_key_or_token_is_refused(outbound: Outbound) -> None:
    body = {"to": CALLEE, "agent": "reminders"}
    assert (await outbound.http.post("/calls", json=body)).status_code == 422
    wrong = await outbound.http.post(
        "/calls", json=body, headers={"Authorization": "Bearer nope", "Idempotency-Key": "k"}
    )
    assert wrong.status_code == 401
    other = await outbound.request("k2", to="+61400000002")
    assert other.status_code == 202
    reused = await outbound.request("k2", to="+61400000003")
    assert reused.status_code == 422
    assert "different request" in reused.json()["error"]


async def test_a_call_cancelled_while_queued_is_never_dialled(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRUNK_PASSWORD", TRUNK_PASSWORD)
    stack, outbound = await outbound_stack(nats_server, tmp_path, agents_yaml())
    try:
        answer = await outbound.request("to-cancel")  # no dialler runs yet: it waits
        call_id = answer.json()["call_id"]
        cancelled = await outbound.http.delete(f"/calls/{call_id}")
        assert cancelled.status_code == 202
        assert cancelled.json()["status"] == "cancelled"
        kept = await outbound.request("kept", to="+61400000009")
        await outbound.add_dialler()
        await stack.events.wait_for(kept.json()["call_id"], "call.report", timeout=30)
        await stack.events.wait_for(call_id, "call.failed")
        assert stack.events.types(call_id) == ["call.requested", "call.failed"]
        assert stack.events.of_type(call_id, "call.failed")[0].data["reason"] == "cancelled"
        assert stack.simulator is not None
        assert stack.simulator.live.outbound.dialled(CALLEE) == 0
        again = await outbound.http.delete(f"/calls/{kept.json()['call_id']}")
        assert again.status_code == 409  # answered: too late
        assert (await outbound.http.delete("/calls/out_nope")).status_code == 404
    finally:
        await outbound.stop()
        await stack.stop()


async def test_busy_then_answered_on_the_retry(
    nats_server: NatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    monkeypatch.setenv("TRUNK_PASSWORD", TRUNK_PASSWORD)
    yaml = agents_yaml(retry="retry: {busy: 2, no_answer: 1, delay_s: 0.2}")
    stack, outbound = await outbound_stack(nats_server, tmp_path, yaml)
    assert stack.simulator is not None
    stack.simulator.live.outbound.callees.script = {
        CALLEE: ["busy", "answer"],
        "+61400000005": ["no_answer"],
        "+61400000006": ["hangup"],
    }
    await outbound.add_dialler()
    try:
        call_id = (await outbound.request("retry-me")).json()["call_id"]
        no_answer = (await outbound.request("na", to="+61400000005")).json()["call_id"]
        declined = (await outbound.request("hu", to="+61400000006")).json()["call_id"]
        await stack.events.wait_for(call_id, "call.report", timeout=30)
        await stack.events.wait_all([no_answer, declined], "call.report", timeout=30)
        assert stack.events.types(call_id)[:7] == [
            "call.requested", "call.dialing", "call.failed", "call.dialing",
            "call.ringing", "call.answered", "session.attached",
        ]  # fmt: skip
        first = stack.events.of_type(call_id, "call.failed")[0].data
        assert first["reason"] == "busy" and first["final"] is False
        report = stack.events.of_type(call_id, "call.report")[0].data
        assert (report["direction"], report["tries"]) == ("outbound", 2)
        assert stack.simulator.live.outbound.dialled(CALLEE) == 2
        # No answer: tried twice (one retry), then final.
        failures = [e.data for e in stack.events.of_type(no_answer, "call.failed")]
        assert [f["reason"] for f in failures] == ["no_answer", "no_answer"]
        assert failures[-1]["final"] is True
        assert stack.events.of_type(no_answer, "call.report")[0].data["tries"] == 2
        # Declined while ringing: rejected, never retried.
        (declined_failure,) = stack.events.of_type(declined, "call.failed")
        assert declined_failure.data["reason"] == "rejected"
        # The trunk password is in no log, event, metric or error.
        everything = [e.model_dump_json() for c in stack.events.by_call.values() for e in c]
        assert TRUNK_PASSWORD not in "".join(everything)
        assert TRUNK_PASSWORD not in caplog.text
        assert TRUNK_PASSWORD.encode() not in generate_latest()
        record = await outbound.http.post(
            "/calls", json={"to": CALLEE, "agent": "reminders", "context": {"p": 1}},
            headers={"Idempotency-Key": "retry-me"},
        )  # fmt: skip
        assert TRUNK_PASSWORD not in record.text
    finally:
        await outbound.stop()
        await stack.stop()
    await asyncio.sleep(0)


async def test_a_call_cancelled_while_it_rings_is_hung_up(outbound: Outbound) -> None:
    stack = outbound.stack
    assert stack.simulator is not None
    side = stack.simulator.live.outbound
    side.callees.script = {"+61400000066": ["no_answer"]}
    side.callees.no_answer_s = 30.0  # it rings until we give up
    call_id = (await outbound.request("ringing", to="+61400000066")).json()["call_id"]
    await stack.events.wait_for(call_id, "call.ringing", timeout=20)

    cancelled = await outbound.http.delete(f"/calls/{call_id}")

    assert cancelled.status_code == 202
    await stack.events.wait_for(call_id, "call.report", timeout=20)
    (failed,) = stack.events.of_type(call_id, "call.failed")
    assert failed.data["reason"] == "cancelled"
    (dial,) = side.dials
    assert stack.simulator.live.sessions[dial.session_id].state == "missed"  # hung up
