"""ToolRunner and the tool-service helper on a real nats-server: round trip, error, timeout,
exactly once per tool_call_id, and a run left behind by a dead worker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.js.kv import KeyValue

from examples.salon_tools import salon_service
from services.session.tools import (
    INTERRUPTED,
    ToolCallRequest,
    ToolRun,
    ToolRunner,
    run_key,
)
from shared.events import EventType
from shared.streams import TOOL_RUNS_BUCKET, declare_topology
from switchboard.nats_server import NatsServer
from switchboard.toolkit import ToolError, ToolRequest, ToolService


class Recorder:
    """Stands in for the call's lease-fenced publisher: keeps the events in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], str | None]] = []

    async def __call__(
        self, type: EventType, data: dict[str, Any], *, msg_id: str | None = None
    ) -> None:
        self.events.append((str(type), data, msg_id))

    def types(self) -> list[str]:
        return [t for t, _, _ in self.events]


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    await declare_topology(client.jetstream())
    yield client
    await client.close()


@pytest.fixture
async def runner(nc: Client) -> ToolRunner:
    return ToolRunner(nc, await nc.jetstream().key_value(TOOL_RUNS_BUCKET), "worker-a")


@pytest.fixture
async def counting_service(nats_server: NatsServer) -> AsyncIterator[dict[str, Any]]:
    """A tool service with a slow tool, a failing one and a counter of requests."""
    seen: dict[str, Any] = {"requests": [], "release": asyncio.Event(), "asked": asyncio.Event()}
    service = ToolService(NatsBroker(nats_server.url))

    @service.tool("lookup")
    async def lookup(request: ToolRequest) -> dict[str, Any]:
        seen["requests"].append(request)
        seen["asked"].set()
        if request.arguments.get("slow"):
            await seen["release"].wait()
        return {"found": request.arguments.get("q")}

    @service.tool("refuse")
    def refuse(request: ToolRequest) -> None:
        raise ToolError("no such booking")

    @service.tool("crash")
    def crash(request: ToolRequest) -> None:
        raise RuntimeError("secret internal detail")

    await service.start()
    yield seen
    seen["release"].set()
    await service.stop()


def call(name: str, arguments: dict[str, Any], tool_call_id: str = "call_1", timeout_s=5.0):
    return ToolCallRequest(
        call_id="rtc_test",
        tool_call_id=tool_call_id,
        name=name,
        arguments=json.dumps(arguments),
        agent="salon",
        timeout_s=timeout_s,
    )


async def test_round_trip_through_the_salon_example(nats_server: NatsServer, runner) -> None:
    service = salon_service(broker=NatsBroker(nats_server.url))
    await service.start()
    try:
        events = Recorder()
        free = await runner.run(call("check_availability", {"day": "Monday"}), events)
        booked = await runner.run(
            call("book_appointment", {"day": "monday", "time": "10:00", "name": "Ana"}, "c2"),
            events,
        )
        again = await runner.run(
            call("book_appointment", {"day": "monday", "time": "10:00", "name": "Bo"}, "c3"),
            events,
        )
        closed = await runner.run(call("check_availability", {"day": "sunday"}, "c4"), events)
    finally:
        await service.stop()
    assert free.output == {"day": "monday", "free": ["09:00", "10:00", "11:00", "13:00",
                                                     "14:00", "15:00", "16:00"]}  # fmt: skip
    assert booked.output["confirmed"] is True
    assert again.error is not None and "taken" in again.error
    assert closed.error == "we are open Monday to Saturday"
    assert events.types() == ["tool.called", "tool.completed"] * 4
    called, completed = events.events[0][1], events.events[1][1]
    assert called == {
        "name": "check_availability",
        "tool_call_id": "call_1",
        "arguments": {"day": "Monday"},
    }
    assert completed["output"]["day"] == "monday"
    assert isinstance(completed["duration_ms"], int)


async def test_tool_error_and_crash_are_told_to_the_model(runner, counting_service) -> None:
    refused = await runner.run(call("refuse", {}, "c1"), Recorder())
    crashed = await runner.run(call("crash", {}, "c2"), Recorder())
    assert refused.error == "no such booking"
    assert crashed.error == "crash failed"  # no internal detail leaks to the model
    assert json.loads(crashed.model_text()) == {"error": "crash failed"}


