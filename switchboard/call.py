"""`switchboard call +61… --agent reminders [--context JSON]`: `POST /calls` on the ingress.

Prints the answer (`{"call_id", "status"}`) and exits 0 on 202; prints the reason and exits
1 otherwise. The Idempotency-Key is new per run unless `--key` names one, so running the
same command again with the same `--key` never dials twice.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid

import httpx


def main(args: argparse.Namespace) -> int:
    try:
        context = json.loads(args.context) if args.context else {}
    except ValueError as error:
        print(f"--context is not JSON: {error}", file=sys.stderr)
        return 2
    token = os.environ.get("SWITCHBOARD_CONTROL_TOKEN", "")
    key = args.key or str(uuid.uuid4())
    url = os.environ.get("SWITCHBOARD_URL") or args.url
    try:
        response = httpx.post(
            url.rstrip("/") + "/calls",
            json={"to": args.to, "agent": args.agent, "context": context},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
            timeout=10.0,
        )
    except httpx.HTTPError as error:
        print(f"cannot reach {url}: {type(error).__name__}", file=sys.stderr)
        return 1
    print(response.text)
    return 0 if response.status_code == 202 else 1
