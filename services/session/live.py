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
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import openai
from websockets.exceptions import ConnectionClosed

from services.session.live_events import (
    KNOWN_TYPES,
    Seen,
    client_event,
    is_reflected_audio,
    parse,
    translate,
)
from services.session.live_turns import Turns
from services.session.sideband import Command, SidebandEvent
from services.session.sideband_socket import SidebandSocket
from shared import metrics
from shared.settings import Settings

log = logging.getLogger(__name__)


class LiveSideband(SidebandSocket):
    """One GPT-Live call: its sideband WebSocket and its session-control REST endpoints."""

    api = "live"
    # Live's appends never conflict with a running response: they go out at once; only
    # the continuation after tool outputs waits for the delegated response to finish.
    responses_conflict = False

    def __init__(self, call_id: str, settings: Settings, client: openai.AsyncOpenAI) -> None:
        super().__init__(
            call_id,  # the `live_…` session id
            url=settings.live_sideband_url(call_id),
            api_key=settings.openai_api_key.get_secret_value(),
            control=client.live.sessions,
        )
        self._turns = Turns()
        self._seen = Seen()  # survives re-attach: a replayed event is not acted on twice

    def encode(self, command: Command) -> Mapping[str, Any]:
        return client_event(command)

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
