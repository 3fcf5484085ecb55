"""Call events are numbered 1, 2, 3… per call, whoever publishes them."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest

from shared.events import CallEventPublisher, EventType, read_call_events
from shared.streams import declare_topology
from switchboard.nats_server import NatsServer


@pytest.fixture
async def js(nats_server: NatsServer):
    nc = await nats.connect(nats_server.url)
    jetstream = nc.jetstream()
    await declare_topology(jetstream)
    yield jetstream
    await nc.close()


async def test_seq_counts_from_one_per_call(js) -> None:
    events = CallEventPublisher(js)
    first = await events.publish("rtc_a", EventType.CALL_RECEIVED, {})
    second = await events.publish("rtc_a", EventType.CALL_ACCEPTED, {})
    other = await events.publish("rtc_b", EventType.CALL_RECEIVED, {})
    assert (first.seq, second.seq, other.seq) == (1, 2, 1)


async def test_two_publishers_racing_on_one_call_leave_no_gap_and_no_repeat(js) -> None:
    """Like two processes (an acceptor and a worker, or a worker and its successor)."""
    left, right = CallEventPublisher(js), CallEventPublisher(js)

    async def publish_many(publisher: CallEventPublisher, name: str) -> None:
        for index in range(30):
            await publisher.publish(
                "rtc_race", EventType.TRANSCRIPT_AGENT, {"text": f"{name}{index}"}
            )

    await asyncio.gather(publish_many(left, "L"), publish_many(right, "R"))

    stored = await read_call_events(js, "rtc_race")
    assert [e.seq for e in stored] == list(range(1, 61))
    assert sorted(e.data["text"] for e in stored) == sorted(
        [f"L{i}" for i in range(30)] + [f"R{i}" for i in range(30)]
    )


async def test_the_same_msg_id_is_published_once(js) -> None:
    events = CallEventPublisher(js)
    assert await events.publish("rtc_c", EventType.CALL_ENDED, {}, msg_id="ended:rtc_c")
    assert (
        await CallEventPublisher(js).publish(
            "rtc_c", EventType.CALL_ENDED, {}, msg_id="ended:rtc_c"
        )
        is None
    )
    assert [e.type for e in await read_call_events(js, "rtc_c")] == ["call.ended"]


async def test_a_publisher_continues_after_a_restart(js) -> None:
    """A new process (a worker that re-attached) picks up where the call's events stop."""
    await CallEventPublisher(js).publish("rtc_d", EventType.CALL_RECEIVED, {})
    event = await CallEventPublisher(js).publish("rtc_d", EventType.SESSION_ATTACHED, {})
    assert event is not None and event.seq == 2


async def test_live_subscribers_see_each_stored_event_once(js, nats_server: NatsServer) -> None:
    """A publish JetStream refuses (a lost race, a repeated msg id) never reaches
    `calls.events.<call_id>`: subscribers there see exactly the stored events."""
    seen: list[int] = []
    got_all = asyncio.Event()

    async def on_event(msg) -> None:
        seen.append(json.loads(msg.data)["seq"])
        if len(seen) >= 41:
            got_all.set()

    nc = await nats.connect(nats_server.url)  # a subscriber of its own, as any consumer
    await nc.subscribe("calls.events.rtc_live", cb=on_event)
    left, right = CallEventPublisher(js), CallEventPublisher(js)

    async def publish_many(publisher: CallEventPublisher) -> None:
        for _ in range(20):
            await publisher.publish("rtc_live", EventType.TRANSCRIPT_CALLER, {"text": "x"})
            await publisher.publish("rtc_live", EventType.CALL_ENDED, {}, msg_id="ended:rtc_live")

    await asyncio.gather(publish_many(left), publish_many(right))
    await asyncio.wait_for(got_all.wait(), timeout=10)
    await nc.flush()
    await nc.close()

    assert seen == list(range(1, 42))  # 40 transcripts and one call.ended, in order


async def test_a_primed_tail_saves_the_read_and_a_stale_one_is_harmless(js) -> None:
    """The acceptor hands the worker where the call's events stand; if another event got
    in meanwhile, the journal refuses the publish and the publisher renumbers."""
    first = CallEventPublisher(js)
    await first.publish("rtc_p", EventType.CALL_RECEIVED, {})
    hint = first.tail("rtc_p")
    assert hint is not None and hint[1] == 1
    await first.publish("rtc_p", EventType.CALL_ACCEPTED, {})  # the hint is now stale

    successor = CallEventPublisher(js)
    successor.prime("rtc_p", *hint)
    event = await successor.publish("rtc_p", EventType.SESSION_ATTACHED, {})

    assert event is not None and event.seq == 3
    assert [e.seq for e in await read_call_events(js, "rtc_p")] == [1, 2, 3]


async def test_an_event_too_large_for_nats_is_stored_cut_down(js) -> None:
    """A report of a very long call: stored within NATS's limit, marked, counted."""
    from prometheus_client import REGISTRY

    from shared.limits import MAX_MESSAGE_BYTES

    def trimmed() -> float:
        labels = {"type": "call.report"}
        return REGISTRY.get_sample_value("switchboard_payloads_trimmed_total", labels) or 0.0

    before = trimmed()
    events = CallEventPublisher(js)
    lines = [{"speaker": "caller", "text": "ä" * 2000} for _ in range(600)]  # ~2.4 MB
    event = await events.publish(
        "rtc_long", EventType.CALL_REPORT, {"end_reason": "idle", "transcript": lines}
    )
    assert event is not None and event.data["truncated"] is True
    stored = await read_call_events(js, "rtc_long")
    assert len(stored[0].to_json()) <= MAX_MESSAGE_BYTES
    assert stored[0].data["end_reason"] == "idle"
    assert 0 < len(stored[0].data["transcript"]) < 600
    assert trimmed() == before + 1
