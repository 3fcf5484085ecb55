"""The OpenAI client every service uses for call control.

The SDK's defaults are wrong for a phone call: two hidden retries and a 600 s timeout,
while the caller is waiting for the phone to be answered. We set a short timeout and no
retries, and each service decides itself what deserves a retry.
"""

from __future__ import annotations

from openai import AsyncOpenAI

from shared.settings import Settings


def call_control_client(settings: Settings) -> AsyncOpenAI:
    return AsyncOpenAI(
        api_key=settings.openai_api_key.get_secret_value() or "unset",
        base_url=settings.openai_base_url,
        timeout=settings.openai_timeout_s,
        max_retries=0,
    )
