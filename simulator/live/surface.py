"""GPT-Live's surface of the simulated OpenAI: webhooks out, REST and the sideband in.

Mounted on the simulator's one port beside Realtime:
- `POST /v1/live/sessions/{session_id}/accept|reject|refer|hangup` (bodies checked against
  the SDK's params: unknown fields refused, `status_code` required on reject),
- `GET /v1/live/sessions/{session_id}/attach[?graceful_close=true]` (the sideband).

One SIP call may be offered through both APIs (`place_call(also_realtime=True)`): the two
webhooks carry the same `Call-ID`, and the first successful accept on either id selects
the API; the other id's accept then gets `LiveRules.accept_conflict_status`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from aiohttp import web

from simulator.callers import CallerScript
from simulator.faults import Faults
from simulator.live.contract import ContractError, check_accept_body
from simulator.live.model import LiveModel
from simulator.live.outbound import OutboundSide, check_create_body
from simulator.live.rules import LiveRules
from simulator.live.session import TERMINAL, LiveSession
from simulator.live.webhook import live_incoming_event
from simulator.validation import error_body

if TYPE_CHECKING:
    from simulator.server import Simulator

DEFAULT_TO = "+18005551212"
DEFAULT_FROM = "+14155550123"
_ACTIONS = ("accept", "reject", "refer", "hangup")


def _error(status: int, message: str, code: str | None, param: str | None = None) -> web.Response:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return web.json_response(error_body(message, kind, param, code), status=status)


def _not_found(session_id: str) -> web.Response:
    return _error(404, f"Session '{session_id}' not found.", "session_not_found")


class LiveSurface:
    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self.rules = LiveRules()
        self.sessions: dict[str, LiveSession] = {}
        self._by_realtime: dict[str, LiveSession] = {}  # partner rtc_… id → Live session
        self.outbound = OutboundSide(self)  # outbound calls: callees, dials

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/live/sessions", self._create)
        app.router.add_post("/v1/live/sessions/{session_id}/{action}", self._rest)
        app.router.add_get("/v1/live/sessions/{session_id}/attach", self._attach)

    @property
    def faults(self) -> Faults:
        return self._sim.faults

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self._sim.spawn(coro)

    def track(self, session: LiveSession) -> None:
        """A new session (an outbound call): known, and not finished yet."""
        self.sessions[session.session_id] = session
        self._sim._live.add(session.session_id)

    def finished(self, session: LiveSession) -> None:
        self.outbound.ended(session)
        self._sim.call_finished(session)  # type: ignore[arg-type]  # duck-typed: call_id

    async def stop(self) -> None:
        for session in list(self.sessions.values()):
            if session.state not in TERMINAL:
                await session.drop_sideband()
                session.finish("ended" if session.live else "missed")

    # -- placing calls -------------------------------------------------------------------------

    async def place_call(
        self,
        script: CallerScript | None = None,
        to: str | None = None,
        from_: str | None = None,
        *,
        also_realtime: bool = False,
        deprecated: bool = False,
        send_webhooks: bool = True,
    ) -> LiveSession:
        """Ring a new SIP call offered to GPT-Live (and to Realtime too, with the same
        `Call-ID`, when `also_realtime`); its webhook(s) are sent in the background."""
        script = script or CallerScript()
        to = to or script.to or DEFAULT_TO
        from_ = from_ or script.from_ or DEFAULT_FROM
        sip_call_id = str(uuid.uuid4())
        session_id = "live_" + secrets.token_hex(16)
        session = LiveSession(self, session_id, script, to, from_, sip_call_id)
        session.model = LiveModel(session)
        self.sessions[session_id] = session
        self._sim._live.add(session_id)
        session.start_ringing(self._sim.accept_window_s)
        if also_realtime:
            partner = await self._sim.place_call(
                script, to=to, from_=from_, sip_call_id=sip_call_id, send_webhook=send_webhooks
            )
            session.partner = partner.call_id
            self._by_realtime[partner.call_id] = session
        if send_webhooks:
            body = live_incoming_event(session_id, to, from_, sip_call_id, deprecated=deprecated)
            self.spawn(self._deliver(session, "wh_" + secrets.token_hex(16), body))
        return session

    async def _deliver(self, session: LiveSession, webhook_id: str, body: bytes) -> None:
        sender = self._sim._sender
        assert sender is not None

        def record(wid: str, status: int | None, latency: float) -> None:
            session.webhook_attempts.append((wid, status, latency))
            session.notify()

        await sender.deliver(webhook_id, body, record)

    # -- the same SIP call through Realtime ----------------------------------------------------

    def realtime_accept_refused(self, call_id: str) -> bool:
        """Accepting the Realtime id of a SIP call that Live already answered."""
        session = self._by_realtime.get(call_id)
        return session is not None and session.state in ("accepted", "ended")

    def realtime_accepted(self, call_id: str) -> None:
        session = self._by_realtime.get(call_id)
        if session is not None:
            session.supersede()

    # -- REST ----------------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        """An outbound call (simulator/live/outbound.py); 201 before the callee answers."""
        if not self._sim._authorized(request):
            return self._sim._unauthorized()
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.", None)
        try:
            session, transport = check_create_body(body)
        except ContractError as error:
            return _error(400, error.message, error.code, error.param)
        created = self.outbound.create(session, transport)
        if self.outbound.callees.answer_delay_s:
            await asyncio.sleep(self.outbound.callees.answer_delay_s)  # a simulated fault
        return web.json_response(
            {"session": {"id": created.session_id}, "transport": {"type": "sip"}}, status=201
        )

    async def _rest(self, request: web.Request) -> web.Response:
        if not self._sim._authorized(request):
            return self._sim._unauthorized()
        session_id, action = request.match_info["session_id"], request.match_info["action"]
        if action not in _ACTIONS:
            return _error(404, f"Invalid URL (POST {request.path})", None)
        raw = await request.read()
        body: Any = None
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                return _error(400, "We could not parse the JSON body of your request.", None)
        session = self.sessions.get(session_id)
        if action == "accept":
            return await self._accept(session, session_id, body)
        if session is None or session.state in TERMINAL:
            return _not_found(session_id)
        if action == "hangup":
            if body is not None:
                return _error(400, "This endpoint takes no body.", "unknown_parameter")
            if session.state == "dialing":  # a ringing outbound call is cancelled
                session.finish("missed")
                return web.Response(status=200)
            await session.close("close_requested")
            return web.Response(status=200)
        if action == "reject":
            return self._reject(session, body)
        return self._refer(session, body)

    async def _accept(self, session: LiveSession | None, session_id: str, body: Any):
        faults = self._sim.faults
        if session is not None:
            session.accept_attempts += 1
        if faults.accept_delay_s:
            await asyncio.sleep(faults.accept_delay_s)
        if session is None or session.state not in ("ringing", "accepted"):
            return _not_found(session_id)
        try:
            config = check_accept_body(body)
        except ContractError as error:
            return _error(400, error.message, error.code, error.param)
        partner = self._sim.calls.get(session.partner or "")
        if partner is not None and partner.state == "accepted":
            return _error(
                self.rules.accept_conflict_status,
                "The call was already accepted through the Realtime API.",
                "call_already_accepted",
            )
        if faults.accept_fail_times and session.accept_attempts <= faults.accept_fail_times:
            return _error(faults.accept_status or 500, "The server had an error (simulated).", None)
        if faults.accept_status and not faults.accept_fail_times:
            return _error(faults.accept_status, "The server had an error (simulated).", None)
        session.accept(config)
        if partner is not None and partner.state == "ringing":
            partner.finish("missed", None, abort=True)  # its id no longer answers the call
        return web.Response(status=200)

    @staticmethod
    def _reject(session: LiveSession, body: Any) -> web.Response:
        if not isinstance(body, dict) or "status_code" not in body:
            return _error(
                400, "Missing required parameter: 'status_code'.", "missing_required_parameter",
                "status_code",
            )  # fmt: skip
        for key in body:
            if key != "status_code":
                return _error(400, f"Unknown parameter: '{key}'.", "unknown_parameter", key)
        status = body["status_code"]
        if not isinstance(status, int) or isinstance(status, bool) or not 300 <= status <= 699:
            return _error(
                400, "Invalid 'status_code': a SIP status 300-699.", "invalid_value", "status_code"
            )
        if session.state != "ringing":
            return _error(400, "The session was already accepted.", "invalid_state")
        session.reject(status)
        return web.Response(status=200)

    def _refer(self, session: LiveSession, body: Any) -> web.Response:
        if not isinstance(body, dict) or not isinstance(body.get("target_uri"), str):
            return _error(
                400, "Missing required parameter: 'target_uri'.", "missing_required_parameter",
                "target_uri",
            )  # fmt: skip
        for key in body:
            if key != "target_uri":
                return _error(400, f"Unknown parameter: '{key}'.", "unknown_parameter", key)
        target = body["target_uri"]
        if not target.strip() or not target.startswith(("tel:", "sip:", "sips:")):
            return _error(400, "Invalid 'target_uri'.", "invalid_value", "target_uri")
        if session.state != "accepted":
            return _error(400, "The session is not answered yet.", "invalid_state")
        session.refer_targets.append(target)
        session.notify()
        outcome = self._sim.faults.refer_outcome
        if outcome == "error":
            return _error(500, "The server had an error (simulated).", None)
        if outcome == "transfer":  # the REFER completes after the 200, the far end leaves
            self.spawn(session.close("remote_hangup"))
        return web.Response(status=200)

    # -- the sideband --------------------------------------------------------------------------

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        if not self._sim._authorized(request):
            return self._sim._unauthorized()
        session_id = request.match_info["session_id"]
        session = self.sessions.get(session_id)
        if session is None or not session.attachable:
            return _not_found(session_id)
        if self.rules.second_attach == "refuse" and session.sockets_open:
            return _error(409, "A sideband is already attached to this session.", "sideband_in_use")
        graceful = request.query.get("graceful_close") == "true"
        ws = web.WebSocketResponse(timeout=2.0, compress=False, autoping=True, max_msg_size=1 << 22)
        await ws.prepare(request)
        if not session.attachable:
            if request.transport is not None:
                request.transport.abort()
            return ws
        await session.attach(ws, request.transport, graceful)
        try:
            async for message in ws:
                if message.type == web.WSMsgType.TEXT and session.model is not None:
                    await session.model.handle_client(message.data)
        finally:
            session.detach(ws)
        return ws
