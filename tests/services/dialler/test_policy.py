"""The dialler's pure decisions: cap, rate, window, retry, failure codes, the dial body,
and the outbound block of the agents file."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.dialler.policy import (
    failure_reason,
    outbound_session,
    retry_delay,
    sip_transport,
    window_opens,
)
from shared.agents import AgentProfile
from shared.agents_file import AgentsFileError, parse_agents
from shared.outbound import CallingWindow, RetryPolicy, provider_url_problem
from shared.outbound_limits import leave_place, next_dial, places, take_place
from tests.services.dialler.conftest import agents_yaml

DEFAULT = AgentProfile(name="default", model="gpt-realtime-2.1", voice="marin",
                       instructions="Hi.", greeting="Hello.")  # fmt: skip


@given(
    cap=st.integers(1, 10),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 15)), max_size=80),
)
def test_the_cap_never_holds_more_than_its_size(cap: int, ops: list[tuple[bool, int]]) -> None:
    document = None
    for taking, n in ops:
        call_id = f"out_{n}"
        if taking:
            new, ok = take_place(document, call_id, 1000.0, cap)
            if new is not None:
                document = new
            assert ok == (call_id in places(document, 1000.0))
        else:
            new, _ = leave_place(document, call_id, 1000.0)
            document = new if new is not None else document
            assert call_id not in places(document, 1000.0)
        assert len(places(document, 1000.0)) <= cap


@given(
    rate=st.floats(0.1, 100.0),
    asks=st.lists(st.floats(0.0, 50.0), min_size=1, max_size=60),
)
def test_dials_are_never_closer_than_the_rate(rate: float, asks: list[float]) -> None:
    document = None
    slots = []
    for now in sorted(asks):
        document, at = next_dial(document, now, rate)
        assert at >= now
        slots.append(at)
    for earlier, later in itertools.pairwise(slots):
        assert later - earlier >= 1.0 / rate - 1e-9


def test_the_window_in_the_callee_time_zone() -> None:
    window = CallingWindow(start=time(9), end=time(18), timezone="Australia/Sydney")
    inside = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 12:00 in Sydney (AEDT, +11)
    assert window_opens(window, inside) == inside
    evening = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # 19:00 in Sydney
    assert window_opens(window, evening) == datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
    early = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)  # 07:00 in Sydney
    assert window_opens(window, early) == datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
    overnight = CallingWindow(start=time(22), end=time(2), timezone="UTC")
    late = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    assert window_opens(overnight, late) == late
    assert window_opens(None, late) == late


def test_retries_only_busy_and_no_answer_as_many_times_as_allowed() -> None:
    policy = RetryPolicy(busy=2, no_answer=1, delay_s=600)
    assert retry_delay("busy", 1, policy) == 600
    assert retry_delay("busy", 2, policy) == 600
    assert retry_delay("busy", 3, policy) is None
    assert retry_delay("no_answer", 1, policy) == 600
    assert retry_delay("no_answer", 2, policy) is None
    for reason in ("rejected", "trunk_error", "cancelled", "unconfirmed"):
        assert retry_delay(reason, 1, policy) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "reason"),
    [("busy_here", "busy"), ("no_answer", "no_answer"), ("request_timeout", "no_answer"),
     ("declined", "rejected"), ("forbidden", "rejected"), ("tls_handshake_failed", "trunk_error"),
     ("", "trunk_error")],
)  # fmt: skip
def test_openai_failure_codes_map_to_our_reasons(code: str, reason: str) -> None:
    assert failure_reason(code) == reason


@pytest.mark.parametrize(
    "url",
    ["sip:trunk.example.com", "sips:127.0.0.1", "sips:10.0.0.5:5061", "sips:localhost",
     "sips:pbx.local", "sips:[::1]", "sips:user@trunk.example.com", "sips:trunk",
     "sips:trunk.example.com;foo=bar", "sips:169.254.0.1"],
)  # fmt: skip
def test_trunk_urls_openai_refuses(url: str) -> None:
    assert provider_url_problem(url) is not None


@pytest.mark.parametrize(
    "url", ["sips:trunk.example.com", "sips:trunk.example.com:5061;transport=tcp", "sips:8.8.8.8"]
)
def test_trunk_urls_openai_takes(url: str) -> None:
    assert provider_url_problem(url) is None


def test_the_dial_carries_the_context_and_the_trunk() -> None:
    (agent, _) = parse_agents(agents_yaml(), DEFAULT)
    session = outbound_session(agent, {"customer": "Ana"})
    assert "type" not in session  # a create's session has none, unlike accept
    assert session["instructions"].endswith('{"customer":"Ana"}')
    assert session["delegation"]["responses"]["model"] == "gpt-5-mini"
    transport = sip_transport(agent, "+61400000001", "pw")
    assert transport["trunk"]["auth"] == {"type": "digest", "username": "acme", "password": "pw"}
    assert transport["destination"] == "+61400000001"
    assert '"password"' not in agent.model_dump_json()  # only the variable's name


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (("sips:trunk.example.com", "sip:trunk.example.com"), "sips:"),
        (("sips:trunk.example.com", "sips:192.168.1.10"), "private"),
        (('caller_number: "+61290000001"', 'caller_number: "0290000001"'), "E.164"),
        (("password_env: TRUNK_PASSWORD", "password: hunter2"), "password"),
        (("max_concurrent: 10", "max_concurrent: 0"), "max_concurrent"),
    ],
)
def test_a_bad_outbound_block_fails_at_load_with_the_line(
    edit: tuple[str, str], reason: str
) -> None:
    text = agents_yaml().replace(*edit)
    with pytest.raises(AgentsFileError) as error:
        parse_agents(text, DEFAULT, source="agents.yaml")
    assert "agents.yaml:" in str(error.value)
    assert reason in str(error.value)


def test_outbound_is_refused_for_a_realtime_agent() -> None:
    text = agents_yaml().replace(
        '    api: live\n    numbers: ["+61468002103"]', '    numbers: ["+61468002103"]', 1
    )
    text = text.replace("    delegation:", "    # delegation:", 1)
    with pytest.raises(AgentsFileError) as error:
        parse_agents(text, DEFAULT, source="agents.yaml")
    assert "only GPT-Live places calls" in str(error.value)


def test_the_trunk_password_comes_from_a_variable_or_a_file(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (agent, _) = parse_agents(agents_yaml(), DEFAULT)
    assert agent.outbound is not None
    monkeypatch.setenv("TRUNK_PASSWORD", "from-env")
    assert agent.outbound.trunk.password() == "from-env"
    secret = tmp_path / "trunk-password"
    secret.write_text("from-file\n")
    text = agents_yaml().replace("password_env: TRUNK_PASSWORD", f"password_file: {secret}")
    (agent, _) = parse_agents(text, DEFAULT)
    assert agent.outbound is not None
    assert agent.outbound.trunk.password() == "from-file"
    assert "from-file" not in agent.model_dump_json()
    both = agents_yaml().replace(
        "password_env: TRUNK_PASSWORD", f"password_env: X\n        password_file: {secret}"
    )
    with pytest.raises(AgentsFileError, match="one of password_env or password_file"):
        parse_agents(both, DEFAULT)
