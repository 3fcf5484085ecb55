"""Request bodies: capped while they are read, and read in bounded time.

`Request.body()` buffers whatever the client sends before anyone can look at its size: a
200 MB `say` took the ingress from 77 MB to 468 MB before its 413. Here a declared
`Content-Length` over the cap is refused before a byte is read, a chunked body as soon as
it passes the cap, and a client that sends its body too slowly is cut off.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request

# A client gets this long to send a whole body (a webhook or a control command is small).
BODY_TIMEOUT_S = 10.0


class BodyRefused(Exception):
    """The body was not read; `status` (413, 408, 400) and `reason` say why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_capped(request: Request, limit: int, timeout_s: float | None = None) -> bytes:
    """The raw body, at most `limit` bytes, within `timeout_s` (`BODY_TIMEOUT_S`);
    `BodyRefused` otherwise (starlette's `ClientDisconnect` when the client goes away)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):  # `isdigit` alone takes "²³"
            raise BodyRefused(400, "invalid content-length")
        if int(declared) > limit:
            raise BodyRefused(413, "payload too large")
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S if timeout_s is None else timeout_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise BodyRefused(413, "payload too large")
    except TimeoutError:
        raise BodyRefused(408, "body not received in time") from None
    return bytes(body)
