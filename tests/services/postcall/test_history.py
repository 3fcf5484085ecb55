"""History on the ingress: a call's events and report, and finished calls by filter, paged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from nats.aio.client import Client

from services.ingress.main import Ingress
from services.postcall.main import PostCall
from shared.events import CallEventPublisher
from switchboard.calls import main as calls_main
from switchboard.cli import build_parser
from tests.services.postcall.conftest import SALON, TOKEN, fanned_out, finished_call


async def _all_pages(api: httpx.AsyncClient, **params: str) -> tuple[list[str], int]:
    """Every call id the query returns, following `next`; and the number of pages."""
    ids: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        answer = await api.get("/calls", params=query)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages += 1
        ids += [call["call_id"] for call in body["calls"]]
        cursor = body["next"]
        if cursor is None:
            return ids, pages


async def test_history_returns_exactly_the_matching_calls_across_pages(
    postcall: PostCall, api: httpx.AsyncClient, nc: Client
) -> None:
    events = CallEventPublisher(nc.jetstream())
    before = datetime.now(UTC) - timedelta(seconds=1)
    other = "+61290000000"
    salon_hangups = [await finished_call(events) for _ in range(7)]
    salon_idle = [await finished_call(events, end_reason="idle") for _ in range(3)]
    reminders = [
        await finished_call(events, agent="reminders", to=other, caller="+61400000001")
        for _ in range(4)
    ]
    await fanned_out(nc)
    after = datetime.now(UTC) + timedelta(seconds=1)
    everyone = salon_hangups + salon_idle + reminders
    window = {"since": before.isoformat(), "until": after.isoformat()}

    ids, pages = await _all_pages(api, **window, limit="3")
    assert ids == everyone and pages == 5  # in the order calls finished, no repeats
    ids, _ = await _all_pages(api, **window, agent="salon", limit="4")
    assert ids == salon_hangups + salon_idle
    ids, _ = await _all_pages(api, **window, agent="salon", end_reason="idle", limit="2")
    assert ids == salon_idle
    ids, _ = await _all_pages(api, number=other, limit="2")
    assert ids == reminders
    ids, _ = await _all_pages(api, number="+61400000001")  # the caller's number matches too
    assert ids == reminders
    ids, _ = await _all_pages(api, until=before.isoformat())
    assert ids == []
    ids, _ = await _all_pages(api, since=str(after.timestamp()))  # Unix seconds work too
    assert ids == []

    page = (await api.get("/calls", params={**window, "agent": "reminders"})).json()
    call = page["calls"][0]
    assert call["agent"] == "reminders" and call["to"] == other
    assert call["from"] == "+61400000001" and call["end_reason"] == "caller_hangup"
    assert page["next"] is None


async def test_a_calls_events_and_report(
    postcall: PostCall, api: httpx.AsyncClient, nc: Client
) -> None:
    call_id = await finished_call(CallEventPublisher(nc.jetstream()))
    events = (await api.get(f"/calls/{call_id}/events")).json()["events"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert events[0]["type"] == "call.received" and events[-1]["type"] == "call.report"
    report = (await api.get(f"/calls/{call_id}/report")).json()
    assert report["type"] == "call.report" and report["data"]["end_reason"] == "caller_hangup"
    assert (await api.get("/calls/rtc_unknown/events")).status_code == 404
    assert (await api.get("/calls/rtc_unknown/report")).status_code == 404


async def test_calls_without_history_parameters_still_lists_live_calls(
    api: httpx.AsyncClient,
) -> None:
    answer = await api.get("/calls")
    assert answer.status_code == 200
    assert answer.json() == {"calls": []}  # live calls (from the leases): none
    assert "next" in (await api.get("/calls", params={"since": ""})).json()
    bad = await api.get("/calls", params={"since": "yesterday-ish"})
    assert bad.status_code == 422


async def test_a_call_without_a_session_is_in_the_history(
    postcall: PostCall, api: httpx.AsyncClient, nc: Client
) -> None:
    events = CallEventPublisher(nc.jetstream())
    call_id = "rtc_" + "9" * 32
    sip = [{"name": "To", "value": f"sip:{SALON}@x"}]
    await events.publish(call_id, "call.received", {"sip_headers": sip})
    await events.publish(call_id, "call.rejected", {"reason": "no_capacity", "agent": "salon"})
    await fanned_out(nc)
    page = (await api.get("/calls", params={"end_reason": "rejected"})).json()
    assert [c["call_id"] for c in page["calls"]] == [call_id]
    assert page["calls"][0]["agent"] == "salon" and page["calls"][0]["to"] == SALON


async def test_the_calls_command_shows_the_history_and_a_call(
    postcall: PostCall,
    ingress: Ingress,
    nc: Client,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = CallEventPublisher(nc.jetstream())
    mine = [await finished_call(events, agent="reminders") for _ in range(3)]
    await finished_call(events)
    await fanned_out(nc)
    monkeypatch.setenv("SWITCHBOARD_CONTROL_TOKEN", TOKEN)
    url = f"http://127.0.0.1:{ingress.http.port}"

    def run(*argv: str) -> int:
        args = build_parser().parse_args(["calls", "--url", url, *argv])
        return calls_main(args)

    assert await asyncio.to_thread(run, "--agent", "reminders") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in lines] == mine  # date, time, call id, …
    assert await asyncio.to_thread(run, mine[0]) == 0
    shown = capsys.readouterr().out
    assert "received" in shown and "report" in shown
    monkeypatch.setenv("SWITCHBOARD_CONTROL_TOKEN", "wrong")
    assert await asyncio.to_thread(run) == 1
