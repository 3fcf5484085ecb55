"""The committed AsyncAPI document is the one the code generates, and it matches what the
running services do: every subject they publish to or subscribe to is documented, every
payload they publish fits the documented schema, and every documented operation happens.

The document is generated from the code's constants, so comparing it with itself proves
nothing: the services here run a GPT-Live call and a Realtime one (a tool, the control
API, the console) while a wiretap records every message on the server and its monitoring
port lists every subscription and consumer.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import nats
import pytest
import yaml
from faststream.nats import NatsBroker
from nats.aio.msg import Msg

from examples.salon_tools import salon_service
from services.dialler.main import Dialler
from simulator import CallerScript
from switchboard.asyncapi import document
from switchboard.nats_server import NatsServer
from switchboard.stack import EVENT_LOG_CONNECTION, Stack
from tests.observability.prometheus import REPO

COMMITTED = REPO / "docs/asyncapi.yaml"
WIRETAP = "asyncapi-wiretap"
TOKEN = "ctl-" + "a" * 32
# Answered to the requester's inbox: documented on the request's subject, never sent there.
REPLIES = {"tools:reply", "agents:resolve-reply", "calls:control-reply"}
# Subscribed by a business service of the operator's, if any; none runs here.
EXTERNAL = {"agents:resolve-request"}
# The post-call service's subjects need it running and a subscriber (an outbox), or a
# delivery given up (a dead letter): tests/services/postcall uses each of them for real.
POSTCALL = {"postcall:fan-out", "postcall:outbox", "postcall:dead-letter", "calls:index"}

REALTIME_NUMBER, LIVE_NUMBER = "+61468002102", "+61468002103"
AGENTS = f"""
agents:
  - name: salon
    numbers: ["{REALTIME_NUMBER}"]
    instructions: "You book appointments."
    tools:
      - name: check_availability
        parameters: {{type: object, properties: {{day: {{type: string}}}}}}
        timeout_s: 5
  - name: reminders
    api: live
    numbers: ["{LIVE_NUMBER}"]
    voice: marin
    instructions: "You confirm appointments."
    outbound:
      trunk: {{provider_url: "sips:trunk.example.com", caller_number: "+61290000001",
              username: acme, password_env: ASYNCAPI_TRUNK_PASSWORD}}
"""
LIVE_CALL = CallerScript.model_validate(
    {"agent_speech_s": 0.01, "steps": [{"say": "Hi?", "reply": "Hello."}, {"hangup": True}]}
)
CALL = CallerScript.model_validate(
    {
        "tool_timeout_s": 15,
        "steps": [
            {"say": "Hello?", "reply": "Hi, Bella Salon."},
            {
                "tool_call": {"name": "check_availability", "arguments": {"day": "Monday"}},
                "reply": "Monday at ten.",
            },
            {"say": "Thanks.", "reply": "Bye."},
        ],
    }
)


def test_committed_document_is_up_to_date() -> None:
    assert COMMITTED.read_text() == document(), (
        "docs/asyncapi.yaml is stale: python -m switchboard.asyncapi > docs/asyncapi.yaml"
    )


def overlap(a: str, b: str) -> bool:
    """Whether one subject could match both NATS subject patterns (`*`, `>` wildcards)."""
    left, right = a.split("."), b.split(".")
    for index, (x, y) in enumerate(zip(left, right, strict=False)):
        if ">" in (x, y):
            return True
        if x != y and "*" not in (x, y):
            return False
        if index == min(len(left), len(right)) - 1:
            return len(left) == len(right)
    return False


def test_overlap() -> None:
    assert overlap("calls.events.>", "calls.events.*")
    assert overlap("calls.control.rtc_1", "calls.control.*")
    assert not overlap("calls.control.rtc_1.x", "calls.control.*")
    assert not overlap("calls.ctl.rtc_1", "calls.control.*")
    assert not overlap("sessions", "sessions.jobs")


class Documented:
    """The document's operations: name -> (action, NATS pattern, payload schemas)."""

    def __init__(self, text: str) -> None:
        self.doc = yaml.safe_load(text)
        self.operations: dict[str, tuple[str, str, list[dict[str, Any]]]] = {}
        for name, operation in self.doc["operations"].items():
            channel = self._ref(operation["channel"]["$ref"])
            pattern = ".".join(
                "*" if token.startswith("{") else token for token in channel["address"].split(".")
            )
            payloads = [self._ref(m["$ref"])["payload"] for m in channel["messages"].values()]
            self.operations[name] = (operation["action"], pattern, payloads)

    def _ref(self, ref: str) -> dict[str, Any]:
        node: Any = self.doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return dict(node)

    def patterns(self, action: str | None = None) -> set[str]:
        return {p for a, p, _ in self.operations.values() if action in (None, a)}

    def fits(self, subject: str, payload: Any) -> bool:
        """The payload is valid for one of the messages documented on its subject."""
        for _, pattern, schemas in self.operations.values():
            if not overlap(subject, pattern):
                continue
            for schema in schemas:
                try:
                    # The whole document is the root, so `#/components/...` refs resolve.
                    jsonschema.validate(payload, {**self.doc, **schema})
                    return True
                except jsonschema.ValidationError:
                    continue
        return False


