"""Which agent answers a dialled number, and what a resolve hook may change. Pure.

An `AgentDirectory` is immutable: a reload builds a new one and swaps the reference, so a
decision in flight finishes with the profiles it started with and nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from shared.agents import AgentProfile, live_default_agent
from shared.numbers import dialled_number

# What a hook reply may override on the profile it picked; the name (which the per-agent
# call limit counts by) and the numbers stay the file's.
OVERRIDABLE = frozenset(
    {
        "model",
        "voice",
        "instructions",
        "greeting",
        "transcription",
        "turn_detection",
        "tools",
        "limits",
        "delegation",  # GPT-Live agents only (refused for Realtime ones by validation)
        "store",
    }
)


class OverrideRefused(ValueError):
    """A hook override that would make a profile OpenAI refuses (or that is not allowed)."""


@dataclass(frozen=True)
class AgentDirectory:
    default: AgentProfile
    by_number: Mapping[str, AgentProfile] = field(default_factory=dict)
    by_name: Mapping[str, AgentProfile] = field(default_factory=dict)
    # The default agent for calls that came through GPT-Live (the environment's is Realtime).
    live_default: AgentProfile | None = None

    @classmethod
    def build(cls, default: AgentProfile, profiles: Iterable[AgentProfile]) -> AgentDirectory:
        profiles = list(profiles)
        return cls(
            default=default,
            by_number={number: p for p in profiles for number in p.numbers},
            by_name={default.name: default, **{p.name: p for p in profiles}},
            live_default=live_default_agent(default),
        )

    def for_to_header(self, to_header: str | None, api: str = "realtime") -> AgentProfile:
        """The profile of the number dialled (the `To` header's user part), else the default
        agent, on the API the call came through."""
        number = dialled_number(to_header)
        default = self.live_default if api == "live" and self.live_default else self.default
        if number is None:
            return default
        return self.by_number.get(number, default)

    def named(self, name: str) -> AgentProfile | None:
        return self.by_name.get(name)


def apply_override(profile: AgentProfile, override: Mapping[str, Any]) -> AgentProfile:
    """The profile with the hook's fields replaced, validated by the same SIP rules as the
    file; raises `OverrideRefused` with the reason."""
    if not override:
        return profile
    refused = sorted(set(override) - OVERRIDABLE)
    if refused:
        raise OverrideRefused(f"override of {', '.join(refused)} is not allowed")
    try:
        return AgentProfile.model_validate({**profile.model_dump(), **override})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "profile"
        reason = str(first["msg"]).removeprefix("Value error, ")
        raise OverrideRefused(f"{where}: {reason}") from None
