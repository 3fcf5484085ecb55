"""Exact admission under a burst, and its accept latency beside today's code, in one run.

    .venv/bin/python -m bench.admission            # 1,000 calls into 4 x 250 slots; 100/s
    .venv/bin/python -m bench.admission --quick    # 40 into 4 x 10; 20/s for 2 s (smoke)

1. **Burst**: 4 `switchboard session` workers (capacity 250 each) and 2 acceptors against a
   real nats-server; 1,000 silent calls ring at once. Reported: accepted, rejected, the
   overbooking (calls a worker holds beyond its `--capacity`, plus accepted calls no worker
   could take), and the time from the first webhook sent to the last accept received.
2. **Latency**: calls at 100/s, each hanging up once answered (the accept path, as in
   `bench.accept`), through one acceptor of *today's* code (`--baseline-ref`, default
   `main`, run from a `git archive` of that commit) and then through two acceptors of this
   code, on the same machine in the same run. Goal (issue 13): p99 within 10 % of today's.
   `--baseline-ref` takes several refs; `--repeat N` runs every code N times, every other
   round in reverse order, and prints the medians (this machine's figures drift by ±15 %
   between runs minutes apart, so one run per code decides little). `--paired` runs every
   code at once in each round, each with its own nats-server and processes, and prints each
   code's CPU per call over the first code's in the same round: drift falls on all alike.

Figures on a shared or busy machine mean little: record them only on a quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import re
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from io import BytesIO
from pathlib import Path
from typing import Any

from bench.accept import (
    API_KEY,
    ROOT,
    WEBHOOK_PATH,
    _secret,
    metric,
    process,
    run_rate,
    switchboard,
    wait_http,
    warm_up,
)
from bench.machine import save, table
from bench.session_stack import where_missed_calls_waited
from simulator import CallerScript, Simulator
from switchboard.nats_server import NatsServer, free_port

SILENT = CallerScript.model_validate({"name": "silent", "steps": []})
DECISION_TIMEOUT_S = 120.0


def checkout(ref: str, into: Path) -> Path:
    """The repository's tree at `ref` (today's code, for the baseline), unpacked."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


class Fleet:
    """nats-server, the ingress, N acceptors and M session workers, as processes."""

    def __init__(self, store: Path, code: Path = ROOT, *, burst: bool = False) -> None:
        self.server = NatsServer(store)
        self.code = code
        self.secret = _secret()
        self.ingress_port = free_port()
        # A burst's thousand webhooks leave OpenAI's stand-in at once, as OpenAI's would:
        # from a thread of its own with enough connections. With 10 on the benchmark's busy
        # loop they left over ~15 s, and calls rang out in the simulator before their
        # webhook was sent. (The latency runs keep the default: their "webhook sent" mark is
        # the start of the latency measured.)
        self.sim = Simulator(
            API_KEY, self.secret, f"http://127.0.0.1:{self.ingress_port}{WEBHOOK_PATH}",
            webhook_concurrency=100 if burst else 10, webhook_thread=burst,
        )  # fmt: skip
        self.stack = ExitStack()
        self.worker_ports: list[int] = []
        self.pids: dict[str, int] = {}

    async def start(self, acceptors: int, workers: int, capacity: int) -> None:
        env = await self._start_server_and_simulator()
        run = switchboard()  # run in `self.code`: its packages come first on sys.path
        ports = [self.ingress_port]
        ingress = ["ingress", "--host", "127.0.0.1", "--port", str(self.ingress_port)]
        self._spawn([*run, *ingress], env, "ingress")
        for index in range(acceptors):
            port = free_port()
            ports.append(port)
            acceptor = ["acceptor", "--metrics-port", str(port)]
            self._spawn([*run, *acceptor], env, f"acceptor{index}")
        for index in range(workers):
            port = free_port()
            ports.append(port)
            self.worker_ports.append(port)
            session = ["session", "--capacity", str(capacity), "--metrics-port", str(port),
                       "--worker-id", f"bench-{index}"]  # fmt: skip
            self._spawn([*run, *session], env, f"session{index}")
        assert self.server.process is not None
        self.pids["nats"] = self.server.process.pid
        for port in ports:
            await wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)

    async def _start_server_and_simulator(self) -> dict[str, str]:
        """nats-server and the simulated OpenAI up; the environment services reach them by."""
        self.server.start()
        await self.sim.start()
        return {
            "NATS_URL": self.server.url,
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_WEBHOOK_SECRET": self.secret,
            "OPENAI_BASE_URL": self.sim.base_url,
            "LOG_LEVEL": "WARNING",
        }

    def _spawn(self, args: list[str], env: dict[str, str], name: str) -> None:
        proc = self.stack.enter_context(process(args, env, name, cwd=self.code))
        self.pids[name] = proc.pid

    async def stop(self) -> None:
        # Stopped from a thread: a worker stopped with a live call drains it, which needs
        # the simulated OpenAI in this event loop to go on answering meanwhile.
        await asyncio.to_thread(self.stack.close)
        await self.sim.stop()
        self.server.stop()


