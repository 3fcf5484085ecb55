"""The agents file: profiles in, or the line and the reason of every problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.agents import AgentProfile, BuiltinTool, FunctionTool, default_agent
from shared.agents_file import AgentsFileError, load_agents_file, parse_agents
from shared.settings import Settings

EXAMPLE = Path(__file__).parents[2] / "examples" / "agents.yaml"


@pytest.fixture
def default() -> AgentProfile:
    return default_agent(Settings(_env_file=None))  # type: ignore[call-arg]


def problems(text: str, default: AgentProfile) -> list[str]:
    with pytest.raises(AgentsFileError) as error:
        parse_agents(text, default, source="agents.yaml")
    return str(error.value).splitlines()


def test_the_example_file_loads(default: AgentProfile) -> None:
    profiles = load_agents_file(EXAMPLE, default)
    salon = next(p for p in profiles if p.name == "salon")
    assert salon.numbers == ["+61468002102"]
    assert salon.limits.max_concurrent_calls == 20
    assert isinstance(salon.tools[0], FunctionTool)
    assert isinstance(salon.tools[2], BuiltinTool) and salon.tools[2].targets


def test_missing_fields_come_from_the_default_agent(default: AgentProfile) -> None:
    [profile] = parse_agents(
        "agents:\n  - name: shop\n    numbers: ['+1 (800) 555-0100']\n    voice: cedar\n",
        default,
    )
    assert profile.voice == "cedar"
    assert profile.model == default.model
    assert profile.instructions == default.instructions
    assert profile.tools == default.tools
    assert profile.numbers == ["+18005550100"]


def test_an_empty_file_is_no_profiles(default: AgentProfile) -> None:
    assert parse_agents("", default) == []
    assert parse_agents("agents: []\n", default) == []


def test_vad_tuning_is_refused_with_the_line_and_the_reason(default: AgentProfile) -> None:
    text = """agents:
  - name: salon
    numbers: ["+61468002102"]
    turn_detection:
      type: server_vad
      silence_duration_ms: 500
"""
    [line] = problems(text, default)
    assert line.startswith("agents.yaml:4: agents[0].turn_detection: ")
    assert "silence_duration_ms" in line and "SIP" in line and "400" in line


@pytest.mark.parametrize(
    "field",
    ["input_audio_format: pcm16", "audio: {input: {format: {type: audio/pcmu}}}"],
)
def test_audio_formats_are_refused_with_the_reason(default: AgentProfile, field: str) -> None:
    text = f"agents:\n  - name: a\n    numbers: ['+18005550100']\n    {field}\n"
    [line] = problems(text, default)
    assert line.startswith("agents.yaml:4: agents[0].")
    assert "codec is negotiated in SDP" in line


def test_every_problem_is_listed_in_line_order(default: AgentProfile) -> None:
    text = """agents:
  - name: one
    numbers: ["+18005550100", "reception"]
    tools:
      - builtin: end_cal
    limits: {max_concurrent_calls: 0}
  - name: two
    numbers: ["+18005550100"]
    bogus: 1
  - name: three
    numbers: ["+18005550101"]
    voice: marin
    voice: cedar
"""
    lines = problems(text, default)
    assert lines == [
        "agents.yaml:3: agents[0].numbers[1]: 'reception' is not a phone number in E.164 (+…)",
        "agents.yaml:5: agents[0].tools[0].builtin: Input should be 'end_call' or 'transfer_call'",
        "agents.yaml:6: agents[0].limits.max_concurrent_calls: Input should be greater than or "
        "equal to 1",
        "agents.yaml:9: agents[1].bogus: Extra inputs are not permitted",
        "agents.yaml:13: agents[2].voice: duplicate key",
    ]


def test_a_number_belongs_to_one_agent(default: AgentProfile) -> None:
    text = """agents:
  - name: one
    numbers: ["+18005550100"]
  - name: two
    numbers: ["+1 800 555 0100"]
"""
    [line] = problems(text, default)
    assert line == "agents.yaml:5: agents[1].numbers[0]: +18005550100 is already agent 'one''s"


def test_names_are_unique_and_default_is_reserved(default: AgentProfile) -> None:
    text = "agents:\n  - name: default\n  - name: a\n  - name: a\n"
    lines = problems(text, default)
    assert lines[0].startswith("agents.yaml:2: agents[0].name: 'default' is the agent")
    assert lines[1] == "agents.yaml:4: agents[2].name: two agents have this name"


def test_bad_yaml_names_the_line(default: AgentProfile) -> None:
    [line] = problems("agents:\n  - name: a\n    numbers: [+1800\n", default)
    assert line.startswith("agents.yaml:4: not valid YAML")


def test_transfer_targets_must_be_uris(default: AgentProfile) -> None:
    text = """agents:
  - name: a
    tools:
      - builtin: transfer_call
        targets: {reception: "+61290000000"}
"""
    [line] = problems(text, default)
    assert line.startswith("agents.yaml:5: agents[0].tools[0].targets: ")
    assert "tel: or sip:" in line


def test_an_unreadable_file_says_so(tmp_path: Path, default: AgentProfile) -> None:
    with pytest.raises(AgentsFileError, match="cannot read"):
        load_agents_file(tmp_path / "missing.yaml", default)


# -- values, through the openai SDK's own types ------------------------------------------------

_BAD_VALUES = """\
agents:
  - name: salon
    numbers: ["+61468002102"]
    transcription:
      model: gpt-4o-mini-transcribe
      delay: fast
      languages: en
    turn_detection: {type: server_vad, create_response: sometimes, idle_timeout_ms: soon}
"""


def test_values_openai_would_refuse_are_refused_with_the_line(default: AgentProfile) -> None:
    found = problems(_BAD_VALUES, default)
    assert found[0].startswith("agents.yaml:6: agents[0].transcription.delay: Input should be")
    assert found[1].startswith("agents.yaml:7: agents[0].transcription.languages:")
    assert any(
        line.startswith("agents.yaml:8: agents[0].turn_detection.create_response:")
        for line in found
    )
    assert any("idle_timeout_ms" in line for line in found)


def test_a_bad_value_stops_the_acceptor_with_the_file_and_line(tmp_path: Path) -> None:
    agents = tmp_path / "agents.yaml"
    agents.write_text(_BAD_VALUES)
    env = {
        **os.environ,
        "SWITCHBOARD_AGENTS_FILE": str(agents),
        "NATS_URL": "nats://127.0.0.1:1",  # never reached: the file is read first
        "LOG_FORMAT": "text",
        "OPENAI_API_KEY": "sk-test-" + "k" * 24,  # the acceptor requires one before the file
    }
    done = subprocess.run(
        [sys.executable, "-m", "switchboard.cli", "acceptor", "--metrics-port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{agents}:6: agents[0].transcription.delay" in done.stdout + done.stderr
