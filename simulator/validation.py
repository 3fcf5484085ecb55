"""Strict validation of the accept body, as picky as OpenAI is on the SIP path.

OpenAI answers unknown fields with `400 Unknown parameter: '<path>'.`, and a few fields that
the schema allows are refused (or silently break the call) on SIP. A lenient stand-in would let
exactly those bugs through, so the simulator refuses them with the same error shape.

The allowed fields come from OpenAI's own schema (`RealtimeSessionCreateRequestGA`), copied
into `data/accept_schema.json` with its source commit so the simulator runs on its own.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

_SCHEMA_FILE = Path(__file__).parent / "data" / "accept_schema.json"

# Schema-valid, but OpenAI answered `400 Unknown parameter` on SIP accept (users' reports,
# Dec 2025, openai-agents-js #741).
_SIP_REJECTED_TURN_DETECTION = ("threshold", "prefix_padding_ms", "silence_duration_ms")


class AcceptError(Exception):
    """A 400 answer in OpenAI's error shape."""

    def __init__(self, message: str, param: str | None, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def to_json(self) -> dict[str, Any]:
        return error_body(self.message, "invalid_request_error", self.param, self.code)


def error_body(message: str, type_: str, param: str | None, code: str | None) -> dict[str, Any]:
    """OpenAI's REST error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _unknown(path: str) -> AcceptError:
    return AcceptError(f"Unknown parameter: '{path}'.", path, "unknown_parameter")


@cache
def _schemas() -> tuple[str, dict[str, Any]]:
    data = json.loads(_SCHEMA_FILE.read_text())
    return data["root"], data["schemas"]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    _, schemas = _schemas()
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _type_values(schema: dict[str, Any]) -> list[Any]:
    prop = _resolve(schema.get("properties", {}).get("type", {}))
    if "const" in prop:
        return [prop["const"]]
    return list(prop.get("enum", []))


def _object_variant(schema: dict[str, Any], value: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema that describes `value`, or None when it cannot be told apart.

    Unions are resolved by their `type` discriminator, or when only one branch is an object;
    anything ambiguous is left unchecked rather than refused wrongly.
    """
    schema = _resolve(schema)
    if "properties" in schema:
        return schema
    branches = [_resolve(b) for b in schema.get("anyOf", []) + schema.get("oneOf", [])]
    candidates: list[dict[str, Any]] = []
    for branch in branches:
        if "properties" in branch:
            candidates.append(branch)
        elif "anyOf" in branch or "oneOf" in branch:
            nested = _object_variant(branch, value)
            if nested is not None:
                candidates.append(nested)
    if len(candidates) == 1:
        return candidates[0]
    typed = [c for c in candidates if value.get("type") in _type_values(c)]
    return typed[0] if len(typed) == 1 else None


def _walk(value: Any, schema: dict[str, Any], path: str) -> None:
    schema = _resolve(schema)
    if isinstance(value, list):
        items = schema.get("items")
        if items is not None:
            for index, item in enumerate(value):
                _walk(item, items, f"{path}[{index}]")
        return
    if not isinstance(value, dict):
        return
    variant = _object_variant(schema, value)
    if variant is None:
        return
    properties = variant["properties"]
    for key, item in value.items():
        child = f"{path}.{key}" if path else key
        if key not in properties:
            raise _unknown(child)
        _walk(item, properties[key], child)


def validate_accept_body(body: Any) -> dict[str, Any]:
    """Check an accept body like OpenAI's SIP endpoint; return it, or raise `AcceptError`."""
    if not isinstance(body, dict):
        raise AcceptError("The request body must be a JSON object.", None, "invalid_type")
    if "type" not in body:
        raise AcceptError(
            "Missing required parameter: 'type'.", "type", "missing_required_parameter"
        )
    if body["type"] != "realtime":
        raise AcceptError(
            f"Invalid value: {body['type']!r}. Supported values are: 'realtime'.",
            "type",
            "invalid_value",
        )
    audio = body.get("audio")
    if isinstance(audio, dict):
        for side in ("input", "output"):
            part = audio.get(side)
            if isinstance(part, dict) and "format" in part:
                raise AcceptError(
                    f"Invalid parameter: 'audio.{side}.format' cannot be set on a SIP call: "
                    "the codec is negotiated in SDP.",
                    f"audio.{side}.format",
                    "invalid_parameter",
                )
        turn = (
            audio.get("input", {}).get("turn_detection")
            if isinstance(audio.get("input"), dict)
            else None
        )
        if isinstance(turn, dict):
            for name in _SIP_REJECTED_TURN_DETECTION:
                if name in turn:
                    raise _unknown(f"audio.input.turn_detection.{name}")
    root, schemas = _schemas()
    _walk(body, schemas[root], "")
    return body
