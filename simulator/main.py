"""`switchboard simulator`: run the simulated OpenAI and, optionally, place demo calls.

Secrets come from the environment (`OPENAI_API_KEY`, `OPENAI_WEBHOOK_SECRET`) and are never
logged. Runs until SIGINT/SIGTERM, and keeps serving after the demo calls are done so that
services under test can keep talking to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from typing import Any

from shared.settings import ConfigError, Settings, load_settings, require
from simulator.callers import SCRIPTS_DIR, CallerScript, ScriptError
from simulator.calls import SimulatedCall
from simulator.live import LiveSession
from simulator.server import Simulator

log = logging.getLogger("simulator")


async def _report(call: SimulatedCall | LiveSession) -> None:
    """Log one call's outcome once it is over."""
    over = ("rejected", "missed", "ended", "superseded")
    await call.wait_until(lambda c: c.state in over, timeout=None)  # type: ignore[arg-type]
    reason = call.close_reason if isinstance(call, LiveSession) else call.end_reason
    log.info(
        "call %s %s (reason=%s, accepts=%d, sidebands=%d, agent said %d lines)",
        call.call_id,
        call.state,
        reason or call.reject_status,
        call.accept_count,
        call.attach_count,
        len(call.agent_transcripts),
    )


async def run(args: argparse.Namespace, script: CallerScript, settings: Settings) -> int:
    api_key = settings.openai_api_key.get_secret_value()
    secrets = settings.webhook_secrets
    sim = Simulator(api_key=api_key, webhook_secret=secrets[0], webhook_url=args.webhook_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await sim.start(host=args.host, port=args.port)
    log.info("OPENAI_BASE_URL=%s  webhooks -> %s", sim.base_url, args.webhook_url)
    reports: set[asyncio.Task[None]] = set()
    try:
        if args.calls > 0:
            log.info(
                "placing %d call(s) at %.2f/s with script %r", args.calls, args.rate, script.name
            )

            async def place() -> None:
                live_to = getattr(args, "live_to", None)
                for index in range(args.calls):
                    if index:
                        await asyncio.sleep(1 / args.rate if args.rate > 0 else 0)  # pacing
                    if live_to and index % 2:  # GPT-Live and Realtime calls side by side
                        call: Any = await sim.live.place_call(script, to=live_to)
                    else:
                        call = await sim.place_call(script, to=args.to)
                    task = asyncio.create_task(_report(call))
                    reports.add(task)
                    task.add_done_callback(reports.discard)

            placer = asyncio.create_task(place())
            reports.add(placer)
            placer.add_done_callback(reports.discard)
        await stop.wait()
        log.info("stopping")
    finally:
        for task in list(reports):
            task.cancel()
        await asyncio.gather(*reports, return_exceptions=True)
        await sim.stop()
    return 0


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per webhook is noise
    settings = load_settings()
    require(settings, "openai_api_key", "openai_webhook_secret")  # any test values do
    try:
        script = CallerScript.load(args.script or SCRIPTS_DIR / "demo.yaml")
    except ScriptError as exc:
        raise ConfigError(" ".join(str(exc).split())) from None
    return asyncio.run(run(args, script, settings))
