"""The GPT-Live wire contract, held to the openai SDK's types (`openai.types.live`).

Every server event the simulator sends is checked against its SDK model before it goes
out (a nested Responses event against `openai.types.responses` too), and every client
event and accept body it receives against the SDK's params, with unknown fields refused
at any depth. A simulator that drifted from the SDK would let exactly the bugs through
that a real call would hit.
"""

from __future__ import annotations

import typing
from functools import cache
from typing import Any

import pydantic
from openai.types.live.connect_client_event_param import ConnectClientEventParam
from openai.types.live.connect_server_event import ConnectServerEvent
from openai.types.live.session_accept_params import Session
from openai.types.responses.response_stream_event import ResponseStreamEvent

from shared.sdk_types import SdkTypeError, check_model, check_params


class ContractError(ValueError):
    """A Live event or body outside the SDK's types; `param` is where, `code` OpenAI-like."""

    def __init__(self, message: str, param: str | None, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def _members(union: Any) -> list[Any]:
    args = typing.get_args(union)
    if args and typing.get_origin(args[0]) is typing.Union:  # Annotated[Union[...], …]
        return list(typing.get_args(args[0]))
    return list(args)


def _literal(annotation: Any) -> str:
    while typing.get_origin(annotation) is not typing.Literal:
        annotation = typing.get_args(annotation)[0]  # Required[...] / Annotated[...]
    return typing.get_args(annotation)[0]


@cache
def _server_models() -> dict[str, type[pydantic.BaseModel]]:
    return {_literal(m.model_fields["type"].annotation): m for m in _members(ConnectServerEvent)}


@cache
def _response_models() -> dict[str, type[pydantic.BaseModel]]:
    return {_literal(m.model_fields["type"].annotation): m for m in _members(ResponseStreamEvent)}


@cache
def _client_params() -> dict[str, Any]:
    params: dict[str, Any] = {}
    for member in _members(ConnectClientEventParam):
        hints = typing.get_type_hints(member, include_extras=True)
        params[_literal(hints["type"])] = member
    return params


def client_event_types() -> frozenset[str]:
    return frozenset(_client_params())


def check_server_event(event: dict[str, Any]) -> None:
    """Raise ContractError unless `event` is exactly one of the SDK's Live server events."""
    model = _server_models().get(str(event.get("type")))
    if model is None:
        raise ContractError(f"not a Live server event: {event.get('type')!r}", "type", "type")
    try:
        check_model(model, event)
        if event["type"] == "response.event":
            inner = event["event"]
            inner_model = _response_models().get(str(inner.get("type")))
            if inner_model is None:
                raise SdkTypeError("event.type", f"not a Responses event: {inner.get('type')!r}")
            check_model(inner_model, inner)
    except SdkTypeError as error:
        raise ContractError(f"{event['type']}: {error}", error.path, "invalid_event") from None


def check_client_event(event: Any) -> dict[str, Any]:
    """The client event if it is one the SDK types; ContractError (OpenAI's codes) if not."""
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ContractError(
            "An event must be a JSON object with a 'type'.", "type", "invalid_event"
        )
    params = _client_params().get(event["type"])
    if params is None:
        supported = ", ".join(f"'{name}'" for name in sorted(_client_params()))
        raise ContractError(
            f"Invalid value: '{event['type']}'. Supported values are: {supported}.",
            "type",
            "invalid_value",
        )
    try:
        check_params(params, event)
    except SdkTypeError as error:
        code = "unknown_parameter" if error.reason == "unknown field" else "invalid_value"
        raise ContractError(f"Invalid '{error.path}': {error.reason}.", error.path, code) from None
    return event


def check_accept_body(body: Any) -> dict[str, Any]:
    """An accept body `{"session": {...}}` as the SDK types it; audio formats refused (SIP)."""
    if not isinstance(body, dict):
        raise ContractError("The request body must be a JSON object.", None, "invalid_type")
    for key in body:
        if key != "session":
            raise ContractError(f"Unknown parameter: '{key}'.", key, "unknown_parameter")
    session = body.get("session")
    if not isinstance(session, dict):
        raise ContractError(
            "Missing required parameter: 'session'.", "session", "missing_required_parameter"
        )
    audio = session.get("audio")
    if isinstance(audio, dict) and "format" in audio:
        raise ContractError(
            "Invalid parameter: 'session.audio.format' is only accepted on a primary "
            "WebSocket; SIP negotiates the media format.",
            "session.audio.format",
            "invalid_parameter",
        )
    try:
        check_params(Session, session)
    except SdkTypeError as error:
        code = "unknown_parameter" if error.reason == "unknown field" else "invalid_value"
        where = f"session.{error.path}" if error.path else "session"
        raise ContractError(f"Invalid '{where}': {error.reason}.", where, code) from None
    return session
