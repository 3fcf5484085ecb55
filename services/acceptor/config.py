"""The acceptor's own settings (environment), beside the shared `Settings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AcceptorSettings(BaseSettings):
    """`SWITCHBOARD_REJECT_SIP_STATUS`, `SWITCHBOARD_AGENT_HOOK_TIMEOUT_MS`,
    `SWITCHBOARD_AGENTS_POLL_S`."""

    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
        env_ignore_empty=True,
    )

    switchboard_reject_sip_status: int = Field(
        486, ge=400, le=699, description="SIP status of a call refused for capacity (486 Busy)"
    )
    switchboard_agent_hook_timeout_ms: int = Field(
        250, ge=0, le=2000, description="budget of the agents.resolve hook; 0 turns it off"
    )
    switchboard_agents_poll_s: float = Field(
        1.0, ge=0, description="how often the agents file is checked for changes; 0: SIGHUP only"
    )
