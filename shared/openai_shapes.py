"""OpenAI's Realtime shapes, checked with the openai SDK's own types: the one source of truth.

Which SDK type a value is checked against lives here (the accept body: `CallAcceptParams`;
a client event: the member of `RealtimeClientEventParam` its `type` names; a server event:
the member of `RealtimeServerEvent`); how strictly is `shared/sdk_types.py` (every required
field, no coercion, no field the SDK lacks at any depth), shared with the GPT-Live side.
Used by the acceptor (the accept body), the session worker (client events), the simulator
(every server event it sends, every accept body it receives) and the contract tests.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Union, get_args, get_origin, get_type_hints

from openai.types.realtime import RealtimeClientEventParam, RealtimeServerEvent
from openai.types.realtime.call_accept_params import CallAcceptParams
from pydantic import BaseModel

from shared.sdk_types import SdkTypeError, check_model, check_params

ShapeError = SdkTypeError  # `path` is where, `reason` why; "unknown field" for one OpenAI lacks


def _members(union: Any) -> list[Any]:
    """The classes of a (possibly Annotated) union."""
    while get_origin(union) is not Union and get_args(union):
        union = get_args(union)[0]  # Annotated[Union[...], ...]
    return list(get_args(union))


def _type_values(member: Any) -> tuple[str, ...]:
    if isinstance(member, type) and issubclass(member, BaseModel):
        annotation = member.model_fields["type"].annotation
    else:
        annotation = get_type_hints(member, include_extras=True)["type"]
    while get_args(annotation) and not isinstance(get_args(annotation)[0], str):
        annotation = get_args(annotation)[0]  # Required[Literal[...]] → Literal[...]
    return tuple(a for a in get_args(annotation) if isinstance(a, str))


@cache
def _by_type(kind: str) -> dict[str, Any]:
    union = RealtimeServerEvent if kind == "server" else RealtimeClientEventParam
    table: dict[str, Any] = {}
    for member in _members(union):
        for value in _type_values(member):
            table.setdefault(value, member)
    return table


def check_param(param: Any, value: Any) -> None:
    """`value` as the SDK's request param type `param` (a TypedDict) takes it, strictly."""
    check_params(param, value)


def check_accept_body(body: Any) -> None:
    """A `POST /v1/realtime/calls/{call_id}/accept` body, as the SDK's accept params."""
    check_param(CallAcceptParams, body)


def check_client_event(event: Any) -> None:
    """A sideband client event, as the SDK's client event params."""
    kind = event.get("type") if isinstance(event, dict) else None
    param = _by_type("client").get(kind) if isinstance(kind, str) else None
    if param is None:
        raise ShapeError("type", f"not a Realtime client event: {kind!r}")
    check_param(param, event)


def check_server_event(event: Any) -> BaseModel:
    """A sideband server event, as `RealtimeServerEvent`, with no field the SDK lacks."""
    kind = event.get("type") if isinstance(event, dict) else None
    model = _by_type("server").get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ShapeError("type", f"not a Realtime server event: {kind!r}")
    return check_model(model, event)


def has_event_id(kind: str) -> bool:
    """Whether OpenAI's server event `kind` carries an `event_id` (not all of them do)."""
    model = _by_type("server").get(kind)
    return model is not None and "event_id" in model.model_fields


def server_event_types() -> frozenset[str]:
    """Every server event type the SDK knows."""
    return frozenset(_by_type("server"))


def client_event_types() -> frozenset[str]:
    return frozenset(_by_type("client"))
