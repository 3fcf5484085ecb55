"""Strict validation of the accept body, as picky as OpenAI is on the SIP path.

OpenAI answers unknown fields with `400 Unknown parameter: '<path>'.` and values of the
wrong type or outside their set with `400 Invalid value`; a few fields its schema allows
are refused (or silently break the call) on SIP. A lenient stand-in would let exactly
those bugs through, so the simulator refuses them with the same error shape. What the
schema allows is the openai SDK's own accept params (shared/openai_shapes.py).
"""

from __future__ import annotations

from typing import Any

from shared.openai_shapes import ShapeError, check_accept_body

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
    try:
        check_accept_body(body)
    except ShapeError as error:
        if error.reason == "unknown field":
            raise _unknown(error.path) from None
        raise AcceptError(
            f"Invalid value for '{error.path}': {error.reason}.", error.path, "invalid_value"
        ) from None
    return body
