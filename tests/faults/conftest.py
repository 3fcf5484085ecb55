"""Fixtures of the fault suite: a 3-node NATS cluster on loopback, and helpers shared by the
fault tests (waiting for a JetStream meta leader, declaring R3 topology, reading a call's
events back from the stream rather than from a live subscription that a dead node can cut).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from shared.events import CallEvent, read_call_events
from shared.streams import declare_topology
from switchboard.nats_server import NatsServer, PortTaken, free_port
from tests.stack import Stack

CLUSTER_SIZE = 3


class NatsCluster:
    """Three `nats-server` processes routed to each other, JetStream on every node."""

    def __init__(self, root: Path, size: int = CLUSTER_SIZE) -> None:
        self.root, self.size = root, size
        self.nodes = self._nodes(self.root)

    def _nodes(self, root: Path) -> list[NatsServer]:
        size = self.size
        cluster_ports = [free_port() for _ in range(size)]
        return [
            NatsServer(
                root / f"n{index}",
                name=f"n{index}",
                cluster_port=cluster_ports[index],
                routes=[f"nats://127.0.0.1:{p}" for i, p in enumerate(cluster_ports) if i != index],
                cluster_name="switchboard-faults",
            )
            for index in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def nats_url(self) -> str:
        """The `NATS_URL` value naming every node, as production would."""
        return ",".join(self.urls)

    def node(self, name: str) -> NatsServer:
        return next(node for node in self.nodes if node.name == name)

    def start(self, timeout: float = 30.0, tries: int = 3) -> None:
        """Start every node; a node that exits at start (a port taken by another process
        between picking and binding) makes the whole cluster start again on new ports."""
        for attempt in range(tries):
            for node in self.nodes:  # a node waits for its routes: start all before waiting
                node.start(wait_ready=False)
            try:
                for node in self.nodes:
                    node.wait_ready(timeout)
                break
            except PortTaken:
                self.stop()
                if attempt == tries - 1:
                    raise
                self.nodes = self._nodes(self.root / f"retry{attempt + 1}")  # no old peers
        self.wait_meta_leader(timeout)

    def wait_meta_leader(self, timeout: float = 30.0) -> str:
        """Block until every live node names the same JetStream meta leader; return it."""
        deadline = time.monotonic() + timeout
        while True:
            leaders = set()
            for node in self.nodes:
                if node.process is None:
                    continue
                try:
                    meta = json.loads(node.monitor("/jsz")).get("meta_cluster") or {}
                except (OSError, ValueError):
                    meta = {}
                leaders.add(meta.get("leader") or "")
            if len(leaders) == 1 and "" not in leaders:
                return leaders.pop()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no JetStream meta leader: {leaders}")
            time.sleep(0.1)  # polling child processes' monitoring endpoints

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


async def declare_when_ready(
    servers: list[str], replicas: int, timeout: float = 30.0, session_ack_wait_s: float = 3.0
) -> None:
    """Declare the topology, retrying while the cluster is still electing leaders."""
    async with asyncio.timeout(timeout):
        while True:
            nc = await nats.connect(servers=servers, connect_timeout=2)
            try:
                await declare_topology(
                    nc.jetstream(), replicas=replicas, session_ack_wait_s=session_ack_wait_s
                )
                return
            except Exception:  # "no suitable peers", timeouts: the cluster is not ready yet
                await asyncio.sleep(0.2)  # back-off between attempts, not synchronisation
            finally:
                await nc.close()


@pytest.fixture
async def cluster_client(nats_cluster: NatsCluster) -> AsyncIterator[Client]:
    """A client of the test itself, connected to every node (it survives one node's death)."""
    nc = await nats.connect(servers=nats_cluster.urls, max_reconnect_attempts=-1)
    yield nc
    await nc.close()


async def stream_events(nc: Client, call_id: str) -> list[CallEvent]:
    """A call's events as JetStream stored them (the source of truth after an outage)."""
    return await read_call_events(nc.jetstream(), call_id)


async def _leader(js: JetStreamContext, stream: str, consumer: str | None) -> str | None:
    try:
        info = (
            await js.consumer_info(stream, consumer) if consumer else await js.stream_info(stream)
        )
    except Exception:  # no leader to answer yet
        return None
    return info.cluster.leader if info.cluster is not None else None


async def move_leader_off(
    nc: Client, stream: str, consumer: str | None, victim: str, timeout: float = 30.0
) -> None:
    """Step the stream's (or consumer's) leader down until it is not on `victim`."""
    js = nc.jetstream()
    subject = (
        f"$JS.API.CONSUMER.LEADER.STEPDOWN.{stream}.{consumer}"
        if consumer
        else f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}"
    )
    async with asyncio.timeout(timeout):
        while True:
            leader = await _leader(js, stream, consumer)
            if leader and leader != victim:
                return
            if leader == victim:
                with contextlib.suppress(Exception):
                    await nc.request(subject, b"", timeout=2)
            await asyncio.sleep(0.2)  # polling the cluster's leader election


class WorkerProcess:
    """A `switchboard session` process wired to a Stack's NATS and simulator."""

    def __init__(self, stack: Stack, capacity: int, worker_id: str) -> None:
        self.stack = stack
        self.capacity = capacity
        self.worker_id = worker_id
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        assert self.stack.simulator is not None
        settings = self.stack.settings()
        return {
            **os.environ,
            "NATS_URL": settings.nats_url,
            "NATS_REPLICAS": str(settings.nats_replicas),
            "OPENAI_API_KEY": settings.openai_api_key.get_secret_value(),
            "OPENAI_BASE_URL": self.stack.simulator.base_url,
            "SESSION_LEASE_TTL_S": "2",
            "SESSION_ACK_WAIT_S": "3",
            "SESSION_DRAIN_DEADLINE_S": "3",
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "WARNING",
        }

    def spawn(self) -> None:
        argv = [sys.executable, "-m", "switchboard", "session", "--capacity", str(self.capacity),
                "--worker-id", self.worker_id, "--metrics-port", str(self.port)]  # fmt: skip
        self.process = subprocess.Popen(
            argv,
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    async def start(self, timeout: float = 30.0) -> None:
        """Spawn the process and wait until its `/readyz` answers 200."""
        self.spawn()
        url = f"http://127.0.0.1:{self.port}/readyz"
        async with httpx.AsyncClient() as client, asyncio.timeout(timeout):
            while True:
                if not self.alive():
                    raise RuntimeError(f"worker {self.worker_id} exited at start")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url, timeout=1)).status_code == 200:
                        return
                await asyncio.sleep(0.1)  # polling a child process' readiness

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def open_fds(self) -> int:
        assert self.process is not None
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    async def kill(self) -> None:
        """SIGKILL: the worker dies holding its calls, with no goodbye."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(self.process.wait)

    async def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait for the drain; SIGKILL if it does not end in time."""
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, timeout)
        except subprocess.TimeoutExpired:
            await self.kill()


def count(events: list[CallEvent], type: str) -> int:
    return sum(1 for event in events if event.type == type)
