"""Each service as a real process, started from a `.env` file while NATS is unreachable:
it listens on the port `.env` names, reports the capacity `.env` sets, logs what it loaded,
says which NATS URL it cannot reach (without the credentials in it), and the first SIGTERM
ends it within 2 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from switchboard.nats_server import free_port
from tests.switchboard.test_cli import _SETTINGS_VARS

START_TIMEOUT_S = 60.0


class ServiceProcess:
    """`switchboard <service>` in `cwd`, its log lines collected as they come."""

    def __init__(self, service: str, cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _SETTINGS_VARS}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "switchboard", service],
            cwd=cwd,
            env={**env, "LOG_FORMAT": "text"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip())
                self._changed.notify_all()

    def wait_for_log(self, needle: str) -> str:
        with self._changed:
            found = self._changed.wait_for(
                lambda: next((line for line in self.lines if needle in line), None),
                timeout=START_TIMEOUT_S,
            )
        assert found, f"no {needle!r} in:\n" + "\n".join(self.lines)
        return found


def get(url: str) -> str:
    """GET `url` once the server listens (it binds before NATS is reachable)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # polling a child process' health endpoint


@pytest.mark.slow
@pytest.mark.parametrize("service", ["ingress", "acceptor", "session"])
def test_started_from_dotenv_without_nats_and_stopped_by_one_sigterm(
    tmp_path: Path, service: str
) -> None:
    port, nats_port = free_port(), free_port()  # nothing listens on nats_port
    (tmp_path / ".env").write_text(
        f"NATS_URL=nats://switchboard:hunter2@127.0.0.1:{nats_port}\n"
        "OPENAI_API_KEY=sk-test-1234567890\n"
        f"OPENAI_WEBHOOK_SECRET=whsec_{'A' * 40}\n"
        f"INGRESS_HOST=127.0.0.1\nINGRESS_PORT={port}\n"
        f"METRICS_HOST=127.0.0.1\nMETRICS_PORT={port}\n"
        "SESSION_CAPACITY=7\nWORKER_ID=w-dotenv\n"
    )
    running = ServiceProcess(service, tmp_path)
    try:
        loaded = {
            "ingress": "ingress on 127.0.0.1:",
            "acceptor": "acceptor: agents from",
            "session": "session worker w-dotenv: capacity 7",
        }[service]
        running.wait_for_log(loaded)
        assert get(f"http://127.0.0.1:{port}/healthz") == "ok"
        if service == "session":
            assert "switchboard_session_capacity 7.0" in get(f"http://127.0.0.1:{port}/metrics")
        refused = running.wait_for_log(f"cannot reach NATS at nats://127.0.0.1:{nats_port}")
        assert "retrying in" in refused
        running.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        assert running.process.wait(timeout=10) == 0
        assert time.monotonic() - sent < 2.0
        assert not any("hunter2" in line for line in running.lines)
    finally:
        running.process.kill()
        running.process.wait()
