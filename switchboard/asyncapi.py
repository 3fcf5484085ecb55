"""The AsyncAPI 3 document of every NATS subject Switchboard uses, generated from the code.

The payload schemas come from the pydantic models the services really send and parse
(`IncomingCall`, `SessionJob`, `CallEvent`, `ToolRequest`, …), and the subjects from the
constants the services use, so the document cannot drift from the code without the test
(`tests/observability/test_asyncapi.py`) noticing. A FastStream broker that never connects
is the vehicle: FastStream turns subscribers and publishers into AsyncAPI operations.

Regenerate `docs/asyncapi.yaml` with `switchboard asyncapi > docs/asyncapi.yaml`.
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import version

import yaml
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.specification import AsyncAPI

from services.acceptor.hook import RESOLVE_SUBJECT, ResolveReply, ResolveRequest
from services.postcall.delivery import DeadLetter
from shared.admission import ADMISSIONS_BUCKET
from shared.call_index import CallSummary
from shared.calls import IncomingCall, SessionJob
from shared.control import CONTROL_SUBJECT_PREFIX, ControlCommand, ControlReply
from shared.events import (
    CALL_EVENTS_STREAM,
    CALL_EVENTS_SUBJECT,
    CALL_JOURNAL_SUBJECT,
    END_REASON_MEANINGS,
    CallEvent,
    EndReason,
)
from shared.outbound import (
    DIALLER_CONSUMER,
    OUTBOUND_CALLS_BUCKET,
    OUTBOUND_KEYS_BUCKET,
    OUTBOUND_STREAM,
    OUTBOUND_SUBJECT,
)
from shared.outbound_store import TryMessage
from shared.postcall import (
    DEAD_STREAM,
    DEAD_SUBJECT,
    ENDPOINTS_BUCKET,
    INDEX_STREAM,
    INDEX_SUBJECT,
    OUTBOX_STREAM,
    OUTBOX_SUBJECT,
    POSTCALL_CONSUMER,
)
from shared.streams import (
    ACCEPTOR_CONSUMER,
    ACCEPTOR_LIVE_CONSUMER,
    CALL_CLAIMS_BUCKET,
    CALL_LEASES_BUCKET,
    INCOMING_CALL_SUBJECT,
    LIVE_INCOMING_CALL_SUBJECT,
    SESSION_CONSUMER,
    SESSION_JOB_SUBJECT,
    SESSIONS_STREAM,
    SIP_CALLS_BUCKET,
    TOOL_RUNS_BUCKET,
    WEBHOOKS_STREAM,
    WORKER_SLOTS_BUCKET,
)
from shared.tools import TOOL_SUBJECT_PREFIX, ToolReply, ToolRequest

DESCRIPTION = f"""\
Every NATS subject Switchboard publishes or answers. JSON payloads throughout.

