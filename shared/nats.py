"""One NATS connection per process, reconnecting forever.

An outage must never need a restart: the client keeps reconnecting, and readiness
reflects whether it is connected right now. That includes a connection the *server*
closes after an `-ERR` (a message over its `max_payload`, say): nats-py treats those as
final and closes the client for good, leaving a process that looks alive and does nothing.
Our client reconnects from them like from any other drop (`ReconnectingClient`). At
start-up a service first waits until a server accepts TCP connections, saying which one it
tries (never with credentials) and backing off, so an operator sees why it is not ready.

`ConnectionWatch` remembers since when the connection has been down, for liveness: a
process cut off from NATS for longer than it can hold its work (a session worker's lease)
is not alive, and one whose client is closed will never recover by itself.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import APIError
from nats.protocol.parser import PERMISSIONS_ERR

from shared.backoff import Backoff
from shared.logging import clean

log = logging.getLogger(__name__)


@dataclass
class ConnectionWatch:
    """When this process's NATS connection went down (None while it is up), and whether
    the client was closed (it will not come back)."""

    clock: Callable[[], float] = time.monotonic
    down_since: float | None = field(default=None)
    closed: bool = False

    def went_down(self) -> None:
        if self.down_since is None:
            self.down_since = self.clock()

    def came_back(self) -> None:
        self.down_since = None

    def down_for(self) -> float:
        """Seconds the connection has been down without a break (0 while up)."""
        return 0.0 if self.down_since is None else self.clock() - self.down_since

    def alive(self, grace_s: float) -> bool:
        """Liveness: not closed for good, and not cut off for longer than `grace_s`."""
        return not self.closed and self.down_for() <= grace_s


class ReconnectingClient(Client):
    """nats-py's client, except that a server `-ERR` that ends the connection (anything
    but a permissions error, which does not) leads to a reconnect instead of a close.

    Overrides nats-py's private `_process_err` (2.x); `tests/shared/test_nats.py` holds it
    to the behaviour on a real nats-server, so an upgrade that changes it fails there.
    """

    async def _process_err(self, err_msg: str) -> None:
        if self.is_connecting or PERMISSIONS_ERR in err_msg:
            await super()._process_err(err_msg)
            return
        error = NatsError(f"nats: {err_msg.strip(chr(39))}")
        log.warning("nats server closed the connection (%s): reconnecting", clean(err_msg, 120))
        self._err = error
        await self._process_op_err(error)


# While NATS cannot be reached at start-up: a line per attempt, soon, then every 5 s at most.
START_RETRY = Backoff(first_s=0.5, max_s=5.0)
_DEFAULT_PORTS = {"nats": 4222, "tls": 4222, "ws": 80, "wss": 443}


def public_url(url: str) -> str:
    """`nats://user:pass@host:4222` → `nats://host:4222` (each of a comma-separated list):
    safe for a log line, whatever the text."""
    cleaned = []
    for one in (u.strip() for u in url.split(",") if u.strip()):
        parts = urlsplit(one if "://" in one else f"nats://{one}")
        hostport = parts.netloc.rpartition("@")[2]
        cleaned.append(f"{parts.scheme}://{hostport}")
    return ",".join(cleaned)


async def wait_for_nats(servers: list[str]) -> None:
    """Return once one of `servers` accepts a TCP connection; log each refusal with the
    URL (no credentials), retrying after 0.5 s, doubling up to 5 s. Cancellable at once."""
    for attempt in itertools.count():
        failure = ""
        for url in servers:
            parts = urlsplit(url if "://" in url else f"nats://{url}")
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 4222)
            try:
                async with asyncio.timeout(2.0):
                    _, writer = await asyncio.open_connection(parts.hostname, port)
            except (OSError, TimeoutError) as error:
                failure = f"{failure}, " if failure else ""
                failure += f"{public_url(url)} ({type(error).__name__})"
                continue
            writer.close()
            return
        delay = START_RETRY.delay(attempt)
        log.warning("cannot reach NATS at %s; retrying in %.1f s", failure, delay)
        await asyncio.sleep(delay)


async def connect(servers: list[str], name: str, watch: ConnectionWatch | None = None) -> Client:
    """Wait for a reachable server, then connect with reconnection forever."""
    watch = watch or ConnectionWatch()
    await wait_for_nats(servers)

    from shared import metrics  # here: metrics → events → this module, at import

    client = ReconnectingClient()

    async def disconnected() -> None:
        if client.is_closed:  # our own close() calls this too: not an outage
            return
        watch.went_down()
        metrics.NATS_DISCONNECTS.inc()
        log.warning("nats disconnected")

    async def reconnected() -> None:
        watch.came_back()
        log.info("nats reconnected")

    async def closed() -> None:
        watch.went_down()
        watch.closed = True

    async def error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    await client.connect(
        servers=servers,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,  # type: ignore[arg-type]  # a float works; the hint is int
        connect_timeout=2,
        allow_reconnect=True,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        closed_cb=closed,
        error_cb=error,
        pending_size=64 * 1024 * 1024,
    )
    return client


# JetStream's answers to a publish whose `Nats-Expected-Last-Subject-Sequence` no longer
# holds: somebody else wrote the subject first.
_WRONG_LAST_SEQUENCE = (10071, 10164)


def lost_race(error: APIError) -> bool:
    """True when a compare-and-set publish was refused because the subject moved on."""
    return error.err_code in _WRONG_LAST_SEQUENCE
