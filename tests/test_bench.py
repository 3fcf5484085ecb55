"""`python -m bench --quick` runs every benchmark with `--quick`: each program it finds must
be a benchmark that takes it (a launcher that takes a service's arguments is not one)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.__main__ import LAUNCHERS, ORDER, discover


def test_the_runner_finds_every_benchmark_and_no_launcher() -> None:
    found = discover()
    assert set(ORDER) <= set(found)
    assert not LAUNCHERS & set(found)


@pytest.mark.parametrize("name", discover())
def test_every_benchmark_found_takes_quick(name: str) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr[-500:]
    assert "--quick" in shown.stdout
