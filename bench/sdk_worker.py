"""`switchboard session` with its Realtime sideband on the openai SDK's connection.

Benchmark only: `bench.session_density --sideband both` runs one worker as shipped
(`websockets`, see `services/session/realtime.py` for why) and one launched through this
module, side by side, to measure what the SDK's connection costs a loaded worker. Here the
sideband is `client.realtime.connect(call_id=…)` with its reconnect off, every event is
received and built into the SDK's model exactly as its `recv()` does, and every command is
sent through its `send()`. The call runner, the translation and everything else are the
worker's own.

    python -m bench.sdk_worker session --capacity 100 …   # as `switchboard session`
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from typing import Any, cast

from openai._models import construct_type_unchecked
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from openai.types.realtime import RealtimeServerEvent
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.session import sidebands
from services.session.realtime import KNOWN_TYPES, RealtimeSideband, canonical_type, translate
from services.session.sideband import CallGone, Command, SidebandEvent, SidebandUnavailable
from shared import metrics


class SdkRealtimeSideband(RealtimeSideband):
    _conn: AsyncRealtimeConnection | None = None

    def __init__(self, call_id: str, settings: Any, client: Any) -> None:
        super().__init__(call_id, settings, client)
        self._client = client

    async def attach(self) -> None:
        manager = self._client.realtime.connect(
            call_id=self.call_id,
            websocket_connection_options={
                "max_size": 4 * 1024 * 1024,
                "compression": None,
                "open_timeout": 5,
                "close_timeout": 1,
                "ping_interval": 20,
            },
        )  # on_reconnecting left None: no reconnect
        try:
            self._conn = await manager.enter()
        except InvalidStatus as error:
            if error.response.status_code == 404:
                raise CallGone(self.call_id) from None
            raise SidebandUnavailable(str(error.response.status_code)) from None
        except Exception as error:
            raise SidebandUnavailable(type(error).__name__) from None

    async def events(self) -> AsyncIterator[SidebandEvent]:
        conn = self._conn
        if conn is None:
            return
        try:
            while True:
                raw = await conn.recv_bytes()
                value = json.loads(raw)
                # What `recv()` does with every event: the SDK's model, built unchecked.
                construct_type_unchecked(value=value, type_=cast(Any, RealtimeServerEvent))
                if not isinstance(value, dict):
                    continue
                kind = canonical_type(value)
                metrics.SIDEBAND_EVENTS.labels(kind if kind in KNOWN_TYPES else "other").inc()
                meaning = translate(value)
                if meaning is not None:
                    yield meaning
        except ConnectionClosed:
            return

    async def send(self, command: Command) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            await conn.send(cast(Any, self.encode(command)))
        except ConnectionClosed:
            return False
        return True

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


def _open(job: Any, settings: Any, client: Any) -> Any:
    if job.agent.api == "live":
        return _shipped(job, settings, client)
    return SdkRealtimeSideband(job.call_id, settings, client)


_shipped = sidebands.open_sideband


def main() -> int:
    from services.session import runner
    from switchboard.cli import main as cli_main

    runner.open_sideband = _open  # the one place a call's sideband is opened
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
