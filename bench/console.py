"""The console under load: many live calls talking, one browser watching, more consoles.

    .venv/bin/python -m bench.console            # 1,000 calls x 5 events/s, 20 s a phase
    .venv/bin/python -m bench.console --quick    # 50 calls, 3 s a phase (a smoke check)

Processes: a real nats-server, the real `switchboard ingress` with the console on, an
event generator (synthetic calls published to `calls.journal.<id>`, stored by
`CALL_EVENTS` and republished to `calls.events.>` exactly as services do), headless
Chromium (Debian's) on the console, and extra consoles as plain SSE readers.

- event → rendered row: the page's rows carry their last event's `ts`; an observer in the
  page records `now - ts` whenever a row is redrawn (only rows in view are drawn).
- page responsiveness: the browser's long tasks (> 50 ms on the main thread) per phase.
- ingress CPU: from /proc, per phase: no console yet, one browser, then `--consoles` more.

Goal (issue 21): p99 event → rendered row well under 1 s; ingress CPU per console small.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import percentile, save, table

TOKEN = "view-bench-" + "b" * 24
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
OBSERVE = """() => {
    window.__lags = []; window.__long = 0;
    new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) window.__long += entry.duration;
    }).observe({entryTypes: ['longtask']});
    // A row drawn with a new event: its data-ts changes (or it is added). Durations
    // ticking every second are not events and are not counted.
    new MutationObserver((records) => {
        const now = Date.now();
        const rows = new Set();
        for (const r of records) {
            if (r.type === 'attributes') rows.add(r.target);
            for (const n of r.addedNodes) if (n.dataset && n.dataset.ts) rows.add(n);
        }
        for (const row of rows) window.__lags.push(now - Date.parse(row.dataset.ts));
    }).observe(document.getElementById('rows'),
               {subtree: true, childList: true, attributes: true, attributeFilter: ['data-ts']});
}"""


# ------------------------------------------------------------------ the event generator


async def generate(nats_url: str, calls: int, per_call_s: float, seconds: float) -> dict:
    """Publish `calls` live calls, then `per_call_s` events/s each for `seconds`."""
    import nats

    nc = await nats.connect(nats_url)
    seqs = dict.fromkeys(range(calls), 0)

    def publish(n: int, type: str, data: dict[str, Any]) -> None:
        seqs[n] += 1
        envelope = {
            "type": type, "call_id": f"rtc_bench{n:05d}", "seq": seqs[n],
            "ts": datetime.now(UTC).isoformat(), "data": data,
        }  # fmt: skip
        nc_publish(f"calls.journal.rtc_bench{n:05d}", json.dumps(envelope).encode())

    pending: list[Any] = []

    def nc_publish(subject: str, body: bytes) -> None:
        pending.append(nc.publish(subject, body))

    headers = [
        {"name": "From", "value": "sip:+14155550123@example.com"},
        {"name": "To", "value": "sip:+61468002102@example.com"},
    ]
    for n in range(calls):
        publish(n, "call.received", {"sip_headers": headers, "api": "realtime"})
        publish(n, "call.accepted", {"agent": "salon"})
        publish(n, "session.attached", {"worker": f"worker-{n % 4}", "attempt": 1})
    await asyncio.gather(*pending)
    pending.clear()
    await nc.flush()
    sent, started = 0, time.monotonic()
    interval = 1 / (calls * per_call_s)
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed / interval)
        while sent < due:
            n = sent % calls
            kind = "transcript.agent" if sent % 2 else "transcript.caller"
            publish(n, kind, {"text": f"line {sent}", "item_id": f"item_{sent}"})
            sent += 1
        await asyncio.gather(*pending)
        pending.clear()
        await asyncio.sleep(0.01)  # pacing an open-loop generator, not synchronisation
    await nc.flush()
    await nc.close()
    return {"events": sent, "seconds": time.monotonic() - started}


# ------------------------------------------------------------------ the run


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _wait_ready(port: int) -> None:
    import httpx

    async with httpx.AsyncClient() as http, asyncio.timeout(30):
        while True:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)  # polling a child process until it is ready


async def _reader(base: str, stop: asyncio.Event) -> None:
    """One more console: signs in and reads the table's stream until told to stop."""
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=None) as http:
        await http.post("/console/api/signin", json={"token": TOKEN})
        async with http.stream("GET", "/console/api/stream") as stream:
            async for _ in stream.aiter_bytes():
                if stop.is_set():
                    return


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.async_api import async_playwright, expect

    from switchboard.nats_server import NatsServer, free_port
    from switchboard.stack import new_webhook_secret

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as store:
        nats = NatsServer(Path(store))
        nats.start()
        env = {
            **os.environ,
            "NATS_URL": nats.url,
            "SWITCHBOARD_VIEW_TOKEN": TOKEN,
            "OPENAI_WEBHOOK_SECRET": new_webhook_secret(),
        }
        ingress = _spawn(
            [str(Path(sys.executable).parent / "switchboard"), "ingress", "--host", "127.0.0.1",
             "--port", str(port)], env,
        )  # fmt: skip
        spec = json.dumps([nats.url, args.calls, args.rate, 3 * args.seconds + 10])
        generator = None
        try:
            await _wait_ready(port)
            generator = _spawn([sys.executable, "-m", "bench.console", "--generate", spec], env)
            rows = [await _phase("no console", ingress.pid, args.seconds, None)]
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                )
                page = await browser.new_page(viewport={"width": 1400, "height": 900})
                await page.goto(f"{base}/console")
                await page.get_by_label("Access token").fill(TOKEN)
                await page.get_by_role("button", name="Sign in").click()
                await expect(page.locator("#live-count")).to_have_text(
                    str(args.calls), timeout=60_000
                )
                await page.evaluate(OBSERVE)
                rows.append(await _phase("1 browser", ingress.pid, args.seconds, page))
                stop = asyncio.Event()
                readers = [asyncio.create_task(_reader(base, stop)) for _ in range(args.consoles)]
                name = f"1 browser + {args.consoles} consoles"
                rows.append(await _phase(name, ingress.pid, args.seconds, page))
                stop.set()
                for reader in readers:
                    reader.cancel()
                await browser.close()
        finally:
            if generator is not None:
                generator.terminate()
                generator.wait(30)
            ingress.terminate()
            ingress.wait(30)
            nats.stop()
    per_console = (rows[2]["ingress_cpu_pct"] - rows[1]["ingress_cpu_pct"]) / args.consoles
    return {
        "rows": rows,
        "ingress_cpu_pct_per_extra_console": per_console,
        "settings": {
            "calls": args.calls,
            "events_per_call_s": args.rate,
            "seconds": args.seconds,
            "consoles": args.consoles,
        },
    }


