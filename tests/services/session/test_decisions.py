"""The session worker's pure decisions: guards, history, slots, report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.session.guards import CallGuards, GuardAction
from services.session.history import CallHistory, OpenTool
from services.session.report import as_read, build_report
from services.session.slots import SlotReport, free_elsewhere, handoff_budget
from shared.events import CallEvent, EventType

# -- guards -------------------------------------------------------------------------------


def test_max_duration_says_goodbye_then_hangs_up_if_the_goodbye_never_ends() -> None:
    guards = CallGuards(started_at=1000.0, max_duration_s=60, idle_timeout_s=None, goodbye_s=5)
    assert guards.due(1059.0) is None
    assert guards.next_check() == 1060.0
    assert guards.due(1060.0) == GuardAction.SAY_GOODBYE
    assert guards.due(1061.0) is None
    assert guards.next_check() == 1065.0
    assert guards.due(1065.0) == GuardAction.HANG_UP_MAX_DURATION


def test_idle_prompts_once_then_hangs_up_and_speech_resets_it() -> None:
    guards = CallGuards(started_at=0.0, max_duration_s=1000, idle_timeout_s=10, last_activity=0)
    assert guards.due(9.9) is None
    assert guards.due(10.0) == GuardAction.PROMPT_IDLE
    guards.agent_finished(12.0)  # the prompt played; silence counts from its end
    assert guards.due(21.0) is None
    guards.caller_active(21.0)  # the caller answered: a fresh prompt next time
    assert guards.due(31.0) == GuardAction.PROMPT_IDLE
    assert guards.due(41.0) == GuardAction.HANG_UP_IDLE


def test_a_taken_over_call_keeps_its_original_deadline() -> None:
    guards = CallGuards(started_at=0.0, max_duration_s=100, idle_timeout_s=30, last_activity=90)
    assert guards.next_check() == 100.0  # from the accept, not from this worker's attach


# -- history ------------------------------------------------------------------------------


def _event(seq: int, type: str, **data: object) -> CallEvent:
    ts = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seq)
    return CallEvent(type=type, call_id="rtc_1", seq=seq, ts=ts, data=data)


def test_history_counts_ownerships_and_remembers_the_greeting() -> None:
    assert CallHistory.from_events([]) == CallHistory()
    assert CallHistory().next_attempt == 1
    events = [
        _event(1, "call.accepted"),
        _event(2, "session.attached", worker="a", attempt=1, reconnects=0, greeted=True),
        _event(3, "session.attached", worker="a", attempt=1, reconnects=1, greeted=True),
        _event(4, "session.attached", worker="b", attempt=2, reconnects=0, greeted=True),
    ]
    history = CallHistory.from_events(events)
    assert history.next_attempt == 3  # not the JetStream delivery count
    assert history.greeted
    assert history.ended_reason is None


def test_history_sees_a_call_ended_by_a_dead_owner() -> None:
    events = [
        _event(1, "session.attached", attempt=1),
        _event(2, "call.ended", reason="caller_hangup"),
    ]
    history = CallHistory.from_events(events)
    assert history.ended_reason == "caller_hangup"


def test_history_lists_the_tool_calls_nobody_answered() -> None:
    events = [
        _event(1, "tool.called", name="check", tool_call_id="c1", arguments={"day": "mon"}),
        _event(2, "tool.completed", name="check", tool_call_id="c1", output={"free": []}),
        _event(3, "tool.called", name="slow", tool_call_id="c2", arguments={"q": "x"}),
        _event(4, "tool.called", name="slow", tool_call_id="c2", arguments={"q": "x"}),
        _event(5, "tool.called", name="odd", tool_call_id="c3", arguments="not json"),
    ]
    history = CallHistory.from_events(events)
    assert history.open_tools == (
        OpenTool("slow", "c2", '{"q": "x"}'),
        OpenTool("odd", "c3", "not json"),
    )


# -- slots --------------------------------------------------------------------------------


def test_only_fresh_reports_of_other_live_workers_count() -> None:
    reports = [
        SlotReport("me", 10, 10, 0, False, 100.0),
        SlotReport("b", 5, 10, 5, False, 99.0),
        SlotReport("c", 7, 10, 3, True, 100.0),  # draining
        SlotReport("d", 9, 10, 1, False, 80.0),  # stale
    ]
    assert free_elsewhere(reports, "me", now=100.0, max_age_s=6) == 5
    assert handoff_budget(free_elsewhere=5, in_flight=2, waiting=10) == 3
    assert handoff_budget(free_elsewhere=5, in_flight=6, waiting=10) == 0
    assert handoff_budget(free_elsewhere=50, in_flight=0, waiting=4) == 4


def test_slot_reports_round_trip_and_garbage_is_ignored() -> None:
    report = SlotReport("w", 3, 5, 2, False, 12.5)
    assert SlotReport.parse("w", report.to_json()) == report
    assert SlotReport.parse("w", b"not json") is None
    assert SlotReport.parse("w", None) is None


# -- report -------------------------------------------------------------------------------


def test_the_report_spans_every_attempt() -> None:
    events = [
        _event(1, "call.accepted"),
        _event(2, "session.attached", attempt=1),
        _event(3, "transcript.agent", text="Hello"),
        _event(4, "transcript.caller", text="Hi"),
        _event(5, "session.attached", attempt=2),
        _event(6, "transcript.caller", text="Bye"),
        _event(7, "call.ended", reason="caller_hangup"),
    ]
    report = build_report(events, "caller_hangup").data()
    assert report["attempts"] == 2
    assert report["turns"] == 2
    assert [line["text"] for line in report["transcript"]] == ["Hello", "Hi", "Bye"]
    assert report["duration_s"] == 6.0
    assert report["end_reason"] == "caller_hangup"


def test_a_report_survives_events_of_the_wrong_shape() -> None:
    """Events are read back from a stream any writer can reach: a report that cannot be
    built would leave the call unended."""
    events = [
        _event(1, "call.accepted"),
        _event(2, "session.attached", attempt=""),
        _event(3, "tool.completed", name=0, tool_call_id=["x"], duration_ms="slow"),
        _event(4, "call.ended", reason="caller_hangup"),
    ]
    report = build_report(events, "caller_hangup").data()
    assert report["attempts"] == 1
    assert report["tools"] == [
        {"name": None, "tool_call_id": None, "ok": True, "duration_ms": None}
    ]


# What a worker keeps of the events it writes is enough for the report: whatever the call
# held (large tool results and arguments, failed transcriptions, DTMF, re-attaches). Small
# draws: the equivalence shows in a few events, and big ones made the generation too slow
# for hypothesis' health check on a loaded machine.
_ANY_VALUE = st.one_of(
    st.text(max_size=8), st.integers(-5, 5000), st.booleans(),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=1),
)  # fmt: skip
_ANY_DATA = st.dictionaries(
    st.sampled_from(["text", "name", "tool_call_id", "duration_ms", "error", "attempt",
                     "api", "failed", "result", "digit"]),
    _ANY_VALUE,
    max_size=3,
)  # fmt: skip


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(
    middle=st.lists(st.tuples(st.sampled_from([t.value for t in EventType]), _ANY_DATA),
                    max_size=10),
    api=st.sampled_from(["realtime", "live"]),
)  # fmt: skip
def test_the_report_of_what_a_worker_keeps_is_the_report_of_the_events(
    middle: list[tuple[str, dict[str, object]]], api: str
) -> None:
    kinds = [("call.accepted", {"agent": "salon", "api": api}), *middle]
    kinds.append(("call.ended", {"reason": "caller_hangup"}))
    events = [_event(seq, kind, **data) for seq, (kind, data) in enumerate(kinds, start=1)]
    kept = [k for k in (as_read(e) for e in events) if k is not None]

    assert build_report(kept, "caller_hangup") == build_report(events, "caller_hangup")
