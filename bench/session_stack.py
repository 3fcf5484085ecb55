"""What the session benchmarks share: a real nats-server, the in-process ingress, acceptor
and simulator (`switchboard.stack.Stack`), and session workers as real `switchboard session`
processes that a benchmark can SIGKILL or SIGTERM and whose RSS it can read."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nats

from shared.events import CallEvent
from switchboard.nats_server import NatsServer, free_port
from switchboard.stack import API_KEY, Stack


class WorkerProcess:
    def __init__(
        self,
        stack: Stack,
        worker_id: str,
        capacity: int,
        log_dir: Path,
        module: str = "switchboard.cli",  # or bench.sdk_worker (the SDK's sideband)
        **env: str,
    ):
        assert stack.simulator is not None
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
                "NATS_URL": stack.nats_url,
                "OPENAI_API_KEY": API_KEY,
                "OPENAI_BASE_URL": stack.simulator.base_url,
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
    """Every call event with the monotonic time it reached us."""

    by_call: dict[str, list[tuple[float, CallEvent]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, url: str) -> nats.aio.client.Client:
        nc = await nats.connect(url)

        async def on_event(msg: nats.aio.msg.Msg) -> None:
            event = CallEvent.model_validate_json(msg.data)
            self.by_call[event.call_id].append((time.monotonic(), event))
            self.changed.set()

        await nc.subscribe("calls.events.>", cb=on_event)
        return nc

    def events(self, call_id: str, type: str | None = None) -> list[CallEvent]:
        return [e for _, e in self.by_call[call_id] if type is None or e.type == type]

    def first(self, call_id: str, type: str, **data: object) -> float | None:
        for at, e in self.by_call[call_id]:
            if e.type == type and all(e.data.get(k) == v for k, v in data.items()):
                return at
        return None

    async def wait(self, predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


class Bench:
    """nats-server + in-process stack + worker processes, torn down on exit."""

    def __init__(self, agents_yaml: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
        self.agents_yaml = agents_yaml
        self.server = NatsServer(self.dir / "nats")
        self.stack: Stack | None = None
        self.workers: list[WorkerProcess] = []
        self.arrivals = Arrivals()
        self._nc: nats.aio.client.Client | None = None

    async def __aenter__(self) -> Bench:
        self.server.start()
        overrides = {}
        if self.agents_yaml is not None:
            agents = self.dir / "agents.yaml"
            agents.write_text(self.agents_yaml)
            overrides["switchboard_agents_file"] = agents
        self.stack = await Stack(self.server.url, workers=0, settings_overrides=overrides).start()
        self._nc = await self.arrivals.start(self.server.url)
        return self

    async def add_worker(
        self, worker_id: str, capacity: int, module: str = "switchboard.cli", **env: str
    ) -> WorkerProcess:
        assert self.stack is not None
        worker = WorkerProcess(self.stack, worker_id, capacity, self.dir, module, **env)
        self.workers.append(worker)
        await worker.wait_ready()
        admission = getattr(self.stack.acceptor, "admission", None)
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
        self.server.kill()


def histogram_quantile(metrics_text: str, name: str, q: float, before: str = "") -> float | None:
    """The bucket bound under which a fraction `q` of observations fell (after - before)."""

    def buckets(text: str) -> dict[float, float]:
        found = {}
        for le, count in re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M):
            found[float("inf") if le == "+Inf" else float(le)] = float(count)
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
