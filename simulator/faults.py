"""Switches that make the simulated OpenAI misbehave the ways the real one has been seen to.

The instance on `Simulator.faults` is read at the moment each behaviour happens, so a test or
a benchmark can flip a switch while calls are running.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Faults(BaseModel):
    """Fault injection; the defaults make the simulator behave like a healthy OpenAI."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    accept_status: int | None = Field(
        default=None, description="answer accepts with this status (e.g. 500) instead of 200"
    )
    accept_delay_s: float = Field(default=0.0, ge=0, description="wait before answering accept")
    accept_fail_times: int = Field(
        default=0,
        ge=0,
        description="fail the first N accepts of each call (accept_status or 500), then succeed",
    )
    drop_sideband_after_s: float | None = Field(
        default=None, ge=0, description="drop each new sideband after N s, no close frame"
    )
    duplicate_webhooks: int = Field(
        default=0, ge=0, description="deliver each webhook N extra times with the same id"
    )
    redeliver_new_id: int = Field(
        default=0, ge=0, description="deliver the same call again under N new webhook ids"
    )
    refer_outcome: Literal["transfer", "silent", "error"] = "transfer"
    allow_reattach: bool = Field(
        default=True,
        description="allow a second sideband while one is open (False: 409); whether OpenAI "
        "does is undocumented. Re-attaching after a drop always works on a live call.",
    )
    session_cap_s: float = Field(default=3600.0, gt=0, description="OpenAI's 60-minute cap")
    sideband_status: int | None = Field(
        default=None,
        ge=400,
        le=599,
        description="answer every sideband attach with this HTTP status (e.g. 403)",
    )
    fail_responses: int = Field(
        default=0, ge=0, description="fail the first N responses the worker asks for"
    )
    fail_responses_with: Literal["failed", "incomplete"] = Field(
        default="failed", description="how they fail: an error, or cut at max_output_tokens"
    )
    transcription_off: bool = Field(
        default=False,
        description="the session OpenAI reports has no input transcription (a configuration "
        "that did not take): no caller transcripts come",
    )
