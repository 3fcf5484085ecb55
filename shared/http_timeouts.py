"""A deadline for a request's headers, which uvicorn does not have.

uvicorn closes a keep-alive connection that stays idle, but a client that opens a
connection and sends its request headers a byte at a time (slowloris) is kept forever,
each one holding a socket and a parser. This protocol gives every request
`HEADER_TIMEOUT_S` from its connection (or, on a kept-alive connection, from its first
byte) to complete its headers, and closes the connection otherwise. Bodies have their own
deadline where they are read (`services/ingress/bodies.py`).

Hand-written because no option of uvicorn does this and changing servers (hypercorn has a
read timeout) would change every service's HTTP stack; it hooks uvicorn's httptools
protocol at its parser callbacks (`connection_made`, `on_message_begin`,
`on_headers_complete`, `connection_lost`), covered by tests/shared/test_http_timeouts.py.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_S = 10.0


class HeaderDeadlineProtocol(HttpToolsProtocol):
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(HEADER_TIMEOUT_S, self._too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
