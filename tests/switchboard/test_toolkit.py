"""A tool service (`switchboard.toolkit`) as a real process: asked to stop, it stops at
once, even when NATS went away first (no drain to wait for, no traceback)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from switchboard.nats_server import NatsServer

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_tool_service_stops_promptly_when_nats_is_gone(nats_server: NatsServer) -> None:
    service = subprocess.Popen(
        [sys.executable, "-m", "examples.salon_tools"],
        cwd=REPO,
        env={**os.environ, "NATS_URL": nats_server.url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert service.stderr is not None
        for line in service.stderr:
            lines.append(line)
            if "started" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(timeout=60), "".join(lines)
        nats_server.kill()
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=15) == 0
        reader.join(timeout=5)
        assert "Traceback" not in "".join(lines)
    finally:
        service.kill()
        service.wait()
