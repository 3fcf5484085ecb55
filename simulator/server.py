"""The simulated OpenAI: REST call control and the sideband WebSocket on one aiohttp port.

`Simulator` places calls (signed webhooks, simulator/webhooks.py), routes REST requests
(simulator/rest.py) and sideband sockets to the `SimulatedCall` they name
(simulator/calls.py), and hosts every background task so `stop()` leaves nothing behind.

aiohttp rather than Starlette/uvicorn because a faithful caller hang-up drops the TCP
connection *without* a WebSocket close frame, which aiohttp allows through the request's
transport (`transport.abort()`) and Starlette/uvicorn's ASGI interface cannot express.
One asyncio loop serves thousands of calls: no per-call threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Coroutine
from typing import Any

from aiohttp import ClientConnectionResetError, web

from simulator import rest
from simulator.callers import CallerScript
from simulator.calls import TERMINAL, SimulatedCall
from simulator.faults import Faults
from simulator.live.surface import LiveSurface
from simulator.rest import error_response, not_found
from simulator.webhooks import SenderThread, WebhookSender, incoming_call_event, new_webhook_id

log = logging.getLogger("simulator")

DEFAULT_TO = "+18005551212"
DEFAULT_FROM = "+14155550123"


class Simulator:
    """OpenAI's side of SIP calls: webhooks out, REST and sideband in, scripted callers."""

    def __init__(
        self,
        api_key: str,
        webhook_secret: str,
        webhook_url: str,
        *,
        faults: Faults | None = None,
        webhook_timeout_s: float = 5.0,
        webhook_retry_base_s: float = 0.5,
        webhook_max_attempts: int = 8,
        accept_window_s: float = 15.0,
        webhook_concurrency: int = 10,
        webhook_thread: bool = False,  # deliver from a thread of its own (benchmarks)
    ) -> None:
        self._api_key = api_key
        self._webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.faults = faults if faults is not None else Faults()
        self.webhook_timeout_s = webhook_timeout_s
        self.webhook_retry_base_s = webhook_retry_base_s
        self.webhook_max_attempts = webhook_max_attempts
        self.accept_window_s = accept_window_s
        self.webhook_concurrency = webhook_concurrency
        self.webhook_thread = webhook_thread
        self.calls: dict[str, SimulatedCall] = {}
        self.host = "127.0.0.1"
        self.port = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._live: set[str] = set()  # calls not yet in a terminal state
        self._all_done: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._sender: WebhookSender | SenderThread | None = None
        self.live = LiveSurface(self)  # GPT-Live's REST and sideband (simulator/live/)

    def __repr__(self) -> str:  # never shows the key or secret
        return f"<Simulator {self.base_url if self.port else 'stopped'} calls={len(self.calls)}>"

    @property
    def base_url(self) -> str:
        """What `OPENAI_BASE_URL` is set to for the services under test."""
        return f"http://{self.host}:{self.port}/v1"

    # ----------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on `host:port` (0 picks a free port; see `port` afterwards)."""
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/v1/realtime/calls/{call_id}/{action}", self._rest)
        app.router.add_get("/v1/realtime", self._sideband)
        app.router.add_get("/healthz", self._healthz)
        self.live.routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=4096)
        await site.start()
        self.host = host
        self.port = self._runner.addresses[0][1]
        self._sender = (SenderThread if self.webhook_thread else WebhookSender)(
            self.webhook_url,
            self._webhook_secret,
            timeout_s=self.webhook_timeout_s,
            retry_base_s=self.webhook_retry_base_s,
            max_attempts=self.webhook_max_attempts,
            concurrency=self.webhook_concurrency,
        )
        log.info("simulated OpenAI listening on %s", self.base_url)

    async def stop(self) -> None:
        """Drop every socket, cancel every background task, close the server and client."""
        await self.live.stop()
        for call in list(self.calls.values()):
            call.finish("ended" if call.state == "accepted" else "missed", None, abort=True)
            await call.drop_sideband()
        while self._tasks:  # cancelling may spawn (socket closes): repeat until none
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._sender is not None:
            await self._sender.aclose()
            self._sender = None

    async def __aenter__(self) -> Simulator:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A background task that `stop()` will cancel and await."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task

    def call_finished(self, call: SimulatedCall) -> None:
        self._live.discard(call.call_id)
        if not self._live and self._all_done is not None:
            self._all_done.set()

    # ----------------------------------------------------------------- placing calls

    async def place_call(
        self,
        script: CallerScript | None = None,
        to: str | None = None,
        from_: str | None = None,
        *,
        sip_call_id: str | None = None,
        send_webhook: bool = True,
    ) -> SimulatedCall:
        """Ring a new call: send its signed webhook in the background, with retries.
        (`self.live.place_call` rings a GPT-Live one, optionally offered to both APIs.)"""
        if self._sender is None:
            raise RuntimeError("Simulator.start() first")
        script = script or CallerScript()
        to = to or script.to or DEFAULT_TO
        from_ = from_ or script.from_ or DEFAULT_FROM
        call_id = "rtc_" + secrets.token_hex(16)
        call = SimulatedCall(self, call_id, script, to, from_)
        self.calls[call_id] = call
        self._live.add(call_id)
        if self._all_done is not None:
            self._all_done.clear()
        call.start_ringing(self.accept_window_s)
        body = incoming_call_event(call_id, to, from_, sip_call_id)
        webhook_id = new_webhook_id()
        copies = [webhook_id] * (1 + self.faults.duplicate_webhooks)
        copies += [new_webhook_id() for _ in range(self.faults.redeliver_new_id)]
        for wid in copies if send_webhook else []:
            self.spawn(self._deliver(call, wid, body))
        return call

    async def place_calls(
        self,
        script: CallerScript | None,
        count: int,
        rate_per_s: float,
        to: str | None = None,
        from_: str | None = None,
    ) -> list[SimulatedCall]:
        """Place `count` calls at `rate_per_s` (evenly spaced, not bursty)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        calls = []
        for i in range(count):
            delay = start + i / rate_per_s - loop.time() if rate_per_s > 0 else 0
            if delay > 0:
                await asyncio.sleep(delay)
            calls.append(await self.place_call(script, to=to, from_=from_))
        return calls

    async def _deliver(self, call: SimulatedCall, webhook_id: str, body: bytes) -> None:
        assert self._sender is not None

        def sent() -> None:
            call.mark("webhook_sent")

        def record(wid: str, status: int | None, latency: float) -> None:
            call.webhook_attempts.append((wid, status, latency))
            if status == 200:
                call.mark("webhook_delivered")
            call.notify()

        if not await self._sender.deliver(webhook_id, body, record, sent):
            log.warning("call %s: webhook %s not delivered", call.call_id, webhook_id)

    async def wait_all_ended(self, timeout: float = 30.0) -> None:
        """Wait until every call placed so far is ended, rejected or missed."""
        if not self._live:
            return
        self._all_done = asyncio.Event()
        async with asyncio.timeout(timeout):
            while self._live:
                await self._all_done.wait()
                self._all_done.clear()

    # ----------------------------------------------------------------- REST

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return secrets.compare_digest(header.encode(), f"Bearer {self._api_key}".encode())

    @staticmethod
    def _unauthorized() -> web.Response:
        return error_response(
            401,
            "Incorrect API key provided. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "calls": len(self._live)})

    async def _rest(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        call_id = request.match_info["call_id"]
        action = request.match_info["action"]
        if action not in ("accept", "reject", "refer", "hangup"):
            return error_response(
                404, f"Invalid URL (POST {request.path})", "invalid_request_error", None
            )
        raw = await request.read()
        body: Any = None
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                return error_response(
                    400,
                    "We could not parse the JSON body of your request.",
                    "invalid_request_error",
                    None,
                )
        call = self.calls.get(call_id)
        if action == "accept":
            if self.live.realtime_accept_refused(call_id):  # the SIP call went to GPT-Live
                message = "The call was already accepted."
                return error_response(409, message, "invalid_request_error", None)
            answer = await rest.accept(call, call_id, body, self.faults)
            if answer.status == 200:
                self.live.realtime_accepted(call_id)
            return answer
        if call is None or call.state in TERMINAL:
            return not_found(call_id)
        if action == "reject":
            return rest.reject(call, body)
        if action == "refer":
            return rest.refer(call, body, self.faults)
        call.finish("ended", "hangup", abort=False)
        return web.Response(status=200)

    # ----------------------------------------------------------------- sideband

    async def _sideband(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized()
        if "OpenAI-Beta" in request.headers:
            return error_response(
                400,
                "The OpenAI-Beta header selects the retired beta protocol; remove it.",
                "invalid_request_error",
                "beta_protocol",
            )
        call_id = request.query.get("call_id", "")
        call = self.calls.get(call_id)
        if call is None or not call.live:
            return not_found(call_id)
        if self.faults.sideband_status is not None:
            status = self.faults.sideband_status
            return error_response(status, "Refused (simulated).", "invalid_request_error", None)
        if not self.faults.allow_reattach and call.sockets_open:
            return error_response(
                409,
                "A sideband is already attached to this call.",
                "invalid_request_error",
                "sideband_in_use",
            )
        # No compression: per-socket deflate state costs memory at thousands of calls.
        ws = web.WebSocketResponse(timeout=2.0, compress=False, autoping=True)
        await ws.prepare(request)
        if not call.live:  # ended while the handshake ran
            if request.transport is not None:
                request.transport.abort()
            return ws
        call.attach(ws, request.transport)
        try:
            await call.sideband.session_created()
            async for message in ws:
                if message.type == web.WSMsgType.TEXT:
                    await call.sideband.handle(message.data)
                elif message.type == web.WSMsgType.BINARY:
                    await call.sockets.error("invalid_event", "Binary messages are not supported.")
        except ClientConnectionResetError:
            pass  # a ping answered while the socket closed: the peer is gone, as it meant
        finally:
            call.detach(ws)
        return ws


def _log_failure(task: asyncio.Task[Any]) -> None:
    """A simulator task that failed is a simulator bug (an event OpenAI's types refuse, say)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("simulator task failed", exc_info=task.exception())
