"""Fuzz: whatever the `agents.resolve` hook answers (oversized, nested deep, not JSON, any
shape), the resolver returns a usable profile and never raises. A real nats-server with a
hook that sends the bytes it is given."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.acceptor.hook import RESOLVE_SUBJECT, AgentResolver
from shared.agent_directory import AgentDirectory
from shared.agents import AgentProfile
from shared.calls import IncomingCall, SipHeader
from shared.limits import MAX_HOOK_REPLY_BYTES
from switchboard.nats_server import NatsServer


def profile(name: str, *numbers: str) -> AgentProfile:
    return AgentProfile.model_validate(
        {
            "name": name,
            "numbers": list(numbers),
            "model": "gpt-realtime-2.1",
            "voice": "marin",
            "instructions": f"You are {name}.",
            "greeting": f"{name} here.",
        }
    )


SALON = profile("salon", "+61468002102")
DIRECTORY = AgentDirectory.build(profile("default"), [SALON, profile("support")])
CALL = IncomingCall(
    webhook_id="wh_1",
    call_id="rtc_hook",
    received_at=datetime.now(UTC),
    sip_headers=[SipHeader(name="To", value="sip:+61468002102@sip.example.com")],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
override_fields = st.sampled_from(
    ["instructions", "greeting", "voice", "model", "tools", "limits", "name", "turn_detection"]
)
replies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "agent": st.none() | st.sampled_from(["support", "nobody"]) | json_values,
            "override": st.dictionaries(override_fields, json_values, max_size=3) | json_values,
        }
    ).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 100_000).map(lambda n: b'{"override": ' + b"[" * n + b"]" * n + b"}"),
    st.just(b'{"override": {"instructions": "' + b"a" * MAX_HOOK_REPLY_BYTES + b'"}}'),
)


class Hook:
    def __init__(self) -> None:
        self.reply = b"{}"

    async def answer(self, msg: Msg) -> None:
        await msg.respond(self.reply)


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


@pytest.fixture
async def hook(nc: Client) -> Hook:
    answering = Hook()
    await nc.subscribe(RESOLVE_SUBJECT, cb=answering.answer)
    return answering


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(reply=replies)
async def test_any_hook_reply_gives_a_profile(nc: Client, hook: Hook, reply: bytes) -> None:
    hook.reply = reply
    resolver = AgentResolver(DIRECTORY, nc, hook_timeout_s=5.0)
    chosen = await resolver(CALL)
    assert isinstance(chosen, AgentProfile)
    assert chosen.name in ("salon", "support")


@pytest.mark.parametrize(
    "reply",
    [
        b'{"override": {"instructions": "' + b"a" * MAX_HOOK_REPLY_BYTES + b'"}}',
        b'{"agent": "support", "override": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
        b"\xff not json",
    ],
    ids=["oversized", "deep", "invalid"],
)
async def test_a_hostile_hook_reply_keeps_the_static_profile(
    nc: Client, hook: Hook, reply: bytes
) -> None:
    hook.reply = reply
    assert await AgentResolver(DIRECTORY, nc, hook_timeout_s=5.0)(CALL) == SALON
