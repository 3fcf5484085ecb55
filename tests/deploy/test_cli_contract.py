"""Every `switchboard …` command line in compose.yaml and in the rendered Kubernetes
manifests runs on the real CLI: the sub-command exists, every flag exists (checked with
`switchboard <cmd> --help`), and the parser accepts the values."""

from __future__ import annotations

import re

import pytest

from tests.deploy.conftest import (
    OVERLAYS,
    SERVICES,
    check_invocation,
    cli_help,
    compose_switchboard_services,
    render,
    switchboard_invocations,
)


def test_cli_lists_the_documented_commands() -> None:
    documented = {"ingress", "acceptor", "session", "simulator", "dev", "services", "asyncapi"}
    listed = set(re.findall(r"\b(" + "|".join(documented) + r")\b", cli_help()))
    assert listed == documented


def test_every_listed_service_is_a_command_that_starts_with_its_defaults() -> None:
    for service in SERVICES:
        check_invocation(f"switchboard services: {service}", [service])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifest_commands_exist(overlay: str) -> None:
    invocations = list(switchboard_invocations(render(f"overlays/{overlay}")))
    assert {argv[0] for _, argv in invocations} >= set(SERVICES)
    for where, argv in invocations:
        check_invocation(f"overlays/{overlay}: {where}", argv)


def test_compose_commands_exist() -> None:
    services = compose_switchboard_services()
    commands = set()
    for name, service in services.items():
        argv = [str(a) for a in service["command"]]
        commands.add(argv[0])
        check_invocation(f"compose.yaml service {name}", argv)
    assert commands == {*SERVICES, "simulator"}


def test_a_wrong_flag_is_caught() -> None:
    """The check is not vacuous."""
    with pytest.raises(AssertionError, match="no option --metrics-prot"):
        check_invocation("test", ["session", "--metrics-prot", "9102"])
    with pytest.raises(AssertionError):
        check_invocation("test", ["sessions"])
    with pytest.raises(AssertionError, match="rejected"):
        check_invocation("test", ["session", "--capacity", "many"])
