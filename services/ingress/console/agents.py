"""The transfer targets the console offers for a call: the agent's named ones.

Read from `SWITCHBOARD_AGENTS_FILE` (again when it changes) only for display: the worker
checks every target itself, so a stale or unreadable file costs a menu, never a wrong
transfer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)


def transfer_targets(document: Any) -> dict[str, dict[str, str]]:
    """`{agent: {target name: uri}}` from an agents file's parsed YAML; junk is skipped."""
    found: dict[str, dict[str, str]] = {}
    agents = document.get("agents") if isinstance(document, dict) else None
    for agent in agents if isinstance(agents, list) else []:
        if not isinstance(agent, dict) or not isinstance(agent.get("name"), str):
            continue
        targets: dict[str, str] = {}
        tools = agent.get("tools")
        for tool in tools if isinstance(tools, list) else []:
            if isinstance(tool, dict) and tool.get("builtin") == "transfer_call":
                named = tool.get("targets")
                if isinstance(named, dict):
                    targets.update({str(k): str(v) for k, v in named.items()})
        found[agent["name"]] = targets
    return found


class AgentTargets:
    """The agents file's transfer targets, re-read when its modification time changes."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._stamp: float | None = None
        self._targets: dict[str, dict[str, str]] = {}

    def get(self) -> dict[str, dict[str, str]]:
        if self._path is None:
            return {}
        try:
            stamp = self._path.stat().st_mtime
            if stamp != self._stamp:
                self._targets = transfer_targets(yaml.safe_load(self._path.read_text()))
                self._stamp = stamp
        except (OSError, yaml.YAMLError) as error:
            log.warning("console: agents file unreadable (%s)", type(error).__name__)
        return self._targets
