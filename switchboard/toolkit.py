"""Write a Switchboard tool service in a few lines.

```python
from switchboard.toolkit import ToolError, ToolRequest, ToolService

tools = ToolService()

@tools.tool("check_availability")
async def check_availability(request: ToolRequest) -> dict:
    day = request.arguments["day"]
    if day == "sunday":
        raise ToolError("we are closed on Sundays")   # the model is told this
    return {"day": day, "free": ["10:00", "14:30"]}

tools.run()   # NATS_URL, default nats://127.0.0.1:4222
```

Each handler answers NATS requests on `tools.<name>` (in the queue group
`switchboard-tools`, so running more copies shares the load) with `{"output": <return
value>}`. `ToolError("…")` answers `{"error": "…"}` with that message for the model; any
other exception answers a generic error (the details go to the log, not to the model or the
caller). Built on FastStream's `NatsBroker`: `tools.broker` is there for anything more.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from faststream import FastStream
from faststream.nats import NatsBroker

from shared.broker import ReconnectingBroker
from shared.tools import ToolRequest, tool_subject

__all__ = ["QUEUE_GROUP", "ToolError", "ToolRequest", "ToolService"]

log = logging.getLogger("switchboard.toolkit")

QUEUE_GROUP = "switchboard-tools"

Handler = Callable[[ToolRequest], Any | Awaitable[Any]]


class ToolError(Exception):
    """A failure the model should hear about (the message is told to the model as is)."""


class ToolService:
    def __init__(self, broker: NatsBroker | None = None, *, queue: str = QUEUE_GROUP) -> None:
        servers = os.environ.get("NATS_URL", "nats://127.0.0.1:4222").split(",")
        # FastStream's own logger writes ANSI colours even into files: log through ours. On
        # SIGTERM, answers in flight get a tool's default timeout, then the connection
        # drains briefly: a service asked to stop stops, NATS reachable or not.
        self.broker = broker or ReconnectingBroker(
            [s.strip() for s in servers if s.strip()],
            logger=log,
            graceful_timeout=8.0,
            drain_timeout=3,
        )
        self._queue = queue
        self.names: list[str] = []

    def tool(self, name: str) -> Callable[[Handler], Handler]:
        """Register `handler(request) -> output` as the tool `name`."""

        def register(handler: Handler) -> Handler:
            async def answer(request: ToolRequest) -> dict[str, Any]:
                return await _answer(name, handler, request)

            self.broker.subscriber(tool_subject(name), queue=self._queue)(answer)
            self.names.append(name)
            return handler

        return register

    async def start(self) -> None:
        await self.broker.start()

    async def stop(self) -> None:
        await self.broker.stop()

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM."""
        try:
            asyncio.run(FastStream(self.broker, logger=log).run())
        except (nats.errors.ConnectionReconnectingError, nats.errors.ConnectionClosedError):
            log.warning("stopped while NATS was unreachable: nothing left to drain")


async def _answer(name: str, handler: Handler, request: ToolRequest) -> dict[str, Any]:
    try:
        output = handler(request)
        if inspect.isawaitable(output):
            output = await output
    except ToolError as error:
        return {"error": str(error)}
    except Exception:
        log.exception("tool %s failed", name)
        return {"error": f"{name} failed"}
    return {"output": output}