@pytest.fixture
async def wiretap(nats_server: NatsServer) -> AsyncIterator[dict[str, list[bytes]]]:
    """Every message published on the server while the test runs, by subject."""
    seen: dict[str, list[bytes]] = defaultdict(list)
    nc = await nats.connect(nats_server.url, name=WIRETAP)

    async def record(msg: Msg) -> None:
        seen[msg.subject].append(msg.data)

    await nc.subscribe(">", cb=record)
    yield seen
    await nc.close()


def services_subscriptions(server: NatsServer) -> set[str]:
    """The subjects the services' connections subscribe to; reply inboxes and JetStream's
    own subjects (KV watchers: `$KV.<bucket>.>`) left out."""
    connz = json.loads(server.monitor("/connz?subs=detail&limit=1000"))
    return {
        sub["subject"]
        for connection in connz["connections"]
        if connection.get("name") not in (WIRETAP, EVENT_LOG_CONNECTION)
        for sub in connection.get("subscriptions_list_detail", [])
        if not sub["subject"].startswith(("_INBOX.", "$"))
    }


async def jetstream_in_use(nc: nats.NATS) -> tuple[set[str], set[str]]:
    """The subjects of the JetStream consumers that delivered something (KV watchers left
    out), and the names of every stream and KV bucket."""
    js = nc.jetstream()
    subjects, names = set(), set()
    for stream in await js.streams_info():
        assert stream.config.name is not None
        names.add(stream.config.name.removeprefix("KV_"))
        for consumer in await js.consumers_info(stream.config.name):
            config = consumer.config
            filters = config.filter_subjects or [config.filter_subject or ""]
            consumed = {f for f in filters if f} or set(stream.config.subjects or [])
            if consumer.delivered.consumer_seq > 0:
                subjects |= {f for f in consumed if not f.startswith("$")}
    return subjects, names


async def test_the_document_matches_what_the_running_services_do(
    nats_server: NatsServer,
    wiretap: dict[str, list[bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASYNCAPI_TRUNK_PASSWORD", "p" * 16)
    agents = tmp_path / "agents.yaml"
    agents.write_text(AGENTS)
    tools = salon_service(broker=NatsBroker(nats_server.url))
    await tools.start()
    stack = Stack(
        nats_server.url,
        settings_overrides={
            "switchboard_agents_file": agents,
            "switchboard_control_token": TOKEN,
            "switchboard_view_token": "view-" + "v" * 32,  # the console follows the calls
        },
    )
    dialler: Dialler | None = None
    try:
        await stack.start()
        assert stack.simulator is not None and stack.ingress is not None
        stack.simulator.live.outbound.callees.caller = LIVE_CALL  # answers, then hangs up
        dialler = Dialler(stack.settings(), metrics_port=0, host="127.0.0.1")
        await dialler.start()
        stack.simulator.live.rules.audio_chunk_ms = 100  # fewer frames: the same subjects
        live = await stack.simulator.live.place_call(LIVE_CALL, to=LIVE_NUMBER)
        await stack.events.wait_for(live.session_id, "call.report", timeout=30)
        call = await stack.simulator.place_call(CALL, to=REALTIME_NUMBER)
        await stack.events.wait_for(call.call_id, "tool.completed", timeout=30)
        await call.wait_until(lambda c: "Bye." in c.agent_transcripts, 15)
        subscribed = services_subscriptions(nats_server)  # while the worker owns the call
        base = f"http://127.0.0.1:{stack.ingress.http.port}"
        async with httpx.AsyncClient(base_url=base, timeout=15) as http:
            hung_up = await http.post(
                f"/calls/{call.call_id}/hangup", headers={"Authorization": f"Bearer {TOKEN}"}
            )
        assert hung_up.status_code == 200, hung_up.text
        await stack.events.wait_for(call.call_id, "call.report", timeout=15)
        async with httpx.AsyncClient(base_url=base, timeout=15) as http:  # an outbound call
            asked = await http.post(
                "/calls", json={"to": "+61400000001", "agent": "reminders"},
                headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "asyncapi"},
            )  # fmt: skip
        assert asked.status_code == 202, asked.text
        await stack.events.wait_for(asked.json()["call_id"], "call.report", timeout=30)
        nc = await nats.connect(nats_server.url, name=WIRETAP)
        try:
            consumed, stores = await jetstream_in_use(nc)
        finally:
            await nc.close()
    finally:
        if dialler is not None:
            await dialler.stop()
        await stack.stop()
        await tools.stop()

    subscribed |= consumed
    documented = Documented(COMMITTED.read_text())
    # Streams and KV buckets are told in the description, by name.
    unnamed = {name for name in stores if f"`{name}`" not in documented.doc["info"]["description"]}
    assert not unnamed, f"streams or buckets the document does not name: {unnamed}"
    published = {s for s in wiretap if not s.startswith(("$", "_INBOX."))}
    everything = documented.patterns()

    undocumented = {s for s in published | subscribed if not any(overlap(s, p) for p in everything)}
    assert not undocumented, f"used by the services, missing from the document: {undocumented}"
    misfits = [
        (subject, data[:200])
        for subject in published
        for data in wiretap[subject]
        if not documented.fits(subject, json.loads(data))
    ]
    assert not misfits, f"payloads the document does not describe: {misfits}"
    unused = {
        name
        for name, (action, pattern, _) in documented.operations.items()
        if name not in REPLIES | EXTERNAL | POSTCALL
        and not any(overlap(s, pattern) for s in (published if action == "send" else subscribed))
    }
    assert not unused, f"documented, but the services never did it: {unused}"
