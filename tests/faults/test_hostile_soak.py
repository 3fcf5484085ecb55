"""A soak with a hostile tool service (issue 22): calls whose tools answer oversized,
deeply nested, invalid or late replies, among calls with well-behaved tools and calls with
none, all at once on two session workers. Every call ends once with one report, every tool
call is completed once, every run record is closed, and no worker loses NATS.

Session workers are real `switchboard session` processes; the ingress, acceptor, simulator
and hostile service run in this process, on a real nats-server. Whether a worker lost NATS
is read from its own `/metrics` (`switchboard_nats_disconnects_total`). The suite runs a
small size; the issue's 200 calls:
`HOSTILE_SOAK_CALLS=200 HOSTILE_SOAK_RATE=10 .venv/bin/pytest tests/faults/test_hostile_soak.py`.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from services.session.tools import ToolRun
from shared.kv_keys import live_keys
from shared.streams import TOOL_RUNS_BUCKET
from simulator import CallerScript, SimulatedCall
from switchboard.nats_server import NatsServer
from tests.faults.conftest import WorkerProcess, count, stream_events
from tests.hostile_tools import HOSTILE_REPLIES, HostileTools
from tests.stack import Stack

CALLS = int(os.environ.get("HOSTILE_SOAK_CALLS", "24"))
RATE_PER_S = float(os.environ.get("HOSTILE_SOAK_RATE", "6"))
WORKERS = 2
CAPACITY = 60
LINE = "+15550002222"
AGENTS = f"""
agents:
  - name: hostile-line
    numbers: ["{LINE}"]
    tools:
      - name: hostile
        parameters: {{type: object, properties: {{reply: {{type: string}}}}}}
        timeout_s: 1
"""

pytestmark = pytest.mark.slow


def caller(rng: random.Random) -> CallerScript:
    """Up to three tool calls of random kinds around a few words; some calls have none."""
    steps: list[dict[str, Any]] = [{"say": "Hi, can you look something up?", "reply": "Sure."}]
    for _ in range(rng.choice([0, 1, 2, 3])):
        kind = rng.choice(HOSTILE_REPLIES)
        steps.append(
            {"tool_call": {"name": "hostile", "arguments": {"reply": kind}}, "reply": "Okay."}
        )
    steps += [{"say": "Thanks, bye.", "reply": "Goodbye!"}, {"hangup": True}]
    return CallerScript.model_validate(
        {"name": "hostile-soak", "to": LINE, "steps": steps, "tool_timeout_s": 20}
    )


@pytest.fixture
async def stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Stack]:
    agents = tmp_path / "agents.yaml"
    agents.write_text(AGENTS)
    running = await Stack(
        nats_server.url, workers=0, settings_overrides={"switchboard_agents_file": agents}
    ).start()
    yield running
    await running.stop()


async def disconnects(worker: WorkerProcess) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{worker.port}/metrics")).text
    line = next(x for x in text.splitlines() if x.startswith("switchboard_nats_disconnects_total"))
    return float(line.split()[-1])


async def test_calls_survive_a_hostile_tool_service(stack: Stack, nats_server: NatsServer) -> None:
    assert stack.simulator is not None
    workers = [WorkerProcess(stack, CAPACITY, f"hostile-{i}") for i in range(WORKERS)]
    hostile = await HostileTools(nats_server.url, late_s=1.5).start()
    nc = await nats.connect(nats_server.url)
    rng = random.Random(os.environ.get("HOSTILE_SOAK_SEED", "22"))
    try:
        await asyncio.gather(*(w.start() for w in workers))
        calls: list[SimulatedCall] = []
        for _ in range(CALLS):
            calls.append(await stack.simulator.place_call(caller(rng), to=LINE))
            await asyncio.sleep(1 / RATE_PER_S)  # the arrival rate, not synchronisation
        await stack.simulator.wait_all_ended(timeout=60 + CALLS)
        await stack.events.wait_all([c.call_id for c in calls], "call.report", timeout=60)

        tools = Counter[str]()
        for call in calls:
            events = await stream_events(nc, call.call_id)
            types = [e.type for e in events]
            assert count(events, "call.ended") == 1, (call.call_id, types)
            assert count(events, "call.report") == 1, (call.call_id, types)
            called = [e.data["tool_call_id"] for e in events if e.type == "tool.called"]
            done = [e.data["tool_call_id"] for e in events if e.type == "tool.completed"]
            assert sorted(called) == sorted(done) and len(set(done)) == len(done), types
            tools.update(e.data.get("name") for e in events if e.type == "tool.completed")
        runs = await nc.jetstream().key_value(TOOL_RUNS_BUCKET)
        keys = await live_keys(nc.jetstream(), TOOL_RUNS_BUCKET)  # not kv.keys(): it can miss
        for key in keys:
            entry = await runs.get(key)
            assert entry.value is not None
            assert ToolRun.model_validate_json(entry.value).state == "done", key
        assert len(keys) == tools["hostile"]
        for worker in workers:  # nobody lost NATS, not even for a reconnect
            assert worker.alive() and await disconnects(worker) == 0
        print(f"hostile soak: {CALLS} calls, {tools['hostile']} tool runs, {dict(hostile.asked)}")
    finally:
        await asyncio.gather(*(w.stop() for w in workers))
        await nc.close()
        await hostile.stop()
