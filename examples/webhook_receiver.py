"""An example post-call webhook receiver: verifies each delivery and prints the report.

    WEBHOOK_SECRET=whsec_… python -m examples.webhook_receiver --port 8099

Subscribe it with `POST /webhooks {"url": "https://…/webhooks"}` (the answer holds the
secret) or in `SWITCHBOARD_WEBHOOKS_FILE`; `make run` starts one and subscribes it. It
checks the Standard Webhooks signature and timestamp (`standardwebhooks`), answers 401 to
anything else, and remembers `webhook-id`s so a redelivery is acknowledged but not
processed twice, which is what a real receiver should do too.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY = 1024 * 1024


def describe(event: dict) -> str:
    data = event.get("data", {})
    if event.get("type") != "call.report":
        return f"{event.get('type')} #{event.get('seq')}"
    return (f"report {data.get('end_reason')}, {data.get('duration_s', 0):.1f} s, "
            f"{data.get('turns', 0)} turns, {len(data.get('tools', []))} tools")  # fmt: skip


def handler_for(webhook: Webhook) -> type[BaseHTTPRequestHandler]:
    seen: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self.send_response(413)
                self.end_headers()
                return
            body = self.rfile.read(length)
            try:
                event = webhook.verify(body, dict(self.headers.items()))
            except WebhookVerificationError:
                self.send_response(401)
                self.end_headers()
                return
            webhook_id = self.headers["webhook-id"]
            if webhook_id not in seen:
                seen.add(webhook_id)
                call_id = str(event.get("call_id", "")).removeprefix("rtc_")
                call_id = call_id.removeprefix("live_")[:8]  # as `switchboard dev` shows it
                now = datetime.now().strftime("%H:%M:%S")
                print(f"{now}  {call_id}  webhook      verified {describe(event)}", flush=True)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per verified event is enough

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    secret = os.environ.get("WEBHOOK_SECRET", "")
    if not secret:
        print("set WEBHOOK_SECRET (the whsec_… secret of the subscription)", file=sys.stderr)
        return 2
    server = ThreadingHTTPServer((args.host, args.port), handler_for(Webhook(secret)))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
