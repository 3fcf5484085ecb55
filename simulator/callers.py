"""Scripted callers: what the simulated person on the phone says and does, step by step.

Scripts are data (YAML or JSON) so tests, demos and benchmarks can describe calls without
code. Validation is strict (unknown keys, a step with two actions) so a typo fails loudly
instead of producing a silent caller.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCRIPTS_DIR = Path(__file__).parent / "scripts"
_DTMF_DIGITS = set("0123456789*#ABCD")
_ACTIONS = ("say", "barge_in", "tool_call", "pause", "dtmf", "chatter", "hangup")


class ScriptError(ValueError):
    """A caller script that cannot be loaded; the message names the file and the problem."""


class ToolCall(BaseModel):
    """The model decides to call a tool; the worker must answer with its output."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class Chatter(BaseModel):
    """A stream of small server events, to load the worker's event loop in benchmarks."""

    model_config = ConfigDict(extra="forbid")
    rate: float = Field(gt=0, le=1000)
    duration_s: float = Field(gt=0)


class BargeIn(BaseModel):
    """The caller talks over the agent: once its audio has played `after_s`, the caller
    says `say` (OpenAI cuts the agent's audio and answers)."""

    model_config = ConfigDict(extra="forbid")
    say: str = Field(min_length=1)
    after_s: float = Field(default=0.2, ge=0)


class Step(BaseModel):
    """One caller action; exactly one of the action fields is set."""

    model_config = ConfigDict(extra="forbid")
    say: str | None = None
    barge_in: BargeIn | None = None
    reply: str | None = None
    # With `say`: OpenAI fails to transcribe the turn (`…transcription.failed`).
    transcription_fails: bool | None = None
    tool_call: ToolCall | None = None
    pause: float | None = Field(default=None, ge=0)
    dtmf: str | None = None
    chatter: Chatter | None = None
    hangup: bool | None = None

    @field_validator("dtmf")
    @classmethod
    def _digits(cls, value: str | None) -> str | None:
        if value is not None and (not value or set(value) - _DTMF_DIGITS):
            raise ValueError("dtmf must be one or more of 0-9 * # A-D")
        return value

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        actions = [name for name in _ACTIONS if getattr(self, name) is not None]
        if len(actions) != 1:
            raise ValueError(
                f"a step needs exactly one of {', '.join(_ACTIONS)}; got {actions or 'none'}"
            )
        if self.reply is not None and actions[0] not in ("say", "barge_in", "tool_call"):
            raise ValueError("reply is only allowed with say, barge_in or tool_call")
        if self.transcription_fails is not None and actions[0] != "say":
            raise ValueError("transcription_fails is only allowed with say")
        if self.hangup is False:
            raise ValueError("hangup: false does nothing; remove the step")
        return self

    @property
    def action(self) -> str:
        return next(name for name in _ACTIONS if getattr(self, name) is not None)


class CallerScript(BaseModel):
    """A whole simulated caller. Without a final `hangup` step the caller stays on, silent."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = "caller"
    to: str | None = None
    from_: str | None = Field(default=None, alias="from")
    # How long the model "plays" each answer before output_audio_buffer.stopped.
    agent_speech_s: float = Field(default=0.05, ge=0)
    # How long the model "thinks" before the first output of a response; a response is active
    # (and a new response.create conflicts) for at least this long.
    agent_latency_s: float = Field(default=0.02, ge=0)
    greeting_wait_s: float = Field(default=3.0, ge=0)
    # How long the caller waits for the worker to return a tool's output before moving on.
    tool_timeout_s: float = Field(default=30.0, gt=0)
    default_reply: str = "Okay, I can help with that."
    steps: list[Step] = Field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> CallerScript:
        """Read a YAML or JSON script; raise `ScriptError` naming the file on any problem."""
        path = Path(path)
        try:
            text = path.read_text()
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise ScriptError(f"{path}: cannot read caller script: {exc}") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ScriptError(f"{path}: invalid caller script:\n{exc}") from exc

    @classmethod
    def builtin(cls, name: str) -> CallerScript:
        """A script shipped in `simulator/scripts/` (`demo`, `hangup_quickly`, ...)."""
        return cls.load(SCRIPTS_DIR / f"{name}.yaml")
