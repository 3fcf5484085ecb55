"""End to end with the shipped demo script and a minimal webhook-driven worker, plus the CLI."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosedError

from simulator import CallerScript, Simulator
from switchboard.cli import main

from .conftest import WebhookReceiver, Worker, send


async def _run_worker(worker: Worker, call_id: str) -> None:
    """Accept, greet, answer every tool call; stop when the caller hangs up (abrupt close)."""
    assert (await worker.accept(call_id)).status_code == 200
    ws = await worker.attach(call_id)
    with pytest.raises(ConnectionClosedError):
        await send(ws, {"type": "response.create", "response": {"instructions": "Greet: Hi!"}})
        pending: list[str] = []
        async for raw in ws:
            event = json.loads(raw)
            if event["type"] == "response.function_call_arguments.done":
                pending.append(event["call_id"])
            elif event["type"] == "response.done" and pending:
                item = {
                    "type": "function_call_output",
                    "call_id": pending.pop(),
                    "output": '{"slots": ["15:00"]}',
                }
                await send(ws, {"type": "conversation.item.create", "item": item})
                await send(ws, {"type": "response.create"})


async def test_demo_script_end_to_end(
    simulator: Simulator, webhook_receiver: WebhookReceiver, worker: Worker
) -> None:
    demo = CallerScript.builtin("demo").model_copy(update={"agent_speech_s": 0.01})
    call = await simulator.place_call(demo)
    await webhook_receiver.wait_count(1)
    call_id = webhook_receiver.bodies()[0]["data"]["call_id"]
    await asyncio.wait_for(_run_worker(worker, call_id), timeout=10)
    await call.wait_for("ended", timeout=1)
    assert call.end_reason == "caller_hangup" and call.accept_count == 1
    assert call.agent_transcripts[0] == "Hi!"
    assert "Friday at 3 pm is free. Shall I book it?" in call.agent_transcripts
    assert call.agent_transcripts[-1] == "Thanks for calling, goodbye!"


def test_cli_refuses_a_bad_script_in_one_line(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_WEBHOOK_SECRET", "whsec_" + "A" * 40)
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [{shout: hi}]\n")
    assert main(["simulator", "--script", str(bad)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "bad.yaml" in line and "shout" in line


def test_cli_needs_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_WEBHOOK_SECRET", raising=False)
    assert main(["simulator"]) == 2
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err
