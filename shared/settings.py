"""Configuration from the environment (and an optional `.env`), as documented in the README.

Variable names are the external contract (see the README's configuration table); the seed's
names (`OPENAI_MODEL`, `OPENAI_VOICE`, `OPENAI_INSTRUCTIONS`) are kept.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.limits import DEFAULT_TOOL_REPLY_MAX_BYTES, MAX_TOOL_REPLY_BYTES

DEFAULT_INSTRUCTIONS = (
    "You are a friendly, concise phone receptionist. Keep answers short; this is a phone call."
)
DEFAULT_GREETING = "Hello, thanks for calling. How can I help you today?"


class Settings(BaseSettings):
    """Everything a Switchboard process reads from its environment."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    nats_url: str = "nats://127.0.0.1:4222"
    nats_replicas: int = Field(1, description="replicas of streams and buckets (3 in production)")

    openai_api_key: SecretStr = SecretStr("")
    openai_webhook_secret: SecretStr = SecretStr("")
    openai_base_url: str = "https://api.openai.com/v1"
    openai_timeout_s: float = 2.0

    # The default agent (seed names kept).
    openai_model: str = "gpt-realtime-2.1"
    openai_voice: str = "marin"
    openai_instructions: str = DEFAULT_INSTRUCTIONS
    openai_transcription_model: str = "gpt-4o-mini-transcribe"
    switchboard_greeting: str = DEFAULT_GREETING
    switchboard_agents_file: Path | None = None
    switchboard_control_token: SecretStr | None = None
    switchboard_view_token: SecretStr | None = None  # the console, read only

    ingress_host: str = "0.0.0.0"
    ingress_port: int = 8080
    webhook_max_bytes: int = 64 * 1024
    metrics_port: int = 0
    session_capacity: int = 50
    worker_id: str = ""

    # Time budget: a call must be accepted within this many seconds of the webhook.
    accept_deadline_s: float = 5.0
    # JetStream delivery of a session job: ack_wait, kept alive with +WPI while the call lives.
    # A killed worker's calls are re-attached about max(ack_wait, lease TTL) after its last
    # heartbeat (every min of the two / 3): 3 s keeps failover under the 5 s budget.
    session_ack_wait_s: float = 3.0
    session_lease_ttl_s: int = 3
    session_drain_deadline_s: float = 30.0
    # A tool reply larger than this is refused (the model is told the tool failed): it is
    # stored in the run record and an event, which must stay under NATS's 1 MiB.
    tool_reply_max_bytes: int = Field(
        DEFAULT_TOOL_REPLY_MAX_BYTES, ge=1024, le=MAX_TOOL_REPLY_BYTES
    )

    log_format: str = Field("json", description="json or text")
    log_level: str = "INFO"

    @field_validator("nats_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @field_validator("switchboard_control_token", "switchboard_view_token")
    @classmethod
    def _empty_token_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty token (e.g. `SWITCHBOARD_CONTROL_TOKEN=` in compose) turns the API off."""
        if value is None or not value.get_secret_value().strip():
            return None
        return value

    @property
    def nats_servers(self) -> list[str]:
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]

    @property
    def webhook_secrets(self) -> list[str]:
        """One or more `whsec_…` secrets: several are valid at once during rotation."""
        raw = self.openai_webhook_secret.get_secret_value()
        return [s for s in re.split(r"[\s,]+", raw) if s]

    @property
    def sideband_base_url(self) -> str:
        """`OPENAI_BASE_URL` with `http`→`ws`, `https`→`wss`."""
        base = self.openai_base_url.rstrip("/")
        if base.startswith("https://"):
            return "wss://" + base.removeprefix("https://")
        if base.startswith("http://"):
            return "ws://" + base.removeprefix("http://")
        return base

    def sideband_url(self, call_id: str) -> str:
        return f"{self.sideband_base_url}/realtime?call_id={call_id}"

    def live_sideband_url(self, session_id: str) -> str:
        """GPT-Live's sideband; `graceful_close` asks for a closing handshake at the end."""
        return f"{self.sideband_base_url}/live/sessions/{session_id}/attach?graceful_close=true"
