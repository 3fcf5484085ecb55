"""The README and the production guide, checked against the code: every CLI option and
every setting is in the README's tables, and every file the docs and the deployment files
name exists."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from shared.settings import Settings
from simulator.settings import SimulatorSettings
from switchboard.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
GUIDE = REPO / "docs" / "production.md"
PACKAGES = ("shared", "services", "simulator", "switchboard")


def _settings_classes() -> list[type[BaseSettings]]:
    """Every settings class of our packages (imported, so one added later is found too)."""
    for package in PACKAGES:
        for module in pkgutil.walk_packages([str(REPO / package)], prefix=f"{package}."):
            if not module.name.endswith("__main__"):
                importlib.import_module(module.name)
    found, todo = [], list(BaseSettings.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] in PACKAGES:
            found.append(cls)
    return sorted(found, key=lambda cls: cls.__name__)


SETTINGS = _settings_classes()
# Paths the docs name that a run creates, not the repository.
CREATED_BY_RUNS = (".switchboard", ".venv", "bench/results")
# Where a path the docs name may be relative to (the guide names k8s files from deploy/k8s).
ROOTS = (REPO, REPO / "deploy" / "k8s")
_FILE = re.compile(r"[\w.][\w./-]*(\.(py|md|ya?ml|json|toml|txt)|/)")


def table_rows(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("|")]


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser(Settings(_env_file=None), SimulatorSettings(_env_file=None))
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **action.choices}


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return [
        flag
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    ]


@pytest.mark.parametrize("command", sorted(_commands()), ids=lambda c: c or "switchboard")
def test_every_cli_option_is_in_the_readme_commands_table(command: str) -> None:
    flags = _flags(_commands()[command])
    if not command:  # options of `switchboard` itself: a row of their own
        rows = [
            r
            for r in table_rows(README)
            if r.startswith(tuple(f"| `switchboard {f}" for f in flags))
        ]
        assert len(rows) == len(flags), f"README has no row for {flags}"
        return
    row = next((r for r in table_rows(README) if r.startswith(f"| `switchboard {command}`")), "")
    assert row, f"`switchboard {command}` is missing from the README's commands table"
    missing = [f for f in flags if not re.search(rf"(?<![\w-]){f}(?![\w-])", row)]
    assert not missing, f"`switchboard {command}`: {missing} not in its README row"


@pytest.mark.parametrize("model", SETTINGS, ids=lambda m: m.__name__)
def test_every_setting_is_in_the_readme_configuration_table(model: type[BaseSettings]) -> None:
    tables = "\n".join(table_rows(README))
    prefix = model.model_config.get("env_prefix", "")
    missing = [
        variable
        for name in model.model_fields
        if f"`{(variable := (prefix + name).upper())}`" not in tables
    ]
    assert not missing, f"not in the README's tables: {missing}"


def test_every_settings_class_is_checked() -> None:
    assert {Settings, SimulatorSettings} <= set(SETTINGS)
    assert "AcceptorSettings" in {cls.__name__ for cls in SETTINGS}


def test_the_coverage_check_notices_a_missing_setting() -> None:
    class WithNewSetting(Settings):
        brand_new_knob: int = 1

    with pytest.raises(AssertionError, match="BRAND_NEW_KNOB"):
        test_every_setting_is_in_the_readme_configuration_table(WithNewSetting)


def _named_paths(doc: Path) -> set[str]:
    text = doc.read_text()
    named = {
        token
        for token in re.findall(r"`([^`\s]+)`", text)
        if "/" in token and _FILE.fullmatch(token)
    }
    for link in re.findall(r"\]\(([^)#\s]+)\)", text):
        if "://" not in link:
            named.add(str((doc.parent / link).resolve().relative_to(REPO)))
    return {p for p in named if not p.startswith(CREATED_BY_RUNS)}


@pytest.mark.parametrize("doc", [README, GUIDE], ids=lambda p: p.name)
def test_every_file_the_docs_name_exists(doc: Path) -> None:
    missing = sorted(p for p in _named_paths(doc) if not any((root / p).exists() for root in ROOTS))
    assert not missing, f"{doc.name} names files the repository does not have: {missing}"


def test_deployment_files_name_only_documents_that_exist() -> None:
    documents = {p.name for p in REPO.rglob("*.md") if ".venv" not in p.parts}
    files = [REPO / "compose.yaml", REPO / "Dockerfile", *(REPO / "deploy").rglob("*.yaml")]
    for path in files:
        for name in re.findall(r"[\w.-]+\.md\b", path.read_text()):
            assert name in documents, f"{path.relative_to(REPO)} refers to {name}, which is absent"
