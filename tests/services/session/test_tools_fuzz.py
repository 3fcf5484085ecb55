"""Fuzz: whatever bytes a tool service answers, the run ends as a result or a clean tool
error, the record is closed, `tool.completed` is published, and nothing raises. The pure
judge first, then the runner against a real nats-server and a responder sending the bytes."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any, get_args

import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.session.tools import (
    Outcome,
    ToolCallRequest,
    ToolRun,
    ToolRunner,
    judge_reply,
    run_key,
)
from shared.limits import DEFAULT_TOOL_REPLY_MAX_BYTES
from shared.streams import TOOL_RUNS_BUCKET, declare_topology
from switchboard.nats_server import NatsServer
from tests.services.session.test_tools_runner import Recorder

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
replies = st.one_of(
    st.binary(max_size=600),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"output": json_values}).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"error": json_values}).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 3000).map(lambda n: b'{"output": ' + b"[" * n + b"]" * n + b"}"),
    st.integers(1, 3000).map(lambda n: b'{"output": ' + b'{"a":' * n + b"1" + b"}" * n + b"}"),
    st.sampled_from([b"NaN", b'{"output": Infinity}', b'{"output": "\\ud800"}', b"1" * 5000]),
)
OUTCOMES = set(get_args(Outcome))


@settings(max_examples=400, deadline=None)
@given(replies)
def test_any_reply_is_judged_without_raising(data: bytes) -> None:
    result, outcome = judge_reply(data, max_bytes=2000)
    assert outcome in OUTCOMES
    assert result.ok == (outcome == "ok")
    json.loads(result.model_text())  # what the model is told is JSON
    record = ToolRun(
        state="done", name="t", worker="w", started_at=0, deadline=0, result=result.as_dict()
    )
    ToolRun.model_validate_json(record.model_dump_json())  # and so is what KV keeps


def test_replies_over_the_cap_are_too_large() -> None:
    big = b'{"output": "' + b"x" * DEFAULT_TOOL_REPLY_MAX_BYTES + b'"}'
    assert judge_reply(big)[1] == "too_large"


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    await declare_topology(client.jetstream())
    yield client
    await client.close()


class Responder:
    """A tool service that answers the next request with the bytes it is given."""

    def __init__(self) -> None:
        self.reply = b""

    async def answer(self, msg: Msg) -> None:
        await msg.respond(self.reply)


@pytest.fixture
async def responder(nc: Client) -> Responder:
    answering = Responder()
    await nc.subscribe("tools.fuzzed", cb=answering.answer)
    return answering


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(reply=replies)
async def test_any_reply_closes_the_run_and_is_told(
    nc: Client, responder: Responder, reply: bytes
) -> None:
    responder.reply = reply
    runs = await nc.jetstream().key_value(TOOL_RUNS_BUCKET)
    runner = ToolRunner(nc, runs, "worker-fuzz", reply_max_bytes=2000)
    call = ToolCallRequest(
        call_id="rtc_fuzz",
        tool_call_id="call_" + secrets.token_hex(6),
        name="fuzzed",
        arguments="{}",
        agent="default",
        timeout_s=5.0,
    )
    published = Recorder()

    result = await runner.run(call, published)

    assert published.types() == ["tool.called", "tool.completed"]
    completed: dict[str, Any] = published.events[1][1]
    assert ("error" in completed) == (not result.ok)
    entry = await runs.get(run_key(call.call_id, call.tool_call_id))
    assert entry.value is not None
    stored = ToolRun.model_validate_json(entry.value)
    assert stored.state == "done" and stored.result == result.as_dict()
