"""What a GPT-Live agent may hold, and what only one of OpenAI's two voice APIs has. Pure.

An agent names its API (`api: realtime | live`). The two take different accept bodies:
Live has no turn detection, no transcription config (transcripts are always on) and no
audio formats; only Live has a delegation backend (the Responses model that calls the
tools) and `store`. A field the agent's API lacks would be a 400 at the first call, so
it is refused at load with the reason. Values are checked against the SDK's Live types
(`openai.types.live`), the authority on shapes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, get_args

from openai.types.live.built_in_voice import BuiltInVoice
from openai.types.live.responses_delegation_config_param import ResponsesDelegationConfigParam
from pydantic import BaseModel, ConfigDict, Field

from shared.sdk_types import SdkTypeError, check_params

if TYPE_CHECKING:
    from shared.agents import AgentProfile

Api = Literal["realtime", "live"]
APIS: tuple[str, ...] = get_args(Api)
LIVE_DEFAULT_MODEL = "gpt-live-1"
LIVE_VOICES = frozenset(get_args(BuiltInVoice))
CUSTOM_VOICE_PREFIX = "voice_"

# Fields of a profile that only one API has, and why the other refuses them.
REALTIME_ONLY: dict[str, str] = {
    "transcription": "GPT-Live has no transcription config: transcripts are always on",
    "turn_detection": "GPT-Live has no turn detection: the model takes turns itself",
}
LIVE_ONLY: dict[str, str] = {
    "delegation": "only GPT-Live agents have a delegation backend (api: live)",
    "store": "only GPT-Live sessions are stored (api: live)",
    "outbound": "only GPT-Live places calls (api: live)",
}


class LiveDelegation(BaseModel):
    """The Responses model a Live agent delegates tasks (and tool calls) to."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    instructions: str | None = None  # the backend prompt: business rules, tool workflows

    def responses_config(self, tools: list[dict[str, Any]]) -> dict[str, Any]:
        """`delegation.responses` as the SDK types it."""
        config: dict[str, Any] = {"model": self.model}
        if self.instructions:
            config["instructions"] = self.instructions
        if tools:
            config["tools"] = tools
        return config


def refused_fields(api: str, present: set[str]) -> list[tuple[str, str]]:
    """(field, reason) for each field in `present` the agent's API does not have."""
    other = REALTIME_ONLY if api == "live" else LIVE_ONLY
    return [(name, reason) for name, reason in other.items() if name in present]


def voice_param(voice: str) -> str | dict[str, str]:
    """A built-in voice by name, a custom one (`voice_…`) as `{"id": …}`."""
    return {"id": voice} if voice.startswith(CUSTOM_VOICE_PREFIX) else voice


def check_live_values(agent: AgentProfile) -> None:
    """Raise ValueError naming the first Live value OpenAI would refuse."""
    if agent.model.startswith("gpt-realtime"):
        raise ValueError(f"model: {agent.model!r} is a Realtime model; Live needs gpt-live-…")
    if agent.voice not in LIVE_VOICES and not agent.voice.startswith(CUSTOM_VOICE_PREFIX):
        raise ValueError(
            f"voice: {agent.voice!r} is not a GPT-Live voice "
            f"(built-in: {', '.join(sorted(LIVE_VOICES))}; or a custom voice_…)"
        )
    if agent.tools and agent.delegation is None:
        raise ValueError(
            "delegation: a Live agent's tools are called by its delegation backend; "
            "set delegation.model (e.g. gpt-5-mini) or remove the tools"
        )
    if agent.delegation is not None:
        try:
            check_params(ResponsesDelegationConfigParam, agent.delegation.responses_config([]))
        except SdkTypeError as error:
            raise ValueError(f"delegation.{error}") from None


def check_realtime_values(agent: AgentProfile) -> None:
    if agent.model.startswith("gpt-live"):
        raise ValueError(f"model: {agent.model!r} is a GPT-Live model; set api: live")
