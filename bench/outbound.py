"""Outbound: N calls queued at once through an agent's cap, on a real nats-server, two
in-process diallers and the simulated GPT-Live (callees answer, talk briefly, hang up).
Measures the dial rate held against `rate_per_s`, the time from `POST /calls` to
`call.dialing` (p50, p99), the most calls ringing or live at once against the cap, and
dials per request (must be exactly one).

    .venv/bin/python -m bench.outbound            # 1,000 calls, cap 50
    .venv/bin/python -m bench.outbound --quick    # 40 calls, cap 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from bench.machine import percentile, save, table
from switchboard.nats_server import NatsServer
from tests.services.dialler.conftest import TRUNK_PASSWORD, agents_yaml, outbound_stack


async def run(calls: int, cap: int, rate: float) -> dict:
    os.environ.setdefault("TRUNK_PASSWORD", TRUNK_PASSWORD)
    with tempfile.TemporaryDirectory() as tmp:
        nats = NatsServer(Path(tmp) / "nats")
        nats.start()
        try:
            stack, outbound = await outbound_stack(
                nats, Path(tmp), agents_yaml(max_concurrent=cap, rate=rate),
                workers=2, capacity=cap + 10,
            )  # fmt: skip
            try:
                await outbound.add_dialler()
                await outbound.add_dialler()
                numbers = [f"+6140{i:07d}" for i in range(calls)]
                sent: dict[str, float] = {}
                # A client sends its requests a connection pool at a time (httpx's 100), not
                # all 1,000 in one breath: beyond it they would wait for a connection, and
                # time out, in the load generator rather than in Switchboard.
                in_flight = asyncio.Semaphore(50)

                async def ask(number: str) -> str:
                    async with in_flight:
                        started = time.time()  # wall clock, as the events' `ts`
                        answer = await outbound.request(f"bench-{number}", to=number)
                    call_id = answer.json()["call_id"]
                    sent[call_id] = started
                    return call_id

                began = time.monotonic()
                ids = await asyncio.gather(*(ask(n) for n in numbers))
                await stack.events.wait_all(ids, "call.report", timeout=calls * 2.0 + 60)
                took = time.monotonic() - began
                dialing = [stack.events.of_type(i, "call.dialing")[0] for i in ids]
                waits = [
                    event.ts.timestamp() - sent[i] for i, event in zip(ids, dialing, strict=True)
                ]
                first = min(e.ts.timestamp() for e in dialing)
                last = max(e.ts.timestamp() for e in dialing)
                side = stack.simulator.live.outbound if stack.simulator else None
                assert side is not None
                return {
                    "calls": calls,
                    "cap": cap,
                    "rate_per_s": rate,
                    "dial_rate_per_s": round((calls - 1) / max(last - first, 1e-6), 2),
                    "to_dialing_p50_s": round(percentile(waits, 50), 3),
                    "to_dialing_p99_s": round(percentile(waits, 99), 3),
                    "most_active": side.most_active,
                    "dialled_twice": sum(1 for n in numbers if side.dialled(n) > 1),
                    "never_dialled": sum(1 for n in numbers if side.dialled(n) == 0),
                    "seconds": round(took, 1),
                }
            finally:
                await outbound.stop()
                await stack.stop()
        finally:
            nats.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    calls, cap, rate = (40, 10, 20.0) if args.quick else (1000, 50, 20.0)
    result = asyncio.run(run(calls, cap, rate))
    print(table([result]))
    save("outbound", {"quick": args.quick, "rows": [result]})


if __name__ == "__main__":
    main()
