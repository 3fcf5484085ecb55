"""Agent profiles: who answers a call, with which voice, instructions, tools and limits.

The acceptor resolves one per call and puts it in the session job, so the session worker
runs the call with exactly the agent it was accepted with, even if the agents file
changes mid-call.

A profile is refused when it holds something OpenAI refuses on a SIP accept, with the
reason, so that a mistake fails at start-up (or at reload) instead of as a dead call:
audio formats (the codec is negotiated in SDP; forcing one gave static or silence) and the
VAD tuning fields `threshold`, `prefix_padding_ms`, `silence_duration_ms` (400 Unknown
parameter on SIP).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from openai.types.realtime.audio_transcription_param import AudioTranscriptionParam
from openai.types.realtime.realtime_audio_input_turn_detection_param import (
    RealtimeAudioInputTurnDetectionParam,
)
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from shared.live_agent import (
    LIVE_DEFAULT_MODEL,
    LIVE_VOICES,
    Api,
    LiveDelegation,
    check_live_values,
    check_realtime_values,
    refused_fields,
)
from shared.outbound import OutboundConfig
from shared.settings import Settings
from shared.uris import is_dialable

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
DEFAULT_AGENT_NAME = "default"
# OpenAI ends every Realtime session after 60 minutes.
OPENAI_SESSION_CAP_S = 3600.0

AUDIO_FORMAT_REASON = (
    "audio formats cannot be set on a SIP call: the codec is negotiated in SDP "
    "(forcing one gave static or silence); remove it"
)
VAD_TUNING_REASON = (
    "OpenAI refuses {field!r} on a SIP accept (400 Unknown parameter); remove it "
    "(safe fields: type, eagerness, create_response, interrupt_response, idle_timeout_ms)"
)
SIP_REFUSED_TURN_DETECTION = ("threshold", "prefix_padding_ms", "silence_duration_ms")
AUDIO_FORMAT_FIELDS = ("audio", "input_audio_format", "output_audio_format", "format")
# What OpenAI's schema (RealtimeTurnDetection, AudioTranscription) allows, minus what SIP
# refuses.
_TURN_DETECTION_FIELDS = {
    "semantic_vad": {"type", "eagerness", "create_response", "interrupt_response"},
    "server_vad": {"type", "create_response", "interrupt_response", "idle_timeout_ms"},
}
_EAGERNESS = {"low", "medium", "high", "auto"}
_TRANSCRIPTION_FIELDS = {"model", "language", "languages", "keywords", "prompt", "delay"}


class FunctionTool(BaseModel):
    """A business tool, run by a tool service over NATS request/reply (`tools.<name>`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    timeout_s: float = Field(8.0, gt=0, le=60)


BuiltinName = Literal["end_call", "transfer_call"]
# Tools that act on the call itself: a worker runs them, never a tool service.
BUILTIN_TOOL_NAMES: frozenset[str] = frozenset(get_args(BuiltinName))


class BuiltinTool(BaseModel):
    """A tool Switchboard runs itself (`end_call`, `transfer_call`)."""

    model_config = ConfigDict(extra="forbid")

    builtin: BuiltinName
    targets: dict[str, str] = Field(default_factory=dict)
    # end_call: how long the goodbye may play before the hang-up; transfer_call: how long
    # the call has to leave after REFER (REFER can answer 200 and do nothing).
    timeout_s: float = Field(10.0, gt=0, le=120)

    @field_validator("targets")
    @classmethod
    def _sip_or_tel(cls, targets: dict[str, str]) -> dict[str, str]:
        for name, uri in targets.items():
            if not is_dialable(uri):
                raise ValueError(f"transfer target {name!r} must be a tel: or sip: URI")
        return targets


def _tool_kind(value: Any) -> str:
    """`builtin: …` entries are built-ins, everything else a function tool: one clear error
    per tool instead of one per union member."""
    if isinstance(value, dict):
        return "builtin_tool" if "builtin" in value else "function_tool"
    return "builtin_tool" if isinstance(value, BuiltinTool) else "function_tool"


Tool = Annotated[
    Annotated[FunctionTool, Tag("function_tool")] | Annotated[BuiltinTool, Tag("builtin_tool")],
    Discriminator(_tool_kind),
]


class AgentLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_concurrent_calls: int | None = Field(None, ge=1)
    max_duration_s: float = Field(3300.0, gt=0)
    idle_timeout_s: float | None = Field(None, gt=0)


def _semantic_vad() -> RealtimeAudioInputTurnDetectionParam:
    return {"type": "semantic_vad", "eagerness": "auto"}


class AgentProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    api: Api = "realtime"  # which of OpenAI's voice APIs answers (shared/live_agent.py)
    numbers: list[str] = Field(default_factory=list)
    model: str = Field(min_length=1)
    voice: str = Field(min_length=1)
    instructions: str
    greeting: str
    # Values are held to the SDK's own types (what OpenAI's API takes), names to what a
    # SIP accept takes, so a bad value fails at load with its line, not as a dead call.
    transcription: AudioTranscriptionParam | None = None
    turn_detection: RealtimeAudioInputTurnDetectionParam | None = Field(
        default_factory=_semantic_vad
    )
    tools: list[Tool] = Field(default_factory=list)
    limits: AgentLimits = Field(default_factory=AgentLimits)
    # GPT-Live only: the backend that calls the tools, and whether OpenAI stores the session.
    delegation: LiveDelegation | None = None
    store: bool | None = Field(None, strict=True)
    # GPT-Live only: may place calls (shared/outbound.py).
    outbound: OutboundConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_audio_format(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for field in AUDIO_FORMAT_FIELDS:
                if field in data:
                    raise ValueError(f"{field}: {AUDIO_FORMAT_REASON}")
            if data.get("api") == "live":
                # Realtime's defaults mean nothing to Live: absent, not "semantic_vad".
                data = {"turn_detection": None, "model": LIVE_DEFAULT_MODEL, **data}
        return data

    @model_validator(mode="after")
    def _fields_of_its_api(self) -> AgentProfile:
        """Fields the agent's API lacks are refused (by value, so a profile survives its
        own round trip through JSON)."""
        present = {
            name
            for name in ("transcription", "turn_detection", "delegation", "store", "outbound")
            if getattr(self, name) is not None
        }
        for field, reason in refused_fields(self.api, present):
            raise ValueError(f"{field}: {reason}")
        if self.api == "live":
            check_live_values(self)
        else:
            check_realtime_values(self)
        return self

    @field_validator("turn_detection", mode="before")
    @classmethod
    def _sip_turn_detection(cls, value: Any) -> Any:
        """Null turns VAD off; otherwise only what a SIP accept takes."""
        if not isinstance(value, dict):
            return value  # None, or a wrong type the SDK's type names
        for field in value:
            if field in SIP_REFUSED_TURN_DETECTION:
                raise ValueError(VAD_TUNING_REASON.format(field=field))
            if field == "format":
                raise ValueError(AUDIO_FORMAT_REASON)
        kind = value.get("type")
        if kind not in _TURN_DETECTION_FIELDS:
            raise ValueError("type must be semantic_vad or server_vad (or turn_detection: null)")
        unknown = sorted(set(value) - _TURN_DETECTION_FIELDS[kind])
        if unknown:
            allowed = ", ".join(sorted(_TURN_DETECTION_FIELDS[kind]))
            raise ValueError(f"unknown field {unknown[0]!r} for {kind} (allowed: {allowed})")
        if "eagerness" in value and value["eagerness"] not in _EAGERNESS:
            raise ValueError(f"eagerness must be one of {', '.join(sorted(_EAGERNESS))}")
        return value

    @field_validator("transcription", mode="before")
    @classmethod
    def _sip_transcription(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        if "format" in value:
            raise ValueError(AUDIO_FORMAT_REASON)
        unknown = sorted(set(value) - _TRANSCRIPTION_FIELDS)
        if unknown:
            allowed = ", ".join(sorted(_TRANSCRIPTION_FIELDS))
            raise ValueError(f"unknown field {unknown[0]!r} (allowed: {allowed})")
        if not isinstance(value.get("model"), str) or not value["model"]:
            raise ValueError("model is required (caller transcription is off without it)")
        return value

    @field_validator("tools")
    @classmethod
    def _unique_tools(
        cls, tools: list[FunctionTool | BuiltinTool]
    ) -> list[FunctionTool | BuiltinTool]:
        seen: set[str] = set()
        for tool in tools:
            name = tool.name if isinstance(tool, FunctionTool) else tool.builtin
            if name in seen:
                raise ValueError(f"tool {name!r} is listed twice")
            seen.add(name)
        return tools


def default_agent(settings: Settings) -> AgentProfile:
    """The agent of the environment (`OPENAI_MODEL`, `OPENAI_VOICE`, …): used when no
    profile matches the dialled number."""
    return AgentProfile(
        name=DEFAULT_AGENT_NAME,
        model=settings.openai_model,
        voice=settings.openai_voice,
        instructions=settings.openai_instructions,
        greeting=settings.switchboard_greeting,
        transcription={"model": settings.openai_transcription_model},
        tools=[BuiltinTool(builtin="end_call")],
    )


def live_default_agent(default: AgentProfile) -> AgentProfile:
    """The default agent for a call that came through GPT-Live: the environment's agent is
    a Realtime one (`OPENAI_MODEL`), which Live cannot run. Same instructions, greeting and
    limits on `gpt-live-1`; no tools, as no delegation backend is configured for it."""
    return AgentProfile(
        name=default.name,
        api="live",
        model=LIVE_DEFAULT_MODEL,
        voice=default.voice if default.voice in LIVE_VOICES else "marin",
        instructions=default.instructions,
        greeting=default.greeting,
        limits=default.limits,
    )