JetStream streams: `{WEBHOOKS_STREAM}` (work queue, `webhooks.>`, consumers `{ACCEPTOR_CONSUMER}`
for Realtime's and `{ACCEPTOR_LIVE_CONSUMER}` for GPT-Live's incoming calls),
`{SESSIONS_STREAM}` (work queue, `{SESSION_JOB_SUBJECT}`, consumer `{SESSION_CONSUMER}`),
`{CALL_EVENTS_STREAM}` (limits, stores `{CALL_JOURNAL_SUBJECT}.>` for 7 days and republishes
each stored event once to `{CALL_EVENTS_SUBJECT}.<call_id>`).
KV buckets: `{CALL_CLAIMS_BUCKET}` (call id -> the acceptor's claim: one accept per call),
`{CALL_LEASES_BUCKET}` (call id -> owning session worker, TTL'd lease),
`{WORKER_SLOTS_BUCKET}` (worker id -> slot report, TTL'd, for admission control),
`{ADMISSIONS_BUCKET}` (`book.<worker>` -> calls booked on that worker's capacity, with
forwarding entries for calls moved off a departed worker; `agent.<name>` -> calls of an
agent with a concurrent-call limit),
`{TOOL_RUNS_BUCKET}` (call and tool call id -> run record: one run per tool call),
`{SIP_CALLS_BUCKET}` (hashed SIP Call-ID -> the API that answers a call offered to both).
Outbound calls: stream `{OUTBOUND_STREAM}` (work queue, `{OUTBOUND_SUBJECT}.<call_id>`, consumer
`{DIALLER_CONSUMER}`: one message per dial try), KV `{OUTBOUND_KEYS_BUCKET}` (sha256 of an
Idempotency-Key -> call id and request fingerprint, 7 days), `{OUTBOUND_CALLS_BUCKET}`
(call id -> the outbound call's state, compare-and-set), `outbound_limits` (per agent:
`cap.<agent>` calls dialling or live, `rate.<agent>` the next dial time).

After the call (`switchboard postcall`): consumer `{POSTCALL_CONSUMER}` on `{CALL_EVENTS_STREAM}`
fans each event out to `{OUTBOX_STREAM}` (work queue, `{OUTBOX_SUBJECT}.<endpoint_id>`, a
durable consumer `endpoint-<endpoint_id>` per endpoint) and indexes finished calls in
`{INDEX_STREAM}` (`{INDEX_SUBJECT}.<call_id>`, the latest summary per call, same retention
as the events); given-up deliveries are recorded in `{DEAD_STREAM}`
(`{DEAD_SUBJECT}.<endpoint_id>`). KV `{ENDPOINTS_BUCKET}`: webhook endpoint id -> the
subscription (URL, event types, agents, signing secrets).

Request/reply subjects (`tools.<name>`, `agents.resolve`, `calls.control.<call_id>`) are
core NATS requests: the reply goes to the requester's inbox; its payload is documented as
the `...reply` operation of the same subject.
"""


def build_broker() -> NatsBroker:
    """A broker carrying every subject as a subscriber or publisher (never connected)."""
    broker = NatsBroker()
    webhooks = JStream(WEBHOOKS_STREAM, declare=False)
    sessions = JStream(SESSIONS_STREAM, declare=False)
    events = JStream(CALL_EVENTS_STREAM, declare=False)

    # ingress -> acceptor
    broker.publisher(
        INCOMING_CALL_SUBJECT, stream=webhooks, schema=IncomingCall, title="ingress:incoming-call",
        description="The ingress publishes one per verified realtime.call.incoming webhook "
        "(Nats-Msg-Id = webhook-id, so OpenAI's retries are deduplicated), then answers 200.",
    )  # fmt: skip

    @broker.subscriber(
        INCOMING_CALL_SUBJECT, stream=webhooks, durable=ACCEPTOR_CONSUMER, pull_sub=PullSub(),
        title="acceptor:incoming-call",
        description="The acceptor decides: accept (then a session job), reject, or miss.",
    )  # fmt: skip
    async def incoming_call(call: IncomingCall) -> None: ...

    broker.publisher(
        LIVE_INCOMING_CALL_SUBJECT, stream=webhooks, schema=IncomingCall,
        title="ingress:incoming-live-call",
        description="One per verified live.transport.incoming (or deprecated "
        "live.call.incoming) webhook; `call_id` is the live_... session id, `api` is live.",
    )  # fmt: skip

    @broker.subscriber(
        LIVE_INCOMING_CALL_SUBJECT, stream=webhooks, durable=ACCEPTOR_LIVE_CONSUMER,
        pull_sub=PullSub(), title="acceptor:incoming-live-call",
        description="As for Realtime; a SIP call offered through both APIs is accepted once, "
        "through its agent's API, and the other webhook recorded as call.superseded.",
    )  # fmt: skip
    async def incoming_live_call(call: IncomingCall) -> None: ...

    # acceptor -> session workers
    broker.publisher(
        SESSION_JOB_SUBJECT, stream=sessions, schema=SessionJob, title="acceptor:session-job",
        description="One per accepted call (Nats-Msg-Id = job:<call_id>).",
    )  # fmt: skip

    @broker.subscriber(
        SESSION_JOB_SUBJECT, stream=sessions, durable=SESSION_CONSUMER, pull_sub=PullSub(),
        title="session:session-job",
        description="A session worker claims a job only while it has a free slot and holds "
        "it (+WPI) for the whole call; redelivered to another worker if it dies.",
    )  # fmt: skip
    async def session_job(job: SessionJob) -> None: ...

    # ingress (POST /calls) and dialler (retries) -> dialler
    outbound = JStream(OUTBOUND_STREAM, declare=False)
    broker.publisher(
        f"{OUTBOUND_SUBJECT}.{{call_id}}", stream=outbound, schema=TryMessage,
        title="ingress:outbound-try",
        description="Dial try `attempt` of an outbound call (Nats-Msg-Id = "
        "try:<call_id>:<attempt>): try 1 from POST /calls, later ones from the dialler's "
        "retry policy. The call's record in outbound_calls decides; a stale try is dropped.",
    )  # fmt: skip

    @broker.subscriber(
        f"{OUTBOUND_SUBJECT}.{{call_id}}", stream=outbound, durable=DIALLER_CONSUMER,
        pull_sub=PullSub(),
        title="dialler:outbound-try",
        description="A dialler claims the try (queued -> dialing) before it dials, so a try "
        "is dialled at most once; an answered call becomes a session job.",
    )  # fmt: skip
    async def outbound_try(request: TryMessage) -> None: ...

    # every service -> the call's journal -> (republished) anyone watching calls
    broker.publisher(
        f"{CALL_JOURNAL_SUBJECT}.{{call_id}}", stream=events, schema=CallEvent,
        title="calls:journal",
        description="Where services write call events (Nats-Expected-Last-Subject-Sequence "
        "numbers them without gaps; Nats-Msg-Id dedupes retries). Internal: read "
        f"{CALL_EVENTS_SUBJECT}.<call_id>, or the stream for history.",
    )  # fmt: skip
    broker.publisher(
        f"{CALL_EVENTS_SUBJECT}.{{call_id}}", schema=CallEvent,
        title="calls:events",
        description="Per-call lifecycle and transcript events; `seq` counts from 1 per call "
        "without gaps or repeats, whichever process publishes. Types: call.received, "
        "call.accepted, call.rejected, call.missed, call.failed, call.superseded, "
        "session.attached, "
        "session.detached, transcript.caller, transcript.agent, dtmf, tool.called, "
        "tool.completed, call.transferred, transfer.failed, call.ended, call.report, "
        "response.failed (OpenAI's status and error; a greeting that failed is retried "
        "once); transcript.caller may carry failed: true with OpenAI's error; "
        "outbound: call.requested, call.dialing, call.ringing, call.answered, call.failed "
        "(reason busy, no_answer, rejected, trunk_error, cancelled, unconfirmed; final). "
        "call.ended reasons: "
        + ", ".join(f"{r.value} ({END_REASON_MEANINGS[r]})" for r in EndReason)
        + ".",
    )  # fmt: skip

    # after the call: events -> each endpoint's outbox -> its HTTP receiver; the call index
    outbox = JStream(OUTBOX_STREAM, declare=False)

    @broker.subscriber(
        f"{CALL_JOURNAL_SUBJECT}.{{call_id}}", stream=events, durable=POSTCALL_CONSUMER,
        pull_sub=PullSub(), title="postcall:fan-out",
        description="The post-call service reads every stored event once, queues it for each "
        "webhook endpoint that wants it, and indexes calls that finished.",
    )  # fmt: skip
    async def fan_out(event: CallEvent) -> None: ...

    broker.publisher(
        f"{OUTBOX_SUBJECT}.{{endpoint_id}}", stream=outbox, schema=CallEvent,
        title="postcall:outbox",
        description="One event for one endpoint (Nats-Msg-Id <endpoint>:<call_id>:<seq>; "
        "replays: replay:<id>:<call_id>:<seq>). Its durable consumer endpoint-<endpoint_id> "
        "POSTs it, signed (Standard Webhooks, webhook-id stable per event and endpoint), "
        "and retries with nak(delay) until the give-up age.",
    )  # fmt: skip
    broker.publisher(
        f"{DEAD_SUBJECT}.{{endpoint_id}}", stream=JStream(DEAD_STREAM, declare=False),
        schema=DeadLetter, title="postcall:dead-letter",
        description="A delivery given up (give-up age reached, or 410 Gone).",
    )  # fmt: skip
    broker.publisher(
        f"{INDEX_SUBJECT}.{{call_id}}", stream=JStream(INDEX_STREAM, declare=False),
        schema=CallSummary, title="calls:index",
        description="The summary of a finished call (report, rejection, miss or failure), "
        "read by GET /calls?since=... on the ingress.",
    )  # fmt: skip

    # session worker <-> tool services
    @broker.subscriber(
        f"{TOOL_SUBJECT_PREFIX}.{{name}}", title="tools:request",
        description="A tool service answers requests for tool <name> (queue group "
        "switchboard-tools, see switchboard.toolkit) within the tool's timeout_s.",
    )  # fmt: skip
    async def tool_request(request: ToolRequest) -> None: ...

    broker.publisher(
        f"{TOOL_SUBJECT_PREFIX}.{{name}}", schema=ToolReply, title="tools:reply",
        description="The tool service's reply to the requester's inbox.",
    )  # fmt: skip

    # acceptor <-> an optional business hook
    @broker.subscriber(
        RESOLVE_SUBJECT, title="agents:resolve-request",
        description="Optional: a business service may pick or adjust the agent profile of "
        "a call within the hook budget (250 ms by default); no answer keeps the static one.",
    )  # fmt: skip
    async def resolve_request(request: ResolveRequest) -> None: ...

    broker.publisher(
        RESOLVE_SUBJECT, schema=ResolveReply, title="agents:resolve-reply",
        description="The hook's reply; an empty object keeps the static profile.",
    )  # fmt: skip

    # ingress control API -> the worker that owns the call
    @broker.subscriber(
        f"{CONTROL_SUBJECT_PREFIX}.{{call_id}}", title="calls:control-request",
        description="The ingress' control API asks the call's current owner (whichever "
        "worker holds the lease subscribes) to hang up, transfer or say something.",
    )  # fmt: skip
    async def control_request(command: ControlCommand) -> None: ...

    broker.publisher(
        f"{CONTROL_SUBJECT_PREFIX}.{{call_id}}", schema=ControlReply,
        title="calls:control-reply", description="The owning worker's answer.",
    )  # fmt: skip
    return broker


HEADER = "# Generated by `python -m switchboard.asyncapi` from the code; do not edit.\n"
_PARAMETERS = {
    "call_id": "OpenAI's call id (rtc_... or live_...), or an outbound call's out_... id",
    "name": "the tool's name, as in the agent profile",
    "endpoint_id": "a webhook endpoint's id (POST /webhooks, or the webhooks file)",
}


def document() -> str:
    """The AsyncAPI 3 document, as YAML with sorted keys (stable, so diffs mean changes)."""
    spec = AsyncAPI(
        build_broker(),
        title="Switchboard",
        version=version("switchboard"),
        description=DESCRIPTION,
        schema_version="3.0.0",
    )
    doc = spec.to_specification().to_jsonable()
    for channel in doc["channels"].values():
        names = re.findall(r"\{(\w+)\}", channel["address"])
        if names:  # AsyncAPI 3 wants every `{parameter}` of an address declared
            channel["parameters"] = {name: {"description": _PARAMETERS[name]} for name in names}
    return HEADER + yaml.safe_dump(doc, sort_keys=True, allow_unicode=True, width=100)


def main(args: object = None) -> int:
    """`switchboard asyncapi` (and `python -m switchboard.asyncapi`): the document on stdout."""
    sys.stdout.write(document())
    return 0


if __name__ == "__main__":
    sys.exit(main())