async def burst(fleet: Fleet, calls: int, capacity: int) -> dict[str, Any]:
    """All calls at once into exactly as many slots; silent callers keep their slots."""
    await warm_up(fleet.sim)
    started = time.time()
    placed = list(await asyncio.gather(*(fleet.sim.place_call(SILENT) for _ in range(calls))))
    for call in placed:
        with contextlib.suppress(Exception):
            await call.wait_until(lambda c: c.state != "ringing", timeout=DECISION_TIMEOUT_S)
    accepted = [c for c in placed if c.accept_count]
    where_missed_calls_waited([c for c in placed if not c.accept_count])
    last = max((c.timeline.get("accept_received", started) for c in accepted), default=started)
    first_sent = min(c.timeline.get("webhook_sent", started) for c in placed)
    # Every accepted call reaches a worker unless the fleet was overbooked.
    deadline = time.monotonic() + 60
    active: list[float] = []
    while time.monotonic() < deadline:
        active = [await metric(p, "switchboard_session_active_calls") for p in fleet.worker_ports]
        if sum(active) >= len(accepted):
            break
        await asyncio.sleep(0.5)  # polling other processes' metrics, with a deadline
    beyond = sum(max(0.0, a - capacity) for a in active)
    for call in placed:
        with contextlib.suppress(Exception):
            await call.hang_up()
    return {
        "calls": calls,
        "slots": capacity * len(fleet.worker_ports),
        "accepted": len(accepted),
        "rejected": sum(c.state == "rejected" for c in placed),
        "overbooked": int(beyond + max(0.0, len(accepted) - sum(active))),
        "last_accept_s": round(last - first_sent, 3),
    }


async def latency(code: Path, label: str, acceptors: int, rate: int, seconds: float) -> dict:
    (row,) = await paired([(label, code, acceptors)], rate, seconds)
    return row


async def paired(
    runs: list[tuple[str, Path, int]],
    rate: int,
    seconds: float,
    make_fleet: Callable[[Path, str, Path], Fleet] = lambda store, label, code: Fleet(store, code),
) -> list[dict[str, Any]]:
    """Every code at once, each at `rate`, each with its own nats-server and processes: the
    machine's drift (±15 % minutes apart, more between runs) then falls on every code
    alike, and the ratio of their CPU per call holds where one code's figure alone does not.
    With several codes, the latency figures share this process's loop and the fleets share
    the cores: read latency from runs of one code at a time (`latency`). `make_fleet` makes each
    code's processes (`bench.floor` runs its own beside a code's)."""
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-admission-") as tmp:
        fleets = [make_fleet(Path(tmp) / f"fleet-{index}", label, code) for index, (label, code, _)
                  in enumerate(runs)]  # fmt: skip
        try:
            for fleet, (_, _, acceptors) in zip(fleets, runs, strict=True):
                await fleet.start(acceptors=acceptors, workers=1, capacity=3000)
            await asyncio.gather(*(warm_up(fleet.sim) for fleet in fleets))
            results = await asyncio.gather(
                *(run_rate(fleet.sim, rate, seconds, fleet.pids) for fleet in fleets)
            )
        finally:
            for fleet in fleets:
                await fleet.stop()
    return [
        {"code": label, "acceptors": acceptors, **row}
        for (label, _, acceptors), row in zip(runs, results, strict=True)
    ]


def paired_ratios(rows: list[dict[str, Any]], codes: int) -> list[dict[str, Any]]:
    """Paired rounds: each code's CPU per call over the first code's, in the same round."""
    out = []
    first = rows[0]["code"]
    for start in range(0, len(rows), codes):
        round_ = {row["code"]: cpu_by_role(row)["total_ms"] for row in rows[start : start + codes]}
        ordered = [first, *(code for code in round_ if code != first)]
        out.append({code: round(round_[code] / round_[first], 3) for code in ordered})
    return out


