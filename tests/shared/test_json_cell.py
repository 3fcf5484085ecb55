"""A KV key changed by compare-and-set (`shared.admission.JsonCell`): each change is decided
on the key's current value, and a cache that is known fresh saves the round trips a stale
one costs (a refused write, a read, the write again)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from shared.admission import Document, JsonCell

KEY = "book.w1"


@pytest.fixture
async def kv(nc: Client) -> KeyValue:
    return await nc.jetstream().create_key_value(KeyValueConfig(bucket="cells", history=1))


class Decisions:
    """`decide` for a change that adds one call; remembers what it was shown."""

    def __init__(self, call: str) -> None:
        self.call = call
        self.seen: list[Document | None] = []

    def __call__(self, document: Document | None) -> tuple[Document | None, bool]:
        self.seen.append(document)
        calls = dict((document or {}).get("calls", {}))
        calls[self.call] = 1
        return {"calls": calls}, True


async def written_elsewhere(kv: KeyValue, calls: dict[str, Any]) -> tuple[int, Document]:
    """Another process's write to the key: (its revision, the document)."""
    document = {"calls": calls}
    return await kv.put(KEY, json.dumps(document).encode()), document


async def stored(kv: KeyValue) -> Document:
    return json.loads((await kv.get(KEY)).value or b"{}")


async def test_a_stale_cache_is_refused_then_decided_again_on_the_current_value(
    kv: KeyValue,
) -> None:
    cell = JsonCell(kv, KEY)
    await cell.change(Decisions("a"))
    await written_elsewhere(kv, {"a": 1, "b": 1})

    second = Decisions("c")
    await cell.change(second)

    assert second.seen == [{"calls": {"a": 1}}, {"calls": {"a": 1, "b": 1}}]
    assert await stored(kv) == {"calls": {"a": 1, "b": 1, "c": 1}}


async def test_what_a_watch_offers_is_decided_on_at_once(kv: KeyValue) -> None:
    cell = JsonCell(kv, KEY)
    await cell.change(Decisions("a"))
    revision, document = await written_elsewhere(kv, {"a": 1, "b": 1})

    cell.offer(revision, document)
    second = Decisions("c")
    await cell.change(second)

    assert second.seen == [{"calls": {"a": 1, "b": 1}}]  # one write, nothing refused
    assert await stored(kv) == {"calls": {"a": 1, "b": 1, "c": 1}}


async def test_an_offer_older_than_the_cache_is_ignored(kv: KeyValue) -> None:
    cell = JsonCell(kv, KEY)
    await cell.change(Decisions("a"))
    await cell.change(Decisions("b"))

    cell.offer(1, {"calls": {"a": 1}})  # the first write, seen late
    third = Decisions("c")
    await cell.change(third)

    assert third.seen == [{"calls": {"a": 1, "b": 1}}]


async def test_reading_first_decides_on_the_current_value_without_a_refused_write(
    kv: KeyValue,
) -> None:
    cell = JsonCell(kv, KEY, read_first=True)
    await cell.change(Decisions("a"))
    await written_elsewhere(kv, {"a": 1, "b": 1})

    second = Decisions("c")
    await cell.change(second)

    assert second.seen == [{"calls": {"a": 1, "b": 1}}]
    assert await stored(kv) == {"calls": {"a": 1, "b": 1, "c": 1}}
