"""`switchboard dev`: the whole system on this machine, as separate processes.

An embedded `nats-server`, the ingress, the acceptor, session workers and the simulator
(standing in for OpenAI, placing demo calls). The terminal shows each call's life from the
event stream; the services' own logs go to `.switchboard/logs/`. Ctrl-C stops everything,
in order, and leaves no process behind.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.aio.msg import Msg

from shared.events import CallEvent
from switchboard.console import TERMINAL_TYPES, format_event, is_success
from switchboard.nats_server import NatsServer, free_port

_PR_SET_PDEATHSIG = 1
# In a checkout, the demo uses the example agents (the salon) and its tool service.
_EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SALON_NUMBER = "+61468002102"
REMINDERS_NUMBER = "+61468002103"  # the example GPT-Live agent


def _die_with_parent() -> None:
    """Children get SIGTERM if `switchboard dev` itself dies (Linux), so none is orphaned."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    ready_url: str | None

    def alive(self) -> bool:
        return self.process.poll() is None


class DevStack:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(args.store_dir).resolve()
        self.logs = self.root / "logs"
        self.children: list[Child] = []
        self.nats = NatsServer(self.root / "nats")
        self.simulator_port = free_port()
        self.ingress_port = free_port()
        self.env = {
            **os.environ,
            "NATS_URL": self.nats.url,
            "OPENAI_API_KEY": "sk-dev-" + secrets.token_hex(16),
            "OPENAI_WEBHOOK_SECRET": "whsec_" + base64.b64encode(os.urandom(32)).decode(),
            "OPENAI_BASE_URL": f"http://127.0.0.1:{self.simulator_port}/v1",
            "LOG_FORMAT": "text",
            "SESSION_DRAIN_DEADLINE_S": "3",
            "PYTHONUNBUFFERED": "1",
        }
        # The console's read-only token for this run (yours if set); actions need
        # SWITCHBOARD_CONTROL_TOKEN, which only you set.
        if not self.env.get("SWITCHBOARD_VIEW_TOKEN"):
            self.env["SWITCHBOARD_VIEW_TOKEN"] = "view-" + secrets.token_urlsafe(24)

    @property
    def with_examples(self) -> bool:
        return (_EXAMPLES / "agents.yaml").exists() and (_EXAMPLES / "salon_tools.py").exists()

    def spawn(
        self, name: str, *argv: str, ready_port: int | None = None, module: str = "switchboard"
    ) -> Child:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")  # the child writes to it until it exits
        process = subprocess.Popen(
            [sys.executable, "-m", module, *argv],
            cwd=_EXAMPLES.parent if module.startswith("examples") else None,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
            preexec_fn=_die_with_parent,
        )
        ready = f"http://127.0.0.1:{ready_port}/readyz" if ready_port else None
        child = Child(name, process, ready)
        self.children.append(child)
        return child

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for child in self.children:
            while child.ready_url:
                if not child.alive():
                    raise RuntimeError(f"{child.name} exited; see {self.logs / child.name}.log")
                try:
                    with urllib.request.urlopen(child.ready_url, timeout=1) as reply:
                        if reply.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{child.name} not ready; see {self.logs}/{child.name}.log")
                time.sleep(0.1)  # polling a child process' readiness endpoint

    def start(self) -> None:
        self.nats.start()
        if self.with_examples:
            self.env["SWITCHBOARD_AGENTS_FILE"] = str(_EXAMPLES / "agents.yaml")
            self.spawn("tools", module="examples.salon_tools")
        self.spawn("ingress", "ingress", "--host", "127.0.0.1", "--port", str(self.ingress_port),
                   ready_port=self.ingress_port)  # fmt: skip
        port = free_port()
        self.spawn("acceptor", "acceptor", "--metrics-port", str(port), ready_port=port)
        for index in range(1, self.args.workers + 1):
            port = free_port()
            self.spawn(f"session-{index}", "session", "--worker-id", f"worker-{index}",
                       "--metrics-port", str(port), ready_port=port)  # fmt: skip
        self.wait_ready()

    def start_simulator(self) -> None:
        argv = [
            "simulator",
            "--port", str(self.simulator_port),
            "--webhook-url", f"http://127.0.0.1:{self.ingress_port}/api/voice/realtime-webhook",
            "--calls", str(self.args.calls),
            "--rate", "1",
        ]  # fmt: skip
        if self.with_examples:
            # The salon agent (Realtime) and the reminders agent (GPT-Live) side by side,
            # both with the salon tools the demo uses.
            argv += ["--to", SALON_NUMBER, "--live-to", REMINDERS_NUMBER]
        if self.args.script:
            argv += ["--script", self.args.script]
        self.spawn("simulator", *argv)

    def stop(self) -> None:
        """Stop in dependency order: workers drain first, the simulator and NATS go last."""
        for group in ("session", "acceptor", "ingress", "simulator", "tools"):
            members = [c for c in self.children if c.name.split("-")[0] == group]
            for child in members:
                if child.alive():
                    child.process.send_signal(signal.SIGTERM)
            for child in members:
                try:
                    child.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
        self.nats.stop()


async def _watch(stack: DevStack, expected: int, exit_when_done: bool) -> int:
    """Print every call event; with `exit_when_done`, return once every call finished."""
    nc = await nats.connect(stack.nats.url)
    finished: dict[str, bool] = {}
    done = asyncio.Event()

    async def on_event(msg: Msg) -> None:
        event = CallEvent.model_validate_json(msg.data)
        line = format_event(event)
        if line:
            print(line, flush=True)
        if event.type in TERMINAL_TYPES and event.call_id not in finished:
            finished[event.call_id] = is_success(event)
            if len(finished) >= expected:
                done.set()

    await nc.subscribe("calls.events.>", cb=on_event)
    stack.start_simulator()
    try:
        if not exit_when_done:
            await asyncio.Event().wait()  # until Ctrl-C
        async with asyncio.timeout(60 + 15 * expected):
            await done.wait()
    except TimeoutError:
        print(f"timed out: {len(finished)} of {expected} calls finished", flush=True)
        return 1
    finally:
        await nc.close()
    failed = [call_id for call_id, ok in finished.items() if not ok]
    print(f"{len(finished) - len(failed)} of {expected} calls completed", flush=True)
    return 1 if failed else 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the stack like Ctrl-C
    stack = DevStack(args)
    print(f"switchboard dev: NATS {stack.nats.url}, logs in {stack.logs}", flush=True)
    try:
        stack.start()
        print(f"webhook: http://127.0.0.1:{stack.ingress_port}/api/voice/realtime-webhook  "
              f"simulator: {stack.env['OPENAI_BASE_URL']}", flush=True)  # fmt: skip
        print(f"console: http://127.0.0.1:{stack.ingress_port}/console  "
              f"viewer token: {stack.env['SWITCHBOARD_VIEW_TOKEN']}", flush=True)  # fmt: skip
        print("placing demo calls; Ctrl-C stops everything", flush=True)
        return asyncio.run(_watch(stack, args.calls, args.exit_when_done))
    except KeyboardInterrupt:
        return 0
    finally:
        print("stopping…", flush=True)
        stack.stop()
