"""Ingress throughput and latency: one `switchboard ingress` process, a real nats-server.

    .venv/bin/python -m bench.ingress            # 500/s for 20 s, then max rate for 20 s
    .venv/bin/python -m bench.ingress --quick    # 3 s each, for a smoke check

Three processes: nats-server, the ingress (the real console script, default settings, so
JSON logs at INFO go to /dev/null but are still formatted), and a load generator. The
generator is a minimal HTTP/1.1 client over keep-alive connections sending pre-signed
`realtime.call.incoming` webhooks, each a new call (so each costs `call.received` plus the
webhook message, both acknowledged by JetStream before the 200).

- fixed rate: open loop; latency is measured from each request's *scheduled* send time,
  so a stalled ingress cannot hide behind a slow generator (no coordinated omission).
- max rate: closed loop, `--connections` requests in flight at once.

Goal (issue 3): >= 2,000 verified webhooks/s per process, p99 <= 10 ms at 500/s, 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.machine import percentile, save, table

WEBHOOK_PATH = "/api/voice/realtime-webhook"


# ----------------------------------------------------------------- the load generator


def signed_requests(secret: str, host: str, count: int) -> list[bytes]:
    """`count` complete HTTP requests, each a new call with its own webhook id."""
    from simulator.webhooks import incoming_call_event, new_webhook_id, signed_headers

    requests = []
    for i in range(count):
        body = incoming_call_event(f"rtc_bench{os.getpid()}x{i:08d}", "+18005551212", "+1415555")
        headers = signed_headers(secret, new_webhook_id(), body)
        head = f"POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: {host}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"content-length: {len(body)}\r\n\r\n"
        requests.append(head.encode() + body)
    return requests


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def generate(
    port: int, secret: str, mode: str, rate: float, seconds: float, connections: int
) -> dict[str, Any]:
    host = f"127.0.0.1:{port}"
    total = int(rate * seconds) if mode == "fixed" else int(seconds * 6000)
    requests = signed_requests(secret, host, total)  # signed now: inside the 300 s window
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def one(request: bytes, scheduled: float) -> None:
        reader, writer = await pool.get()
        try:
            status = await _exchange(reader, writer, request)
        finally:
            pool.put_nowait((reader, writer))
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            latencies.append(time.perf_counter() - scheduled)

    # uvloop's loop.time() ticks in whole milliseconds: measure with perf_counter.
    started = time.perf_counter()
    if mode == "fixed":
        tasks = []
        for i, request in enumerate(requests):
            scheduled = started + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(request, scheduled)))
        await asyncio.gather(*tasks)
        sent = len(requests)
    else:
        deadline = started + seconds
        queue = iter(requests)
        sent = 0

        async def worker() -> None:
            nonlocal sent
            for request in queue:
                now = time.perf_counter()
                if now >= deadline:
                    return
                sent += 1
                await one(request, now)

        await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    return {
        "sent": sent,
        "ok": statuses.get(200, 0),
        "statuses": {str(k): v for k, v in statuses.items()},
        "elapsed_s": elapsed,
        "latencies_ms": [x * 1000 for x in latencies],
    }


# ----------------------------------------------------------------- the processes


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)  # polling a child process until it is ready
    raise TimeoutError("ingress did not become ready")


def _handler_buckets(port: int) -> dict[str, float]:
    """Cumulative counts of the ingress' own 200s by histogram bucket (`le`), from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    buckets = {}
    for match in re.finditer(
        r"^switchboard_webhook_duration_seconds_bucket\{(.*?)\} (\S+)$", text, re.MULTILINE
    ):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if labels.get("status") == "200":
            buckets[labels["le"]] = float(match.group(2))
    return buckets


def _phase(
    name: str, ingress_pid: int, port: int, secret: str, mode: str, rate: float, args
) -> dict[str, Any]:
    spec = [port, secret, mode, rate, args.seconds, args.connections]
    cpu_before = _cpu_seconds(ingress_pid)
    buckets_before = _handler_buckets(port)
    out = subprocess.run(
        [sys.executable, "-m", "bench.ingress", "--generate", json.dumps(spec)],
        check=True,
        capture_output=True,
    ).stdout
    cpu = _cpu_seconds(ingress_pid) - cpu_before
    buckets = {le: n - buckets_before.get(le, 0.0) for le, n in _handler_buckets(port).items()}
    handled = buckets.get("+Inf", 0.0) or float("nan")
    result = json.loads(out)
    latencies = result.pop("latencies_ms")
    return {
        "phase": name,
        "target_per_s": rate if mode == "fixed" else "max",
        "sent": result["sent"],
        "ok_200": result["ok"],
        "other": sum(v for k, v in result["statuses"].items() if k != "200"),
        "ok_per_s": result["ok"] / result["elapsed_s"],
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
        "ingress_cpu_pct": 100 * cpu / result["elapsed_s"],
        # In the ingress' own handler (its histogram), free of the generator's scheduling.
        "handler_le_5ms_pct": 100 * buckets.get("0.005", 0.0) / handled,
        "handler_le_10ms_pct": 100 * buckets.get("0.01", 0.0) / handled,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from switchboard.nats_server import NatsServer, free_port
    from switchboard.stack import new_webhook_secret

    secret = new_webhook_secret()
    port = free_port()
    with tempfile.TemporaryDirectory() as store:
        nats = NatsServer(Path(store))
        nats.start()
        env = {
            **os.environ,
            "NATS_URL": nats.url,
            "OPENAI_WEBHOOK_SECRET": secret,
            "LOG_LEVEL": args.log_level,
        }
        command = [str(Path(sys.executable).parent / "switchboard"), "ingress"]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        ingress = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait_ready(port)
            _phase("warm-up", ingress.pid, port, secret, "fixed", 200, _short(args))
            rows = [
                _phase("fixed", ingress.pid, port, secret, "fixed", args.rate, args),
                _phase("max", ingress.pid, port, secret, "max", 0, args),
            ]
        finally:
            ingress.terminate()
            ingress.wait(30)
            nats.stop()
    return {
        "rows": rows,
        "settings": {
            "seconds": args.seconds,
            "rate": args.rate,
            "connections": args.connections,
            "log_level": args.log_level,
        },
    }


def _short(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "seconds": 1.0})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s per phase")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=500.0, help="fixed-rate phase, per s")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections")
    parser.add_argument("--log-level", default="INFO", help="the ingress' LOG_LEVEL")
    parser.add_argument("--generate", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        port, secret, mode, rate, seconds, connections = json.loads(args.generate)
        try:
            import uvloop

            uvloop.install()
        except ImportError:  # pragma: no cover
            pass
        result = asyncio.run(generate(port, secret, mode, rate, seconds, connections))
        sys.stdout.write(json.dumps(result))
        return
    if args.quick:
        args.seconds = 3.0
    results = run(args)
    print(table(results["rows"]))
    print(f"saved {save('ingress', results)}")


if __name__ == "__main__":
    main()
