"""The sideband sockets attached to one simulated call, and what goes out on them.

Events emitted while no socket is attached are lost, as they are with OpenAI. A socket is
dropped without a close frame (a hang-up or a network drop) or closed with one (our
hang-up, a transfer, the session cap).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from shared.openai_shapes import check_server_event, has_event_id

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


def new_id(prefix: str) -> str:
    """An id shaped like OpenAI's (`item_…`, `resp_…`, `event_…`, `call_…`)."""
    return f"{prefix}_{secrets.token_hex(10)}"


class _Conn:
    """One attached sideband socket."""

    __slots__ = ("drop_timer", "transport", "ws")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None):
        self.ws = ws
        self.transport = transport
        self.drop_timer: asyncio.TimerHandle | None = None

    def abort(self) -> None:
        """Drop the TCP connection without a close frame, like a hang-up or a network drop."""
        if self.drop_timer is not None:
            self.drop_timer.cancel()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()  # type: ignore[attr-defined]


class SidebandSockets:
    def __init__(self) -> None:
        self._conns: dict[web.WebSocketResponse, _Conn] = {}
        self.attached = asyncio.Event()  # set while at least one socket is attached
        self.sent_types: set[str] = set()  # every event type emitted (contract tests)

    def __len__(self) -> int:
        return len(self._conns)

    def attach(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.BaseTransport | None,
        drop_after_s: float | None,
    ) -> None:
        conn = self._conns[ws] = _Conn(ws, transport)
        self.attached.set()
        if drop_after_s is not None:
            conn.drop_timer = asyncio.get_running_loop().call_later(drop_after_s, conn.abort)

    def detach(self, ws: web.WebSocketResponse) -> None:
        conn = self._conns.pop(ws, None)
        if conn is not None and conn.drop_timer is not None:
            conn.drop_timer.cancel()
        if not self._conns:
            self.attached.clear()

    async def emit(self, event: dict[str, Any]) -> None:
        """Send a server event to every attached socket; with none attached it is lost.
        An event OpenAI's types refuse is never sent: `ShapeError` (a simulator bug)."""
        if has_event_id(event["type"]):
            event = {"event_id": new_id("event"), **event}
        check_server_event(event)
        self.sent_types.add(event["type"])
        if not self._conns:
            return
        data = json.dumps(event)
        for conn in list(self._conns.values()):
            if conn.ws.closed:
                continue
            try:
                await conn.ws.send_str(data)
            except (ConnectionError, RuntimeError):
                pass

    async def error(
        self,
        code: str,
        message: str,
        param: str | None = None,
        event_id: str | None = None,
        *,
        event_type: str = "invalid_request_error",
    ) -> None:
        """An `error` server event in OpenAI's shape."""
        await self.emit(
            {
                "type": "error",
                "error": {
                    "type": event_type,
                    "code": code,
                    "message": message,
                    "param": param,
                    "event_id": event_id,
                },
            }
        )

    def drop_all(self) -> None:
        """Drop every socket abruptly (a network drop); they stay counted until detached."""
        for conn in list(self._conns.values()):
            conn.abort()

    def end_all(self, *, abort: bool, spawn: Spawn) -> None:
        """The call ended: drop (a hang-up) or close (ours, a transfer, the cap) every socket."""
        conns = list(self._conns.values())
        self._conns.clear()
        self.attached.clear()
        for conn in conns:
            if abort:
                conn.abort()
            else:
                if conn.drop_timer is not None:
                    conn.drop_timer.cancel()
                spawn(conn.ws.close())
