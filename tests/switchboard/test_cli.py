"""The `switchboard` command line: `services`, `--version`, every option described with its
default, defaults taken from the settings (so `.env`, the environment and flags agree), and
configuration errors as one line with exit code 2, never a traceback, never a value."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.acceptor.config import AcceptorSettings
from shared.settings import Settings
from simulator.settings import SimulatorSettings
from switchboard.cli import build_parser, version
from switchboard.services import SERVICES

# Every variable of the settings: a developer's shell must not change these tests.
_SETTINGS_VARS = {
    (model.model_config.get("env_prefix", "") + name).upper()
    for model in (Settings, SimulatorSettings, AcceptorSettings)
    for name in model.model_fields
}


def switchboard(
    *argv: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in _SETTINGS_VARS}
    return subprocess.run(
        [sys.executable, "-m", "switchboard", *argv],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_services_prints_the_long_running_services_one_a_line(tmp_path: Path) -> None:
    result = switchboard("services", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.splitlines() == list(SERVICES)
    assert {"ingress", "acceptor", "session"} <= set(SERVICES)
    assert set(SERVICES) <= set(_subcommands(build_parser(Settings(_env_file=None))))


def test_version(tmp_path: Path) -> None:
    result = switchboard("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"switchboard {version()}"
    assert version()[0].isdigit()


def test_every_option_has_a_description_and_shows_its_default() -> None:
    parser = build_parser(Settings(_env_file=None), SimulatorSettings(_env_file=None))
    for name, command in _subcommands(parser).items():
        for action in command._actions:
            if action.dest == "help":
                continue
            assert action.help, f"switchboard {name} {action.option_strings}: no description"
        text = "".join(command.format_help().split())  # wherever lines were wrapped
        for action in command._actions:
            if action.default not in (None, argparse.SUPPRESS, False, ""):
                assert f"(default:{action.default})" in text, (name, action.option_strings)
        assert "(default:None)" not in text


def test_defaults_come_from_the_settings() -> None:
    settings = Settings(
        _env_file=None,
        ingress_host="127.0.0.2",
        ingress_port=18080,
        metrics_host="127.0.0.3",
        metrics_port=19100,
        session_capacity=7,
        worker_id="w-7",
    )
    sim = SimulatorSettings(_env_file=None, host="127.0.0.4", port=18090, webhook_url="http://x/")
    parser = build_parser(settings, sim)
    ingress = parser.parse_args(["ingress"])
    assert (ingress.host, ingress.port) == ("127.0.0.2", 18080)
    for service in ("acceptor", "session"):
        args = parser.parse_args([service])
        assert (args.host, args.metrics_port) == ("127.0.0.3", 19100)
    session = parser.parse_args(["session"])
    assert (session.capacity, session.worker_id) == (7, "w-7")
    simulator = parser.parse_args(["simulator"])
    assert (simulator.host, simulator.port, simulator.webhook_url) == (
        "127.0.0.4",
        18090,
        "http://x/",
    )
    # A flag still wins over the settings.
    assert parser.parse_args(["session", "--capacity", "3"]).capacity == 3


def test_unset_metrics_ports_differ_per_service() -> None:
    parser = build_parser(Settings(_env_file=None), SimulatorSettings(_env_file=None))
    assert parser.parse_args(["acceptor"]).metrics_port == 9101
    assert parser.parse_args(["session"]).metrics_port == 9102
    ingress = parser.parse_args(["ingress"])
    assert (ingress.host, ingress.port) == ("0.0.0.0", 8080)


SECRET = "whsec_" + "A" * 40


@pytest.mark.parametrize(
    ("argv", "env", "variable", "value"),
    [
        (["ingress"], {}, "OPENAI_WEBHOOK_SECRET", None),
        (["ingress"], {"OPENAI_WEBHOOK_SECRET": "whsec_not-base64!!"}, "OPENAI_WEBHOOK_SECRET",
         "not-base64!!"),
        (["ingress"], {"OPENAI_WEBHOOK_SECRET": f"{SECRET} whsec_%%%"}, "OPENAI_WEBHOOK_SECRET",
         "%%%"),
        (["ingress"], {"OPENAI_WEBHOOK_SECRET": SECRET, "SWITCHBOARD_CONTROL_TOKEN": "tok-123\n"},
         "SWITCHBOARD_CONTROL_TOKEN", "tok-123"),
        (["session"], {"OPENAI_API_KEY": "sk-proj-abc123\n"}, "OPENAI_API_KEY", "abc123"),
        (["acceptor"], {}, "OPENAI_API_KEY", None),
        (["session"], {"OPENAI_API_KEY": "sk-1", "SESSION_CAPACITY": "many"}, "SESSION_CAPACITY",
         "many"),
        (["session"], {"OPENAI_API_KEY": "sk-1", "SESSION_CAPACITY": "0"}, "SESSION_CAPACITY",
         None),
        (["--help"], {"INGRESS_PORT": "abc"}, "INGRESS_PORT", "abc"),
        (["session"], {"NATS_URL": "nats://u:pw1@host:port"}, "NATS_URL", "pw1"),
        (["simulator"], {"SIMULATOR_PORT": "x1"}, "SIMULATOR_PORT", "x1"),
        (["ingress"], {"OPENAI_WEBHOOK_SECRET": SECRET, "LOG_LEVEL": "loud"}, "LOG_LEVEL", "loud"),
        (["acceptor"], {"OPENAI_API_KEY": "sk-1", "SWITCHBOARD_AGENTS_POLL_S": "-1"},
         "SWITCHBOARD_AGENTS_POLL_S", None),
    ],
)  # fmt: skip
def test_a_configuration_error_is_one_line_and_exit_code_2(
    tmp_path: Path, argv: list[str], env: dict[str, str], variable: str, value: str | None
) -> None:
    result = switchboard(*argv, cwd=tmp_path, env={"NATS_URL": "nats://127.0.0.1:1", **env})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "configuration error" in lines[0] and variable in lines[0]
    if value is not None:
        assert value not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_bad_agents_file_names_the_file_and_line(tmp_path: Path) -> None:
    agents = tmp_path / "agents.yaml"
    agents.write_text("agents:\n  - name: salon\n    numbers: [12]\n    colour: blue\n")
    env = {"OPENAI_API_KEY": "sk-1", "SWITCHBOARD_AGENTS_FILE": str(agents)}
    result = switchboard("acceptor", cwd=tmp_path, env=env)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert f"{agents}:4:" in line and "colour" in line


def test_a_dotenv_file_is_read_like_the_environment(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OPENAI_WEBHOOK_SECRET=whsec_not-base64!!\n")
    result = switchboard("ingress", cwd=tmp_path)
    assert result.returncode == 2
    assert "OPENAI_WEBHOOK_SECRET" in result.stderr and "not-base64" not in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["session", "--capacity", "0"],
        ["acceptor", "--metrics-port", "70000"],
        ["ingress", "--port", "x"],
    ],
)
def test_flags_are_checked_like_the_settings(argv: list[str]) -> None:
    parser = build_parser(Settings(_env_file=None), SimulatorSettings(_env_file=None))
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(argv)
    assert exit_.value.code == 2
