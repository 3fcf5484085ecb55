"""What the console's tables show, folded from a call's events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.ingress.console.agents import transfer_targets
from services.ingress.console.board import Board, sip_user
from shared.events import CallEvent

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def event(seq: int, type: str, call_id: str = "rtc_a", **data: Any) -> CallEvent:
    return CallEvent(type=type, call_id=call_id, seq=seq, ts=T0 + timedelta(seconds=seq), data=data)


RECEIVED = event(
    1,
    "call.received",
    sip_headers=[
        {"name": "From", "value": '"Alex" <sip:+14155550123@sip.example.com>;tag=1'},
        {"name": "To", "value": "sip:+61468002102@sip.example.com"},
    ],
    api="realtime",
)


def test_a_live_call_shows_who_called_whom_its_agent_worker_and_latest_words() -> None:
    board = Board()
    for e in (
        RECEIVED,
        event(2, "call.accepted", agent="salon"),
        event(3, "session.attached", worker="worker-1", attempt=1),
        event(4, "transcript.agent", text="Thanks for calling Bella Salon, how can I help?"),
    ):
        assert board.apply(e) is not None
    call = board.live["rtc_a"].to_json()
    assert call["to"] == "+61468002102" and call["from"] == "+14155550123"
    assert (call["agent"], call["api"], call["worker"], call["attempt"]) == (
        "salon",
        "realtime",
        "worker-1",
        1,
    )
    assert call["state"] == "live" and call["live"]
    assert call["started"] == RECEIVED.ts.isoformat()
    assert call["last_type"] == "transcript.agent"
    assert call["snippet"] == "agent: Thanks for calling Bella Salon, how can I help?"


def test_a_repeated_or_older_event_changes_nothing() -> None:
    board = Board()
    board.apply(RECEIVED)
    board.apply(event(2, "call.accepted", agent="salon"))
    assert board.apply(event(2, "call.accepted", agent="other")) is None
    assert board.apply(RECEIVED) is None
    assert board.live["rtc_a"].agent == "salon"


def test_a_failover_shows_the_new_worker_and_attempt() -> None:
    board = Board()
    board.apply(event(3, "session.attached", worker="worker-1", attempt=1))
    board.apply(event(4, "session.attached", worker="worker-2", attempt=2))
    call = board.live["rtc_a"]
    assert (call.worker, call.attempt, call.state) == ("worker-2", 2, "live")


def test_an_ended_call_moves_to_recent_and_gets_its_report() -> None:
    board = Board()
    board.apply(RECEIVED)
    board.apply(event(5, "call.ended", reason="operator_hangup"))
    assert "rtc_a" not in board.live
    ended = board.recent["rtc_a"]
    assert (ended.state, ended.live, ended.end_reason) == ("ended", False, "operator_hangup")
    assert ended.ended == (T0 + timedelta(seconds=5)).isoformat()
    board.apply(
        event(
            6,
            "call.report",
            duration_s=3.7,
            turns=3,
            end_reason="operator_hangup",
            attempts=1,
            tools=[{"name": "check_availability"}],
            transcript=["…"],
        )
    )
    report = board.recent["rtc_a"].report
    assert report == {
        "duration_s": 3.7,
        "turns": 3,
        "end_reason": "operator_hangup",
        "attempts": 1,
        "api": None,
        "direction": None,
        "tools": 1,
    }
    assert board.recent["rtc_a"].state == "ended"  # the report does not revive it


def test_refused_calls_end_too_and_recent_keeps_only_the_latest() -> None:
    board = Board(recent=2)
    for n in range(3):
        board.apply(event(2, "call.rejected", call_id=f"rtc_{n}", reason="no_capacity"))
    assert list(board.recent) == ["rtc_1", "rtc_2"]
    assert board.recent["rtc_2"].state == "rejected"
    assert not board.live


def test_calls_silent_for_longer_than_any_call_lasts_are_forgotten() -> None:
    board = Board()
    board.apply(RECEIVED)
    board.apply(event(1, "call.received", call_id="rtc_b"))
    assert board.forget_stale(T0 + timedelta(seconds=30), max_age_s=60) == []
    assert sorted(board.forget_stale(T0 + timedelta(hours=3), max_age_s=60)) == ["rtc_a", "rtc_b"]
    assert not board.live


def test_sip_user_is_the_number() -> None:
    assert sip_user("sip:+14155550123@host") == "+14155550123"
    assert sip_user('"Alex" <sip:+1415@host>;tag=x') == "+1415"
    assert sip_user("tel:+61290000000") == "+61290000000"
    assert sip_user(None) == ""


def test_transfer_targets_are_each_agents_named_ones() -> None:
    document = {
        "agents": [
            {
                "name": "salon",
                "tools": [
                    {"name": "check_availability"},
                    {"builtin": "transfer_call", "targets": {"reception": "tel:+61290000000"}},
                ],
            },
            {"name": "support"},
            "junk",
            {"tools": []},
        ]
    }
    assert transfer_targets(document) == {
        "salon": {"reception": "tel:+61290000000"},
        "support": {},
    }
    assert transfer_targets(None) == {}
    assert transfer_targets({"agents": "nope"}) == {}
