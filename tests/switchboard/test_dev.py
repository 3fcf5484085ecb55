"""`switchboard dev`: the whole stack as separate processes, demo calls, clean exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_dev_runs_two_demo_calls_and_exits_cleanly(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "switchboard",
            "dev",
            "--calls",
            "2",
            "--exit-when-done",
            "--store-dir",
            str(tmp_path / "store"),
        ],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 of 2 calls completed" in result.stdout
    assert result.stdout.count(" ended ") == 2
    assert "caller_hangup" in result.stdout
    assert "/console  viewer token: view-" in result.stdout
    # The salon's Realtime call and the reminders' GPT-Live call, side by side.
    assert "agent salon" in result.stdout and "agent reminders (GPT-Live)" in result.stdout
    # Every child was stopped: nothing of ours still runs against that store.
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True
    ).stdout.split()
    assert leftovers == []
