"""One OpenAI call-control request (accept, reject, refer, hangup), counted and timed.

The acceptor and the session worker both talk to OpenAI's call-control REST API; each
decides itself what a status means for its call (retry, give up, "the call is gone"). What
they share is here: the request, its outcome as an HTTP status, and the metrics.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import openai

from shared import metrics


@dataclass(frozen=True)
class CallControlAnswer:
    status: str  # "200", "404", "500", …; "timeout" or "error" when no answer came back
    message: str = ""  # OpenAI's error message, for the log (never shown to callers)

    @property
    def ok(self) -> bool:
        return self.status == "200"

    @property
    def retryable(self) -> bool:
        """Worth another try: no answer, a server error or a rate limit."""
        return self.status in ("timeout", "error", "429") or self.status.startswith("5")


async def call_control(endpoint: str, request: Awaitable[Any]) -> CallControlAnswer:
    """Await `request` (an SDK call such as `client.realtime.calls.hangup(call_id)`)."""
    started = time.perf_counter()
    answer = CallControlAnswer("200")
    try:
        await request
    except openai.APIStatusError as error:
        answer = CallControlAnswer(str(error.status_code), error.message)
    except openai.APITimeoutError:
        answer = CallControlAnswer("timeout")
    except openai.APIConnectionError:
        answer = CallControlAnswer("error")
    finally:
        metrics.OPENAI_REQUESTS.labels(endpoint, answer.status).inc()
        metrics.OPENAI_REQUEST_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
    return answer
