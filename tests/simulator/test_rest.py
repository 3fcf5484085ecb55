"""Call-control REST: auth, strict GA accept validation, reject, refer, hangup, faults."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from simulator import CallStateError, Faults, Simulator

from .conftest import GA_BODY, Worker


def _with(path: str, value: Any) -> dict[str, Any]:
    """GA_BODY with `value` set at dotted `path`."""
    body = copy.deepcopy(GA_BODY)
    *parents, last = path.split(".")
    node = body
    for name in parents:
        node = node.setdefault(name, {})
    node[last] = value
    return body


async def test_missing_or_wrong_key_is_401(simulator: Simulator, worker: Worker) -> None:
    call = await simulator.place_call()
    for key in (None, "sk-wrong"):
        response = await worker.post(call.call_id, "accept", GA_BODY, key=key)
        assert response.status_code == 401
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "invalid_api_key"
    assert call.state == "ringing" and call.accept_count == 0


async def test_ga_body_is_accepted(simulator: Simulator, worker: Worker) -> None:
    call = await simulator.place_call()
    response = await worker.accept(call.call_id)
    assert response.status_code == 200 and response.content == b""
    await call.wait_for("accepted", timeout=1)
    assert call.accept_body == GA_BODY and call.accept_count == 1
    assert "accept_received" in call.timeline


async def test_minimal_body_is_accepted(simulator: Simulator, worker: Worker) -> None:
    call = await simulator.place_call()
    assert (await worker.accept(call.call_id, {"type": "realtime"})).status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-realtime-2.1"}, "type"),
        ({"type": "session"}, "type"),
        ({**GA_BODY, "voice": "marin"}, "voice"),
        ({**GA_BODY, "turn_detection": {"type": "server_vad"}}, "turn_detection"),
        ({**GA_BODY, "modalities": ["audio"]}, "modalities"),
        (_with("audio.input.format", {"type": "audio/pcmu"}), "audio.input.format"),
        (_with("audio.output.format", {"type": "audio/pcmu"}), "audio.output.format"),
        (
            _with("audio.input.turn_detection", {"type": "server_vad", "threshold": 0.6}),
            "audio.input.turn_detection.threshold",
        ),
        (
            _with("audio.input.turn_detection", {"type": "server_vad", "prefix_padding_ms": 300}),
            "audio.input.turn_detection.prefix_padding_ms",
        ),
        (
            _with("audio.input.turn_detection", {"type": "server_vad", "silence_duration_ms": 5}),
            "audio.input.turn_detection.silence_duration_ms",
        ),
        (_with("audio.output.volume", 3), "audio.output.volume"),
        (_with("audio.input.transcription.engine", "x"), "audio.input.transcription.engine"),
    ],
)
async def test_bad_accept_bodies_are_400(
    simulator: Simulator, worker: Worker, body: dict[str, Any], param: str
) -> None:
    call = await simulator.place_call()
    response = await worker.accept(call.call_id, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    if param.startswith("audio.") and param.endswith(".format"):
        assert "SDP" in error["message"]
    elif param != "type":
        assert error["message"] == f"Unknown parameter: '{param}'."
    assert call.state == "ringing" and call.accept_count == 0


async def test_unknown_field_inside_a_tool_is_400(simulator: Simulator, worker: Worker) -> None:
    call = await simulator.place_call()
    body = copy.deepcopy(GA_BODY)
    body["tools"][0]["strict"] = True
    response = await worker.accept(call.call_id, body)
    assert response.json()["error"]["param"] == "tools[0].strict"


async def test_safe_turn_detection_fields_pass(simulator: Simulator, worker: Worker) -> None:
    call = await simulator.place_call()
    turn = {"type": "server_vad", "create_response": True, "idle_timeout_ms": 6000}
    response = await worker.accept(call.call_id, _with("audio.input.turn_detection", turn))
    assert response.status_code == 200
    call = await simulator.place_call()
    response = await worker.accept(call.call_id, _with("audio.input.turn_detection", None))
    assert response.status_code == 200


async def test_unknown_call_is_404(worker: Worker) -> None:
    for action in ("accept", "reject", "refer", "hangup"):
        response = await worker.post("rtc_" + "0" * 32, action, {"type": "realtime"})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "call_not_found"


async def test_second_accept_is_counted_and_200(simulator: Simulator, worker: Worker) -> None:
    call = await simulator.place_call()
    assert (await worker.accept(call.call_id)).status_code == 200
    assert (await worker.accept(call.call_id)).status_code == 200
    assert call.accept_count == 2


async def test_missed_call_then_accept_is_404(
    webhook_receiver, worker: Worker, simulator: Simulator
) -> None:
    simulator.accept_window_s = 0.05
    call = await simulator.place_call()
    await call.wait_for("missed", timeout=2)
    assert (await worker.accept(call.call_id)).status_code == 404
    with pytest.raises(CallStateError):
        await call.wait_for("accepted", timeout=1)


async def test_caller_gone_before_accept(simulator: Simulator, worker: Worker) -> None:
    call = await simulator.place_call()
    await call.hang_up()
    assert call.state == "missed" and call.end_reason == "caller_hangup"
    assert (await worker.accept(call.call_id)).status_code == 404


async def test_reject_default_and_explicit(simulator: Simulator, worker: Worker) -> None:
    first = await simulator.place_call()
    assert (await worker.post(first.call_id, "reject")).status_code == 200
    assert first.state == "rejected" and first.reject_status == 603
    second = await simulator.place_call()
    response = await worker.post(second.call_id, "reject", {"status_code": 486})
    assert response.status_code == 200 and second.reject_status == 486
    assert (await worker.post(second.call_id, "reject")).status_code == 404
    assert (await worker.accept(second.call_id)).status_code == 404


async def test_hangup_ends_the_call(simulator: Simulator, worker: Worker) -> None:
    call = await simulator.place_call()
    await worker.accept(call.call_id)
    assert (await worker.post(call.call_id, "hangup")).status_code == 200
    await call.wait_for("ended", timeout=1)
    assert call.end_reason == "hangup"
    assert (await worker.post(call.call_id, "hangup")).status_code == 404


async def test_refer_transfer(simulator: Simulator, worker: Worker) -> None:
    call = await simulator.place_call()
    await worker.accept(call.call_id)
    response = await worker.post(call.call_id, "refer", {"target_uri": "tel:+14155550199"})
    assert response.status_code == 200
    await call.wait_for("ended", timeout=1)
    assert call.end_reason == "transferred"
    assert call.refer_targets == ["tel:+14155550199"]


async def test_refer_silent_and_error(simulator: Simulator, worker: Worker, faults: Faults) -> None:
    call = await simulator.place_call()
    await worker.accept(call.call_id)
    faults.refer_outcome = "silent"
    assert (await worker.post(call.call_id, "refer", {"target_uri": "sip:a@b"})).status_code == 200
    faults.refer_outcome = "error"
    assert (await worker.post(call.call_id, "refer", {"target_uri": "sip:a@b"})).status_code == 500
    assert call.state == "accepted" and call.refer_targets == ["sip:a@b", "sip:a@b"]


async def test_refer_validation(simulator: Simulator, worker: Worker) -> None:
    call = await simulator.place_call()
    await worker.accept(call.call_id)
    assert (await worker.post(call.call_id, "refer", {})).status_code == 400
    assert (await worker.post(call.call_id, "refer", {"target_uri": "+1415"})).status_code == 400
    bad = {"target_uri": "tel:+1", "mode": "warm"}
    assert (await worker.post(call.call_id, "refer", bad)).json()["error"]["param"] == "mode"


async def test_accept_fail_times_fault(
    simulator: Simulator, worker: Worker, faults: Faults
) -> None:
    faults.accept_fail_times = 2
    faults.accept_status = 503
    call = await simulator.place_call()
    statuses = [(await worker.accept(call.call_id)).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert call.accept_count == 1 and call.accept_attempts == 3


async def test_accept_status_fault_is_permanent(
    simulator: Simulator, worker: Worker, faults: Faults
) -> None:
    faults.accept_status = 500
    call = await simulator.place_call()
    assert (await worker.accept(call.call_id)).status_code == 500
    faults.accept_status = None  # switches flip at run time
    assert (await worker.accept(call.call_id)).status_code == 200


async def test_accept_delay_fault(simulator: Simulator, worker: Worker, faults: Faults) -> None:
    faults.accept_delay_s = 0.2
    call = await simulator.place_call()
    response = await worker.accept(call.call_id)
    assert response.status_code == 200
    assert response.elapsed.total_seconds() >= 0.2
