"""The acceptor's own settings (environment), beside the shared `Settings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from shared.settings import SETTINGS_CONFIG

# Unless set, a webhook is shed when this little time is left before its accept deadline:
# a reject's round trip (with one retry) fits in it.
SHED_MARGIN_S = 1.5


class AcceptorSettings(BaseSettings):
    """`SWITCHBOARD_REJECT_SIP_STATUS`, `SWITCHBOARD_AGENT_HOOK_TIMEOUT_MS`,
    `SWITCHBOARD_AGENTS_POLL_S`, `SWITCHBOARD_SHED_AFTER_S`,
    `SWITCHBOARD_CONCURRENT_ACCEPTS`."""

    model_config = SETTINGS_CONFIG

    switchboard_reject_sip_status: int = Field(
        486, ge=400, le=699, description="SIP status of a call refused for capacity (486 Busy)"
    )
    switchboard_agent_hook_timeout_ms: int = Field(
        250, ge=0, le=2000, description="budget of the agents.resolve hook; 0 turns it off"
    )
    switchboard_agents_poll_s: float = Field(
        1.0, ge=0, description="how often the agents file is checked for changes; 0: SIGHUP only"
    )
    switchboard_shed_after_s: float | None = Field(
        None,
        ge=0,
        description="a webhook that waited this long for its decision is refused at once as "
        "overloaded (0: never); unset: 1.5 s before ACCEPT_DEADLINE_S",
    )

    # Little's law: calls decided at once = calls per second x seconds per decision, and a
    # decision waits for OpenAI's accept (~0.1-0.5 s). 16 capped a replica near 50 calls/s
    # when accepts took 0.3 s, and the rest were shed as overloaded with CPU to spare.
    switchboard_concurrent_accepts: int = Field(
        64, ge=1, le=1024, description="webhooks one acceptor decides at once"
    )

    def shed_after_s(self, accept_deadline_s: float) -> float:
        """When a waiting webhook is shed: late enough that no call that could still be
        accepted in time is refused, early enough that the reject lands before the deadline."""
        if self.switchboard_shed_after_s is not None:
            return self.switchboard_shed_after_s
        return max(0.5, accept_deadline_s - SHED_MARGIN_S)
