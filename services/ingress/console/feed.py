"""The live feed behind every open console: one NATS subscription, fanned out.

Started by the first console that connects (an ingress nobody has watched pays nothing)
and kept from then on, it subscribes to `calls.events.>`, rebuilds the board from the
stream's tail and the live leases, then keeps it current (rebuilding after a NATS outage).
Changes are coalesced into frames at most every `FRAME_S` and each frame is serialised
once for all consoles, so a console costs the ingress one socket write per frame, not work
per event. A console too slow to keep up is dropped; its browser reconnects and starts
again from a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import nats.aio.msg
from nats.aio.client import Client
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from services.ingress.console import history
from services.ingress.console.board import Board, CallSummary
from shared import metrics
from shared.events import CALL_EVENTS_SUBJECT, CallEvent
from shared.kv_keys import live_keys
from shared.streams import CALL_LEASES_BUCKET

log = logging.getLogger(__name__)

FRAME_S = 0.05
REPLAY_EVENTS = 20_000
QUEUE_FRAMES = 256
STALE_CALL_S = 2 * 3600.0  # no call lasts this long (OpenAI ends sessions at 60 min)
SWEEP_S = 60.0
HYDRATE_CONCURRENCY = 32


def sse(event: str, body: object) -> bytes:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n".encode()


class Viewer:
    """One connected console: frames wait here until its response writes them."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_FRAMES)

    def push(self, frame: bytes | None) -> bool:
        try:
            self.frames.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True

    def drop(self) -> None:
        """Forget what is queued and end the stream after what is being written."""
        while not self.frames.empty():
            self.frames.get_nowait()
        self.frames.put_nowait(None)


class ConsoleFeed:
    def __init__(self, nc: Callable[[], Client | None], replay: int = REPLAY_EVENTS) -> None:
        self._nc = nc
        self._replay = replay
        self.board = Board()
        self._viewers: set[Viewer] = set()
        self._dirty: dict[str, CallSummary] = {}
        self._flusher: asyncio.TimerHandle | None = None
        self._sub: Subscription | None = None
        self._booting: list[CallEvent] | None = None
        self._started: asyncio.Task[None] | None = None
        self._swept = datetime.now(UTC)
        self._reconnects = 0  # the connection's count when the board was built

    async def join(self) -> Viewer:
        """A new viewer, its first frame the whole board. Raises ConnectionError while NATS
        is not connected."""
        nc = self._nc()
        if nc is None or not nc.is_connected:
            raise ConnectionError("not connected")
        if self._started is None or _failed(self._started):
            self._started = asyncio.create_task(self._start(nc))
        await asyncio.shield(self._started)
        viewer = Viewer()
        viewer.push(sse("snapshot", {"calls": self.board.snapshot()}))
        self._viewers.add(viewer)
        metrics.CONSOLE_VIEWERS.set(len(self._viewers))
        return viewer

    def leave(self, viewer: Viewer) -> None:
        self._viewers.discard(viewer)
        metrics.CONSOLE_VIEWERS.set(len(self._viewers))

    async def close(self) -> None:
        """End every console's stream (the ingress is stopping)."""
        for viewer in list(self._viewers):
            viewer.drop()
        self._viewers.clear()
        metrics.CONSOLE_VIEWERS.set(0)
        if self._flusher is not None:
            self._flusher.cancel()
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # the connection may be closing already
                pass
            self._sub = None

    # -- building the board -----------------------------------------------------------------

    async def _start(self, nc: Client) -> None:
        """Subscribe first (buffering), then rebuild from the stream, then apply what came
        meanwhile: no event falls between the two. A failure leaves nothing half-built;
        the next console to connect tries again."""
        self._booting = []
        self._reconnects = nc.stats["reconnects"]
        self.board = Board()
        self._sub = await nc.subscribe(f"{CALL_EVENTS_SUBJECT}.>", cb=self._on_message)
        try:
            await self._hydrate_leased(nc)
            async for event in history.tail(nc.jetstream(), self._replay):
                self.board.apply(event)
        except BaseException:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
            raise
        finally:
            buffered, self._booting = self._booting, None
        for event in sorted(buffered, key=lambda e: (e.call_id, e.seq)):
            self.board.apply(event)
        log.info("console feed started: %d live calls", len(self.board.live))

    async def _hydrate_leased(self, nc: Client) -> None:
        """Live calls older than the replayed tail: their first events and their lease."""
        js = nc.jetstream()
        leases = await js.key_value(CALL_LEASES_BUCKET)
        keys = await live_keys(js, CALL_LEASES_BUCKET)
        limit = asyncio.Semaphore(HYDRATE_CONCURRENCY)

        async def one(call_id: str) -> None:
            async with limit:
                for event in await history.first_events(js, call_id, 2):
                    self.board.apply(event)
                try:
                    lease = json.loads((await leases.get(call_id)).value or b"{}")
                except Exception:
                    return
            call = self.board.live.get(call_id)
            if call is not None:
                call.worker = str(lease.get("worker", call.worker))
                call.attempt = int(lease.get("attempt", call.attempt))
                call.state = "live"

        await asyncio.gather(*(one(k) for k in keys))

    def check(self) -> None:
        """Rebuild the board if NATS reconnected since it was built: events published
        while the connection was down never reached it (a call that ended then would stay
        live). Every console then gets a fresh snapshot."""
        nc = self._nc()
        if (
            nc is None
            or not nc.is_connected
            or self._started is None
            or not self._started.done()
            or nc.stats["reconnects"] == self._reconnects
        ):
            return
        log.info("console feed: nats reconnected, rebuilding")
        self._started = asyncio.create_task(self._rebuild(nc))

    async def _rebuild(self, nc: Client) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except Exception:  # already gone with the old connection
                pass
        await self._start(nc)
        frame = sse("snapshot", {"calls": self.board.snapshot()})
        for viewer in list(self._viewers):
            if not viewer.push(frame):
                self._viewers.discard(viewer)
                viewer.drop()

    # -- live -------------------------------------------------------------------------------

    async def _on_message(self, msg: nats.aio.msg.Msg) -> None:
        try:
            event = CallEvent.model_validate_json(msg.data)
        except ValidationError:
            return
        if self._booting is not None:
            self._booting.append(event)
            return
        self.check()
        changed = self.board.apply(event)
        if changed is not None:
            # The summary itself: a call that ends and leaves the recent list before the
            # frame goes out must still reach the consoles as ended.
            self._dirty[event.call_id] = changed
            if self._flusher is None:
                self._flusher = asyncio.get_running_loop().call_later(FRAME_S, self._flush)

    def _flush(self) -> None:
        self._flusher = None
        now = datetime.now(UTC)
        if (now - self._swept).total_seconds() > SWEEP_S:
            self._swept = now
            self.board.forget_stale(now, STALE_CALL_S)
        changed = [call.to_json() for call in self._dirty.values()]
        self._dirty.clear()
        if not changed or not self._viewers:
            return
        frame = sse("calls", {"calls": changed})
        for viewer in list(self._viewers):
            if not viewer.push(frame):  # too slow: drop it, its browser resyncs
                self._viewers.discard(viewer)
                viewer.drop()
        metrics.CONSOLE_VIEWERS.set(len(self._viewers))


def _failed(task: asyncio.Task[None]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)
