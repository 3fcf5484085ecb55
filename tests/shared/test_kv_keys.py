"""Listing a bucket's keys: every key that holds a value, every time, and nothing left
behind on the server (nats-py's `keys()` leaves a consumer for five minutes per call and,
some hundreds of calls later, answers "no keys" for a bucket full of them)."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from shared.kv_keys import live_keys

BUCKET = "things"


@pytest.fixture
async def kv(nc: Client) -> KeyValue:
    return await nc.jetstream().create_key_value(KeyValueConfig(bucket=BUCKET, history=1))


async def consumers(nc: Client) -> int:
    return (await nc.jetstream().stream_info(f"KV_{BUCKET}")).state.consumer_count


async def test_an_empty_bucket_has_no_keys(nc: Client, kv: KeyValue) -> None:
    assert await live_keys(nc.jetstream(), BUCKET) == []
    assert await consumers(nc) == 0


async def test_deleted_and_purged_keys_are_not_listed(nc: Client, kv: KeyValue) -> None:
    for key in ("a", "b", "c", "d"):
        await kv.put(key, b"1")
    await kv.put("a", b"2")
    await kv.delete("b")
    await kv.purge("c")

    assert await live_keys(nc.jetstream(), BUCKET) == ["a", "d"]


async def test_more_keys_than_one_fetch_all_come_back_sorted(nc: Client, kv: KeyValue) -> None:
    names = [f"k{i:04d}" for i in range(700)]
    for name in reversed(names):
        await kv.put(name, b"x")

    assert await live_keys(nc.jetstream(), BUCKET) == names
    assert await consumers(nc) == 0


async def test_asked_a_thousand_times_it_answers_a_thousand_times(nc: Client, kv: KeyValue) -> None:
    """What a dashboard polling `GET /calls` does; `kv.keys()` went wrong within 500."""
    for key in ("a", "b", "c"):
        await kv.put(key, b"1")
    js = nc.jetstream()

    answers = [await live_keys(js, BUCKET) for _ in range(1000)]

    assert all(answer == ["a", "b", "c"] for answer in answers)
    assert await consumers(nc) == 0