async def test_timeout_and_missing_service(runner, counting_service) -> None:
    events = Recorder()
    slow = await runner.run(call("lookup", {"slow": True}, "c1", timeout_s=0.3), events)
    missing = await runner.run(call("nobody_serves_this", {}, "c2"), events)
    assert slow.error == "lookup did not answer in time"
    assert missing.error is not None and "not available" in missing.error
    assert events.events[1][1]["error"] == "lookup did not answer in time"


async def test_bad_arguments_never_reach_the_service(runner, counting_service) -> None:
    request = ToolCallRequest("rtc_test", "c1", "lookup", "not json", "salon", 5.0)
    result = await runner.run(request, Recorder())
    assert result.error == "the arguments are not a JSON object"
    assert counting_service["requests"] == []


class WatchedRuns:
    """The tool_runs bucket as one runner sees it: tells when that runner read a run that
    was still running (it is then waiting for another runner's result)."""

    def __init__(self, runs: KeyValue) -> None:
        self._runs = runs
        self.saw_running = asyncio.Event()

    async def create(self, key: str, value: bytes) -> int:
        return await self._runs.create(key, value)

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        return await self._runs.update(key, value, last=last)

    async def get(self, key: str) -> KeyValue.Entry:
        entry = await self._runs.get(key)
        if entry.value and ToolRun.model_validate_json(entry.value).state == "running":
            self.saw_running.set()
        return entry


async def test_one_run_per_tool_call_id_even_when_asked_at_once(
    nc, runner, counting_service
) -> None:
    runs = WatchedRuns(await nc.jetstream().key_value(TOOL_RUNS_BUCKET))
    other_worker = ToolRunner(nc, runs, "worker-b")  # type: ignore[arg-type]
    first_events, second_events = Recorder(), Recorder()
    first = asyncio.create_task(runner.run(call("lookup", {"q": "x", "slow": True}), first_events))
    await asyncio.wait_for(counting_service["asked"].wait(), 10)
    second = asyncio.create_task(other_worker.run(call("lookup", {"q": "x", "slow": True}),
                                                  second_events))  # fmt: skip
    # The duplicate found the first run still running: it waits for it, asking nobody.
    await asyncio.wait_for(runs.saw_running.wait(), 10)
    assert not second.done()
    counting_service["release"].set()
    results = await asyncio.gather(first, second)
    later = await runner.run(call("lookup", {"q": "x"}), Recorder())

    assert len(counting_service["requests"]) == 1
    assert results[0] == results[1] == later
    assert results[0].output == {"found": "x"}
    assert first_events.types() == ["tool.called", "tool.completed"]
    assert second_events.types() == []  # only the run that ran tells the story


async def test_a_run_left_running_by_a_dead_worker_is_not_run_again(
    nc, runner, counting_service
) -> None:
    runs = await nc.jetstream().key_value(TOOL_RUNS_BUCKET)
    started = time.time() - 60  # a dead worker started it a minute ago, 5 s timeout
    dead = ToolRun(state="running", name="lookup", worker="worker-dead", started_at=started,
                   deadline=started + 5)  # fmt: skip
    await runs.create(run_key("rtc_test", "call_1"), dead.model_dump_json().encode())
    events = Recorder()

    result = await runner.run(call("lookup", {"q": "x"}), events)
    again = await runner.run(call("lookup", {"q": "x"}), Recorder())

    assert result.error == INTERRUPTED == again.error
    assert counting_service["requests"] == []
    assert events.types() == ["tool.completed"]
    stored = ToolRun.model_validate_json((await runs.get(run_key("rtc_test", "call_1"))).value)
    assert stored.state == "done" and stored.result == {"error": INTERRUPTED}


async def test_a_builtin_acts_once_whichever_worker_sees_its_call(nc: Client) -> None:
    """end_call / transfer_call act on the call itself: a duplicate of the same tool call,
    on this worker or another, must not hang up or transfer again."""
    runs = await nc.jetstream().key_value(TOOL_RUNS_BUCKET)
    here, elsewhere = ToolRunner(nc, runs, "worker-a"), ToolRunner(nc, runs, "worker-b")

    assert await here.claim("rtc_test", "call_end", "end_call") is True
    assert await elsewhere.claim("rtc_test", "call_end", "end_call") is False
    assert await here.claim("rtc_test", "call_end", "end_call") is False
    assert await elsewhere.claim("rtc_test", "call_other", "transfer_call") is True
