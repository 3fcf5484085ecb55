"""What `switchboard dev` prints for a call's events."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.events import CallEvent
from switchboard.console import format_event, is_success, summary


def event(type: str, **data: object) -> CallEvent:
    return CallEvent(
        type=type, call_id="rtc_479a275623b54bdb", seq=1, ts=datetime.now(UTC), data=data
    )


def test_received_shows_who_called_whom() -> None:
    line = format_event(
        event(
            "call.received",
            sip_headers=[
                {"name": "From", "value": "sip:+14155550123@sip.example.com"},
                {"name": "To", "value": "<sip:+18005551212@sip.example.com>;tag=1"},
            ],
        )
    )
    assert line is not None
    assert "479a2756" in line and "from +14155550123 to +18005551212" in line


def test_transcripts_show_the_words() -> None:
    line = format_event(event("transcript.caller", text="Hi there", item_id="item_1"))
    assert line is not None and "caller" in line and "Hi there" in line


def test_unknown_events_print_nothing() -> None:
    assert format_event(event("something.new")) is None


def test_a_demo_call_succeeds_when_it_ends_normally() -> None:
    assert is_success(event("call.report", end_reason="caller_hangup"))
    assert not is_success(event("call.report", end_reason="lost"))
    assert not is_success(event("call.rejected", reason="no_capacity"))


HOSTILE_TEXT = "\x1b[2J\x1b]0;owned\x07done\r\nfake line\u202eevil\x00\u2028"


def test_tool_output_and_transcripts_reach_the_terminal_escaped() -> None:
    """Issue 22, item 9: ANSI escapes, CR/LF, U+202E and NUL from a tool or a call."""
    lines = [
        format_event(event("tool.completed", name="t", output=HOSTILE_TEXT, duration_ms=1)),
        format_event(event("tool.completed", name="t", error=HOSTILE_TEXT, duration_ms=1)),
        format_event(event("tool.called", name=HOSTILE_TEXT, arguments={"q": HOSTILE_TEXT})),
        format_event(event("transcript.agent", text=HOSTILE_TEXT)),
        format_event(event("call.ended", reason=HOSTILE_TEXT)),
    ]
    for line in lines:
        assert line is not None
        assert line.isprintable(), repr(line)
        assert "\\x1b[2J" in line or "\\u001b[2J" in line  # shown, not obeyed


def test_the_summary_counts_how_calls_ended() -> None:
    assert summary({"a": "ok", "b": "ok"}, 2) == "2 of 2 calls completed"
    assert summary({"a": "ok", "b": "no_capacity"}, 3) == (
        "1 of 3 calls completed (1 no_capacity, 1 unfinished)"
    )
