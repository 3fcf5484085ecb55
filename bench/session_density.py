"""How many calls one session worker process holds, with OpenAI (the simulator) sending
5 sideband events per second per call. Measures the worker's RSS per call, its CPU, and
the event → durable-in-JetStream latency (`switchboard_event_publish_seconds`).

GPT-Live calls (`--api live`) carry reflected audio besides: both directions at the real
rate (24 kHz PCM16, ~64 KB/s of base64 each way, in 100 ms frames), which the worker must
drop unparsed. `--api both` measures Realtime and GPT-Live in the same run, side by side.

The ingress and the acceptor run as processes of their own, as deployed (`--accept-path
in-process` puts them in this process, beside the simulator, as before 2026-12-02).

    .venv/bin/python -m bench.session_density            # 2,000 Realtime calls
    .venv/bin/python -m bench.session_density --quick    # 100 calls, a short window
    .venv/bin/python -m bench.session_density --api both --calls 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
import time
from collections import Counter

import httpx

from bench.machine import save, table
from bench.session_stack import (
    AcceptPath,
    Bench,
    histogram_quantile,
    where_missed_calls_waited,
)
from simulator import CallerScript

RATE = 5.0  # sideband events per second per call
LIVE_NUMBER = "+15550005000"
LIVE_AGENTS = f"""agents:
  - name: live-density
    api: live
    numbers: ["{LIVE_NUMBER}"]
    voice: marin
    instructions: "You answer briefly."
    greeting: "Hello."
