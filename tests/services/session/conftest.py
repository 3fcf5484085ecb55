"""Session-worker fixtures: worker *processes* (`switchboard session`) that tests can
SIGKILL, SIGSTOP or SIGTERM, beside an in-process ingress, acceptor and simulator.

Readiness is awaited on the worker's own `/readyz`, and its state on its `/metrics`, so
tests wait for what they mean instead of sleeping.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from shared.events import CallEvent
from simulator import CallerScript, SimulatedCall
from switchboard.nats_server import NatsServer, free_port
from tests.stack import API_KEY, Stack

# Small lease and ack-wait so failover happens in a few seconds.
FAST_FAILOVER = {"session_lease_ttl_s": 2, "session_ack_wait_s": 2.0}

# A caller who listens to the greeting, says one thing, then stays on the line (silent)
# until the test hangs up for them.
STAYS_ON = CallerScript.model_validate(
    {"name": "stays-on", "steps": [{"say": "Hello, I need a table.", "reply": "Sure."}]}
)


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float) -> None:
    """Wait for a state that has no event to await (another process's, or a worker's slot
    count), checking it often; fails with TimeoutError after `timeout`."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.05)


class WorkerProcess:
    """One `switchboard session` process on loopback."""

    def __init__(
        self,
        stack: Stack,
        worker_id: str,
        capacity: int,
        cwd: Path,
        drain_deadline_s: float = 20.0,
    ) -> None:
        self.worker_id = worker_id
        self.port = free_port()
        assert stack.simulator is not None
        env = {
            **os.environ,
            "NATS_URL": stack.nats_url,
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_BASE_URL": stack.simulator.base_url,
            "SESSION_LEASE_TTL_S": str(FAST_FAILOVER["session_lease_ttl_s"]),
            "SESSION_ACK_WAIT_S": str(FAST_FAILOVER["session_ack_wait_s"]),
            "SESSION_DRAIN_DEADLINE_S": str(drain_deadline_s),
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "INFO",
        }
        self.log_path = cwd / f"{worker_id}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "switchboard.cli", "session",
                "--capacity", str(capacity),
                "--metrics-port", str(self.port),
                "--worker-id", worker_id,
            ],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _get(self, path: str) -> httpx.Response | None:
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                return await client.get(self.url + path)
        except httpx.HTTPError:
            return None

    async def wait_ready(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                assert self.process.poll() is None, self.log()
                reply = await self._get("/readyz")
                if reply is not None and reply.status_code == 200:
                    return
                await asyncio.sleep(0.1)  # polling a child process' endpoint

    async def readiness(self) -> int | None:
        reply = await self._get("/readyz")
        return None if reply is None else reply.status_code

    async def metric(self, name: str) -> float | None:
        reply = await self._get("/metrics")
        if reply is None:
            return None
        match = re.search(rf"^{re.escape(name)} (\S+)$", reply.text, re.MULTILINE)
        return float(match.group(1)) if match else None

    async def wait_metric(self, name: str, value: float, timeout: float = 20.0) -> None:
        async def reached() -> bool:
            return await self.metric(name) == value

        await until(reached, timeout)

    def signal(self, sig: signal.Signals) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    async def wait_exit(self, timeout: float = 30.0) -> int:
        await until(lambda: self.process.poll() is not None, timeout)
        return self.process.returncode

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()
        self._log.close()


class Workers:
    """Starts worker processes for a test and kills whatever is left at the end."""

    def __init__(self, stack: Stack, cwd: Path) -> None:
        self.stack = stack
        self.cwd = cwd
        self.started: list[WorkerProcess] = []

    async def start(
        self, worker_id: str, capacity: int = 20, drain_deadline_s: float = 20.0
    ) -> WorkerProcess:
        worker = WorkerProcess(self.stack, worker_id, capacity, self.cwd, drain_deadline_s)
        self.started.append(worker)
        await worker.wait_ready()
        # The acceptor admits calls only into slots it has seen reported: wait for them.
        admission = getattr(self.stack.acceptor, "admission", None)
        if admission is not None:
            await admission.wait_for_free(lambda free: free >= capacity, timeout=10)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()
            print(f"--- {worker.worker_id} ---\n{worker.log()}")  # shown when a test fails


@pytest.fixture
async def bare_stack(nats_server: NatsServer) -> AsyncIterator[Stack]:
    """Ingress, acceptor and simulator in-process; no session worker (tests add them)."""
    running = await Stack(nats_server.url, workers=0, settings_overrides=FAST_FAILOVER).start()
    yield running
    await running.stop()


@pytest.fixture
async def workers(bare_stack: Stack, tmp_path: Path) -> AsyncIterator[Workers]:
    started = Workers(bare_stack, tmp_path)
    yield started
    started.stop_all()


# -- assertions shared by the tests ------------------------------------------------------


def greetings(call: SimulatedCall) -> int:
    """How many greeting requests the simulated OpenAI received for this call."""
    return sum(
        1
        for e in call.client_events
        if e.get("type") == "response.create"
        and "Greet the caller" in str((e.get("response") or {}).get("instructions", ""))
    )


def assert_seq_continuous(events: list[CallEvent]) -> None:
    seqs = sorted(e.seq for e in events)
    assert seqs == list(range(1, len(seqs) + 1)), seqs


def attaches(stack: Stack, call_id: str) -> list[CallEvent]:
    return sorted(stack.events.of_type(call_id, "session.attached"), key=lambda e: e.seq)


async def wait_attached_by(stack: Stack, call_id: str, worker: str, timeout: float = 20) -> None:
    await stack.events.wait_until(
        lambda: any(e.data.get("worker") == worker for e in attaches(stack, call_id)), timeout
    )


GUARDED_AGENTS = """
agents:
  - name: short
    numbers: ["+15550000001"]
    limits: {max_duration_s: 2}
  - name: quiet
    numbers: ["+15550000002"]
    limits: {idle_timeout_s: 1}
"""
SHORT_LINE = "+15550000001"
QUIET_LINE = "+15550000002"


@pytest.fixture
async def guarded_stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Stack]:
    """The whole stack in-process, with agents that have tight guards."""
    agents = tmp_path / "agents.yaml"
    agents.write_text(GUARDED_AGENTS)
    running = await Stack(
        nats_server.url, settings_overrides={"switchboard_agents_file": agents}
    ).start()
    yield running
    await running.stop()
