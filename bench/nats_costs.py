"""What one NATS operation costs in CPU on this machine, client and nats-server together.

    .venv/bin/python -m bench.nats_costs            # 1,000 of each at 100/s
    .venv/bin/python -m bench.nats_costs --quick

Each operation is made one at a time, paced like calls (so each one wakes both processes
from idle, as a call's round trips do at tens of calls a second), and the CPU both
processes used is divided by the count. "idle" is the pacing alone: subtract it. Two
operations made together share a socket write and a wait: compare "kv.put || js.publish"
with the two alone. The figures say what a round trip on a call's path is worth before
one is cut (BENCHMARKS.md, session 8).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType, StreamConfig

from bench.accept import cpu_seconds
from bench.machine import save, table
from switchboard.nats_server import NatsServer

Operation = Callable[[int], Awaitable[Any]]


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(
    name: str, op: Operation, server_pid: int, count: int, rate: float
) -> dict[str, Any]:
    client, server = _own_cpu_s(), cpu_seconds(server_pid)
    due = time.monotonic()
    for i in range(count):
        await op(i)
        due += 1 / rate
        if (wait := due - time.monotonic()) > 0:
            await asyncio.sleep(wait)  # pacing, not synchronisation
    client_ms = (_own_cpu_s() - client) * 1000 / count
    server_ms = (cpu_seconds(server_pid) - server) * 1000 / count
    return {
        "operation": name,
        "client_ms": round(client_ms, 3),
        "nats_server_ms": round(server_ms, 3),
        "total_ms": round(client_ms + server_ms, 3),
    }


def _operations(nc: Client, kv: Any) -> dict[str, Operation]:
    js = nc.jetstream()

    async def idle(i: int) -> None:
        return None

    async def both(i: int) -> None:
        await asyncio.gather(kv.put(f"k{i}", b"y" * 100), js.publish(f"s.{i}", b"x" * 200))

    async def nobody(i: int) -> None:
        try:
            await nc.request("nobody.listens", b"x", timeout=1)
        except nats.errors.NoRespondersError:
            pass

    async def sub_unsub(i: int) -> None:
        sub = await nc.subscribe(f"ctl.{i}")
        await sub.unsubscribe()

    return {
        "idle (pacing only)": idle,
        "kv.put": lambda i: kv.put(f"k{i}", b"x" * 100),
        "kv.create": lambda i: kv.create(f"c{i}", b"x" * 100),
        "kv.get": lambda i: kv.get(f"k{i}"),
        "js.publish": lambda i: js.publish(f"s.{i}", b"x" * 200),
        "kv.put || js.publish": both,
        "request, no responders": nobody,
        "subscribe + unsubscribe": sub_unsub,
    }


async def run(count: int, rate: float) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-costs-") as tmp:
        server = NatsServer(Path(tmp))
        server.start()
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            kv = await js.create_key_value(
                KeyValueConfig(bucket="costs", history=1, storage=StorageType.FILE)
            )
            await js.add_stream(StreamConfig(name="COSTS", subjects=["s.>"]))
            assert server.process is not None
            rows = [
                await _measure(name, op, server.process.pid, count, rate)
                for name, op in _operations(nc, kv).items()
            ]
            await nc.close()
            return rows
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 of each")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="operations per second")
    args = parser.parse_args()
    rows = asyncio.run(run(100 if args.quick else args.count, args.rate))
    print(table(rows))
    print(f"saved {save('nats_costs', {'rows': rows, 'rate': args.rate, 'quick': args.quick})}")


if __name__ == "__main__":
    main()
