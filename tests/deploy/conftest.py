"""Shared helpers for the deployment tests: rendering the kustomize overlays, reading
compose.yaml, and asking the real `switchboard` CLI which commands and flags exist.

Everything here runs offline and without a container engine or a cluster.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard.services import SERVICES

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
COMPOSE_FILE = REPO / "compose.yaml"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))

# The services the manifests run (by their `app.kubernetes.io/component` label) and compose
# runs: `SERVICES`, the list `switchboard services` prints.
SECRET_VARS = (
    "OPENAI_API_KEY",
    "OPENAI_WEBHOOK_SECRET",
    "SWITCHBOARD_CONTROL_TOKEN",
    "SWITCHBOARD_VIEW_TOKEN",
    "TRUNK_PASSWORD",
)
# Seconds a worker needs after its drain deadline to close connections and exit.
DRAIN_MARGIN_S = 5.0


# --------------------------------------------------------------------------- kubernetes


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not installed (needed for `kubectl kustomize`)")
    return path


@functools.cache
def _render(path: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S / path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"`kubectl kustomize deploy/k8s/{path}` failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(path: str) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize deploy/k8s/<path>` renders (cached per session)."""
    return list(_render(path))


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for obj in of_kind(objects, kind):
        if obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"no {kind} named {name}")


def component(obj: dict[str, Any]) -> str | None:
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def service_deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The ingress, acceptor and session Deployments, by component."""
    found = {component(d): d for d in of_kind(objects, "Deployment")}
    missing = set(SERVICES) - set(found)
    assert not missing, f"no Deployment for {sorted(missing)}"
    return {name: found[name] for name in SERVICES}


def is_switchboard_image(image: str) -> bool:
    """`registry/path/switchboard:tag` or `switchboard` (the repository's Dockerfile)."""
    repository = image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    return repository == "switchboard"


def containers(pod_spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec.get("containers", [])


def switchboard_invocations(objects: list[dict[str, Any]]) -> Iterator[tuple[str, list[str]]]:
    """(where, argv after `switchboard`) for every container running the Switchboard image."""
    for obj in objects:
        template = obj.get("spec", {}).get("template", {})
        for container in containers(template.get("spec", {})):
            if not is_switchboard_image(container["image"]):
                continue
            command = [str(a) for a in container.get("command", [])]
            args = [str(a) for a in container.get("args", [])]
            if command and Path(command[0]).name != "switchboard":
                raise AssertionError(
                    f"{obj['kind']}/{obj['metadata']['name']}: the image's entry point is "
                    f"`switchboard`; command {command} bypasses it"
                )
            where = f"{obj['kind']}/{obj['metadata']['name']} container {container['name']}"
            yield where, command[1:] + args


def env_value(objects: list[dict[str, Any]], container: dict[str, Any], name: str) -> str | None:
    """What the variable `name` is set to in a container: its own `env`, then `envFrom`
    ConfigMaps (as rendered), else None."""
    for var in container.get("env", []):
        if var["name"] == name and "value" in var:
            return str(var["value"])
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            data = named(objects, "ConfigMap", ref["name"]).get("data", {})
            if name in data:
                return str(data[name])
    return None


def prestop_sleep_s(container: dict[str, Any]) -> float:
    """Seconds a container's preStop hook sleeps (`sleep N` exec or the native sleep action)."""
    pre_stop = container.get("lifecycle", {}).get("preStop")
    if not pre_stop:
        return 0.0
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop.get("exec", {}).get("command", [])
    if len(command) == 2 and Path(command[0]).name == "sleep":
        return float(command[1])
    raise AssertionError(f"cannot tell how long preStop {pre_stop} takes")


# ------------------------------------------------------------------------------ compose

_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def interpolate_defaults(value: str) -> str:
    """`${VAR:-default}` → `default` (what compose uses when VAR is unset)."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)


@functools.cache
def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose() -> dict[str, Any]:
    return _compose()


def compose_switchboard_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if "build" in service or is_switchboard_image(interpolate_defaults(service["image"]))
    }


# ---------------------------------------------------------------------------------- cli


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("switchboard")
    return [str(script)] if script.exists() else [sys.executable, "-m", "switchboard"]


@functools.cache
def cli_help(*command: str) -> str:
    """`switchboard [command] --help`, run for real (the installed entry point)."""
    result = subprocess.run(
        [*_cli(), *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, (
        f"`switchboard {' '.join(command)} --help` failed (exit {result.returncode}):\n"
        f"{result.stderr}"
    )
    return result.stdout


def cli_flags(command: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", cli_help(command)))


def check_invocation(where: str, argv: list[str]) -> None:
    """The sub-command and every flag in `argv` exist in the real CLI, and its parser
    accepts the whole line (values included)."""
    assert argv, f"{where}: no sub-command (the image's CMD is only --help)"
    command = argv[0]
    assert not command.startswith("-"), f"{where}: {argv} starts with a flag, not a command"
    # The sub-command exists: its own --help runs.
    flags = cli_flags(command)
    for arg in argv[1:]:
        if arg.startswith("--"):
            flag = arg.split("=", 1)[0]
            assert flag in flags, (
                f"{where}: `switchboard {command}` has no option {flag} (it has {sorted(flags)})"
            )
    from switchboard.cli import build_parser

    try:
        build_parser().parse_args([interpolate_defaults(a) for a in argv])
    except SystemExit as exit_:
        raise AssertionError(f"{where}: `switchboard {' '.join(argv)}` is rejected") from exit_
