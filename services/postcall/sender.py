"""One delivery attempt over HTTP: POST, read at most a little of the answer, classify.

No redirect is followed (a 3xx is a failed attempt: the subscriber fixes its URL), no
proxy from the environment is used, and of the response body at most `BODY_CAP` bytes
are read and at most `LOG_CAP` characters, cleaned, reach a log line.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from services.postcall.transport import RefusedAddress, checked_transport
from shared.logging import clean

BODY_CAP = 4096
LOG_CAP = 200


@dataclass(frozen=True)
class Attempt:
    status: int | None  # the HTTP status; None when there was no answer
    outcome: str  # metric label: ok, http_4xx, http_5xx, redirect, gone, timeout, unsafe, error
    retry_after: str | None = None
    detail: str = ""  # for the log: short and cleaned


def outcome_of(status: int) -> str:
    if 200 <= status < 300:
        return "ok"
    if status == 410:
        return "gone"
    if 300 <= status < 400:
        return "redirect"
    return "http_4xx" if status < 500 else "http_5xx"


class Sender:
    def __init__(self, *, timeout_s: float, allow_private: bool, max_connections: int) -> None:
        self._client = httpx.AsyncClient(
            transport=checked_transport(
                allow_private=allow_private, max_connections=max_connections
            ),
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            trust_env=False,
        )

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Attempt:
        try:
            async with self._client.stream("POST", url, headers=headers, content=body) as answer:
                head = bytearray()
                async for chunk in answer.aiter_raw():
                    head += chunk
                    if len(head) >= BODY_CAP:
                        break
                return Attempt(
                    status=answer.status_code,
                    outcome=outcome_of(answer.status_code),
                    retry_after=answer.headers.get("retry-after"),
                    detail=clean(bytes(head[:LOG_CAP]).decode("utf-8", "replace"), LOG_CAP),
                )
        except httpx.TimeoutException:
            return Attempt(None, "timeout", detail="no answer in time")
        except httpx.ConnectError as error:
            if isinstance(error.__cause__, RefusedAddress):
                return Attempt(None, "unsafe", detail=str(error.__cause__))
            return Attempt(None, "error", detail=f"connect: {clean(str(error), LOG_CAP)}")
        except httpx.HTTPError as error:
            return Attempt(None, "error", detail=type(error).__name__)

    async def close(self) -> None:
        await self._client.aclose()
