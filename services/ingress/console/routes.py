"""`/console` on the ingress: the page, sign-in, the live feeds and the operator's actions.

| route | what |
|---|---|
| `GET /console` | the page (plain HTML, CSS and JS from `static/`, nothing from elsewhere) |
| `POST /console/api/signin` `{"token"}` | a token for a session cookie; wrong → 401 after a delay |
| `GET /console/api/session` | `{"role", "csrf"}` of the signed-in browser, or 401 |
| `POST /console/api/signout` | ends the session (CSRF) |
| `GET /console/api/stream` | server-sent events: the calls table (snapshot, then changes) |
| `GET /console/api/calls/{id}/stream` | server-sent events: one call's events, past then live |
| `GET /console/api/agents` | each agent's named transfer targets |
| `POST /console/api/calls/{id}/{hangup,transfer,say}` | controller + CSRF: control commands |

401 without a valid session; 403 for a viewer's action, a missing or forged CSRF token, or
a cross-site `Origin`. Bodies are capped while read (413, 408), untrusted JSON is
depth-limited, and call ids follow the one rule (`shared.ids`; 404 otherwise).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from nats.aio.client import Client
from nats.aio.msg import Msg
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from services.ingress.bodies import BodyRefused, read_capped
from services.ingress.console import history
from services.ingress.console.agents import AgentTargets
from services.ingress.console.auth import (
    COOKIE_NAME,
    CSRF_HEADER,
    SESSION_TTL_S,
    ConsoleAuth,
    Session,
    may,
    same_origin,
    secure_cookie,
)
from services.ingress.console.feed import ConsoleFeed, sse
from services.ingress.control import MAX_BODY_BYTES, ControlApi, SayBody, TransferBody
from shared import metrics
from shared.events import CallEvent, event_subject
from shared.ids import is_call_id
from shared.settings import Settings
from shared.untrusted import parse_json

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
SIGNIN_FAILURE_DELAY_S = 1.0
KEEPALIVE_S = 15.0
MAX_SIGNIN_BYTES = 4096
CALL_QUEUE = 1024
_BODIES = {"hangup": None, "transfer": TransferBody, "say": SayBody}
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


def _json(body: object, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=_HEADERS)


def valid_call_id(call_id: str) -> bool:
    """The one `call_id` rule (`shared.ids`): `isalnum` would take `rtc_é`, which KV refuses."""
    return is_call_id(call_id)


class Console:
    """The console's routes and what they share: the auth, the feed, the open streams."""

    def __init__(
        self,
        auth: ConsoleAuth,
        nc: Callable[[], Client | None],
        control: ControlApi | None,
        agents_file: Path | None = None,
        failure_delay_s: float = SIGNIN_FAILURE_DELAY_S,
    ) -> None:
        self.auth = auth
        self.feed = ConsoleFeed(nc)
        self._nc = nc
        self._control = control
        self._targets = AgentTargets(agents_file)
        self._failure_delay_s = failure_delay_s
        self._guesses = asyncio.Lock()  # wrong tokens wait in line: one guess per delay
        self._call_streams: set[asyncio.Queue[CallEvent | None]] = set()

    @classmethod
    def from_settings(cls, settings: Settings, nc: Callable[[], Client | None]) -> Console | None:
        """The console, or None (no routes, so 404) when neither token is configured.
        Actions go through the control API's own command path."""
        view = settings.switchboard_view_token
        ctl = settings.switchboard_control_token
        auth = ConsoleAuth(
            view.get_secret_value() if view else None, ctl.get_secret_value() if ctl else None
        )
        if not auth.enabled:
            return None
        control = ControlApi(ctl, nc) if ctl else None
        return cls(auth, nc, control, settings.switchboard_agents_file)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/console", self.page, methods=["GET"]),
            Route("/console/", self.page, methods=["GET"]),
            Mount("/console/static", StaticFiles(directory=STATIC), name="console-static"),
            Route("/console/api/signin", self.signin, methods=["POST"]),
            Route("/console/api/signout", self.signout, methods=["POST"]),
            Route("/console/api/session", self.session, methods=["GET"]),
            Route("/console/api/stream", self.stream, methods=["GET"]),
            Route("/console/api/agents", self.agents, methods=["GET"]),
            Route("/console/api/calls/{call_id}/stream", self.call_stream, methods=["GET"]),
            Route("/console/api/calls/{call_id}/{action}", self.act, methods=["POST"]),
        ]

    async def close(self) -> None:
        """End every open stream, so the HTTP server can stop without waiting on them."""
        await self.feed.close()
        for queue in list(self._call_streams):
            queue.put_nowait(None)

    # -- signing in ---------------------------------------------------------------------------

    async def page(self, _: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=_HEADERS)

    async def signin(self, request: Request) -> Response:
        if not same_origin(request.headers.get("origin"), request.headers.get("host")):
            return _json({"error": "cross-site request refused"}, 403)
        try:
            raw = await read_capped(request, MAX_SIGNIN_BYTES)
        except BodyRefused as refused:
            return _json({"error": refused.reason}, refused.status)
        token = ""
        try:
            body = parse_json(raw, max_bytes=MAX_SIGNIN_BYTES)  # untrusted: depth-limited
            token = body.get("token", "") if isinstance(body, dict) else ""
        except ValueError:
            pass
        role = self.auth.role_of(token) if isinstance(token, str) and token else None
        if role is None:
            metrics.CONSOLE_SIGNINS.labels("refused").inc()
            log.warning("console sign-in refused from %s", request.client and request.client.host)
            async with self._guesses:
                await asyncio.sleep(self._failure_delay_s)
            return _json({"error": "That token is not valid. Check it and try again."}, 401)
        metrics.CONSOLE_SIGNINS.labels(role.value).inc()
        cookie = self.auth.issue(role, time.time())
        session = self.auth.session(cookie, time.time())
        assert session is not None
        response = _json({"role": role.value, "csrf": self.auth.csrf_token(session)})
        response.set_cookie(
            COOKIE_NAME,
            cookie,
            max_age=SESSION_TTL_S,
            path="/console",
            httponly=True,
            secure=secure_cookie(request.url.hostname),
            samesite="strict",
        )
        return response

    def _session(self, request: Request) -> Session | None:
        return self.auth.session(request.cookies.get(COOKIE_NAME), time.time())

    async def session(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return _json({"error": "not signed in"}, 401)
        return _json({"role": session.role.value, "csrf": self.auth.csrf_token(session)})

    async def signout(self, request: Request) -> Response:
        refused = self._refuse_action(request, "signout")
        if refused is not None:
            return refused
        response = _json({"ok": True})
        response.delete_cookie(COOKIE_NAME, path="/console")
        return response

    def _refuse_action(self, request: Request, action: str) -> Response | None:
        """None when the request may do `action`; else why not (401, 403)."""
        session = self._session(request)
        if session is None:
            return _json({"error": "not signed in"}, 401)
        if not same_origin(request.headers.get("origin"), request.headers.get("host")):
            return _json({"error": "cross-site request refused"}, 403)
        if not self.auth.csrf_ok(session, request.headers.get(CSRF_HEADER)):
            return _json({"error": "missing or wrong CSRF token"}, 403)
        if not may(session.role, action):
            return _json({"error": "viewers cannot act on calls"}, 403)
        return None

    # -- reading ------------------------------------------------------------------------------

    async def agents(self, request: Request) -> Response:
        if self._session(request) is None:
            return _json({"error": "not signed in"}, 401)
        targets = self._targets.get()
        return _json({"agents": {name: {"targets": t} for name, t in targets.items()}})

    async def stream(self, request: Request) -> Response:
        if self._session(request) is None:
            return _json({"error": "not signed in"}, 401)
        try:
            viewer = await self.feed.join()
        except ConnectionError:
            return _json({"error": "event store unavailable"}, 503)

        async def frames() -> AsyncIterator[bytes]:
            try:
                while True:
                    try:
                        frame = await asyncio.wait_for(viewer.frames.get(), KEEPALIVE_S)
                    except TimeoutError:
                        self.feed.check()  # a quiet system gets rebuilt after an outage too
                        yield b": keepalive\n\n"
                        continue
                    if frame is None:
                        return
                    yield frame
            finally:
                self.feed.leave(viewer)

        return _event_stream(frames())

    async def call_stream(self, request: Request) -> Response:
        if self._session(request) is None:
            return _json({"error": "not signed in"}, 401)
        call_id = request.path_params["call_id"]
        if not valid_call_id(call_id):
            return _json({"error": "no such call"}, 404)
        nc = self._nc()
        if nc is None or not nc.is_connected:
            return _json({"error": "event store unavailable"}, 503)
        queue: asyncio.Queue[CallEvent | None] = asyncio.Queue(CALL_QUEUE)

        async def on_event(msg: Msg) -> None:
            try:
                queue.put_nowait(CallEvent.model_validate_json(msg.data))
            except asyncio.QueueFull:
                queue.get_nowait()
                queue.put_nowait(None)  # too far behind: end; the browser reconnects
            except ValueError:
                pass

        sub = await nc.subscribe(event_subject(call_id), cb=on_event)
        self._call_streams.add(queue)
        try:
            past = await history.call_events(nc.jetstream(), call_id)
        except Exception:
            self._call_streams.discard(queue)
            await sub.unsubscribe()
            raise

        async def events() -> AsyncIterator[bytes]:
            seen = past[-1].seq if past else 0
            try:
                yield sse("events", {"events": [e.model_dump(mode="json") for e in past]})
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield b": keepalive\n\n"
                        continue
                    if event is None:
                        return
                    if event.seq > seen:
                        seen = event.seq
                        yield sse("events", {"events": [event.model_dump(mode="json")]})
            finally:
                self._call_streams.discard(queue)
                await sub.unsubscribe()

        return _event_stream(events())

    # -- acting -------------------------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action not in _BODIES:
            return _json({"error": "no such action"}, 404)
        refused = self._refuse_action(request, action)
        if refused is not None:
            return refused
        if self._control is None:
            return _json({"error": "the control API is off"}, 403)
        raw = b""
        if _BODIES[action] is not None:
            try:
                raw = await read_capped(request, MAX_BODY_BYTES)
            except BodyRefused as too_big:
                return _json({"error": too_big.reason}, too_big.status)
        response = await self._control.command(
            request.path_params["call_id"], action, _BODIES[action], raw
        )
        response.headers.update(_HEADERS)
        return response


def _event_stream(body: AsyncIterator[bytes]) -> StreamingResponse:
    headers = {**_HEADERS, "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)
