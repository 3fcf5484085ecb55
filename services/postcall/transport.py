"""An HTTP transport that connects only to addresses a webhook may reach.

httpx resolves and connects inside httpcore's network backend; this backend resolves the
host itself, refuses the connection unless every address is public (or private ones are
allowed), and connects to the address it checked, not to the name again, so a DNS
answer that changes between check and connect (rebinding) changes nothing. TLS still
verifies the certificate against the host name: httpcore passes the name as SNI.
"""

from __future__ import annotations

import asyncio
import socket
import typing

import httpcore
import httpx
from httpcore import AsyncNetworkBackend, AsyncNetworkStream
from httpcore._backends.auto import AutoBackend

from shared.url_safety import is_public_address


class RefusedAddress(httpcore.ConnectError):
    """The host resolves to an address webhooks may not reach."""


class CheckedBackend(AsyncNetworkBackend):
    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._inner = AutoBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as error:
            raise httpcore.ConnectError(f"cannot resolve host: {type(error).__name__}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise httpcore.ConnectError("host has no address")
        if not self._allow_private and not all(is_public_address(a) for a in addresses):
            raise RefusedAddress("host resolves to a private, loopback or link-local address")
        return await self._inner.connect_tcp(
            addresses[0], port, timeout=timeout, local_address=local_address,
            socket_options=socket_options,
        )  # fmt: skip

    async def connect_unix_socket(self, *args: typing.Any, **kwargs: typing.Any) -> typing.Any:
        raise httpcore.ConnectError("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def checked_transport(*, allow_private: bool, max_connections: int) -> httpx.AsyncHTTPTransport:
    """httpx's transport with its connection pool on the checking backend (no proxies)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False, retries=0)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
        network_backend=CheckedBackend(allow_private=allow_private),
    )
    return transport
