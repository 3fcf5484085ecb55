"""How the simulated GPT-Live behaves where OpenAI's docs say nothing sure.

The reference marks these as unverified (../shared/reference/openai-live-sip.md §4, §7):
whether a second sideband may attach while one is open, whether an attach replays earlier
events, whether `session.started` comes on every attach, how the socket closes without
`graceful_close`. Each is a switch, so tests show Switchboard works whichever is true. The
instance on `LiveSurface.rules` is read when each behaviour happens (flip it mid-call).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LiveRules(BaseModel):
    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    second_attach: Literal["allow", "refuse"] = Field(
        default="allow",
        description="a sideband attaching while another is open: allowed (both observe) or "
        "refused with 409",
    )
    replay_events: int = Field(
        default=0,
        ge=0,
        description="replay this many of the latest events (audio excluded) to a new "
        "sideband; 0 = none, as the sideband reference says",
    )
    session_started: Literal["every_attach", "first_attach", "never"] = Field(
        default="first_attach", description="when an attach gets `session.started`"
    )
    close_without_graceful: Literal["abort", "close"] = Field(
        default="abort",
        description="after `session.closed`, a sideband without graceful_close=true is "
        "dropped without a close frame (abort) or closed normally",
    )
    reflect_audio: bool = Field(
        default=True,
        description="reflect caller and agent audio on the sideband at the real rate "
        "(24 kHz PCM16, base64) while the call is up",
    )
    audio_chunk_ms: int = Field(default=100, ge=10, le=1000, description="audio per event")
    expires_after_s: float = Field(
        default=3600.0, gt=0, description="the session ends with reason `expired` after this"
    )
    accept_conflict_status: int = Field(
        default=409,
        description="what accepting the other API's id of an already answered SIP call gets",
    )