"""


def chatty_caller(duration_s: float) -> CallerScript:
    """5 events/s of chatter, with a spoken turn (transcripts to publish) every 10 s."""
    steps: list[dict] = []
    for _ in range(max(1, int(duration_s // 10))):
        steps.append({"say": "Is there a table at eight?", "reply": "Let me check."})
        steps.append({"chatter": {"rate": RATE, "duration_s": 10}})
    return CallerScript.model_validate(
        {"name": "chatty", "steps": steps, "greeting_wait_s": 1.0, "agent_speech_s": 0.5}
    )


SIDEBAND_MODULES = {"websockets": "switchboard.cli", "sdk": "bench.sdk_worker"}


async def run(
    calls: int,
    ramp_rate: float,
    window_s: float,
    api: str = "realtime",
    sideband: str = "websockets",
    accept_path: AcceptPath = "processes",
) -> dict:
    # The simulator stands in for OpenAI, whose sideband does not stall and then burst. Here
    # it shares a heap with the ingress, the acceptor and every event seen, and a full
    # collection of that heap (0.5 s at 2,000 calls) held its events back and sent them to
    # the worker in one burst, which the histogram blamed on the worker. So the load
    # generator runs without the cyclic garbage collector; the worker keeps its own.
    gc.disable()
    try:
        return await _run(calls, ramp_rate, window_s, api, sideband, accept_path)
    finally:
        gc.enable()


async def _place(bench: Bench, script: CallerScript, calls: int, rate: float, api: str) -> list:
    simulator = bench.simulator
    assert simulator is not None
    if api == "realtime":
        return await simulator.place_calls(script, calls, rate)
    loop = asyncio.get_running_loop()
    start, placed = loop.time(), []
    for index in range(calls):
        delay = start + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        placed.append(await simulator.live.place_call(script, to=LIVE_NUMBER))
    return placed


async def _run(
    calls: int, ramp_rate: float, window_s: float, api: str, sideband: str, accept_path: AcceptPath
) -> dict:
    async with Bench(LIVE_AGENTS if api == "live" else None, accept_path) as bench:
        assert bench.simulator is not None
        # Exact admission (issue 13): as many places as calls, no headroom.
        worker = await bench.add_worker("dense", calls, SIDEBAND_MODULES[sideband])
        idle_rss = worker.rss_kib()
        script = chatty_caller(calls / ramp_rate + window_s + 60)
        started, own_cpu = time.monotonic(), time.process_time()
        lags: list[float] = []
        probe = asyncio.create_task(_loop_lag(lags))
        placed = await _place(bench, script, calls, ramp_rate, api)
        ids = [c.call_id for c in placed]

        def attached() -> int:
            return sum(1 for i in ids if bench.arrivals.first(i, "session.attached"))

        def decided() -> int:
            return sum(1 for i in ids if _outcome(bench, i) != "undecided")

        # Every call ends up attached or refused (issue 17: overload sheds, never misses);
        # wait for each to be one or the other, then measure what was attached.
        with contextlib.suppress(TimeoutError):
            await bench.arrivals.wait(lambda: decided() == calls, timeout=calls / ramp_rate + 60)
        outcome_of = {c.call_id: _outcome(bench, c.call_id) for c in placed}
        outcomes = Counter(outcome_of.values())
        # Why calls were missed: `deadline` (the acceptor read the webhook too late to
        # answer it) or `caller_gone` (the caller hung up before the accept).
        missed_why = Counter(
            str(e.data.get("reason")) for i in ids for e in bench.arrivals.events(i, "call.missed")
        )
        where_missed_calls_waited([c for c in placed if outcome_of[c.call_id] == "missed"])
        ramp_s = time.monotonic() - started
        # The load generator and OpenAI's stand-in share one process and its event loop: at
        # one core it is the bottleneck, and its webhooks wait in it (see the missed calls).
        bench_cores = (time.process_time() - own_cpu) / ramp_s
        probe.cancel()
        lags.sort()
        print(
            f"the benchmark's own event loop, late by: p50 {lags[len(lags) // 2] * 1000:.0f} ms,"
            f" p99 {lags[int(len(lags) * 0.99)] * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms",
            file=sys.stderr,
        )
        ingress_p99 = None
        if bench.ingress_url is not None:
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"{bench.ingress_url}/metrics")).text
            ingress_p99 = histogram_quantile(text, "switchboard_webhook_duration_seconds", 0.99)
        before = await worker.metrics()
        cpu_before, at = worker.cpu_s(), time.monotonic()
        await asyncio.sleep(window_s)  # the measurement window itself
        cpu = (worker.cpu_s() - cpu_before) / (time.monotonic() - at)
        after = await worker.metrics()
        loaded_rss = worker.rss_kib()
        live = sum(1 for c in placed if c.live)
        p50 = histogram_quantile(after, "switchboard_event_publish_seconds", 0.50, before)
        p99 = histogram_quantile(after, "switchboard_event_publish_seconds", 0.99, before)
        # While calls were still arriving: every new call's state grows the heap.
        ramp_p99 = histogram_quantile(before, "switchboard_event_publish_seconds", 0.99)
        for call in placed:
            await call.hang_up()
        return {
            "api": api,
            "sideband": sideband,
            "accept_path": accept_path,
            "calls": calls,
            **{kind: outcomes.get(kind, 0) for kind in OUTCOMES},
            "missed_why": ", ".join(f"{why} {n}" for why, n in missed_why.most_common()) or "-",
            "live_at_end_of_window": live,
            "ramp_s": round(ramp_s, 1),
            "bench_cores_in_ramp": round(bench_cores, 2),
            "ingress_webhook_p99_s_le": ingress_p99,
            "window_s": window_s,
            "events_per_s_offered": calls * RATE,
            "worker_cpu_cores": round(cpu, 2),
            "rss_idle_mib": round(idle_rss / 1024, 1),
            "rss_loaded_mib": round(loaded_rss / 1024, 1),
            "rss_per_call_kib": round((loaded_rss - idle_rss) / calls, 1),
            "publish_p50_ms_le": None if p50 is None else p50 * 1000,
            "publish_p99_ms_le": None if p99 is None else p99 * 1000,
            "ramp_publish_p99_ms_le": None if ramp_p99 is None else ramp_p99 * 1000,
        }


async def _loop_lag(lags: list[float], period_s: float = 0.01) -> None:
    """How late this process's event loop wakes a 10 ms timer: the simulated OpenAI's own
    delay in everything it sends (webhooks among them)."""
    while True:
        at = time.monotonic()
        await asyncio.sleep(period_s)
        lags.append(time.monotonic() - at - period_s)


OUTCOMES = ("attached", "refused_overloaded", "refused_other", "missed", "failed", "undecided")


def _outcome(bench: Bench, call_id: str) -> str:
    """What became of one call, by the events it has so far."""
    seen = bench.arrivals.first
    if seen(call_id, "session.attached") is not None:
        return "attached"
    if seen(call_id, "call.rejected", reason="overloaded") is not None:
        return "refused_overloaded"
    if seen(call_id, "call.rejected") is not None:
        return "refused_other"
    if seen(call_id, "call.missed") is not None:
        return "missed"
    if seen(call_id, "call.failed") is not None:
        return "failed"
    return "undecided"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calls", type=int, default=None)
    parser.add_argument("--ramp-rate", type=float, default=50.0, help="new calls per second")
    parser.add_argument("--window", type=float, default=None, help="measurement seconds")
    parser.add_argument("--api", choices=("realtime", "live", "both"), default="realtime")
    parser.add_argument(
        "--sideband",
        choices=("websockets", "sdk", "both"),
        default="websockets",
        help="Realtime's sideband as shipped, on the openai SDK's connection, or both",
    )
    parser.add_argument(
        "--accept-path",
        choices=("processes", "in-process"),
        default="processes",
        help="ingress and acceptor as processes of their own (as deployed) or in this one",
    )
    args = parser.parse_args()
    calls = args.calls or (100 if args.quick else 2000)
    window = args.window or (10.0 if args.quick else 30.0)
    apis = ("realtime", "live") if args.api == "both" else (args.api,)
    kinds = ("websockets", "sdk") if args.sideband == "both" else (args.sideband,)
    results = [
        asyncio.run(run(calls, args.ramp_rate, window, api, kind, args.accept_path))
        for api in apis
        for kind in kinds
    ]
    print(table(results))
    print("saved", save("session_density", {"quick": args.quick, "results": results}))


if __name__ == "__main__":
    main()
