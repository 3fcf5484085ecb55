"""The journal's last words: `call.report` is the report of every event the call has, whether
the worker built it from what it wrote itself or had to read the journal back.

Reading back costs nats-server a consumer per call, so a worker that alone wrote a call's
events after the acceptor's `call.accepted` builds the report from memory; any doubt (an
event from another writer, a publish that had landed before its retry, a job without the
accepted event) reads back. Each case is checked against the report a read-back gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.session.journal import CallJournal
from services.session.lease import CallLease
from services.session.report import build_report
from shared.events import CALL_EVENTS_STREAM, CallEvent, CallEventPublisher, EventType
from shared.events import read_call_events as read_back
from shared.streams import CALL_LEASES_BUCKET, declare_topology

CALL_ID = "rtc_journal_test"
CONSUMER_CREATED = f"$JS.EVENT.ADVISORY.CONSUMER.CREATED.{CALL_EVENTS_STREAM}.>"


@pytest.fixture(autouse=True)
async def topology(nc: Client) -> None:
    await declare_topology(nc.jetstream())


@dataclass
class Opening:
    """What the acceptor hands the worker: the tail of the call's events, and the
    `call.accepted` there."""

    tail: tuple[int, int]
    accepted: CallEvent


async def opening(nc: Client) -> Opening:
    """`call.received` and `call.accepted` as the ingress and the acceptor write them."""
    acceptor = CallEventPublisher(nc.jetstream())
    await acceptor.publish(CALL_ID, EventType.CALL_RECEIVED, {"api": "realtime"})
    accepted = await acceptor.publish(
        CALL_ID, EventType.CALL_ACCEPTED, {"agent": "salon", "api": "realtime"}, msg_id="a"
    )
    tail = acceptor.tail(CALL_ID)
    assert accepted is not None and tail is not None
    return Opening(tail, accepted)


async def journal_of(nc: Client) -> CallJournal:
    js = nc.jetstream()
    lease = CallLease(js, await js.key_value(CALL_LEASES_BUCKET), CALL_ID, "w1", ttl_s=30)
    assert await lease.acquire()
    return CallJournal(js, CallEventPublisher(js), lease)


class ReadBacks:
    """Consumers nats-server creates on the call events stream (a read-back makes one)."""

    def __init__(self) -> None:
        self.created: list[Msg] = []

    async def watch(self, nc: Client) -> None:
        async def created(msg: Msg) -> None:
            self.created.append(msg)

        await nc.subscribe(CONSUMER_CREATED, cb=created)
        await nc.flush()

    async def count(self, nc: Client) -> int:
        await nc.flush()  # advisories published before this reached us
        return len(self.created)


async def read_backs_of_the_end(nc: Client, journal: CallJournal) -> int:
    """`call.ended` and `call.report` written; how many read-backs that took."""
    reads = ReadBacks()
    await reads.watch(nc)
    await journal.ended("caller_hangup")
    return await reads.count(nc)


async def the_report(nc: Client) -> tuple[dict[str, object], dict[str, object]]:
    """(the report published, the report of every other event as read back)."""
    events = await read_back(nc.jetstream(), CALL_ID)
    (report,) = [e for e in events if e.type == EventType.CALL_REPORT]
    others = [e for e in events if e.type != EventType.CALL_REPORT]
    return report.data, build_report(others, "caller_hangup").data()


async def a_conversation(journal: CallJournal) -> None:
    await journal.publish(EventType.SESSION_ATTACHED, {"attempt": 1, "greeted": True})
    await journal.publish(EventType.TRANSCRIPT_AGENT, {"text": "Hello, salon.", "item_id": "i1"})
    await journal.publish(EventType.TRANSCRIPT_CALLER, {"text": "A table.", "item_id": "i2"})


async def test_a_call_only_its_worker_wrote_is_reported_without_a_read_back(nc: Client) -> None:
    start = await opening(nc)
    journal = await journal_of(nc)
    await journal.history(1, start.tail, start.accepted)
    await a_conversation(journal)

    assert await read_backs_of_the_end(nc, journal) == 0
    published, from_the_journal = await the_report(nc)
    assert published == from_the_journal
    assert published["turns"] == 1 and published["attempts"] == 1
    assert published["duration_s"] == from_the_journal["duration_s"]


async def test_an_event_another_writer_put_between_ours_is_in_the_report(nc: Client) -> None:
    start = await opening(nc)
    journal = await journal_of(nc)
    await journal.history(1, start.tail, start.accepted)
    await a_conversation(journal)
    other = CallEventPublisher(nc.jetstream())
    await other.publish(CALL_ID, EventType.TRANSCRIPT_CALLER, {"text": "From elsewhere."})
    await journal.publish(EventType.TRANSCRIPT_AGENT, {"text": "Noted.", "item_id": "i3"})
    assert await read_backs_of_the_end(nc, journal) == 1
    published, from_the_journal = await the_report(nc)
    assert published == from_the_journal
    assert "From elsewhere." in [line["text"] for line in published["transcript"]]  # type: ignore[attr-defined]


async def test_a_publish_that_had_landed_before_its_retry_reads_back(nc: Client) -> None:
    start = await opening(nc)
    journal = await journal_of(nc)
    await journal.history(1, start.tail, start.accepted)
    await journal.publish(
        EventType.TRANSCRIPT_CALLER, {"text": "Once.", "item_id": "i1"}, msg_id="m"
    )
    await journal.publish(
        EventType.TRANSCRIPT_CALLER, {"text": "Once.", "item_id": "i1"}, msg_id="m"
    )
    assert await read_backs_of_the_end(nc, journal) == 1
    published, from_the_journal = await the_report(nc)
    assert published == from_the_journal
    assert published["turns"] == 1


async def test_a_job_without_the_accepted_event_reads_back(nc: Client) -> None:
    """A decision the acceptor resumed publishes no new `call.accepted`: nothing to start
    from in memory."""
    start = await opening(nc)
    journal = await journal_of(nc)
    await journal.history(1, start.tail, None)
    await a_conversation(journal)
    assert await read_backs_of_the_end(nc, journal) == 1
    published, from_the_journal = await the_report(nc)
    assert published == from_the_journal