def _medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per code and acceptor count, the median of each figure over the rounds."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["code"], row["acceptors"]), []).append(row)
    medians = []
    for (code, acceptors), group in groups.items():
        cpu = [cpu_by_role(row) for row in group]
        medians.append(
            {
                "code": code,
                "acceptors": acceptors,
                "rounds": len(group),
                **{
                    f"median_{key}": round(statistics.median(r[key] for r in group), 2)
                    for key in ("p50_ms", "p99_ms")
                },
                **{
                    f"median_{key}": round(statistics.median(c[key] for c in cpu), 2)
                    for key in cpu[0]
                },
            }
        )
    return medians


def cpu_by_role(row: dict[str, Any]) -> dict[str, float]:
    """CPU ms per call by kind of process (acceptors summed), and their total."""
    roles: dict[str, float] = {}
    for key, value in row.items():
        if key.startswith("cpu_") and key.endswith("_ms"):
            role = re.sub(r"\d+$", "", key[4:-3])
            roles[role] = roles.get(role, 0.0) + value
    return {
        **{f"{r}_ms": round(v, 2) for r, v in roles.items()},
        "total_ms": round(sum(roles.values()), 2),
    }


async def main_async(args: argparse.Namespace) -> None:
    workers, capacity = (4, 10) if args.quick else (4, args.capacity)
    rate, seconds = (20, 2.0) if args.quick else (args.rate, args.seconds)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-admission-") as tmp:
        burst_row: dict[str, Any] = {}
        if not args.latency_only:
            fleet = Fleet(Path(tmp) / "store", burst=True)
            try:
                await fleet.start(acceptors=2, workers=workers, capacity=capacity)
                burst_row = await burst(fleet, workers * capacity, capacity)
            finally:
                await fleet.stop()
            print(table([burst_row]))
            print()
        runs: list[tuple[str, Path, int]] = [
            (f"today ({ref})", checkout(ref, Path(tmp) / f"baseline-{index}"), 1)
            for index, ref in enumerate(args.baseline_ref)
        ]
        runs += [("exact", ROOT, n) for n in args.acceptors]
        rows = []
        for round_ in range(args.repeat):
            if args.paired:
                # Each round in another order: the fleet started first (or placed first in
                # each tick) gets no lasting edge. Identical codes measured 0.97 unrotated.
                shift = round_ % len(runs)
                rows += await paired(runs[shift:] + runs[:shift], rate, seconds)
                continue
            # Every other round in reverse: a machine that drifts (a neighbour, the page
            # cache) favours no code by running it first or last.
            for label, code, acceptors in runs if round_ % 2 == 0 else runs[::-1]:
                rows.append(await latency(code, label, acceptors, rate, seconds))
    keys = ("code", "acceptors", "rate", "calls", "accepted", "p50_ms", "p99_ms", "max_ms")
    print(table([{k: row[k] for k in keys} for row in rows]))
    print()
    print(table([{"code": row["code"], "acceptors": row["acceptors"], **cpu_by_role(row)}
                 for row in rows]))  # fmt: skip
    if args.repeat > 1:
        print()
        print(table(_medians(rows)))
    if args.paired:
        by_round = paired_ratios(rows, len(runs))
        print()
        print(table(by_round))
        medians = {c: round(statistics.median(r[c] for r in by_round), 3) for c in by_round[0]}
        print(f"CPU per call over {runs[0][0]}, median of {len(by_round)} paired rounds: {medians}")
    today = statistics.median(r["p99_ms"] for r in rows if r["code"] == runs[0][0])
    exact = statistics.median(
        r["p99_ms"] for r in rows if (r["code"], r["acceptors"]) == ("exact", runs[-1][2])
    )
    print(f"p99: exact {exact:.1f} ms vs today {today:.1f} ms ({exact / today - 1:+.0%})")
    path = save(
        "admission",
        {"quick": args.quick, "burst": burst_row, "latency": rows,
         "elapsed_s": round(time.time() - started, 1)},
    )  # fmt: skip
    print(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (checks it works)")
    parser.add_argument("--capacity", type=int, default=250, help="slots per worker (4 workers)")
    parser.add_argument("--rate", type=int, default=100, help="calls per second (latency)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds at that rate")
    parser.add_argument(
        "--baseline-ref", nargs="+", default=["main"], help="git refs of today's code (1 acceptor)"
    )
    parser.add_argument(
        "--acceptors", type=int, nargs="+", default=[2], help="acceptor replicas of this code"
    )
    parser.add_argument("--latency-only", action="store_true", help="skip the burst")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of the latency runs (medians shown)"
    )
    parser.add_argument(
        "--paired",
        action="store_true",
        help="run every code at once in each round (CPU ratios robust to drift; not latency)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    gc.disable()  # this process times the calls: see bench/accept.py
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
