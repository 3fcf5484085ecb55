"""`switchboard calls`: the call history (and the live calls) in a terminal.

It asks the ingress' control API (`--url`, env `SWITCHBOARD_URL`, default
`http://127.0.0.1:8080`, with `SWITCHBOARD_CONTROL_TOKEN`), so it shows exactly what
`GET /calls?…` and `GET /calls/{call_id}/events` answer:

    switchboard calls --since 2026-12-01T09:00:00Z --agent salon   # finished calls, all pages
    switchboard calls --live                                       # calls in progress
    switchboard calls rtc_479a2756…                                # one call, event by event
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

from shared.events import CallEvent
from shared.settings import Settings
from switchboard.console import format_event

DEFAULT_URL = "http://127.0.0.1:8080"


def add_calls_parser(
    commands: Any, settings: Settings, formatter_class: type[argparse.HelpFormatter]
) -> None:
    about = "call history and live calls, from the ingress"
    calls = commands.add_parser(
        "calls", help=about, description=about, formatter_class=formatter_class
    )
    calls.add_argument("call_id", nargs="?", help="show this call's events")
    calls.add_argument(
        "--url", default=settings.switchboard_url, help="the ingress (env SWITCHBOARD_URL)"
    )
    calls.add_argument("--live", action="store_true", help="the calls in progress")
    calls.add_argument("--since", help="calls started at or after (RFC 3339 or Unix seconds)")
    calls.add_argument("--until", help="calls started before")
    calls.add_argument("--agent", help="calls of this agent (its name in the agents file)")
    calls.add_argument("--number", help="the dialled or the calling number")
    calls.add_argument("--end-reason", help="calls that ended so (e.g. caller_hangup)")
    calls.add_argument("--limit", type=int, default=0, help="at most this many calls (0: all)")
    calls.add_argument("--json", action="store_true", help="JSON lines instead of a table")


def _row(call: dict[str, Any]) -> str:
    started = str(call.get("started_at", ""))[:19].replace("T", " ")
    return (f"{started}  {call['call_id']:<40}  {call.get('agent') or '-':<12}  "
            f"{call.get('to') or '-':<16}  {call.get('from') or '-':<16}  "
            f"{call.get('end_reason', '-'):<16}  {call.get('duration_s', 0):>7.1f} s")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    token = os.environ.get("SWITCHBOARD_CONTROL_TOKEN", "")
    if not token:
        print("switchboard calls: set SWITCHBOARD_CONTROL_TOKEN", file=sys.stderr)
        return 2
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=args.url, headers=headers, timeout=30.0) as client:
        try:
            if args.call_id:
                return _events(client, args)
            if args.live:
                return _live(client, args)
            return _history(client, args)
        except httpx.HTTPError as error:
            print(f"switchboard calls: {args.url}: {type(error).__name__}", file=sys.stderr)
            return 1


def _check(answer: httpx.Response) -> dict[str, Any] | None:
    if answer.status_code == 200:
        body: dict[str, Any] = answer.json()
        return body
    print(f"switchboard calls: {answer.status_code} {answer.text[:300]}", file=sys.stderr)
    return None


def _events(client: httpx.Client, args: argparse.Namespace) -> int:
    body = _check(client.get(f"/calls/{args.call_id}/events"))
    if body is None:
        return 1
    for raw in body["events"]:
        event = CallEvent.model_validate(raw)
        line = format_event(event) if not args.json else json.dumps(raw)
        print(line or f"{event.seq:>4}  {event.type}")
    return 0


def _live(client: httpx.Client, args: argparse.Namespace) -> int:
    body = _check(client.get("/calls"))
    if body is None:
        return 1
    for call in body["calls"]:
        row = f"{call['call_id']:<40}  {call.get('worker', '-'):<20}  attempt {call.get('attempt')}"
        print(json.dumps(call) if args.json else row)
    return 0


def _history(client: httpx.Client, args: argparse.Namespace) -> int:
    params = {"since": args.since or "", "until": args.until, "agent": args.agent,
              "number": args.number, "end_reason": args.end_reason}  # fmt: skip
    query = {k: v for k, v in params.items() if v is not None}
    shown = 0
    while True:
        body = _check(client.get("/calls", params=query))
        if body is None:
            return 1
        for call in body["calls"]:
            print(json.dumps(call) if args.json else _row(call))
            shown += 1
            if args.limit and shown >= args.limit:
                return 0
        if body["next"] is None:
            return 0
        query["cursor"] = body["next"]
