"""Reading `SWITCHBOARD_AGENTS_FILE`: YAML in, validated profiles out, or an error that
names the line and the reason.

An operator edits this file by hand, often under pressure; "validation error in agents[3]"
is not enough, so every error is mapped back to the line of the offending key with the
YAML node marks. Fields a profile leaves out come from the default agent of the
environment (model, voice, instructions, greeting, transcription, tools).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from shared.agents import (
    AUDIO_FORMAT_FIELDS,
    AUDIO_FORMAT_REASON,
    DEFAULT_AGENT_NAME,
    AgentProfile,
)
from shared.live_accept import live_session_problem
from shared.live_agent import refused_fields
from shared.numbers import to_e164

Path_ = tuple[str | int, ...]
_INHERITED = ("model", "voice", "instructions", "greeting", "transcription", "tools")
# A Live agent takes what Live has from the default agent (a Realtime one): not its model
# or transcription, and its tools only with a delegation backend to call them.
_INHERITED_BY_LIVE = ("voice", "instructions", "greeting")


class AgentsFileError(ValueError):
    """The agents file cannot be used; `str()` is `<file>:<line>: <where>: <reason>` lines."""


@dataclass(frozen=True)
class Problem:
    line: int
    where: str
    reason: str


class _AgentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agents: list[dict[str, Any]] = Field(default_factory=list)


def _lines(node: yaml.Node, path: Path_, out: dict[Path_, int]) -> None:
    """Record the 1-based line of every key and list item under `node`."""
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                child = (*path, key_node.value)
                out.setdefault(child, key_node.start_mark.line + 1)
                _lines(value_node, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _lines(item, (*path, index), out)


def _duplicate_keys(node: yaml.Node, path: Path_) -> list[Problem]:
    """YAML silently keeps the last of two equal keys: a typo'd copy would win unseen."""
    problems: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen and key_node.value != "<<":
                    problems.append(
                        Problem(
                            key_node.start_mark.line + 1,
                            _where((*path, key_node.value)),
                            "duplicate key",
                        )
                    )
                seen.add(key_node.value)
                problems += _duplicate_keys(value_node, (*path, key_node.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += _duplicate_keys(item, (*path, index))
    return problems


def _where(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(file)"


def _line_of(loc: tuple[Any, ...], base: Path_, lines: dict[Path_, int]) -> tuple[int, Path_]:
    """The deepest known path along a pydantic error location (union tags are skipped)."""
    path = base
    for part in loc:
        if (*path, part) in lines:
            path = (*path, part)
    return lines.get(path, lines.get(base, 1)), path


def _reason(error: ErrorDetails) -> str:
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def parse_agents(
    text: str, default: AgentProfile, source: str = "agents file"
) -> list[AgentProfile]:
    """Validate the file's text; raise `AgentsFileError` listing every problem found."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 1
        raise AgentsFileError(f"{source}:{line}: not valid YAML: {error.problem}") from None
    except yaml.YAMLError as error:
        raise AgentsFileError(f"{source}: not valid YAML: {error}") from None

    lines: dict[Path_, int] = {}
    problems: list[Problem] = []
    if root is not None:
        _lines(root, (), lines)
        problems += _duplicate_keys(root, ())
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise AgentsFileError(f"{source}:1: the file must be a mapping with an 'agents' list")
    try:
        document = _AgentsFile.model_validate(data)
    except ValidationError as error:
        for item in error.errors():
            line, path = _line_of(item["loc"], (), lines)
            problems.append(Problem(line, _where(path), _reason(item)))
        raise _error(source, problems) from None

    inherited = default.model_dump(include=set(_INHERITED))
    profiles: list[AgentProfile] = []
    for index, entry in enumerate(document.agents):
        base: Path_ = ("agents", index)
        formats = [field for field in AUDIO_FORMAT_FIELDS if field in entry]
        if formats:  # said precisely here: the model's own check cannot name the line
            line, path = _line_of((formats[0],), base, lines)
            problems.append(Problem(line, _where(path), AUDIO_FORMAT_REASON))
            continue
        wrong_api = refused_fields(str(entry.get("api", "realtime")), set(entry))
        for field, reason in wrong_api:  # said here too, with the line of the field
            line, path = _line_of((field,), base, lines)
            problems.append(Problem(line, _where(path), reason))
        if wrong_api:
            continue
        entry = {**_inherited_for(entry, inherited), **entry}
        if isinstance(entry.get("numbers"), list):
            entry["numbers"] = _numbers(entry["numbers"], base, lines, problems)
        try:
            profile = AgentProfile.model_validate(entry)
            problem = live_session_problem(profile) if profile.api == "live" else None
            if problem is not None:
                problems.append(Problem(lines.get(base, 1), _where(base), problem))
            else:
                profiles.append(profile)
        except ValidationError as error:
            for item in _telling(error.errors()):
                loc, reason = _whole_profile_field(item)
                line, path = _line_of(loc, base, lines)
                found = Problem(line, _where(path), reason)
                if found not in problems:  # the same one seen through two union branches
                    problems.append(found)
    problems += _cross_checks(profiles, document.agents, lines)
    if problems:
        raise _error(source, problems)
    return profiles


def _telling(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """pydantic tries each branch of a union (server_vad, semantic_vad…) and says for each
    that its `type` differs: noise beside the error that names the value at fault."""
    branch = [e for e in errors if e["type"] == "literal_error" and e["loc"][-1] == "type"]
    rest = [e for e in errors if e not in branch]
    return rest or errors


def _whole_profile_field(error: ErrorDetails) -> tuple[tuple[Any, ...], str]:
    """A check of the whole profile names its field first (`voice: …`): point at its line."""
    reason = _reason(error)
    field, sep, rest = reason.partition(": ")
    if not error["loc"] and sep and field.replace("_", "").isalpha():
        return (field,), rest
    return tuple(error["loc"]), reason


def _inherited_for(entry: dict[str, Any], inherited: dict[str, Any]) -> dict[str, Any]:
    if entry.get("api") != "live":
        return inherited
    names = _INHERITED_BY_LIVE + (("tools",) if "delegation" in entry else ())
    return {name: inherited[name] for name in names}


def _numbers(
    numbers: list[Any], base: Path_, lines: dict[Path_, int], problems: list[Problem]
) -> list[Any]:
    """The numbers in E.164 (`+1 (800) 555-1212` → `+18005551212`), each bad one a problem."""
    normalised: list[Any] = []
    for index, number in enumerate(numbers):
        e164 = to_e164(number) if isinstance(number, str) else None
        if e164 is None:
            line, path = _line_of(("numbers", index), base, lines)
            problems.append(
                Problem(line, _where(path), f"{number!r} is not a phone number in E.164 (+…)")
            )
        normalised.append(e164 or number)
    return normalised


def _cross_checks(
    profiles: list[AgentProfile], entries: list[dict[str, Any]], lines: dict[Path_, int]
) -> list[Problem]:
    problems: list[Problem] = []
    names: dict[str, int] = {}
    owners: dict[str, str] = {}
    by_name = {entry.get("name"): index for index, entry in enumerate(entries)}
    for profile in profiles:
        index = by_name.get(profile.name, 0)
        name_line, name_path = _line_of(("name",), ("agents", index), lines)
        if profile.name == DEFAULT_AGENT_NAME:
            problems.append(
                Problem(
                    name_line,
                    _where(name_path),
                    f"{DEFAULT_AGENT_NAME!r} is the agent of the environment (OPENAI_MODEL, …); "
                    "pick another name",
                )
            )
        if profile.name in names:
            problems.append(Problem(name_line, _where(name_path), "two agents have this name"))
        names[profile.name] = index
        for position, number in enumerate(profile.numbers):
            if number in owners:
                line, path = _line_of(("numbers", position), ("agents", index), lines)
                problems.append(
                    Problem(line, _where(path), f"{number} is already agent {owners[number]!r}'s")
                )
            owners.setdefault(number, profile.name)
    return problems


def _error(source: str, problems: list[Problem]) -> AgentsFileError:
    ordered = sorted(problems, key=lambda p: p.line)
    return AgentsFileError("\n".join(f"{source}:{p.line}: {p.where}: {p.reason}" for p in ordered))


def load_agents_file(path: Path, default: AgentProfile) -> list[AgentProfile]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise AgentsFileError(f"{path}: cannot read the agents file: {error}") from None
    return parse_agents(text, default, source=str(path))
