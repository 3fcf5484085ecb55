"""Post-call webhooks: reports delivered per second and the delivery lag.

    .venv/bin/python -m bench.postcall            # 100 calls/s for 20 s, then a burst of 2,000
    .venv/bin/python -m bench.postcall --quick    # 20 calls/s for 2 s, a burst of 100

A real `nats-server`, `switchboard postcall` as its own process (default settings), and in
this process a load generator writing whole calls as the services do (five events each,
the last a `call.report`) and a receiver on loopback answering 204. The lag of a report is
from its `ts` (when the worker wrote it) to its arrival at the receiver: fan-out, outbox,
signing and the HTTP request included.

- fixed rate: calls written on a schedule; lag p50/p99 of their reports.
- burst: every call written at once; reports per second from the first to the last.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.machine import percentile, save, table
from shared.endpoints import Endpoint, EndpointStore, new_secret
from shared.events import CallEvent, CallEventPublisher
from shared.ops import HttpServer
from shared.postcall import declare_postcall_topology
from shared.streams import declare_topology
from switchboard.nats_server import NatsServer, free_port


class Receiver:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}  # call_id -> time.monotonic() of the first
        self.lag_s: dict[str, float] = {}  # call_id -> arrival minus the report's ts
        self.changed = asyncio.Event()
        app = Starlette(routes=[Route("/hook", self.receive, methods=["POST"])])
        self.http = HttpServer(app, "127.0.0.1", 0)

    async def receive(self, request: Request) -> Response:
        event = CallEvent.model_validate_json(await request.body())
        if event.call_id not in self.arrivals:
            self.arrivals[event.call_id] = time.monotonic()
            self.lag_s[event.call_id] = (datetime.now(UTC) - event.ts).total_seconds()
        self.changed.set()
        return Response(status_code=204)

    async def wait_for(self, count: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while len(self.arrivals) < count:
                self.changed.clear()
                await self.changed.wait()


async def write_call(events: CallEventPublisher, call_id: str) -> None:
    await events.publish(call_id, "call.received", {"sip_headers": []})
    await events.publish(call_id, "call.accepted", {"agent": "bench"})
    await events.publish(call_id, "transcript.caller", {"text": "hello"})
    await events.publish(call_id, "call.ended", {"reason": "caller_hangup"})
    await events.publish(call_id, "call.report", {"end_reason": "caller_hangup", "turns": 1})
    events.forget(call_id)


def _row(phase: str, receiver: Receiver, prefix: str, count: int, took_s: float) -> dict:
    lags = [receiver.lag_s[f"{prefix}{i:06d}"] * 1000 for i in range(count)]
    return {
        "phase": phase,
        "reports": count,
        "reports/s": round(count / max(took_s, 1e-6), 1),
        "lag p50 ms": round(percentile(lags, 50), 1),
        "lag p99 ms": round(percentile(lags, 99), 1),
        "lag max ms": round(max(lags), 1),
    }


def start_postcall(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """`switchboard postcall` in its own process, once its /readyz answers."""
    argv = [sys.executable, "-m", "switchboard", "postcall", "--metrics-port", str(port)]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)  # polling a child process' readiness
    process.kill()
    raise TimeoutError("postcall did not become ready")


async def run(rate: float, seconds: float, burst: int) -> list[dict[str, Any]]:
    store_dir = Path(tempfile.mkdtemp(prefix="bench-postcall-"))
    server = NatsServer(store_dir / "nats")
    server.start()
    receiver = Receiver()
    await receiver.http.start()
    port = free_port()
    env = {**os.environ, "NATS_URL": server.url, "SWITCHBOARD_WEBHOOKS_ALLOW_PRIVATE": "1",
           "SWITCHBOARD_WEBHOOKS_POLL_S": "0.2", "LOG_LEVEL": "WARNING"}  # fmt: skip
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    await declare_topology(js)
    await declare_postcall_topology(js)
    url = f"http://127.0.0.1:{receiver.http.port}/hook"
    endpoint = Endpoint(id="bench", url=url, secret=SecretStr(new_secret()),
                        created_at=datetime.now(UTC))  # fmt: skip
    await (await EndpointStore.open(js)).put(endpoint)
    process = await asyncio.to_thread(start_postcall, env, port)
    rows = []
    try:
        events = CallEventPublisher(js)
        count = int(rate * seconds)
        started = time.monotonic()
        writes = []
        for i in range(count):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))  # the schedule
            writes.append(asyncio.create_task(write_call(events, f"rtc_fixed{i:06d}")))
        await asyncio.gather(*writes)
        await receiver.wait_for(count, timeout=60 + seconds)
        rows.append(_row(f"fixed {rate:g} calls/s", receiver, "rtc_fixed", count, seconds))
        await asyncio.gather(*(write_call(events, f"rtc_burst{i:06d}") for i in range(burst)))
        written = time.monotonic()
        await receiver.wait_for(count + burst, timeout=120)
        last = max(receiver.arrivals[f"rtc_burst{i:06d}"] for i in range(burst))
        rows.append(_row(f"burst of {burst}", receiver, "rtc_burst", burst, last - written))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        await nc.close()
        await receiver.http.stop()
        server.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=2000)
    args = parser.parse_args()
    if args.quick:
        args.rate, args.seconds, args.burst = 20.0, 2.0, 100
    rows = asyncio.run(run(args.rate, args.seconds, args.burst))
    print(table(rows))
    save("postcall", {"args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
