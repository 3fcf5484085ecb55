"""Every Prometheus metric Switchboard exports, in one place so the names stay one scheme.

Names are `switchboard_<what>_<unit>`; labels are low-cardinality (never a call id).
The Grafana dashboard and alert rules in `deploy/` are written against these names.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.events import EndReason

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
_CALL = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600)

# ingress
WEBHOOKS = Counter(
    "switchboard_webhooks_total",
    "Webhook requests by outcome (published, duplicate, ignored, unauthorized, bad_request, "
    "too_large, unavailable)",
    ["outcome"],
)
WEBHOOK_AUTH_FAILURES = Counter(
    "switchboard_webhook_auth_failures_total",
    "Webhooks refused with 401, by reason (missing_headers, bad_signature, bad_timestamp, "
    "stale, future)",
    ["reason"],
)
WEBHOOK_SECONDS = Histogram(
    "switchboard_webhook_duration_seconds",
    "Time from webhook request to response, by status code",
    ["status"],
    buckets=_FAST,
)
CONTROL_REQUESTS = Counter(
    "switchboard_control_requests_total",
    "Control API requests by action and status",
    ["action", "status"],
)
CONSOLE_SIGNINS = Counter(
    "switchboard_console_signins_total",
    "Console sign-ins by outcome (viewer, controller, refused)",
    ["outcome"],
)
CONSOLE_VIEWERS = Gauge("switchboard_console_viewers", "Consoles connected to the live feed")

# acceptor
ACCEPT_DECISIONS = Counter(
    "switchboard_accept_decisions_total",
    "Acceptor decisions by outcome (accepted, rejected, duplicate, missed, failed, expired, "
    "superseded: the other API's webhook of a SIP call answered through one API)",
    ["outcome"],
)
ACCEPT_RETRIES = Counter(
    "switchboard_accept_retries_total",
    "Webhooks whose handling failed (JetStream refusing a write, say) and was tried again, "
    "by where: here (in the same acceptor) or elsewhere (left to another acceptor's claim)",
    ["where"],
)
ACCEPT_REJECTS = Counter(
    "switchboard_accept_rejects_total",
    "Calls the acceptor rejected, by reason (e.g. no_capacity, agent_limit, draining)",
    ["reason"],
)
ADMISSION_REFUSED_WHILE_FREE = Counter(
    "switchboard_admission_refused_while_free_total",
    "Calls refused for capacity while the workers' own reports showed a free slot "
    "(should stay at zero: the admission books disagree with the workers)",
)
ADMISSION_CAPACITY = Gauge(
    "switchboard_admission_capacity",
    "Call slots of the live, non-draining session workers, as this acceptor last decided on",
)
ADMISSION_BOOKED = Gauge(
    "switchboard_admission_booked_calls",
    "Calls admitted and not yet ended (waiting for a worker or live), each counted once",
)
WEBHOOK_TO_ACCEPT_SECONDS = Histogram(
    "switchboard_webhook_to_accept_seconds",
    "Time from webhook arrival at the ingress to OpenAI's answer to our accept",
    buckets=_FAST,
)
OPENAI_REQUESTS = Counter(
    "switchboard_openai_requests_total",
    "OpenAI call-control requests by endpoint and HTTP status ('timeout', 'error' when none)",
    ["endpoint", "status"],
)
OPENAI_REQUEST_SECONDS = Histogram(
    "switchboard_openai_request_duration_seconds",
    "OpenAI call-control request latency by endpoint",
    ["endpoint"],
    buckets=_FAST,
)

# session workers
SESSION_ACTIVE_CALLS = Gauge("switchboard_session_active_calls", "Calls this worker holds now")
SESSION_FREE_SLOTS = Gauge("switchboard_session_free_slots", "Free call slots on this worker")
SESSION_CAPACITY = Gauge("switchboard_session_capacity", "Call slots this worker has")
SESSION_ATTACH_SECONDS = Histogram(
    "switchboard_session_attach_seconds",
    "Time to open the sideband, by kind (first, reattach)",
    ["kind"],
    buckets=_SLOW,
)
SESSION_ATTACHES = Counter(
    "switchboard_session_attaches_total",
    "Sideband attaches by kind (first, reattach) and result (ok, gone, error)",
    ["kind", "result"],
)
CALLS_ENDED = Counter("switchboard_calls_ended_total", "Calls ended, by reason", ["reason"])
CALL_DURATION_SECONDS = Histogram(
    "switchboard_call_duration_seconds", "Call duration from accept to end", buckets=_CALL
)
SIDEBAND_EVENTS = Counter(
    "switchboard_sideband_events_total", "Sideband events received, by type", ["type"]
)
TRANSCRIPTIONS_FAILED = Counter(
    "switchboard_transcriptions_failed_total",
    "Caller turns OpenAI could not transcribe (published as transcript.caller failed)",
)
RESPONSES_NOT_COMPLETED = Counter(
    "switchboard_responses_not_completed_total",
    "Model responses that ended otherwise than completed, by status (failed, incomplete, "
    "cancelled)",
    ["status"],
)
SESSION_MISMATCHES = Counter(
    "switchboard_session_mismatches_total",
    "Session settings OpenAI reports differently from what the agent asked for, by field",
    ["field"],
)
EVENT_PUBLISH_SECONDS = Histogram(
    "switchboard_event_publish_seconds",
    "Time from a sideband event's arrival to its call event being durable in JetStream",
    buckets=_FAST,
)
TOOL_RUNS = Counter(
    "switchboard_tool_runs_total",
    "Tool runs by tool and outcome (ok, error, timeout, too_large, invalid, interrupted)",
    ["tool", "outcome"],
)
TOOL_SECONDS = Histogram(
    "switchboard_tool_duration_seconds", "Tool run duration by tool", ["tool"], buckets=_SLOW
)
TRANSFERS = Counter(
    "switchboard_transfers_total", "Transfers by outcome (transferred, failed)", ["outcome"]
)

PAYLOADS_TRIMMED = Counter(
    "switchboard_payloads_trimmed_total",
    "Events cut down to fit NATS's message size (long strings cut, long lists shortened), "
    "by event type",
    ["type"],
)

NATS_SLOW_CONSUMERS = Counter(
    "switchboard_nats_slow_consumers_total",
    "Times a NATS subscription of this process fell behind and dropped messages "
    "(the connection stays up; see shared/nats.py)",
)
# NATS backlog (shared/backlog.py), labelled with the JetStream stream and durable consumer
NATS_CONSUMER_PENDING = Gauge(
    "switchboard_nats_consumer_pending_messages",
    "Messages in the stream not yet delivered to the consumer (waiting calls)",
    ["stream", "consumer"],
)
NATS_CONSUMER_ACK_PENDING = Gauge(
    "switchboard_nats_consumer_ack_pending_messages",
    "Messages delivered to the consumer and not yet acknowledged (calls being handled)",
    ["stream", "consumer"],
)

# post-call service: webhooks to subscribers (label `endpoint` is the endpoint id) and index
WEBHOOK_DELIVERIES = Counter(
    "switchboard_webhook_deliveries_total",
    "Post-call webhook attempts by endpoint and outcome (ok, http_4xx, http_5xx, redirect, "
    "gone, timeout, unsafe, error)",
    ["endpoint", "outcome"],
)
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "switchboard_webhook_delivery_seconds",
    "Time of one post-call webhook attempt (request to answer)",
    buckets=_SLOW,
)
WEBHOOK_LAG_SECONDS = Histogram(
    "switchboard_webhook_lag_seconds",
    "Time from an event being stored to its webhook being acknowledged by the endpoint",
    buckets=(*_FAST, 5.0, 10.0, 60.0, 300.0, 3600.0),
)
WEBHOOK_BACKLOG_AGE = Gauge(
    "switchboard_webhook_backlog_age_seconds",
    "Age of the oldest event waiting for (or being retried to) each endpoint; 0 when none",
    ["endpoint"],
)
WEBHOOK_BACKLOG = Gauge(
    "switchboard_webhook_backlog_messages",
    "Events waiting for (or being retried to) each endpoint",
    ["endpoint"],
)
WEBHOOK_DEAD_LETTERS = Counter(
    "switchboard_webhook_dead_letters_total",
    "Post-call webhooks given up, by endpoint and reason (max_age, gone, endpoint_gone)",
    ["endpoint", "reason"],
)
CALLS_INDEXED = Counter(
    "switchboard_calls_indexed_total", "Finished calls written to the call history index"
)

# every service
NATS_DISCONNECTS = Counter(
    "switchboard_nats_disconnects_total",
    "Times this process lost its NATS connection (it reconnects by itself; a server that "
    "closes the connection counts too)",
)
DRAINING = Gauge("switchboard_draining", "1 while this process drains after SIGTERM")
READY = Gauge("switchboard_ready", "1 while this process is ready to take work")


# Known label values start at zero, so a first increment is a visible `increase()` (an alert
# on the first lost call must not miss it) and dashboards show 0 rather than "no data".
for _outcome in (
    "published", "duplicate", "ignored", "unauthorized", "bad_request", "too_large",
    "unavailable",
):  # fmt: skip
    WEBHOOKS.labels(_outcome)
for _outcome in ("viewer", "controller", "refused"):
    CONSOLE_SIGNINS.labels(_outcome)
for _reason in ("missing_headers", "bad_signature", "bad_timestamp", "stale", "future"):
    WEBHOOK_AUTH_FAILURES.labels(_reason)
for _outcome in ("accepted", "rejected", "duplicate", "missed", "failed", "expired", "superseded"):
    ACCEPT_DECISIONS.labels(_outcome)
for _end in EndReason:
    CALLS_ENDED.labels(_end.value)
for _outcome in ("transferred", "failed"):
    TRANSFERS.labels(_outcome)
for _endpoint in ("accept", "reject", "hangup", "refer"):
    OPENAI_REQUEST_SECONDS.labels(_endpoint)
for _kind in ("first", "reattach"):
    SESSION_ATTACH_SECONDS.labels(_kind)
for _status in ("failed", "incomplete", "cancelled"):
    RESPONSES_NOT_COMPLETED.labels(_status)
