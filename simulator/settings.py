"""The simulator's own settings (`SIMULATOR_*` in the environment or `.env`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulatorSettings(BaseSettings):
    """Where the simulated OpenAI listens and where it sends its webhooks."""

    model_config = SettingsConfigDict(
        env_prefix="SIMULATOR_",
        env_file=".env",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
        env_ignore_empty=True,
    )

    host: str = Field("127.0.0.1", description="address of the simulated OpenAI")
    port: int = Field(8090, ge=0, le=65535, description="port of REST and sideband")
    webhook_url: str = Field(
        "http://127.0.0.1:8080/api/voice/realtime-webhook",
        description="where the simulated OpenAI sends realtime.call.incoming",
    )
