"""Failover: SIGKILL a session worker holding N calls; time until each call is re-attached
by another worker (`session.attached` with attempt > 1 seen on NATS). Default settings
(ack_wait and lease TTL from `Settings`) unless overridden by the environment.

    .venv/bin/python -m bench.failover            # 200 calls
    .venv/bin/python -m bench.failover --quick    # 20 calls
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

from bench.machine import percentile, save, table
from bench.session_stack import Bench
from simulator import CallerScript

CALLER = CallerScript.model_validate(
    {"name": "stays-on", "steps": [{"say": "Hello, a table please.", "reply": "Sure."}]}
)


def greetings(call) -> int:  # type: ignore[no-untyped-def]
    return sum(
        1
        for e in call.client_events
        if e.get("type") == "response.create"
        and "Greet the caller" in str((e.get("response") or {}).get("instructions", ""))
    )


async def run(calls: int) -> dict:
    async with Bench() as bench:
        assert bench.stack is not None and bench.stack.simulator is not None
        capacity = 2 * calls + 50  # admission headroom
        doomed = await bench.add_worker("doomed", capacity)
        placed = await bench.stack.simulator.place_calls(CALLER, calls, 50.0)
        ids = [c.call_id for c in placed]
        await bench.arrivals.wait(
            lambda: all(bench.arrivals.first(i, "transcript.caller") for i in ids), 120
        )
        await bench.add_worker("survivor", capacity)
        killed_at = time.monotonic()
        doomed.signal(signal.SIGKILL)
        try:
            await bench.arrivals.wait(
                lambda: all(
                    bench.arrivals.first(i, "session.attached", worker="survivor") for i in ids
                ),
                60,
            )
        except TimeoutError:
            pass
        delays = [
            at - killed_at
            for i in ids
            if (at := bench.arrivals.first(i, "session.attached", worker="survivor"))
        ]
        double_greetings = sum(1 for c in placed if greetings(c) != 1)
        gaps = 0
        for i in ids:
            seqs = sorted(e.seq for e in bench.arrivals.events(i))
            gaps += seqs != list(range(1, len(seqs) + 1))
        live = sum(1 for c in placed if c.live)
        for call in placed:
            await call.hang_up()
        return {
            "calls": calls,
            "reattached": len(delays),
            "live": live,
            "p50_s": percentile(delays, 50),
            "p99_s": percentile(delays, 99),
            "max_s": max(delays, default=float("nan")),
            "greeting_count_not_1": double_greetings,
            "seq_gaps": gaps,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calls", type=int, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args.calls or (20 if args.quick else 200)))
    print(table([result]))
    print("saved", save("failover", {"quick": args.quick, "results": [result]}))


if __name__ == "__main__":
    main()
