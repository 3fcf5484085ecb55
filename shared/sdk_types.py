"""Checking JSON against the openai SDK's own types, strictly.

The SDK is the authority on OpenAI's shapes, but its types are lenient on purpose: its
request params are TypedDicts (nothing checks them at run time) and its response models
allow unknown fields. Both the agents file and the simulator must be as picky as OpenAI,
so here a value is validated against an SDK type with unknown fields refused at every
depth, no coercion (`"yes"` is not a bool) and lazy iterables consumed, so every item is
checked. Errors are short: the path and pydantic's reason for the first problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import pydantic
from pydantic import ConfigDict, ValidationError, create_model


class SdkTypeError(ValueError):
    """A value that does not fit the SDK type; `path` is dotted (`session.audio.output`)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


@cache
def _wrapper(type_: Any) -> type[pydantic.BaseModel]:
    # A TypedDict takes the config of the model it sits in: wrapping it is the only way to
    # forbid extra keys in the SDK's params (TypeAdapter refuses a config for them).
    return create_model(
        f"Strict{getattr(type_, '__name__', 'Value')}",
        __config__=ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True),
        value=(type_, ...),
    )


def _path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for part in loc[1:]:  # loc[0] is the wrapper's field
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif isinstance(part, str) and part[:1].isupper():
            continue  # a union member's class name, not a key
        else:
            parts.append(f".{part}" if parts else str(part))
    return "".join(parts)


def _wrong_branch(item: Any) -> bool:
    """An error that only says "this union member has another `type`"."""
    return bool(item["type"] == "literal_error" and item["loc"][-1:] == ("type",))


def _first_error(error: ValidationError, prefix: tuple[Any, ...] = ()) -> SdkTypeError:
    """The first problem of the union member the value meant (its `type` matched)."""
    errors = error.errors()
    wrong = [item["loc"][:-1] for item in errors if _wrong_branch(item)]
    relevant = [
        item for item in errors if not any(item["loc"][: len(w)] == w for w in wrong)
    ] or errors
    first = min(relevant, key=lambda item: len(item["loc"]))
    path = _path((*prefix, *first["loc"]))
    if first["type"] == "extra_forbidden":
        return SdkTypeError(path, "unknown field")
    return SdkTypeError(path, str(first["msg"]))


def _materialise(value: Any, loc: tuple[Any, ...]) -> Any:
    """Lists for the validator's lazy iterators (consuming them runs their checks)."""
    if isinstance(value, dict):
        return {k: _materialise(v, (*loc, k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_materialise(v, (*loc, i)) for i, v in enumerate(value)]
    if isinstance(value, Iterator) or type(value).__name__ == "ValidatorIterator":
        try:
            items = list(value)
        except ValidationError as error:  # its locations start at the iterable
            raise _first_error(error, loc) from None
        return [_materialise(v, (*loc, i)) for i, v in enumerate(items)]
    return value


def check_params(type_: Any, value: Any) -> Any:
    """Validate `value` against an SDK params type (a TypedDict or a union of them)."""
    try:
        checked = _wrapper(type_).model_validate({"value": value}).value  # type: ignore[attr-defined]
    except ValidationError as error:
        raise _first_error(error) from None
    return _materialise(checked, ("value",))


def _extras(model: pydantic.BaseModel, path: str) -> str | None:
    """The path of the first field the model did not declare, at any depth."""
    for key in model.model_extra or {}:
        return f"{path}.{key}" if path else key
    for name in type(model).model_fields:
        found = _extras_in(getattr(model, name), f"{path}.{name}" if path else name)
        if found is not None:
            return found
    return None


def _extras_in(value: Any, path: str) -> str | None:
    if isinstance(value, pydantic.BaseModel):
        return _extras(value, path)
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _extras_in(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def check_model(model: type[pydantic.BaseModel], value: Any) -> pydantic.BaseModel:
    """Validate `value` against an SDK response model, refusing undeclared fields."""
    try:
        parsed = model.model_validate(value, strict=True)
    except ValidationError as error:
        first = min(error.errors(), key=lambda item: len(item["loc"]))
        path = ".".join(str(p) for p in first["loc"])
        raise SdkTypeError(path, str(first["msg"])) from None
    extra = _extras(parsed, "")
    if extra is not None:
        raise SdkTypeError(extra, "unknown field")
    return parsed
