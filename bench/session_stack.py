"""What the session benchmarks share: a real nats-server, the ingress and the acceptor (in the
benchmark's process, `switchboard.stack.Stack`, or as processes of their own, as deployed),
the simulator, and session workers as real `switchboard session` processes that a
benchmark can SIGKILL or SIGTERM and whose RSS it can read."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import nats

from bench.accept import WEBHOOK_PATH, _secret, process, switchboard, wait_http
from shared.events import CallEvent
from simulator import SimulatedCall, Simulator
from switchboard.nats_server import NatsServer, free_port
from switchboard.stack import API_KEY, Stack

AcceptPath = Literal["in-process", "processes"]


class WorkerProcess:
    def __init__(
        self,
        nats_url: str,
        openai_base_url: str,
        worker_id: str,
        capacity: int,
        log_dir: Path,
        module: str = "switchboard.cli",  # or bench.sdk_worker (the SDK's sideband)
        **env: str,
    ):
        self.worker_id = worker_id
        self.port = free_port()
        self._log = (log_dir / f"{worker_id}.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", module, "session",
                "--capacity", str(capacity), "--metrics-port", str(self.port),
                "--worker-id", worker_id,
            ],
            env={
                **os.environ,
                "NATS_URL": nats_url,
                "OPENAI_API_KEY": API_KEY,
                "OPENAI_BASE_URL": openai_base_url,
                "LOG_FORMAT": "text",
                "LOG_LEVEL": os.environ.get("BENCH_WORKER_LOG_LEVEL", "WARNING"),
                # A benchmark's own launcher (bench.sdk_worker) is found from the checkout.
                "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
                **env,
            },
            cwd=log_dir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    async def wait_ready(self, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout), httpx.AsyncClient(timeout=2) as client:
            while True:
                try:
                    reply = await client.get(f"http://127.0.0.1:{self.port}/readyz")
                    if reply.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)

    async def metrics(self) -> str:
        async with httpx.AsyncClient(timeout=10) as client:
            return (await client.get(f"http://127.0.0.1:{self.port}/metrics")).text

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def signal(self, sig: signal.Signals) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    async def wait_exit(self, timeout: float = 120.0) -> int:
        async with asyncio.timeout(timeout):
            while self.process.poll() is None:  # noqa: ASYNC110 - a child process, no event
                await asyncio.sleep(0.05)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@dataclass
class Arrivals:
    """Every call event with the monotonic time it reached us, indexed by call and type:
    a benchmark asks "has every call got X yet?" on each of thousands of events a second,
    and a scan of every call's events each time made this process (which also plays
    OpenAI) the bottleneck of the density run."""

    by_call: dict[str, list[tuple[float, CallEvent]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    by_type: dict[tuple[str, str], list[tuple[float, CallEvent]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, url: str) -> nats.aio.client.Client:
        nc = await nats.connect(url)

        async def on_event(msg: nats.aio.msg.Msg) -> None:
            event = CallEvent.model_validate_json(msg.data)
            arrived = (time.monotonic(), event)
            self.by_call[event.call_id].append(arrived)
            self.by_type[event.call_id, event.type].append(arrived)
            self.changed.set()

        await nc.subscribe("calls.events.>", cb=on_event)
        return nc

    def events(self, call_id: str, type: str | None = None) -> list[CallEvent]:
        if type is not None:
            return [e for _, e in self.by_type.get((call_id, type), ())]
        return [e for _, e in self.by_call[call_id]]

    def first(self, call_id: str, type: str, **data: object) -> float | None:
        for at, e in self.by_type.get((call_id, type), ()):
            if all(e.data.get(k) == v for k, v in data.items()):
                return at
        return None

    async def wait(self, predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


class Bench:
    """nats-server + ingress and acceptor + simulator + worker processes, torn down on exit.

    `accept_path="processes"` runs the ingress and the acceptor as processes of their own,
    as deployed; in-process (the default) they share the benchmark's process, and its CPU
    with the simulator, which at thousands of calls starves them."""

    def __init__(
        self, agents_yaml: str | None = None, accept_path: AcceptPath = "in-process"
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
        self.agents_yaml = agents_yaml
        self.accept_path = accept_path
        self.server = NatsServer(self.dir / "nats")
        self.stack: Stack | None = None
        self.simulator: Simulator | None = None
        self.workers: list[WorkerProcess] = []
        self.arrivals = Arrivals()
        self.accept_pids: dict[str, int] = {}  # ingress and acceptor, when processes
        self.ingress_url: str | None = None  # when a process
        self._services = ExitStack()
        self._nc: nats.aio.client.Client | None = None

    async def __aenter__(self) -> Bench:
        self.server.start()
        agents: Path | None = None
        if self.agents_yaml is not None:
            agents = self.dir / "agents.yaml"
            agents.write_text(self.agents_yaml)
        if self.accept_path == "processes":
            await self._start_accept_processes(agents)
        else:
            overrides = {} if agents is None else {"switchboard_agents_file": agents}
            self.stack = Stack(self.server.url, workers=0, settings_overrides=overrides)
            await self.stack.start()
            self.simulator = self.stack.simulator
        self._nc = await self.arrivals.start(self.server.url)
        return self

    async def _start_accept_processes(self, agents: Path | None) -> None:
        secret, port, metrics_port = _secret(), free_port(), free_port()
        # OpenAI's stand-in shares this process with thousands of calls' media: its webhooks
        # leave from a thread and event loop of their own, with as many connections as the
        # ramp needs, as OpenAI's would. On one loop with 10 connections they waited ~20 s
        # at 2,000 calls on 2 cores, and their calls rang out in the simulator before the
        # webhook left it (`where_missed_calls_waited`, below).
        self.simulator = Simulator(
            API_KEY, secret, f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
            webhook_concurrency=100, webhook_thread=True,
        )  # fmt: skip
        await self.simulator.start()
        env = {
            "NATS_URL": self.server.url,
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_WEBHOOK_SECRET": secret,
            "OPENAI_BASE_URL": self.simulator.base_url,
            "LOG_LEVEL": "WARNING",
            **({"SWITCHBOARD_AGENTS_FILE": str(agents)} if agents is not None else {}),
        }
        for name, args in (
            ("ingress", ["ingress", "--host", "127.0.0.1", "--port", str(port)]),
            ("acceptor", ["acceptor", "--metrics-port", str(metrics_port)]),
        ):
            proc = self._services.enter_context(process([*switchboard(), *args], env, name))
            self.accept_pids[name] = proc.pid
        for ready in (port, metrics_port):
            await wait_http(f"http://127.0.0.1:{ready}/readyz", timeout=60)
        self.ingress_url = f"http://127.0.0.1:{port}"

    async def add_worker(
        self, worker_id: str, capacity: int, module: str = "switchboard.cli", **env: str
    ) -> WorkerProcess:
        assert self.simulator is not None
        worker = WorkerProcess(
            self.server.url, self.simulator.base_url, worker_id, capacity, self.dir, module,
            **env,
        )  # fmt: skip
        self.workers.append(worker)
        await worker.wait_ready()
        # In-process, wait until the acceptor counts the worker's places. As processes the
        # acceptor waits for a sure view itself (a call never meets "unknown" as "full").
        admission = getattr(self.stack.acceptor if self.stack else None, "admission", None)
        if admission is not None:
            await admission.wait_for_free(lambda free: free >= capacity, timeout=30)
        return worker

    async def __aexit__(self, *exc: object) -> None:
        for worker in self.workers:
            worker.kill()
        if self._nc is not None:
            await self._nc.close()
        if self.stack is not None:
            await self.stack.stop()
        self._services.close()
        if self.stack is None and self.simulator is not None:
            await self.simulator.stop()
        self.server.kill()


def histogram_quantile(metrics_text: str, name: str, q: float, before: str = "") -> float | None:
    """The bucket bound under which a fraction `q` of observations fell (after - before)."""

    def buckets(text: str) -> dict[float, float]:  # summed over the other labels
        found: dict[float, float] = {}
        for labels, count in re.findall(rf"^{name}_bucket{{([^}}]*)}} (\S+)$", text, re.M):
            found_le = re.search(r'le="([^"]+)"', labels)
            if found_le is None:
                continue
            le = found_le.group(1)
            bound = float("inf") if le == "+Inf" else float(le)
            found[bound] = found.get(bound, 0.0) + float(count)
        return found

    after, base = buckets(metrics_text), buckets(before)
    counts = {le: after[le] - base.get(le, 0.0) for le in after}
    total = counts.get(float("inf"), 0.0)
    if total <= 0:
        return None
    for le in sorted(counts):
        if counts[le] >= q * total:
            return le
    return None


def where_missed_calls_waited(missed: list[SimulatedCall]) -> None:
    """Where a missed call's ring went: until its webhook left the simulated OpenAI (its
    sender waits for a free connection), until the ingress answered it, until the accept."""
    if not missed:
        return

    def spans(start: str, end: str) -> str:
        waits = sorted(
            c.timeline[end] - c.timeline[start]
            for c in missed
            if start in c.timeline and end in c.timeline
        )
        if not waits:
            return "-"
        return f"p50 {waits[len(waits) // 2]:.2f} s, max {waits[-1]:.2f} s ({len(waits)})"

    print(f"missed calls: {len(missed)}", file=sys.stderr)
    print(f"  ringing → webhook sent:      {spans('ringing', 'webhook_sent')}", file=sys.stderr)
    print(
        f"  webhook sent → 200:          {spans('webhook_sent', 'webhook_delivered')}",
        file=sys.stderr,
    )
    print(
        f"  200 → accept request:        {spans('webhook_delivered', 'accept_received')}",
        file=sys.stderr,
    )
    attempts = Counter(len(c.webhook_attempts) for c in missed)
    print(f"  webhook attempts: {dict(sorted(attempts.items()))}", file=sys.stderr)
