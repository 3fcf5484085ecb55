"""Talking to GPT-Live about one dial: create the session with a SIP transport, then watch
its sideband until the callee answers or the call fails.

The SDK types `client.live.create` as WebRTC only (reference §3.3), so the request goes
through the SDK's generic `post` with the SIP transport as the reference gives it. It is
sent once, never retried by the SDK (`max_retries=0`): a request that may have reached
OpenAI is a dial that may have happened, and one Idempotency-Key dials at most once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import openai
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from shared import metrics
from shared.settings import Settings

log = logging.getLogger(__name__)

DialKind = Literal["created", "refused", "not_sent", "unconfirmed"]
WatchKind = Literal["ringing", "answered", "failed", "closed", "timeout", "gone"]


@dataclass(frozen=True)
class DialResult:
    kind: DialKind
    session_id: str | None = None
    detail: str = ""  # OpenAI's status and code, never the body we sent


@dataclass(frozen=True)
class Progress:
    kind: WatchKind
    code: str = ""  # OpenAI's `transport.failed` error code / `session.closed` reason


async def create_session(
    client: openai.AsyncOpenAI, session: dict[str, Any], transport: dict[str, Any]
) -> DialResult:
    """`POST /v1/live/sessions`: `created` (201, the session id), `refused` (4xx but 429:
    nothing was dialled), `not_sent` (429 or no connection: safe to try later) or
    `unconfirmed` (a timeout or a server error: it may have dialled)."""
    started = time.perf_counter()
    status = "201"
    try:
        body = await client.with_options(max_retries=0).post(
            "/live/sessions",
            body={"session": session, "transport": transport},
            cast_to=object,
        )
    except openai.APIStatusError as error:
        status = str(error.status_code)
        code = _error_code(error.body)
        if error.status_code == 429:
            return DialResult("not_sent", detail=f"429 {code}".strip())
        if error.status_code < 500:
            return DialResult("refused", detail=f"{status} {code}".strip())
        return DialResult("unconfirmed", detail=f"{status} {code}".strip())
    except openai.APITimeoutError:
        status = "timeout"
        return DialResult("unconfirmed", detail="timeout")
    except openai.APIConnectionError as error:
        status = "error"
        if isinstance(error.__cause__, httpx.ConnectError):
            return DialResult("not_sent", detail="no connection")
        return DialResult("unconfirmed", detail="connection lost")
    finally:
        metrics.OPENAI_REQUESTS.labels("dial", status).inc()
        metrics.OPENAI_REQUEST_SECONDS.labels("dial").observe(time.perf_counter() - started)
    session_id = (body.get("session") or {}).get("id") if isinstance(body, dict) else None
    if not isinstance(session_id, str) or not session_id.startswith("live_"):
        return DialResult("unconfirmed", detail="201 without a session id")
    return DialResult("created", session_id=session_id)


def _error_code(body: object) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("code"):
            return str(error["code"])[:64]
    return ""


async def hang_up(client: openai.AsyncOpenAI, session_id: str) -> None:
    """Cancel a dial (or end a call); a session already gone is fine."""
    try:
        await client.live.sessions.hangup(session_id)
    except openai.NotFoundError:
        return


class Watch:
    """The sideband of a ringing session, read until the dial's outcome."""

    def __init__(self, settings: Settings, session_id: str) -> None:
        self._settings = settings
        self.session_id = session_id
        self._ws: websockets.ClientConnection | None = None

    async def open(self) -> bool:
        """Attach; False when the session is already gone (404)."""
        key = self._settings.openai_api_key.get_secret_value()
        try:
            self._ws = await websockets.connect(
                self._settings.live_sideband_url(self.session_id),
                additional_headers={"Authorization": f"Bearer {key}"},
                open_timeout=5,
                close_timeout=1,
                max_size=4 * 1024 * 1024,
                compression=None,
            )
        except InvalidStatus as error:
            if error.response.status_code == 404:
                return False
            raise
        return True

    async def next(self, timeout: float) -> Progress:
        """The next thing that matters for the dial (other events are skipped)."""
        assert self._ws is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Progress("timeout")
            try:
                async with asyncio.timeout(remaining):
                    raw = await self._ws.recv()
            except TimeoutError:
                return Progress("timeout")
            except ConnectionClosed:
                return Progress("gone")
            if isinstance(raw, bytes) or not ('"transport.' in raw or '"session.closed"' in raw):
                continue  # reflected audio and the rest: nothing to do with the dial
            event = json.loads(raw)
            kind = event.get("type")
            if kind == "transport.ringing":
                return Progress("ringing")
            if kind == "transport.answered":
                return Progress("answered")
            if kind == "transport.failed":
                error = event.get("error") or {}
                return Progress("failed", str(error.get("code") or "")[:64])
            if kind == "session.closed":
                return Progress("closed", str(event.get("reason") or "")[:64])

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
