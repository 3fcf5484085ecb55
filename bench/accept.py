"""Webhook sent → accept received, through the real services, beside an inline baseline.

    .venv/bin/python -m bench.accept            # 50, 100, 200 calls/s, 10 s each
    .venv/bin/python -m bench.accept --quick    # 2 s each (checks the benchmark works)

The pipeline: `switchboard ingress`, `switchboard acceptor` and one `switchboard session`
worker (so admission has slots) as separate processes against a real nats-server; the
simulated OpenAI runs in this process, sends the signed webhooks and records, per call,
when the webhook left and when the accept arrived (`call.timeline`), so both ends are
read on one clock. The inline baseline is what the seed did: one process that verifies
the webhook and calls accept inside the webhook request.

Each call hangs up as soon as it is answered, so the session worker's load stays small
and the number measured is the accept path. Goal (issue 4): p99 ≤ 25 ms at 100
calls/s on 2 cores, within 10 ms of the inline baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.machine import percentile, save, table
from simulator import CallerScript, SimulatedCall, Simulator
from switchboard.nats_server import NatsServer, free_port

API_KEY = "sk-bench-" + "k" * 24
WEBHOOK_PATH = "/api/voice/realtime-webhook"
RATES = (50, 100, 200)
HANG_UP = CallerScript.model_validate({"name": "bench", "steps": [{"hangup": True}]})
ROOT = Path(__file__).resolve().parents[1]


def _secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


# -- the inline baseline (a process of its own: `python -m bench.accept --serve-inline`) ----


def serve_inline(port: int) -> None:
    """Verify the webhook and accept inside the request, as the seed design did."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from services.ingress.webhook import WebhookVerifier
    from shared.accept_body import accept_body
    from shared.agents import default_agent
    from shared.openai_client import call_control_client
    from shared.settings import Settings

    settings = Settings()
    verifier = WebhookVerifier(settings.webhook_secrets)
    body = accept_body(default_agent(settings))
    client = call_control_client(settings)

    async def webhook(request: Request) -> Response:
        raw = await request.body()
        try:
            verified = verifier.verify(raw, request.headers, datetime.now(UTC))
        except Exception:
            return Response(status_code=401)
        if verified.call is None:
            return Response(status_code=200)
        try:
            await client.realtime.calls.accept(verified.call.call_id, **body)
        except Exception:
            return Response(status_code=200)
        return Response(status_code=200)

    app = Starlette(routes=[Route(WEBHOOK_PATH, webhook, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- processes -----------------------------------------------------------------------------


@contextlib.contextmanager
def process(
    args: list[str], env: dict[str, str], name: str, cwd: Path = ROOT
) -> Iterator[subprocess.Popen]:
    """`args` as a child process in `cwd` (this code, or another version's checkout)."""
    # Its log goes to a file, not a pipe nobody reads while it runs (a full pipe would
    # block the service mid-benchmark); shown only when it ends badly.
    quiet = os.environ.get("BENCH_QUIET", "1") == "1"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            args, env={**os.environ, **env}, cwd=cwd, stdout=subprocess.DEVNULL,
            stderr=log if quiet else None,
        )  # fmt: skip
        try:
            yield proc
        finally:
            proc.terminate()
            killed = False
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                killed = True
            if killed:
                print(f"[{name}] still draining 15 s after SIGTERM: killed", file=sys.stderr)
            elif proc.returncode not in (0, -15) and quiet:
                log.seek(0)
                tail = log.read()[-2000:].decode(errors="replace").strip() or "(no output)"
                print(f"[{name}] exited {proc.returncode}: {tail}", file=sys.stderr)


async def metric(port: int, name: str) -> float:
    async with httpx.AsyncClient(timeout=5.0) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else float("nan")


async def until_idle(port: int, timeout: float = 20.0) -> None:
    """Until the session worker on metrics `port` holds no call: one stopped with a live
    call drains it, which needs the simulated OpenAI (in this process) to go on answering,
    while the processes are stopped with a blocking wait."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await metric(port, "switchboard_session_active_calls") <= 0:
            return
        await asyncio.sleep(0.2)  # polling another process's metrics, with a deadline


async def wait_http(url: str, timeout: float = 30.0) -> None:
    async with httpx.AsyncClient() as client, asyncio.timeout(timeout):
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.1)


def switchboard() -> list[str]:
    return [sys.executable, "-m", "switchboard.cli"]


# -- one run -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_call(pids: dict[str, int], before: dict[str, float], calls: int) -> dict[str, float]:
    """CPU milliseconds per call, by process, since `before`."""
    return {
        f"cpu_{name}_ms": (cpu_seconds(pid) - before[name]) * 1000 / max(1, calls)
        for name, pid in pids.items()
    }


async def hang_up_once_accepted(call: SimulatedCall) -> None:
    with contextlib.suppress(Exception):
        await call.wait_for("accepted", timeout=15)
        await call.hang_up()


async def place(sim: Simulator, count: int, rate: float) -> list[SimulatedCall]:
    """Calls at an even `rate`; each hangs up as soon as it is answered, so the session
    worker finds it gone (a 404 on attach) and the machine's cores stay on the accept path."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    calls: list[SimulatedCall] = []
    for index in range(count):
        delay = start + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        call = await sim.place_call(HANG_UP)
        calls.append(call)
        sim.spawn(hang_up_once_accepted(call))
    return calls


async def run_rate(
    sim: Simulator, rate: int, seconds: float, pids: dict[str, int]
) -> dict[str, Any]:
    count = max(1, int(rate * seconds))
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    calls = await place(sim, count, rate)
    latencies: list[float] = []
    delivered: list[float] = []
    outcomes: dict[str, int] = {}
    for call in calls:
        with contextlib.suppress(Exception):
            await call.wait_until(lambda c: c.state != "ringing", timeout=15)
        state = call.state if call.accept_count == 0 else "accepted"
        outcomes[state] = outcomes.get(state, 0) + 1
        sent = call.timeline.get("webhook_sent")
        received = call.timeline.get("accept_received")
        if sent is not None and received is not None:
            latencies.append((received - sent) * 1000)
        answered = call.timeline.get("webhook_delivered")
        if sent is not None and answered is not None:
            delivered.append((answered - sent) * 1000)
    with contextlib.suppress(TimeoutError):
        await sim.wait_all_ended(timeout=30)
    cpu = cpu_per_call(pids, before, count)
    return {
        "rate": rate,
        "calls": count,
        "accepted": outcomes.get("accepted", 0),
        "other": sum(n for s, n in outcomes.items() if s != "accepted"),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else float("nan"),
        "webhook_200_p50_ms": percentile(delivered, 50),
        **cpu,
    }


async def first_accept(sim: Simulator, timeout: float = 30.0) -> None:
    """Until one call is accepted: the path under test is up end to end."""
    async with asyncio.timeout(timeout):
        while True:
            call = await sim.place_call(HANG_UP)
            with contextlib.suppress(Exception):
                await call.wait_until(lambda c: c.state != "ringing", timeout=5)
            if call.accept_count:
                return
            await asyncio.sleep(0.5)


async def warm_up(sim: Simulator) -> None:
    """Every process connected, the worker's slots reported, connections and code warm."""
    await first_accept(sim)
    calls = await place(sim, 20, 20)  # warm connections and code paths
    for call in calls:
        with contextlib.suppress(Exception):
            await call.wait_until(lambda c: c.state != "ringing", timeout=10)
    with contextlib.suppress(TimeoutError):
        await sim.wait_all_ended(timeout=20)


async def bench_pipeline(rates: list[int], seconds: float, store: Path) -> list[dict[str, Any]]:
    server = NatsServer(store)
    server.start()
    secret = _secret()
    ingress_port, acceptor_metrics, session_metrics = free_port(), free_port(), free_port()
    sim = Simulator(API_KEY, secret, f"http://127.0.0.1:{ingress_port}{WEBHOOK_PATH}")
    await sim.start()
    env = {
        "NATS_URL": server.url,
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_WEBHOOK_SECRET": secret,
        "OPENAI_BASE_URL": sim.base_url,
        "LOG_LEVEL": "WARNING",
    }
    rows: list[dict[str, Any]] = []
    try:
        with (
            process([*switchboard(), "ingress", "--host", "127.0.0.1", "--port",
                     str(ingress_port)], env, "ingress") as ingress,
            process([*switchboard(), "acceptor", "--metrics-port", str(acceptor_metrics)],
                    env, "acceptor") as acceptor,
            process([*switchboard(), "session", "--capacity", "3000", "--metrics-port",
                     str(session_metrics), "--worker-id", "bench"], env, "session") as worker,
        ):  # fmt: skip
            assert server.process is not None
            pids = {"bench": os.getpid(), "nats": server.process.pid, "ingress": ingress.pid,
                    "acceptor": acceptor.pid, "session": worker.pid}  # fmt: skip
            for port in (ingress_port, acceptor_metrics, session_metrics):
                await wait_http(f"http://127.0.0.1:{port}/readyz")
            await warm_up(sim)
            for rate in rates:
                rows.append({"path": "switchboard", **await run_rate(sim, rate, seconds, pids)})
            await until_idle(session_metrics)
    finally:
        await sim.stop()
        server.stop()
    return rows


async def bench_inline(rates: list[int], seconds: float) -> list[dict[str, Any]]:
    secret = _secret()
    port = free_port()
    sim = Simulator(API_KEY, secret, f"http://127.0.0.1:{port}{WEBHOOK_PATH}")
    await sim.start()
    env = {"OPENAI_API_KEY": API_KEY, "OPENAI_WEBHOOK_SECRET": secret,
           "OPENAI_BASE_URL": sim.base_url}  # fmt: skip
    rows: list[dict[str, Any]] = []
    try:
        with process(
            [sys.executable, "-m", "bench.accept", "--serve-inline", str(port)], env, "inline"
        ) as inline:
            pids = {"bench": os.getpid(), "inline": inline.pid}
            await wait_http(f"http://127.0.0.1:{sim.port}/healthz")
            await first_accept(sim)  # the inline server is up
            for rate in rates:
                rows.append({"path": "inline", **await run_rate(sim, rate, seconds, pids)})
    finally:
        await sim.stop()
    return rows


async def main_async(args: argparse.Namespace) -> None:
    seconds = 2.0 if args.quick else args.seconds
    rates = list(args.rates or RATES)
    started = time.time()
    inline = await bench_inline(rates, seconds)
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-accept-") as tmp:
        pipeline = await bench_pipeline(rates, seconds, Path(args.store or tmp))
    keys = ("path", "rate", "calls", "accepted", "other", "p50_ms", "p99_ms", "max_ms",
            "webhook_200_p50_ms")  # fmt: skip
    rows = [row for pair in zip(inline, pipeline, strict=True) for row in pair]
    print(table([{k: row[k] for k in keys} for row in rows]))
    print()
    print("CPU per call (ms), by process:")
    print(table([{k: v for k, v in row.items() if k == "rate" or k.startswith("cpu_")}
                 for row in pipeline]))  # fmt: skip
    for base, ours in zip(inline, pipeline, strict=True):
        gap = ours["p99_ms"] - base["p99_ms"]
        print(f"{ours['rate']} calls/s: p99 {ours['p99_ms']:.1f} ms, {gap:+.1f} ms vs inline")
    path = save(
        "accept",
        {"quick": args.quick, "seconds_per_rate": seconds, "rows": rows,
         "elapsed_s": round(time.time() - started, 1)},
    )  # fmt: skip
    print(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s per rate")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per rate")
    parser.add_argument("--rates", type=int, nargs="*", help="calls per second (50 100 200)")
    parser.add_argument("--store", help="JetStream store folder (default: a temp folder)")
    parser.add_argument("--serve-inline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_inline:
        serve_inline(args.serve_inline)
        return
    logging.basicConfig(level=logging.ERROR)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    # This process times each call (webhook sent → accept received) and plays OpenAI: a
    # garbage collection here would be counted as Switchboard's latency. The services and
    # the inline baseline run in processes of their own, collector on.
    gc.disable()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
