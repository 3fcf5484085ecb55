"""How `switchboard dev` composes the stack, without starting it: every service of
`switchboard services` on loopback with a valid command line, the number the demo calls
dial."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from shared.settings import Settings
from simulator.callers import CallerScript
from switchboard.dev import EXAMPLE_AGENTS, SALON_NUMBER, DevStack, demo_number
from switchboard.services import SERVICES
from tests.deploy.conftest import check_invocation


def _stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **args: object) -> DevStack:
    monkeypatch.chdir(tmp_path)
    defaults = {"store_dir": None, "workers": 2, "calls": 1, "script": None, "to": None}
    return DevStack(argparse.Namespace(**{**defaults, **args}), Settings(_env_file=None))


def test_dev_starts_every_service_on_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = _stack(tmp_path, monkeypatch, workers=3).service_commands()
    started = [argv[0] for _, argv, _ in commands]
    assert set(started) == set(SERVICES)
    assert started.count("session") == 3
    for name, argv, port in commands:
        check_invocation(f"switchboard dev: {name}", argv)
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        assert str(port) in argv
    assert len({port for _, _, port in commands}) == len(commands)


def test_each_run_has_its_own_store_unless_one_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = _stack(tmp_path, monkeypatch)
    assert own.run_dir is not None and own.nats.store_dir.is_relative_to(own.run_dir)
    kept = _stack(tmp_path, monkeypatch, store_dir="kept")
    assert kept.run_dir is None and kept.nats.store_dir == tmp_path / "kept" / "nats"
    assert own.nats.port != kept.nats.port


def test_the_number_the_demo_calls_dial(tmp_path: Path) -> None:
    agents = tmp_path / "agents.yaml"
    agents.write_text('agents:\n  - name: bakery\n    numbers: ["+15550001111", "+15550002222"]\n')
    dialling = CallerScript(to="+15559990000")
    silent = CallerScript()
    assert demo_number("+1999", dialling, agents) == "+1999"  # --to wins
    assert demo_number(None, dialling, agents) is None  # the script's own `to:`
    assert demo_number(None, silent, agents) == "+15550001111"  # the agents file's first
    assert demo_number(None, None, EXAMPLE_AGENTS) == SALON_NUMBER
    assert demo_number(None, None, None) is None  # the demo script's default
    (tmp_path / "bad.yaml").write_text("agents: 7\n")
    assert demo_number(None, None, tmp_path / "bad.yaml") is None  # the acceptor says why
