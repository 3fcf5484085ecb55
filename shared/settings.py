"""Configuration from the environment (and an optional `.env`), as documented in the README.

Variable names are the external contract (see the README's configuration table); the seed's
names (`OPENAI_MODEL`, `OPENAI_VOICE`, `OPENAI_INSTRUCTIONS`) are kept.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Literal, TypeVar, overload
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.limits import DEFAULT_TOOL_REPLY_MAX_BYTES, MAX_TOOL_REPLY_BYTES

DEFAULT_INSTRUCTIONS = (
    "You are a friendly, concise phone receptionist. Keep answers short; this is a phone call."
)
DEFAULT_GREETING = "Hello, thanks for calling. How can I help you today?"
# Ports of the acceptor's and a session worker's health/metrics server when METRICS_PORT
# is unset (two services on one host must not collide).
DEFAULT_METRICS_PORTS = {"acceptor": 9101, "session": 9102, "dialler": 9103, "postcall": 9104}


class ConfigError(Exception):
    """A setting that cannot work: the message names the variable (or file:line), never
    its value, and is shown as one line before the process exits with code 2."""


# How every settings class reads the environment and `.env` (this one and a service's own).
# hide_input_in_errors: a validation error must never echo a value (it may be a secret).
# env_ignore_empty: `VAR=` (compose's `${VAR:-}`) means "use the default".
SETTINGS_CONFIG = SettingsConfigDict(
    env_file=".env",
    extra="ignore",
    case_sensitive=False,
    hide_input_in_errors=True,
    env_ignore_empty=True,
)


class Settings(BaseSettings):
    """Everything a Switchboard process reads from its environment."""

    model_config = SETTINGS_CONFIG

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

    ingress_host: str = Field("0.0.0.0", description="address the ingress listens on")
    ingress_port: int = Field(8080, ge=0, le=65535, description="port of the ingress")
    webhook_max_bytes: int = Field(64 * 1024, gt=0)
    metrics_host: str = Field(
        "0.0.0.0", description="address of the acceptor's and session workers' health server"
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="health/metrics port; unset: acceptor 9101, session 9102"
    )
    session_capacity: int = Field(50, ge=1, description="concurrent calls a session worker holds")
    worker_id: str = Field("", description="stable name of a session worker")

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

    # History: how long JetStream keeps call events (and the call index) — 7 days.
    switchboard_events_retention_s: float = 7 * 24 * 3600.0

    # `switchboard calls`: the ingress it asks.
    switchboard_url: str = "http://127.0.0.1:8080"

    # Post-call webhooks (services/postcall).
    switchboard_webhooks_file: Path | None = None
    switchboard_webhooks_retry_schedule: str = "5,30,300,1800,3600"
    switchboard_webhooks_max_age_s: float = 24 * 3600.0
    switchboard_webhooks_allow_private: bool = False
    switchboard_webhooks_timeout_s: float = 10.0
    switchboard_webhooks_concurrency: int = 16
    switchboard_webhooks_poll_s: float = 1.0

    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("nats_url")
    @classmethod
    def _servers(cls, value: str) -> str:
        """Comma-separated `scheme://[user:pass@]host[:port]`; checked here, not at connect."""
        for index, url in enumerate((u.strip() for u in value.split(",")), start=1):
            parts = urlsplit(url if "://" in url else f"nats://{url}")
            try:
                valid = bool(parts.hostname) and (parts.port or 0) >= 0
            except ValueError:
                valid = False
            if not valid:
                raise ValueError(f"URL {index} is not scheme://host:port")
        return value.strip()

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("openai_api_key")
    @classmethod
    def _one_word_key(cls, value: SecretStr) -> SecretStr:
        """A key pasted with a newline or space fails every request later, with no hint."""
        if re.search(r"\s", value.get_secret_value()):
            raise ValueError("contains whitespace (a stray newline or space?)")
        return value

    @field_validator("openai_webhook_secret")
    @classmethod
    def _whsec_base64(cls, value: SecretStr) -> SecretStr:
        """Each secret is `whsec_` + base64, or every webhook would fail verification."""
        secrets = [s for s in re.split(r"[\s,]+", value.get_secret_value()) if s]
        for index, secret in enumerate(secrets, start=1):
            try:
                base64.b64decode(secret.removeprefix("whsec_"), validate=True)
            except (binascii.Error, ValueError):
                where = f"secret {index} of {len(secrets)}" if len(secrets) > 1 else "the secret"
                raise ValueError(f"{where} is not whsec_ followed by base64") from None
        return value

    @field_validator("switchboard_webhooks_retry_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        _delays(value)  # refused at start-up, not at the first failed delivery
        return value

    @field_validator("switchboard_control_token", "switchboard_view_token")
    @classmethod
    def _empty_token_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty token (e.g. `SWITCHBOARD_CONTROL_TOKEN=` in compose) turns the API off."""
        if value is None or not value.get_secret_value().strip():
            return None
        if re.search(r"\s", value.get_secret_value()):
            raise ValueError("contains whitespace (a stray newline or space?)")
        return value

    @property
    def webhooks_retry_schedule(self) -> list[float]:
        """`SWITCHBOARD_WEBHOOKS_RETRY_SCHEDULE` as seconds; the last one repeats."""
        return _delays(self.switchboard_webhooks_retry_schedule)

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


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


@overload
def load_settings() -> Settings: ...
@overload
def load_settings(kind: type[SettingsT]) -> SettingsT: ...
def load_settings(kind: type[BaseSettings] = Settings) -> BaseSettings:
    """`kind()` from the environment and `.env`, or `ConfigError` naming each bad variable
    (pydantic's reason, never the value)."""
    try:
        return kind()
    except ValidationError as error:
        prefix = kind.model_config.get("env_prefix", "")
        problems = []
        for problem in error.errors(include_input=False, include_url=False):
            name = (prefix + "".join(str(part) for part in problem["loc"][:1])).upper()
            reason = problem["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {reason}")
        raise ConfigError("; ".join(problems)) from None


def require(settings: Settings, *fields: str) -> None:
    """`ConfigError` for the first of `fields` (e.g. `openai_webhook_secret`) left empty."""
    for name in fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not value:
            raise ConfigError(f"{name.upper()} is not set")


def _delays(text: str) -> list[float]:
    try:
        delays = [float(part) for part in re.split(r"[\s,]+", text.strip()) if part]
    except ValueError:
        delays = []
    if not delays or any(not 0 <= d < float("inf") for d in delays):
        raise ValueError("comma-separated seconds, each 0 or more, e.g. 5,30,300,1800,3600")
    return delays
