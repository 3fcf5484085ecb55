"""GPT-Live agents in the agents file: `api: live`, Live-only and Realtime-only fields
refused for the other API with the line and the reason, values checked through the SDK."""

from __future__ import annotations

import pytest
from openai.types.live.session_accept_params import Session

from shared.agent_directory import OverrideRefused, apply_override
from shared.agents import AgentProfile, default_agent
from shared.agents_file import AgentsFileError, parse_agents
from shared.live_accept import live_session
from shared.sdk_types import check_params
from shared.settings import Settings

LIVE = """agents:
  - name: reminders
    api: live
    numbers: ["+61468002103"]
    model: gpt-live-1
    voice: marin
    instructions: "You call customers to confirm appointments."
    greeting: "Hi, this is Bella Salon calling about your appointment."
    delegation: {model: gpt-5-mini, instructions: "Use the tools to look up bookings."}
    store: true
    tools:
      - name: lookup_booking
        parameters: {type: object, properties: {id: {type: string}}, required: [id]}
      - builtin: end_call
      - builtin: transfer_call
        targets: {reception: "tel:+61290000000"}
    limits: {max_concurrent_calls: 20, max_duration_s: 600, idle_timeout_s: 30}
"""


@pytest.fixture
def default() -> AgentProfile:
    return default_agent(Settings(_env_file=None))  # type: ignore[call-arg]


def problems(text: str, default: AgentProfile) -> list[str]:
    with pytest.raises(AgentsFileError) as error:
        parse_agents(text, default, source="agents.yaml")
    return str(error.value).splitlines()


def test_a_live_agent_loads_and_its_accept_session_is_the_sdks_shape(
    default: AgentProfile,
) -> None:
    [agent] = parse_agents(LIVE, default)
    assert agent.api == "live" and agent.model == "gpt-live-1"
    assert agent.turn_detection is None and agent.transcription is None
    session = live_session(agent)
    check_params(Session, session)  # strict: no unknown field at any depth
    assert session["type"] == "live" and session["store"] is True
    assert session["audio"] == {"output": {"voice": "marin"}}
    responses = session["delegation"]["responses"]
    assert responses["model"] == "gpt-5-mini"
    assert [tool["name"] for tool in responses["tools"]] == [
        "lookup_booking",
        "end_call",
        "transfer_call",
    ]
    assert "tools" not in session and "turn_detection" not in str(session)


def test_realtime_is_the_default_and_a_profile_survives_its_json_round_trip(
    default: AgentProfile,
) -> None:
    [live] = parse_agents(LIVE, default)
    assert AgentProfile.model_validate_json(live.model_dump_json()) == live
    [plain] = parse_agents("agents:\n  - name: a\n    numbers: ['+18005550100']\n", default)
    assert plain.api == "realtime" and plain.delegation is None


def test_a_live_agent_without_fields_takes_only_what_live_has_from_the_default(
    default: AgentProfile,
) -> None:
    text = "agents:\n  - name: a\n    api: live\n    numbers: ['+18005550100']\n"
    [agent] = parse_agents(text, default)
    assert agent.model == "gpt-live-1"
    assert agent.voice == default.voice and agent.greeting == default.greeting
    assert agent.tools == [] and agent.transcription is None


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("turn_detection: {type: semantic_vad}", "no turn detection"),
        ("transcription: {model: gpt-4o-mini-transcribe}", "transcripts are always on"),
    ],
)
def test_realtime_fields_are_refused_for_a_live_agent_with_the_line(
    default: AgentProfile, field: str, reason: str
) -> None:
    text = f"agents:\n  - name: a\n    api: live\n    numbers: ['+18005550100']\n    {field}\n"
    [line] = problems(text, default)
    assert line.startswith(f"agents.yaml:5: agents[0].{field.split(':')[0]}: ")
    assert reason in line


@pytest.mark.parametrize("field", ["delegation: {model: gpt-5-mini}", "store: true"])
def test_live_fields_are_refused_for_a_realtime_agent_with_the_line(
    default: AgentProfile, field: str
) -> None:
    text = f"agents:\n  - name: a\n    numbers: ['+18005550100']\n    {field}\n"
    [line] = problems(text, default)
    assert line.startswith(f"agents.yaml:4: agents[0].{field.split(':')[0]}: ")
    assert "api: live" in line


@pytest.mark.parametrize(
    ("field", "where", "reason"),
    [
        ("voice: nosuch", "voice", "not a GPT-Live voice"),
        ("model: gpt-realtime-2.1", "model", "Realtime model"),
        ("store: 'yes'", "store", "valid boolean"),
        ("delegation: {model: gpt-5-mini, effort: high}", "delegation.effort", "Extra inputs"),
        ("tools: [{builtin: end_call}]", "", "delegation backend"),
    ],
)
def test_bad_live_values_are_refused_with_the_line(
    default: AgentProfile, field: str, where: str, reason: str
) -> None:
    text = f"agents:\n  - name: a\n    api: live\n    numbers: ['+18005550100']\n    {field}\n"
    [line] = problems(text, default)
    assert line.startswith("agents.yaml:")
    assert f"agents[0]{'.' + where if where else ''}: " in line
    assert reason in line


def test_a_custom_voice_goes_as_an_id(default: AgentProfile) -> None:
    text = "agents:\n  - name: a\n    api: live\n    numbers: ['+18005550100']\n"
    text += "    voice: voice_123\n"
    [agent] = parse_agents(text, default)
    assert live_session(agent)["audio"]["output"]["voice"] == {"id": "voice_123"}
    check_params(Session, live_session(agent))


def test_a_hook_may_override_a_live_agents_delegation_but_not_give_realtime_one(
    default: AgentProfile,
) -> None:
    [live] = parse_agents(LIVE, default)
    changed = apply_override(live, {"delegation": {"model": "gpt-5"}})
    assert changed.delegation is not None and changed.delegation.model == "gpt-5"
    with pytest.raises(OverrideRefused, match="api: live"):
        apply_override(default, {"delegation": {"model": "gpt-5"}})
    with pytest.raises(OverrideRefused, match="not allowed"):
        apply_override(live, {"api": "realtime"})
