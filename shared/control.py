"""Operator commands for one call: the wire contract between the ingress's control API and
the session worker that owns the call (NATS request/reply on `calls.control.<call_id>`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

CONTROL_SUBJECT_PREFIX = "calls.control"


def control_subject(call_id: str) -> str:
    return f"{CONTROL_SUBJECT_PREFIX}.{call_id}"


class ControlCommand(BaseModel):
    """A request on `calls.control.<call_id>`."""

    action: Literal["hangup", "transfer", "say"]
    target: str | None = Field(None, max_length=256)
    instructions: str | None = Field(None, max_length=4000)


class ControlReply(BaseModel):
    """The owning worker's answer; `status` says what happened or `error` why not."""

    ok: bool
    status: str
    error: str | None = None
    worker: str | None = None
