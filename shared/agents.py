"""Agent profiles: who answers a call, with which voice, instructions, tools and limits.

The acceptor resolves one per call and puts it in the session job, so the session worker
runs the call with exactly the agent it was accepted with, even if the agents file
changes mid-call.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.settings import Settings


class FunctionTool(BaseModel):
    """A business tool, run by a tool service over NATS request/reply (`tools.<name>`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    timeout_s: float = Field(8.0, gt=0, le=60)


class BuiltinTool(BaseModel):
    """A tool Switchboard runs itself (`end_call`, `transfer_call`)."""

    model_config = ConfigDict(extra="forbid")

    builtin: Literal["end_call", "transfer_call"]
    targets: dict[str, str] = Field(default_factory=dict)
    # end_call: how long the goodbye may play before the hang-up; transfer_call: how long
    # the call has to leave after REFER (REFER can answer 200 and do nothing).
    timeout_s: float = Field(10.0, gt=0, le=120)


class AgentLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_concurrent_calls: int | None = Field(None, ge=1)
    max_duration_s: float = Field(3300.0, gt=0)
    idle_timeout_s: float | None = Field(None, gt=0)


class AgentProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    numbers: list[str] = Field(default_factory=list)
    model: str
    voice: str
    instructions: str
    greeting: str
    transcription: dict[str, Any] | None = None
    turn_detection: dict[str, Any] | None = Field(
        default_factory=lambda: {"type": "semantic_vad", "eagerness": "auto"}
    )
    tools: list[FunctionTool | BuiltinTool] = Field(default_factory=list)
    limits: AgentLimits = Field(default_factory=AgentLimits)


def default_agent(settings: Settings) -> AgentProfile:
    """The agent of the environment (`OPENAI_MODEL`, `OPENAI_VOICE`, …): used when no
    profile matches the dialled number."""
    return AgentProfile(
        name="default",
        model=settings.openai_model,
        voice=settings.openai_voice,
        instructions=settings.openai_instructions,
        greeting=settings.switchboard_greeting,
        transcription={"model": settings.openai_transcription_model},
        tools=[BuiltinTool(builtin="end_call")],
    )
