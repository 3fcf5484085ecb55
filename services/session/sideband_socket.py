"""`SidebandSocket`: what both OpenAI adapters do alike — open the sideband WebSocket, send
a client event, close, and hang up or refer over call control.

What differs (the URL, the control endpoints, how a command is spelled, how an event is
read) is given by each adapter (`realtime.py`, `live.py`); this is the part that is one.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.proxy import get_proxy
from websockets.uri import parse_uri

from services.session.sideband import (
    CallGone,
    Command,
    SidebandRefused,
    SidebandUnavailable,
)
from shared.call_control import call_control

# Refusals no retry can mend: a wrong key, a malformed request, a project without access.
_REFUSED_STATUSES = frozenset({400, 401, 403})
# A reflected-audio frame is ~6 KB per 100 ms; OpenAI's frames may be larger.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


# The proxy (from the environment) per sideband host, looked up once per process:
# websockets does it on every connect, ~0.1 ms of CPU per call for an answer that does not
# change while the process runs.
_PROXIES: dict[tuple[bool, str, int], str | None] = {}


def proxy_for(url: str) -> str | None:
    uri = parse_uri(url)
    host = (uri.secure, uri.host, uri.port)
    if host not in _PROXIES:
        _PROXIES[host] = get_proxy(uri)
    return _PROXIES[host]


class SessionControl(Protocol):
    """`client.realtime.calls` or `client.live.sessions`: the two requests a worker makes."""

    def hangup(self, call_id: str, /) -> Awaitable[object]: ...

    def refer(self, call_id: str, /, *, target_uri: str) -> Awaitable[object]: ...


class SidebandSocket:
    """One call's sideband WebSocket and its call-control endpoints (see `Sideband`)."""

    def __init__(self, call_id: str, *, url: str, api_key: str, control: SessionControl) -> None:
        self.call_id = call_id
        self._url = url
        self._api_key = api_key
        self._control = control
        self._ws: ClientConnection | None = None

    def encode(self, command: Command) -> Mapping[str, Any]:
        """The API's client event for `command`."""
        raise NotImplementedError

    async def attach(self) -> None:
        try:
            self._ws = await websockets.connect(
                self._url,
                additional_headers={"Authorization": f"Bearer {self._api_key}"},
                proxy=proxy_for(self._url),
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

    async def send(self, command: Command) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(json.dumps(self.encode(command)))
        except ConnectionClosed:
            return False
        return True

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    async def hang_up(self) -> str:
        answer = await call_control("hangup", self._control.hangup(self.call_id))
        return answer.status

    async def transfer(self, uri: str) -> str:
        answer = await call_control("refer", self._control.refer(self.call_id, target_uri=uri))
        return answer.status
