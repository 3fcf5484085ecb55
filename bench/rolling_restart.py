"""Rolling restart of every session worker under load: for each worker, start its
replacement, SIGTERM it, wait for it to exit; new calls keep arriving throughout. Then
every caller hangs up. Counts calls lost (dropped, ended for a reason other than the
caller's hang-up, or never reported), double owners, double greetings and seq gaps.

    .venv/bin/python -m bench.rolling_restart            # 3 workers, 150 calls + arrivals
    .venv/bin/python -m bench.rolling_restart --quick    # 2 workers, 20 calls
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

from bench.failover import CALLER, greetings
from bench.machine import save, table
from bench.session_stack import Bench


def owners_overlap(events: list) -> bool:  # type: ignore[type-arg]
    """Two workers attached at once: an attach by another worker with no detach between."""
    owner = None
    for event in sorted(events, key=lambda e: e.seq):
        if event.type == "session.attached":
            worker = event.data.get("worker")
            if owner is not None and owner != worker:
                return True
            owner = worker
        elif event.type == "session.detached":
            owner = None
    return False


async def run(workers: int, calls: int, arrival_rate: float) -> dict:
    async with Bench() as bench:
        assert bench.stack is not None and bench.stack.simulator is not None
        sim = bench.stack.simulator
        capacity = 2 * calls + 50
        pool = [await bench.add_worker(f"w{i}-gen0", capacity) for i in range(workers)]
        placed = await sim.place_calls(CALLER, calls, 50.0)
        await bench.arrivals.wait(
            lambda: all(bench.arrivals.first(c.call_id, "transcript.caller") for c in placed), 120
        )
        arrivals = asyncio.create_task(sim.place_calls(CALLER, 10_000, arrival_rate))
        started = time.monotonic()
        handoffs = 0
        for i, old in enumerate(list(pool)):
            new = await bench.add_worker(f"w{i}-gen1", capacity)
            old.signal(signal.SIGTERM)
            await old.wait_exit(timeout=120)
            pool[i] = new
        restart_s = time.monotonic() - started
        arrivals.cancel()
        await asyncio.gather(arrivals, return_exceptions=True)
        everyone = list(sim.calls.values())
        answered = [c for c in everyone if c.accept_count]
        ids = [c.call_id for c in answered]
        await bench.arrivals.wait(
            lambda: all(bench.arrivals.first(i, "transcript.caller") for i in ids), 60
        )
        dropped = sum(1 for c in answered if not c.live)
        for call in answered:
            await call.hang_up()
        try:
            await bench.arrivals.wait(
                lambda: all(bench.arrivals.first(i, "call.report") for i in ids), 60
            )
        except TimeoutError:
            pass
        lost = 0
        overlaps = gaps = 0
        for i in ids:
            ended = bench.arrivals.events(i, "call.ended")
            if [e.data.get("reason") for e in ended] != ["caller_hangup"]:
                lost += 1
                call = sim.calls[i]
                print(
                    "lost:", i, call.state, call.end_reason, call.attach_count,
                    call.sockets_open, [e.type for e in bench.arrivals.events(i)],
                )  # fmt: skip
            events = bench.arrivals.events(i)
            handoffs += len(bench.arrivals.events(i, "session.detached"))
            overlaps += owners_overlap(events)
            seqs = sorted(e.seq for e in events)
            gaps += seqs != list(range(1, len(seqs) + 1))
        return {
            "workers": workers,
            "calls_answered": len(answered),
            "restart_s": round(restart_s, 1),
            "handoffs": handoffs,
            "dropped_before_hangup": dropped,
            "lost": lost,
            "double_owner": overlaps,
            "greeting_count_not_1": sum(1 for c in answered if greetings(c) != 1),
            "seq_gaps": gaps,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--calls", type=int, default=None)
    parser.add_argument("--arrival-rate", type=float, default=None, help="new calls/s meanwhile")
    args = parser.parse_args()
    workers = args.workers or (2 if args.quick else 3)
    calls = args.calls or (20 if args.quick else 150)
    rate = args.arrival_rate or (2.0 if args.quick else 10.0)
    result = asyncio.run(run(workers, calls, rate))
    print(table([result]))
    print("saved", save("rolling_restart", {"quick": args.quick, "results": [result]}))


if __name__ == "__main__":
    main()
