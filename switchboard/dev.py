"""`switchboard dev`: the whole system on this machine, as separate processes.

(Over 350 lines: starting, watching and showing one local stack, and cleaning up after
it, read best as one script.)

An embedded `nats-server`, every long-running service (`switchboard services`: the
ingress, the acceptor, session workers, …) and the simulator (standing in for OpenAI,
placing demo calls). The terminal shows each of this run's calls from the event stream,
then a summary, and keeps serving until Ctrl-C; the services' own logs go to
`.switchboard/logs/`.

Each run is isolated: its JetStream store is its own (`.switchboard/runs/<pid>`, removed
when it stops; a killed run's is removed by the next), so no run sees another's calls and
two runs work side by side on their own ports. `--store-dir` keeps a store on purpose;
even then only calls this run placed are shown and counted, the example webhook
receiver's lines included (a kept store's postcall may deliver, at least once, the report
of an earlier run's call: it is delivered, not shown). Every child, `nats-server`
included, dies with the stack however it ends (see `switchboard.children`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import nats
import yaml
from nats.aio.msg import Msg

from shared.events import CallEvent, EventType
from shared.settings import ConfigError, Settings, load_settings
from simulator.callers import CallerScript, ScriptError
from switchboard.children import (
    Child,
    ServiceFailed,
    alive,
    die_with_parent,
    open_log,
    report_exits,
)
from switchboard.console import (
    TERMINAL_TYPES,
    format_event,
    outcome,
    short_call_id,
    summary,
)
from switchboard.nats_server import NatsServer, free_port
from switchboard.services import SERVICES

# In a checkout, the demo uses the example agents (the salon) and its tool service.
_EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_AGENTS = _EXAMPLES / "agents.yaml"
SALON_NUMBER = "+61468002102"
REMINDERS_NUMBER = "+61468002103"  # the example GPT-Live agent
WEBHOOK_PATH = "/api/voice/realtime-webhook"


def demo_number(
    to: str | None, script: CallerScript | None, agents_file: Path | None
) -> str | None:
    """The number the demo calls dial: `--to`, else the script's own `to:` (None: the
    simulator uses it), else the first number of the agents file (the salon's for the
    example one), else None (the script's default)."""
    if to:
        return to
    if script is not None and script.to:
        return None
    if agents_file is None:
        return None
    if agents_file == EXAMPLE_AGENTS:
        return SALON_NUMBER
    try:
        agents = yaml.safe_load(agents_file.read_text()).get("agents") or []
        return str(agents[0]["numbers"][0])
    except Exception:  # a bad file is the acceptor's to report, with its line
        return None


class DevStack:
    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        self.args = args
        self.run_id = str(os.getpid())
        if args.store_dir:
            self.root = Path(args.store_dir).resolve()
            self.run_dir: Path | None = None  # kept on purpose
            store = self.root / "nats"
        else:
            self.root = Path(".switchboard").resolve()
            self.run_dir = self.root / "runs" / self.run_id
            store = self.run_dir / "nats"
        self.logs = self.root / "logs"
        self.children: list[Child] = []
        # Calls whose `call.received` this run saw (a kept store may hold older ones): the
        # terminal shows only these, from the event stream and from the example receiver.
        self.own: set[str] = set()
        self.nats = NatsServer(store, preexec_fn=die_with_parent(signal.SIGTERM))
        self.simulator_port = free_port()
        self.ingress_port = free_port()
        self.script = CallerScript.load(args.script) if args.script else None
        agents = settings.switchboard_agents_file
        if agents is None and EXAMPLE_AGENTS.exists():
            agents = EXAMPLE_AGENTS
        self.agents_file = agents.resolve() if agents is not None else None
        self.to = demo_number(args.to, self.script, self.agents_file)
        # The example salon (Realtime) and reminders (GPT-Live) agents side by side, both
        # with the salon tools the demo uses, unless a number was chosen.
        self.live_to = REMINDERS_NUMBER if self.to == SALON_NUMBER and not args.to else None
        self.control_token = settings.switchboard_control_token is not None
        self.env = {
            **os.environ,
            "NATS_URL": self.nats.url,
            "OPENAI_API_KEY": "sk-dev-" + secrets.token_hex(16),
            "OPENAI_WEBHOOK_SECRET": "whsec_" + base64.b64encode(os.urandom(32)).decode(),
            "OPENAI_BASE_URL": f"http://127.0.0.1:{self.simulator_port}/v1",
            "LOG_FORMAT": "text",
            "SESSION_DRAIN_DEADLINE_S": "3",
            "SWITCHBOARD_WEBHOOKS_ALLOW_PRIVATE": "1",  # the example receiver is on loopback
            "PYTHONUNBUFFERED": "1",
        }
        # The console's read-only token for this run (yours if set); actions need
        # SWITCHBOARD_CONTROL_TOKEN, which only you set.
        if not self.env.get("SWITCHBOARD_VIEW_TOKEN"):
            self.env["SWITCHBOARD_VIEW_TOKEN"] = "view-" + secrets.token_urlsafe(24)
        if self.agents_file is not None:
            self.env["SWITCHBOARD_AGENTS_FILE"] = str(self.agents_file)
        # Outbound calls (`switchboard call`): the simulator plays the callees; the trunk
        # password is a throwaway unless the environment has one.
        self.env.setdefault("TRUNK_PASSWORD", "dev-" + secrets.token_hex(8))

    @property
    def with_example_tools(self) -> bool:
        return (_EXAMPLES / "salon_tools.py").exists()

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}{WEBHOOK_PATH}"

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}/console"

    def service_commands(self) -> list[tuple[str, list[str], int]]:
        """(child name, `switchboard` arguments, health port) for every service of
        `SERVICES`: each on loopback and a free port; `--workers` session workers."""
        commands = []
        for service in SERVICES:
            if service == "ingress":
                port = self.ingress_port
                commands.append(
                    (service, [service, "--host", "127.0.0.1", "--port", str(port)], port)
                )
            elif service == "session":
                for index in range(1, self.args.workers + 1):
                    port = free_port()
                    argv = [service, "--host", "127.0.0.1", "--metrics-port", str(port),
                            "--worker-id", f"worker-{index}"]  # fmt: skip
                    commands.append((f"session-{index}", argv, port))
            else:  # a service's health server: --host/--metrics-port, as the acceptor's
                port = free_port()
                argv = [service, "--host", "127.0.0.1", "--metrics-port", str(port)]
                commands.append((service, argv, port))
        return commands

    def spawn(
        self,
        name: str,
        *argv: str,
        ready_port: int | None = None,
        module: str = "switchboard",
        to_terminal: bool = False,
    ) -> Child:
        """`to_terminal`: the child's stdout lines are the demo's, shown through
        `show_own_line` (only this run's calls); otherwise everything goes to its log."""
        log_path = self.logs / f"{name}.log"
        log, since = open_log(log_path, self.run_id)
        with log:  # the child has its own copy of the descriptor
            process = subprocess.Popen(
                [sys.executable, "-m", module, *argv],
                cwd=_EXAMPLES.parent if module.startswith("examples") else None,
                env=self.env,
                stdout=subprocess.PIPE if to_terminal else log,
                stderr=log,
                start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
                preexec_fn=die_with_parent(),
            )
        if to_terminal:
            threading.Thread(target=self._show_lines, args=(process,), daemon=True).start()
        ready = f"http://127.0.0.1:{ready_port}/readyz" if ready_port else None
        child = Child(name, process, ready, log_path, since)
        self.children.append(child)
        return child

    def _show_lines(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if self.show_own_line(line):
                print(line, flush=True)

    def show_own_line(self, line: str) -> bool:
        """Whether a line of the example receiver goes on the terminal: the same rule as
        the event lines, only calls whose `call.received` this run saw. Its lines are
        `HH:MM:SS  <short call id>  …`, as the console's; a line without one is shown."""
        fields = line.split()
        if len(fields) < 2 or fields[0].count(":") != 2:
            return True
        return fields[1] in {short_call_id(call_id) for call_id in list(self.own)}

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for child in self.children:
            while child.ready_url:
                if not child.alive():
                    raise child.failure()
                try:
                    with urllib.request.urlopen(child.ready_url, timeout=1) as reply:
                        if reply.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise child.failure()
                time.sleep(0.1)  # polling a child process' readiness endpoint

    def start(self) -> None:
        self._prune_dead_runs()
        try:
            self.nats.start()
        except (OSError, RuntimeError, TimeoutError) as error:  # not installed, port taken…
            raise ServiceFailed("nats-server", str(error), None) from None
        if self.with_example_tools:
            self.spawn("tools", module="examples.salon_tools")
        self.start_receiver()
        for name, argv, port in self.service_commands():
            self.spawn(name, *argv, ready_port=port)
        self.wait_ready()

    @property
    def with_example_receiver(self) -> bool:
        return (_EXAMPLES / "webhook_receiver.py").exists()

    def start_receiver(self) -> None:
        """An example webhook receiver subscribed to every report through a generated
        webhooks file (before the services, so postcall reads it): it prints each report
        it verified (examples/webhook_receiver.py). Postcall itself is one of `SERVICES`."""
        if not self.with_example_receiver:
            return
        receiver_port = free_port()
        self.env["WEBHOOK_SECRET"] = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        where = self.run_dir or self.root
        where.mkdir(parents=True, exist_ok=True)
        webhooks = where / "webhooks.yaml"
        webhooks.write_text(
            "webhooks:\n  - id: example-receiver\n"
            f"    url: http://127.0.0.1:{receiver_port}/webhooks\n"
            "    secret_env: WEBHOOK_SECRET\n"
        )
        self.env["SWITCHBOARD_WEBHOOKS_FILE"] = str(webhooks)
        self.spawn("receiver", "--port", str(receiver_port),
                   module="examples.webhook_receiver", to_terminal=True)  # fmt: skip

    def start_simulator(self) -> None:
        argv = [
            "simulator",
            "--port", str(self.simulator_port),
            "--webhook-url", self.webhook_url,
            "--calls", str(self.args.calls),
            "--rate", "1",
        ]  # fmt: skip
        if self.to:
            argv += ["--to", self.to]
        if self.live_to:
            argv += ["--live-to", self.live_to]
        if self.args.script:
            argv += ["--script", self.args.script]
        self.spawn("simulator", *argv)

    def stop(self) -> None:
        """Session workers drain first; then every other child at once; NATS goes last."""
        workers = [c for c in self.children if c.name.startswith("session-")]
        others = [c for c in self.children if c not in workers]
        for group in (workers, others):
            for child in group:
                if child.alive():
                    child.process.send_signal(signal.SIGTERM)
            for child in group:
                try:
                    child.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
        self.nats.stop()
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _prune_dead_runs(self) -> None:
        """Remove the stores of earlier runs that were killed before they could."""
        runs = self.root / "runs"
        if not runs.is_dir():
            return
        for run in runs.iterdir():
            if run.name.isdigit() and run.name != self.run_id and not alive(int(run.name)):
                shutil.rmtree(run, ignore_errors=True)

    def serving(self) -> str:
        """Where everything is, and how to stop it."""
        control = (
            f"http://127.0.0.1:{self.ingress_port}/calls (Bearer $SWITCHBOARD_CONTROL_TOKEN)"
            if self.control_token
            else "off (export SWITCHBOARD_CONTROL_TOKEN to turn it on)"
        )
        return "\n".join(
            [
                "still serving:",
                f"  webhook      {self.webhook_url}",
                f"  console      {self.console_url} (viewer token above)",
                f"  control API  {control}",
                f"  simulator    {self.env['OPENAI_BASE_URL']}",
                f"  NATS         {self.nats.url}  (nats sub 'calls.events.>')",
                f"  logs         {self.logs}",
                "Ctrl-C to stop.",
            ]
        )


async def _watch(stack: DevStack, expected: int, exit_when_done: bool) -> int:
    """Print this run's call events; after `expected` calls finished (or timed out) print
    a summary; then return (`exit_when_done`) or keep serving until a signal."""
    stopping = asyncio.Event()  # Ctrl-C, SIGTERM or SIGHUP: the loop ends cleanly
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stopping.set)
    nc = await nats.connect(stack.nats.url)
    own = stack.own  # calls this run received (a kept store may replay older ones)
    finished: dict[str, str] = {}
    done = asyncio.Event()

    async def on_event(msg: Msg) -> None:
        event = CallEvent.model_validate_json(msg.data)
        if event.type == EventType.CALL_RECEIVED:
            own.add(event.call_id)
        if event.call_id not in own:
            return
        line = format_event(event)
        if line:
            print(line, flush=True)
        if event.type in TERMINAL_TYPES and event.call_id not in finished:
            finished[event.call_id] = outcome(event)
            if len(finished) >= expected:
                done.set()

    await nc.subscribe("calls.events.>", cb=on_event)
    stack.start_simulator()
    report_exits(stack.children)
    code = 0
    try:
        if expected > 0:
            waits = {asyncio.create_task(done.wait()), asyncio.create_task(stopping.wait())}
            ended, pending = await asyncio.wait(
                waits, timeout=60 + 15 * expected, return_when=asyncio.FIRST_COMPLETED
            )
            for wait in pending:
                wait.cancel()
            if not ended:
                print(f"timed out: {len(finished)} of {expected} calls finished", flush=True)
                code = 1
            if stopping.is_set():
                return 0
            print(summary(finished, expected), flush=True)
            if any(result != "ok" for result in finished.values()):
                code = 1
        if exit_when_done:
            return code
        print(stack.serving(), flush=True)
        await stopping.wait()
        return code
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await nc.close()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    # SIGTERM and a closed terminal (SIGHUP) stop the stack like Ctrl-C; once the stack is
    # up, the event loop takes these signals over (see `_watch`).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        stack = DevStack(args, load_settings())
    except ScriptError as error:
        raise ConfigError(" ".join(str(error).split())) from None
    print(f"switchboard dev: NATS {stack.nats.url}, logs in {stack.logs}", flush=True)
    try:
        stack.start()
        print(
            f"webhook: {stack.webhook_url}  simulator: {stack.env['OPENAI_BASE_URL']}", flush=True
        )
        print(f"console: {stack.console_url}  viewer token: {stack.env['SWITCHBOARD_VIEW_TOKEN']}",
              flush=True)  # fmt: skip
        if args.calls:
            print(f"placing {args.calls} demo call(s); Ctrl-C stops everything", flush=True)
        return asyncio.run(_watch(stack, args.calls, args.exit_when_done))
    except ServiceFailed as error:
        print(f"switchboard dev: {error}", file=sys.stderr, flush=True)
        return 2 if error.returncode == 2 else 1
    except KeyboardInterrupt:
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # stopping in order; children die with us anyway
        print("stopping…", flush=True)
        stack.stop()
