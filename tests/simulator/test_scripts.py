"""Caller scripts: shipped scripts load, bad ones fail with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from simulator import CallerScript, ScriptError
from simulator.callers import SCRIPTS_DIR


@pytest.mark.parametrize("path", sorted(SCRIPTS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_scripts_load(path: Path) -> None:
    script = CallerScript.load(path)
    assert script.steps


def test_demo_ends_with_hangup() -> None:
    demo = CallerScript.builtin("demo")
    assert demo.steps[-1].action == "hangup"
    assert demo.to == "+18005551212" and demo.from_ == "+14155550123"
    assert {step.action for step in demo.steps} >= {"say", "tool_call", "hangup"}


def test_json_script(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"name": "j", "steps": [{"dtmf": "12#"}]}))
    assert CallerScript.load(path).steps[0].dtmf == "12#"


@pytest.mark.parametrize(
    ("steps", "needle"),
    [
        ([{"say": "hi", "dtmf": "1"}], "exactly one"),
        ([{}], "exactly one"),
        ([{"shout": "hi"}], "shout"),
        ([{"dtmf": "x"}], "dtmf"),
        ([{"pause": 1, "reply": "no"}], "reply"),
        ([{"chatter": {"rate": 0, "duration_s": 1}}], "rate"),
        ([{"tool_call": {"arguments": {}}}], "name"),
    ],
)
def test_bad_steps_are_refused(steps: list, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        CallerScript.model_validate({"steps": steps})
    assert needle in str(info.value)


def test_bad_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("steps:\n  - say: hi\n    hangup: true\n")
    with pytest.raises(ScriptError, match=r"bad\.yaml"):
        CallerScript.load(path)
    with pytest.raises(ScriptError, match="cannot read"):
        CallerScript.load(tmp_path / "missing.yaml")
