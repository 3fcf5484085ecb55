"""OpenAI's shapes, checked with the openai SDK's own types: the one source of truth.

The SDK's types are generated from OpenAI's OpenAPI spec. Its models accept unknown fields
and its request params are TypedDicts nobody checks at run time, so "valid" here is
stricter than the SDK is by itself: every required field present, every value of its type
and every field known (at any depth). Used by the acceptor (the accept body), the session
worker (agent profile values, client events), the simulator (every server event it sends)
and the contract tests.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Union, get_args, get_origin, get_type_hints

from openai import BaseModel as SdkModel
from openai.types.realtime import RealtimeClientEventParam, RealtimeServerEvent
from openai.types.realtime.call_accept_params import CallAcceptParams
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

_FORBID = ConfigDict(extra="forbid")


class ShapeError(ValueError):
    """A value OpenAI's types refuse; `where` is its dotted path, `reason` why."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.where = where
        self.reason = reason


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


@cache
def _adapter(param: Any) -> TypeAdapter[Any]:
    # A TypedDict takes no config of its own; inside a list it does (and passes it down).
    return TypeAdapter(list[param], config=_FORBID)


def _reason(error: ValidationError, skip: int = 1) -> ShapeError:
    """The most telling of pydantic's errors: not a union branch the value never meant."""
    errors = error.errors()
    telling = [e for e in errors if not (e["type"] == "literal_error" and e["loc"][-1] == "type")]
    first = (telling or errors)[0]
    where = ".".join(str(part) for part in first["loc"][skip:] if not _is_branch(part))
    return ShapeError(where, first["msg"])


def _is_branch(part: Any) -> bool:
    """pydantic names the union branch it tried in `loc` (a class name): not a field."""
    return isinstance(part, str) and part[:1].isupper()


def check_param(param: Any, value: Any) -> None:
    """`value` as the SDK's request param type `param` (a TypedDict) takes it, strictly."""
    try:
        _adapter(param).validate_python([value])
    except ValidationError as error:
        raise _reason(error) from None


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


def check_server_event(event: Any) -> SdkModel:
    """A sideband server event, as `RealtimeServerEvent`, with no field the SDK lacks."""
    kind = event.get("type") if isinstance(event, dict) else None
    model = _by_type("server").get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ShapeError("type", f"not a Realtime server event: {kind!r}")
    try:
        parsed = model.model_validate(event)
    except ValidationError as error:
        raise _reason(error, skip=0) from None
    _no_extra(parsed, "")
    return parsed  # type: ignore[no-any-return]


def _no_extra(value: Any, where: str) -> None:
    if isinstance(value, BaseModel):
        extra = value.model_extra or {}
        if extra:
            name = next(iter(extra))
            raise ShapeError(f"{where}.{name}".lstrip("."), "not a field of OpenAI's type")
        for name in type(value).model_fields:
            _no_extra(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_extra(item, f"{where}[{index}]")


def has_event_id(kind: str) -> bool:
    """Whether OpenAI's server event `kind` carries an `event_id` (not all of them do)."""
    model = _by_type("server").get(kind)
    return model is not None and "event_id" in model.model_fields


def server_event_types() -> frozenset[str]:
    """Every server event type the SDK knows."""
    return frozenset(_by_type("server"))


def client_event_types() -> frozenset[str]:
    return frozenset(_by_type("client"))
