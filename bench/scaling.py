"""How cost grows: the same load at 1, 2 and 4 session workers, and at 10x the calls.

    .venv/bin/python -m bench.scaling            # 100 calls at 20/s; 1,000 for the 10x run
    .venv/bin/python -m bench.scaling --quick    # 20 calls at 10/s; 200 for the 10x run

Each run gets a fresh nats-server, the ingress, acceptor and simulated OpenAI in this
process (`bench.session_stack.Bench`) and session workers as real `switchboard session`
processes. Every call is a short conversation that ends with the caller hanging up.
After three warm-up calls, reported per run: calls completed (a `call.report` seen),
accept p50/p99 (webhook sent → accept received, both on the simulator's clock), event lag
p99 (the caller hangs up → `call.ended` seen on NATS), and CPU per call: the session
workers' CPU seconds, and this process's (ingress + acceptor + simulator) beside it.
Flat CPU per call from 1x to 10x
means cost grows linearly with calls; flat worker CPU from 1 to 4 workers means adding
workers costs nothing per call.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
from typing import Any

from bench.machine import percentile, save, table
from bench.session_stack import Bench
from simulator import CallerScript, SimulatedCall

CALLER = CallerScript.model_validate(
    {
        "name": "scaling",
        "greeting_wait_s": 0.5,
        "steps": [
            {"say": "What time do you open?", "reply": "At nine."},
            {"say": "Thanks, bye.", "reply": "Bye!"},
            {"hangup": True},
        ],
    }
)


WARM_UP = 3


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def accept_ms(call: SimulatedCall) -> float | None:
    sent, accepted = call.timeline.get("webhook_sent"), call.timeline.get("accepted")
    return None if sent is None or accepted is None else (accepted - sent) * 1000


async def run(workers: int, calls: int, rate: float) -> dict[str, Any]:
    """One run: `calls` calls at `rate`/s over `workers` worker processes."""
    async with Bench() as bench:
        assert bench.stack is not None and bench.stack.simulator is not None
        capacity = calls + 20  # one worker alone can hold every call: admission never busy
        pool = [await bench.add_worker(f"w{i}", capacity) for i in range(workers)]
        # Warm up (first connections, caches): the first call's accept is not the steady state.
        warm = await bench.stack.simulator.place_calls(CALLER, WARM_UP, rate)
        await bench.stack.simulator.wait_all_ended(timeout=30)
        await bench.arrivals.wait(
            lambda: all(bench.arrivals.first(c.call_id, "call.report") for c in warm), 30
        )
        cpu_workers = sum(w.cpu_s() for w in pool)
        cpu_self = own_cpu_s()
        placed = await bench.stack.simulator.place_calls(CALLER, calls, rate)
        ids = [c.call_id for c in placed]
        try:
            await bench.stack.simulator.wait_all_ended(timeout=60 + calls / rate)
            await bench.arrivals.wait(
                lambda: all(bench.arrivals.first(i, "call.report") for i in ids), 30
            )
        except TimeoutError:
            pass  # reported as calls not completed
        worker_cpu = sum(w.cpu_s() for w in pool) - cpu_workers
        self_cpu = own_cpu_s() - cpu_self
        completed = [c for c in placed if bench.arrivals.first(c.call_id, "call.report")]
        accepts = [ms for c in placed if (ms := accept_ms(c)) is not None]
        lags = []
        for call in placed:
            seen = bench.arrivals.first(call.call_id, "call.ended")
            hung_up = call.timeline.get("ended")
            if seen is not None and hung_up is not None:
                lags.append((seen - hung_up) * 1000)
        return {
            "workers": workers,
            "calls": calls,
            "rate_per_s": rate,
            "completed": len(completed),
            "accepted_twice": sum(1 for c in placed if c.accept_count > 1),
            "accept_p50_ms": percentile(accepts, 50),
            "accept_p99_ms": percentile(accepts, 99),
            "event_lag_p99_ms": percentile(lags, 99),
            "worker_cpu_ms_per_call": worker_cpu * 1000 / max(1, len(completed)),
            "stack_cpu_ms_per_call": self_cpu * 1000 / max(1, len(completed)),
        }


async def run_all(calls: int, rate: float) -> list[dict[str, Any]]:
    rows = []
    for workers, count in ((1, calls), (2, calls), (4, calls), (2, calls * 10)):
        print(f"scaling: {workers} workers, {count} calls at {rate}/s", flush=True)
        rows.append(await run(workers, count, rate))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 calls at 10/s (200 for 10x)")
    parser.add_argument("--calls", type=int, default=None, help="calls per run (10x: ten times)")
    parser.add_argument("--rate", type=float, default=None, help="calls per second")
    args = parser.parse_args()
    calls = args.calls or (20 if args.quick else 100)
    rate = args.rate or (10.0 if args.quick else 20.0)
    rows = asyncio.run(run_all(calls, rate))
    print(table(rows))
    print("saved", save("scaling", {"quick": args.quick, "results": rows}))


if __name__ == "__main__":
    main()
