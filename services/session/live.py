"""`LiveSideband`: the `Sideband` of OpenAI's GPT-Live API (`/v1/live/sessions/{id}/attach`).

The call runner does not know it talks to Live: this adapter attaches, drops reflected
audio unparsed, turns Live's events into the runner's vocabulary
(services/session/live_events.py), sends its commands as Live client events, and ends,
refers or hangs up the session over `client.live.sessions`. The transcript turns are
the only state here: a turn ends when nothing was added for a moment, so reading the
socket waits at most until the open turn's deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import openai
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.session.live_events import (
    KNOWN_TYPES,
    Seen,
    client_event,
    is_reflected_audio,
    parse,
    translate,
)
from services.session.live_turns import Turns
from services.session.sideband import (
    CallGone,
    Command,
    SidebandEvent,
    SidebandRefused,
    SidebandUnavailable,
)
from shared import metrics
from shared.call_control import call_control
from shared.settings import Settings

log = logging.getLogger(__name__)

# Refusals no retry can mend: a wrong key, a malformed request, a project without access.
_REFUSED_STATUSES = frozenset({400, 401, 403})
# A reflected-audio frame is ~6 KB per 100 ms; OpenAI's frames may be larger.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class LiveSideband:
    """One GPT-Live call: its sideband WebSocket and its session-control REST endpoints."""

    api = "live"
    # Live's appends never conflict with a running response: they go out at once; only
    # the continuation after tool outputs waits for the delegated response to finish.
    responses_conflict = False

    def __init__(self, call_id: str, settings: Settings, client: openai.AsyncOpenAI) -> None:
        self.call_id = call_id  # the `live_…` session id
        self._settings = settings
        self._client = client
        self._ws: ClientConnection | None = None
        self._turns = Turns()
        self._seen = Seen()  # survives re-attach: a replayed event is not acted on twice

    async def attach(self) -> None:
        key = self._settings.openai_api_key.get_secret_value()
        try:
            self._ws = await websockets.connect(
                self._settings.live_sideband_url(self.call_id),
                additional_headers={"Authorization": f"Bearer {key}"},
                open_timeout=5,
                close_timeout=1,
                max_size=MAX_MESSAGE_BYTES,
                ping_interval=20,
                compression=None,
            )
        except InvalidStatus as error:
            status = error.response.status_code
            if status == 404:
                raise CallGone(self.call_id) from None
            if status in _REFUSED_STATUSES:
                raise SidebandRefused(f"sideband refused with {status}") from None
            raise SidebandUnavailable(f"sideband answered {status}") from None
        except (OSError, TimeoutError, websockets.InvalidHandshake) as error:
            raise SidebandUnavailable(type(error).__name__) from None

    async def events(self) -> AsyncIterator[SidebandEvent]:
        ws = self._ws
        if ws is None:
            return
        turns = self._turns
        try:
            while True:
                deadline = turns.deadline()
                # Frames stay bytes: reflected audio is dropped without even being decoded.
                if deadline is None:
                    raw = await ws.recv(decode=False)
                else:
                    try:
                        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                            raw = await ws.recv(decode=False)  # cancelling loses nothing
                    except TimeoutError:
                        for meaning in turns.due(time.monotonic()):
                            yield meaning
                        continue
                if is_reflected_audio(raw):
                    continue  # never parsed, counted or kept
                event = parse(raw)
                if event is None or not self._seen.first_time(event):
                    continue
                kind = str(event.get("type"))
                metrics.SIDEBAND_EVENTS.labels(kind if kind in KNOWN_TYPES else "other").inc()
                for meaning in translate(event, turns, time.monotonic()):
                    yield meaning
        except ConnectionClosed:
            return

    async def send(self, command: Command) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(json.dumps(client_event(command)))
        except ConnectionClosed:
            return False
        return True

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    async def hang_up(self) -> str:
        answer = await call_control("hangup", self._client.live.sessions.hangup(self.call_id))
        return answer.status

    async def transfer(self, uri: str) -> str:
        request = self._client.live.sessions.refer(self.call_id, target_uri=uri)
        answer = await call_control("refer", request)
        return answer.status
