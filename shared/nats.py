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

Under CPU pressure a process must not lose its connection either, so its settings are
chosen, not left to the library's defaults (`CLIENT_OPTIONS`, used by every service: the
session worker and ingress through `connect`, the acceptor's FastStream broker directly):

- Pings: the client pings every `PING_INTERVAL_S` and calls the connection stale after
  `MAX_OUTSTANDING_PINGS` unanswered, so a process starved of CPU for up to two minutes
  keeps its connection, while a server that went silent is found within two minutes (one
  that closed the socket, at once).
- Pending limits: while reconnecting, up to `PENDING_SIZE` bytes of publishes wait in the
  client instead of failing; a subscription whose handler falls behind buffers up to
  nats-py's limits (524,288 messages, 128 MiB) before dropping.
- Slow consumers: a dropped message is a subscription's problem, not the connection's: it
  is counted (`switchboard_nats_slow_consumers_total`) and logged at most once every
  `SLOW_CONSUMER_LOG_S`, and the connection stays up. Every consumer that matters is a
  JetStream one, where an unacknowledged message is delivered again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import SlowConsumerError
from nats.js.errors import APIError
from nats.protocol.parser import PERMISSIONS_ERR

from shared.backoff import Backoff
from shared.logging import clean

log = logging.getLogger(__name__)


PING_INTERVAL_S = 30
MAX_OUTSTANDING_PINGS = 4
PENDING_SIZE = 64 * 1024 * 1024
CONNECT_TIMEOUT_S = 2
RECONNECT_WAIT_S = 0.5
SLOW_CONSUMER_LOG_S = 10.0
_last_slow_log = 0.0

# The same for every connection of every service (see the module's docstring).
CLIENT_OPTIONS: dict[str, Any] = {
    "max_reconnect_attempts": -1,
    "reconnect_time_wait": RECONNECT_WAIT_S,
    "connect_timeout": CONNECT_TIMEOUT_S,
    "ping_interval": PING_INTERVAL_S,
    "max_outstanding_pings": MAX_OUTSTANDING_PINGS,
    "pending_size": PENDING_SIZE,
}


async def on_error(error: Exception) -> None:
    """A client's error callback: slow consumers counted (the connection stays up), other
    errors logged."""
    global _last_slow_log
    if isinstance(error, SlowConsumerError):
        from shared import metrics  # here: metrics → events → this module, at import

        metrics.NATS_SLOW_CONSUMERS.inc()
        now = time.monotonic()
        if now - _last_slow_log >= SLOW_CONSUMER_LOG_S:
            _last_slow_log = now
            log.warning("nats slow consumer on %s: messages dropped", error.subject)
        return
    log.warning("nats error: %s", error)


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

    await client.connect(
        servers=servers,
        name=name,
        allow_reconnect=True,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        closed_cb=closed,
        error_cb=on_error,
        **CLIENT_OPTIONS,
    )
    return client


# JetStream's answers to a publish whose `Nats-Expected-Last-Subject-Sequence` no longer
# holds: somebody else wrote the subject first.
_WRONG_LAST_SEQUENCE = (10071, 10164)


def lost_race(error: APIError) -> bool:
    """True when a compare-and-set publish was refused because the subject moved on."""
    return error.err_code in _WRONG_LAST_SEQUENCE