async def _phase(name: str, pid: int, seconds: float, page: Any) -> dict[str, Any]:
    if page is not None:
        await page.evaluate("() => { window.__lags = []; window.__long = 0; }")
    cpu, started = _cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)  # the measurement window
    cpu = _cpu_seconds(pid) - cpu
    elapsed = time.monotonic() - started
    lags: list[float] = await page.evaluate("window.__lags") if page is not None else []
    long_ms: float = await page.evaluate("window.__long") if page is not None else 0.0
    return {
        "phase": name,
        "ingress_cpu_pct": 100 * cpu / elapsed,
        "rows_drawn": len(lags),
        "row_p50_ms": percentile(lags, 50),
        "row_p99_ms": percentile(lags, 99),
        "row_max_ms": max(lags, default=float("nan")),
        "long_tasks_ms_per_s": long_ms / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 calls, 3 s a phase")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=5.0, help="events per call per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    parser.add_argument("--consoles", type=int, default=10, help="extra SSE consoles")
    parser.add_argument("--generate", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        url, calls, rate, seconds = json.loads(args.generate)
        print(json.dumps(asyncio.run(generate(url, calls, rate, seconds))))
        return
    if args.quick:
        args.calls, args.seconds, args.consoles = 50, 3.0, 2
    results = asyncio.run(run(args))
    print(table(results["rows"]))
    print(f"ingress CPU per extra console: {results['ingress_cpu_pct_per_extra_console']:.1f} %")
    results["quick"] = args.quick
    print(f"saved {save('console', results)}")


if __name__ == "__main__":
    main()
