"""The floor under issue 17's target: what a call costs when only the design's hops remain.

    .venv/bin/python -m bench.floor          # beside 87c6c02 and this code: 6 paired rounds, 20/s
    .venv/bin/python -m bench.floor --floor-only --floors "floor, pushed" --rate 50
    .venv/bin/python -m bench.floor --quick  # one round of 3 s (checks it works)

Issue 17 asks for the CPU per accepted call (nats-server + ingress + acceptor + session
worker) halved against `87c6c02`. This runs, at once beside that code (`bench.admission`'s
paired rounds, so the machine's drift falls on every code alike), three processes that do
for each call only what DESIGN.md's shape and guarantees make a call do, in the cheapest
shape those allow, and nothing else:

- **ingress**: the webhook's HTTP request (uvicorn + Starlette, as the ingress), its
  signature checked by the openai SDK, the webhook and `call.received` stored in one wait;
  200.
- **acceptor**: the webhook pulled from its durable consumer (`floor, pushed`: pushed to
  it, which saves the pull request each); the call's claim (one accept per call, whatever
  the duplicates) and its booking (exact admission across replicas) written in one wait;
  the accept sent as the acceptor sends it (`RealtimeCalls`: the SDK client, the body made
  once); `call.accepted` and the session job stored in one wait; the ack.
- **session**: the job pulled (one at a time, as a worker claims only with a free slot);
  the call's lease written; the sideband opened (the caller hung up: a 404, as in
  `bench.accept`); `call.ended`, `call.report` and the booking's release in one wait; the
  ack with the lease's release.

The processes take the services' GC settings (`settle_heap`), and nothing else of theirs:
no logging, metrics or health endpoints, FastStream, pydantic models, retries, deadlines,
duplicates' paths, agent choice, admission arithmetic, slot reports, tools or guards. Each
of those costs more, none less. So if this floor alone costs half of `87c6c02`, no code of
this design on this stack (Python, nats-py, uvicorn, the openai SDK, websockets) costs
less; and what lies between the floor and the real code is all that any tuning can win.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import nats.errors
import uvicorn
import uvloop
import websockets
from nats.js.api import Header
from openai import AsyncOpenAI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from websockets.asyncio.client import connect as open_websocket

from bench.accept import API_KEY, ROOT, WEBHOOK_PATH, process, wait_http
from bench.admission import Fleet, checkout, cpu_by_role, paired, paired_ratios
from bench.machine import save, table
from services.acceptor.call_apis import RealtimeCalls
from shared.admission import admissions_bucket
from shared.agents import default_agent
from shared.events import CALL_EVENTS_STREAM, journal_subject
from shared.nats import connect
from shared.openai_client import call_control_client
from shared.service import settle_heap
from shared.settings import load_settings
from shared.streams import (
    ACCEPTOR_CONSUMER,
    CALL_CLAIMS_BUCKET,
    CALL_LEASES_BUCKET,
    INCOMING_CALL_SUBJECT,
    SESSION_CONSUMER,
    SESSION_JOB_SUBJECT,
    SESSIONS_STREAM,
    WEBHOOKS_STREAM,
    declare_configured_topology,
)

ROLES = ("ingress", "acceptor", "session")


class FloorFleet(Fleet):
    """The floor's three processes instead of Switchboard's services, on their own server."""

    push = False  # the acceptor's webhooks pushed to it, not pulled (no pull request each)

    async def start(self, acceptors: int, workers: int, capacity: int) -> None:
        env = await self._start_server_and_simulator()
        ready = self.server.store_dir.parent / f"{self.server.store_dir.name}-ready"
        ready.mkdir(parents=True, exist_ok=True)
        # The acceptor first: it declares the topology (and, pushed, swaps its consumer).
        for role in ("acceptor", "ingress", "session"):
            args = [sys.executable, "-m", "bench.floor", "--role", role, "--ready",
                    str(ready / role), "--port", str(self.ingress_port)]  # fmt: skip
            if self.push:
                args.append("--push")
            proc = self.stack.enter_context(process(args, env, f"floor-{role}", cwd=ROOT))
            self.pids[role if role != "session" else "session0"] = proc.pid
            async with asyncio.timeout(60):
                while not (ready / role).exists():  # noqa: ASYNC110 (another process's file)
                    await asyncio.sleep(0.05)
        assert self.server.process is not None
        self.pids["nats"] = self.server.process.pid
        await wait_http(f"http://127.0.0.1:{self.ingress_port}/readyz", timeout=60)


class PushedFloorFleet(FloorFleet):
    push = True


# -- the three processes -------------------------------------------------------------------


async def _connect(declare: bool = False) -> Any:
    settings = load_settings()
    nc = await connect(settings.nats_servers, "floor")
    js = nc.jetstream()
    if declare:
        await declare_configured_topology(js, settings)
    return settings, js


def _event(call_id: str, type_: str, seq: int, data: dict[str, Any]) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    envelope = {"type": type_, "call_id": call_id, "seq": seq, "ts": stamp, "data": data}
    return json.dumps(envelope).encode()


def _journal(js: Any, call_id: str, type_: str, seq: int, data: dict[str, Any]) -> Any:
    return js.publish(
        journal_subject(call_id),
        _event(call_id, type_, seq, data),
        stream=CALL_EVENTS_STREAM,
        headers={Header.MSG_ID.value: f"{type_}:{call_id}"},
    )


async def ingress(port: int, ready: Path) -> None:
    settings, js = await _connect()
    webhooks = AsyncOpenAI(api_key=API_KEY).webhooks
    secret = settings.openai_webhook_secret.get_secret_value()

    async def webhook(request: Request) -> Response:
        raw = await request.body()
        webhooks.verify_signature(raw, request.headers, secret=secret)
        call_id = json.loads(raw)["data"]["call_id"]
        headers = {Header.MSG_ID.value: request.headers["webhook-id"]}
        await asyncio.gather(
            js.publish(INCOMING_CALL_SUBJECT, raw, stream=WEBHOOKS_STREAM, headers=headers),
            _journal(js, call_id, "call.received", 1, {"api": "realtime"}),
        )
        return Response(b'{"status":"published"}', media_type="application/json")

    async def readyz(request: Request) -> Response:
        return Response(b"ok")

    app = Starlette(routes=[Route(WEBHOOK_PATH, webhook, methods=["POST"]),
                            Route("/readyz", readyz)])  # fmt: skip
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, loop="none", http="httptools")  # fmt: skip
    await asyncio.to_thread(ready.touch)
    await uvicorn.Server(config).serve()


async def acceptor(ready: Path, push: bool) -> None:
    settings, js = await _connect(declare=True)
    claims = await js.key_value(CALL_CLAIMS_BUCKET)
    books = await admissions_bucket(js)
    calls = RealtimeCalls(call_control_client(settings))  # the acceptor's: body made once
    agent = default_agent(settings)

    async def decide(message: Any) -> None:
        call_id = json.loads(message.data)["data"]["call_id"]
        await asyncio.gather(
            claims.create(call_id, b'{"state":"accepting"}'),
            books.create(f"book.{call_id}", b"1"),
        )
        await calls.accept(call_id, agent, timeout=2.0)
        job = json.dumps({"call_id": call_id, "booking": f"book.{call_id}"}).encode()
        await asyncio.gather(
            _journal(js, call_id, "call.accepted", 2, {"agent": "default"}),
            js.publish(
                SESSION_JOB_SUBJECT,
                job,
                stream=SESSIONS_STREAM,
                headers={Header.MSG_ID.value: f"job:{call_id}"},
            ),
        )
        await message.ack()

    if push:  # a work queue takes one consumer per subject: the pull one goes
        await js.delete_consumer(WEBHOOKS_STREAM, ACCEPTOR_CONSUMER)

        async def pushed(message: Any) -> None:
            _spawn(decide(message))

        await js.subscribe(INCOMING_CALL_SUBJECT, durable="floor-push", stream=WEBHOOKS_STREAM,
                           manual_ack=True, cb=pushed)  # fmt: skip
        await asyncio.to_thread(ready.touch)
        await asyncio.Event().wait()
    sub = await js.pull_subscribe_bind(durable=ACCEPTOR_CONSUMER, stream=WEBHOOKS_STREAM)
    await _serve(sub, decide, ready)


async def session(ready: Path) -> None:
    settings, js = await _connect()
    leases = await js.key_value(CALL_LEASES_BUCKET)
    books = await admissions_bucket(js)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    sideband = settings.sideband_url
    sub = await js.pull_subscribe_bind(durable=SESSION_CONSUMER, stream=SESSIONS_STREAM)

    async def run(message: Any) -> None:
        job = json.loads(message.data)
        call_id = job["call_id"]
        await leases.create(call_id, b'{"worker":"floor"}')
        try:
            async with open_websocket(sideband(call_id), additional_headers=auth, proxy=None):
                pass
        except websockets.InvalidStatus:
            pass  # the caller hung up before the sideband opened: the benchmark's calls do
        await asyncio.gather(
            _journal(js, call_id, "call.ended", 3, {"reason": "caller_hangup"}),
            _journal(js, call_id, "call.report", 4, {"end_reason": "caller_hangup"}),
            books.delete(job["booking"]),
        )
        await asyncio.gather(message.ack(), leases.delete(call_id))

    await _serve(sub, run, ready)


_TASKS: set[asyncio.Task[None]] = set()


def _spawn(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(work)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def _serve(sub: Any, handle: Callable[[Any], Coroutine[Any, Any, None]], ready: Path) -> None:
    """Pull one message at a time and handle each in a task of its own."""
    await asyncio.to_thread(ready.touch)
    while True:
        try:
            messages = await sub.fetch(1, timeout=5.0)
        except nats.errors.TimeoutError:
            continue
        for message in messages:
            _spawn(handle(message))


# -- the benchmark -------------------------------------------------------------------------


FLEETS: dict[str, type[Fleet]] = {"floor": FloorFleet, "floor, pushed": PushedFloorFleet}


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-floor-") as tmp:
        runs = [(f"today ({args.baseline_ref})", checkout(args.baseline_ref, Path(tmp) / "b"), 1)]
        if not args.floor_only:
            runs.append(("this code", ROOT, 1))
        runs += [(label, ROOT, 1) for label in args.floors]
        rows = []
        for round_ in range(args.repeat):
            shift = round_ % len(runs)  # each round in another order, as bench.admission's
            rows += await paired(
                runs[shift:] + runs[:shift],
                args.rate,
                args.seconds,
                make_fleet=lambda store, label, code: FLEETS.get(label, Fleet)(store, code),
            )
    print(table([{"code": r["code"], "accepted": r["accepted"], "calls": r["calls"],
                  **cpu_by_role(r)} for r in rows]))  # fmt: skip
    by_round = paired_ratios(rows, len(runs))
    print(table(by_round))
    medians = {c: round(statistics.median(r[c] for r in by_round), 3) for c in by_round[0]}
    print(f"CPU per call over {runs[0][0]}, median of {len(by_round)} paired rounds: {medians}")
    path = save("floor", {"rows": rows, "ratios": by_round, "medians": medians})
    print(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=ROLES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ready", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="one short round (smoke)")
    parser.add_argument("--baseline-ref", default="87c6c02", help="the code to compare with")
    parser.add_argument("--rate", type=int, default=20, help="calls per second")
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds at that rate")
    parser.add_argument("--repeat", type=int, default=6, help="paired rounds")
    parser.add_argument("--floor-only", action="store_true", help="leave this code's run out")
    parser.add_argument(
        "--floors", nargs="+", choices=list(FLEETS), default=list(FLEETS), help="floors to run"
    )
    parser.add_argument("--push", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role is not None:
        roles = {"ingress": lambda: ingress(args.port, args.ready),
                 "acceptor": lambda: acceptor(args.ready, args.push),
                 "session": lambda: session(args.ready)}  # fmt: skip
        settle_heap()  # the services' GC settings: the floor is not handicapped by defaults
        uvloop.run(roles[args.role]())
        return
    if args.quick:
        args.repeat, args.seconds = 1, 3.0
    logging.basicConfig(level=logging.ERROR)
    gc.disable()  # this process times the calls: see bench/accept.py
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
