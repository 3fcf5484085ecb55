"""The call index: summaries from a call's events, and the history filter. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.call_index import CallSummary, HistoryQuery, summarize
from shared.events import CallEvent

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _event(seq: int, type: str, **data: object) -> CallEvent:
    return CallEvent(type=type, call_id="rtc_1", seq=seq, ts=T0 + timedelta(seconds=seq), data=data)


def test_a_finished_call_is_summarised() -> None:
    sip = [{"name": "From", "value": "<sip:+1 415 555 0123@x>;tag=1"},
           {"name": "To", "value": "sip:0061468002102@x"}]  # fmt: skip
    events = [
        _event(1, "call.received", sip_headers=sip),
        _event(2, "call.accepted", agent="salon"),
        _event(3, "call.ended", reason="idle"),
        _event(4, "call.report", end_reason="idle", duration_s=2.0, turns=3),
    ]
    summary = summarize(events)
    assert summary is not None
    assert (summary.agent, summary.to, summary.from_) == ("salon", "+61468002102", "+14155550123")
    assert (summary.end_reason, summary.turns, summary.duration_s) == ("idle", 3, 2.0)
    assert summary.started_at == T0 + timedelta(seconds=1)
    assert summarize(events[:3]) is None  # not finished: no report yet


def test_a_rejected_call_is_summarised() -> None:
    events = [_event(1, "call.received"), _event(2, "call.rejected", reason="no_capacity",
                                                 agent="salon")]  # fmt: skip
    summary = summarize(events)
    assert summary is not None and summary.end_reason == "rejected" and summary.agent == "salon"


calls = st.builds(
    CallSummary,
    call_id=st.just("rtc_1"),
    started_at=st.datetimes(timezones=st.just(UTC)),
    ended_at=st.just(T0),
    agent=st.sampled_from([None, "salon", "reminders"]),
    to=st.sampled_from([None, "+61468002102"]),
    from_=st.sampled_from([None, "+14155550123"]),
    end_reason=st.sampled_from(["idle", "caller_hangup", "rejected"]),
)


@given(calls, st.datetimes(timezones=st.just(UTC)), st.sampled_from([None, "salon"]))
def test_a_query_is_the_conjunction_of_its_filters(
    call: CallSummary, since: datetime, agent: str | None
) -> None:
    query = HistoryQuery(since=since, agent=agent)
    assert query.matches(call) == (call.started_at >= since and (agent in (None, call.agent)))
    assert HistoryQuery().matches(call)


def test_number_matches_either_side_in_any_spelling() -> None:
    call = CallSummary(call_id="rtc_1", started_at=T0, ended_at=T0, to="+61468002102",
                       from_="+14155550123", end_reason="idle")  # fmt: skip
    assert HistoryQuery(number="+61 468 002 102").matches(call)
    assert HistoryQuery(number="+14155550123").matches(call)
    assert not HistoryQuery(number="+61290000000").matches(call)
