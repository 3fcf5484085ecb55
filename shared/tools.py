"""Business tools: the wire contract between session workers and tool services (NATS
request/reply on `tools.<name>`), which any language can implement."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TOOL_SUBJECT_PREFIX = "tools"


def tool_subject(name: str) -> str:
    return f"{TOOL_SUBJECT_PREFIX}.{name}"


class ToolRequest(BaseModel):
    """The request on `tools.<name>` (external contract)."""

    call_id: str
    tool_call_id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    agent: str
    # An outbound call's `context` (`POST /calls`); absent on inbound calls.
    context: dict[str, Any] | None = None


class ToolReply(BaseModel):
    """The answer a tool service sends to a request on `tools.<name>` (external contract).

    Exactly one of the two fields. The session worker itself reads replies as plain JSON
    (`services/session/tools.py`, `ToolResult`); this model documents them and tool
    services may use it.
    """

    model_config = ConfigDict(extra="forbid")
    output: Any = Field(None, description="the tool's result, any JSON, given to the model")
    error: str | None = Field(None, description="a failure message the model is told")
