"""The cap holds across the batch and across dialler replicas, and a SIGKILLed dialler
leaves no request undialled or dialled twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nats
import pytest

from shared.admission import ADMISSIONS_BUCKET, live_calls
from simulator import CallerScript
from switchboard.nats_server import NatsServer, free_port
from tests.services.dialler.conftest import TRUNK_PASSWORD, Outbound, agents_yaml, outbound_stack


def numbers(count: int, start: int = 100) -> list[str]:
    return [f"+614000{start + i:05d}" for i in range(count)]


async def test_100_requests_with_a_cap_of_10_never_exceed_it(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRUNK_PASSWORD", TRUNK_PASSWORD)
    yaml = agents_yaml(max_concurrent=10, rate=100.0)
    stack, outbound = await outbound_stack(nats_server, tmp_path, yaml, workers=2, capacity=20)
    assert stack.simulator is not None
    await outbound.add_dialler()
    await outbound.add_dialler()  # two replicas share one cap
    try:
        destinations = numbers(100)
        answers = await asyncio.gather(
            *(outbound.request(f"batch-{n}", to=n) for n in destinations)
        )
        assert {a.status_code for a in answers} == {202}
        call_ids = [a.json()["call_id"] for a in answers]
        await stack.events.wait_all(call_ids, "call.report", timeout=180)
        side = stack.simulator.live.outbound
        assert side.most_active <= 10
        assert all(side.dialled(n) == 1 for n in destinations)
        for call_id in call_ids:
            assert stack.events.types(call_id)[:4] == [
                "call.requested", "call.dialing", "call.ringing", "call.answered",
            ]  # fmt: skip
    finally:
        await outbound.stop()
        await stack.stop()


class DiallerProcess:
    def __init__(self, outbound: Outbound) -> None:
        self.outbound = outbound
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        stack = self.outbound.stack
        assert stack.simulator is not None
        settings = stack.settings()
        env = {
            **os.environ,
            "NATS_URL": settings.nats_url,
            "OPENAI_API_KEY": settings.openai_api_key.get_secret_value(),
            "OPENAI_BASE_URL": stack.simulator.base_url,
            "SWITCHBOARD_AGENTS_FILE": str(self.outbound.agents),
            "TRUNK_PASSWORD": TRUNK_PASSWORD,
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "WARNING",
        }
        argv = [sys.executable, "-m", "switchboard", "dialler", "--metrics-port", str(self.port)]
        self.process = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    async def start(self) -> None:
        self.spawn()
        assert self.process is not None
        url = f"http://127.0.0.1:{self.port}/readyz"
        async with httpx.AsyncClient() as client, asyncio.timeout(30):
            while True:
                assert self.process.poll() is None, "the dialler exited at start"
                try:
                    if (await client.get(url, timeout=1)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)  # polling a child process' readiness

    async def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(self.process.wait)


async def booked_calls(nats_server: NatsServer) -> set[str]:
    """The calls every worker's admission book holds now."""
    nc = await nats.connect(nats_server.url)
    try:
        books = await nc.jetstream().key_value(ADMISSIONS_BUCKET)
        held: set[str] = set()
        for key in await books.keys():
            entry = await books.get(key)
            document = json.loads(entry.value or b"{}")
            held |= set(live_calls(document, time.time()))
        return held
    finally:
        await nc.close()


async def test_a_dialler_sigkilled_mid_batch_dials_each_request_exactly_once(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed while the cap is full (so between dials, holding fetched requests and the
    places of live calls): another replica dials every request left, each exactly once."""
    monkeypatch.setenv("TRUNK_PASSWORD", TRUNK_PASSWORD)
    yaml = agents_yaml(max_concurrent=5, rate=100.0)
    stack, outbound = await outbound_stack(nats_server, tmp_path, yaml, capacity=20)
    assert stack.simulator is not None
    side = stack.simulator.live.outbound
    side.callees.caller = CallerScript.model_validate(
        {"name": "chatty", "agent_speech_s": 0.01, "greeting_wait_s": 1.0,
         "steps": [{"say": "Hello?", "reply": "Hi!"}, {"say": "Sure.", "reply": "Thanks."},
                   {"say": "Bye.", "reply": "Bye!"}, {"hangup": True}]}
    )  # fmt: skip
    doomed = DiallerProcess(outbound)
    await doomed.start()
    try:
        destinations = numbers(20, start=300)
        answers = await asyncio.gather(*(outbound.request(f"k-{n}", to=n) for n in destinations))
        call_ids = [a.json()["call_id"] for a in answers]
        events = stack.events

        def running() -> int:
            return sum(bool(events.of_type(c, "session.attached")) for c in call_ids)

        await events.wait_until(lambda: running() >= 5, timeout=60)
        assert running() == 5  # the cap is full: the dialler waits, between dials
        await doomed.kill()
        await outbound.add_dialler()
        await stack.events.wait_all(call_ids, "call.report", timeout=90)
        assert [side.dialled(n) for n in destinations] == [1] * len(destinations)
        assert side.most_active <= 5
        for call_id in call_ids:
            assert "call.failed" not in stack.events.types(call_id)
    finally:
        await doomed.kill()
        await outbound.stop()
        await stack.stop()


async def test_a_dialler_killed_while_its_dial_is_unanswered_never_dials_it_again(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request reached OpenAI, the 201 never came back: whether it rang is unknown, so
    the try is reported `unconfirmed` and never repeated (at most one dial per key)."""
    monkeypatch.setenv("TRUNK_PASSWORD", TRUNK_PASSWORD)
    stack, outbound = await outbound_stack(nats_server, tmp_path, agents_yaml())
    assert stack.simulator is not None
    side = stack.simulator.live.outbound
    side.callees.answer_delay_s = 60.0
    doomed = DiallerProcess(outbound)
    await doomed.start()
    try:
        call_id = (await outbound.request("slow", to="+61400000777")).json()["call_id"]
        await stack.events.wait_for(call_id, "call.dialing", timeout=30)
        await side.wait_for_dials(1)
        await doomed.kill()
        side.callees.answer_delay_s = 0.0
        await outbound.add_dialler()
        await stack.events.wait_for(call_id, "call.report", timeout=60)
        (failed,) = stack.events.of_type(call_id, "call.failed")
        assert failed.data["reason"] == "unconfirmed"
        assert side.dialled("+61400000777") == 1
        # The try's admission booking, taken by the dialler that died, was given back by
        # the one that took over: the worker's place is free now, not in an hour.
        assert await booked_calls(nats_server) == set()
    finally:
        await doomed.kill()
        await outbound.stop()
        await stack.stop()
