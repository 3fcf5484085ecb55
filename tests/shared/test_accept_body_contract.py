"""The accept body against OpenAI's own schema (`RealtimeSessionCreateRequestGA`).

The schema extract in tests/data is copied unchanged from openai/openai-openapi (see its
SOURCE note). Beyond the schema: no unknown top-level field, never `audio.*.format`, never
the VAD tuning fields a SIP accept refuses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from shared.accept_body import accept_body
from shared.agents import SIP_REFUSED_TURN_DETECTION, AgentProfile, default_agent
from shared.settings import Settings

SPEC = Path(__file__).parents[1] / "data" / "openai-realtime-sip-subset.json"
SPEC_URI = "urn:openai-realtime-sip-subset"


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    spec = json.loads(SPEC.read_text())
    registry = Registry().with_resource(SPEC_URI, Resource(spec, specification=DRAFT202012))
    schema = {"$ref": f"{SPEC_URI}#/components/schemas/RealtimeSessionCreateRequestGA"}
    return Draft202012Validator(schema, registry=registry)


@pytest.fixture(scope="module")
def known_fields() -> set[str]:
    spec = json.loads(SPEC.read_text())
    return set(spec["components"]["schemas"]["RealtimeSessionCreateRequestGA"]["properties"])


def profiles() -> list[AgentProfile]:
    base = default_agent(Settings(_env_file=None))  # type: ignore[call-arg]
    salon = {
        "name": "salon",
        "model": "gpt-realtime-2.1",
        "voice": "marin",
        "instructions": "You are the booking assistant.",
        "greeting": "Bella Salon, hello!",
        "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
        "turn_detection": {"type": "semantic_vad", "eagerness": "low"},
        "tools": [
            {
                "name": "check_availability",
                "description": "Free times on a day.",
                "parameters": {
                    "type": "object",
                    "properties": {"day": {"type": "string"}},
                    "required": ["day"],
                },
            },
            {"builtin": "transfer_call", "targets": {"reception": "tel:+61290000000"}},
            {"builtin": "end_call"},
        ],
    }
    return [
        base,
        AgentProfile.model_validate(salon),
        AgentProfile.model_validate(
            {**salon, "name": "quiet", "turn_detection": None, "transcription": None, "tools": []}
        ),
        AgentProfile.model_validate(
            {
                **salon,
                "name": "server",
                "model": "gpt-realtime-1.5",
                "voice": "cedar",
                "turn_detection": {
                    "type": "server_vad",
                    "create_response": True,
                    "interrupt_response": False,
                    "idle_timeout_ms": 6000,
                },
            }
        ),
    ]


@pytest.mark.parametrize("agent", profiles(), ids=lambda agent: agent.name)
def test_the_accept_body_is_what_openai_takes_on_sip(
    agent: AgentProfile, validator: Draft202012Validator, known_fields: set[str]
) -> None:
    body: dict[str, Any] = accept_body(agent)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    assert set(body) <= known_fields
    assert body["type"] == "realtime"
    for side in ("input", "output"):
        assert "format" not in body["audio"].get(side, {})
    turn = body["audio"]["input"]["turn_detection"]
    assert turn is None or not set(turn) & set(SIP_REFUSED_TURN_DETECTION)
    assert body["audio"]["output"]["voice"] == agent.voice


def test_the_schema_check_is_not_vacuous(validator: Draft202012Validator) -> None:
    """A body OpenAI's schema refuses is refused here too."""
    assert list(validator.iter_errors({"type": "realtime", "audio": {"output": {"voice": 7}}}))
    assert list(validator.iter_errors({"model": "gpt-realtime-2.1"}))  # type is required
