"""Call history on the control API, read from JetStream over the events' retention window.

- `GET /calls/{call_id}/events` → `{"events": [...]}`, every stored event in `seq` order.
- `GET /calls/{call_id}/report` → the call's `call.report` event (the envelope a webhook
  receiver gets); 404 while the call has none.
- `GET /calls?since=&until=&agent=&number=&end_reason=&cursor=&limit=` → `{"calls": [...],
  "next": cursor|null}`: finished calls from the call index (`shared/call_index.py`).

`GET /calls` with none of those parameters still lists the live calls (the control API's
original route): any history parameter, even empty (`GET /calls?since=`), asks for history.
Times are RFC 3339 or Unix seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from nats.aio.client import Client
from pydantic import SecretStr, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from services.ingress.bearer import Bearer
from shared import metrics
from shared.call_index import HistoryQuery, read_history
from shared.events import EventType, read_call_events
from shared.ids import is_call_id

log = logging.getLogger(__name__)

HISTORY_PARAMS = frozenset(
    {"since", "until", "agent", "number", "end_reason", "cursor", "limit", "history"}
)
Endpoint = Callable[[Request], Awaitable[Response]]


def _time(value: str | None) -> datetime | str | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        return value  # pydantic parses RFC 3339 (and says what is wrong)


def query_of(params: dict[str, str]) -> HistoryQuery:
    """The history query of `GET /calls`' parameters; ValidationError when bad."""
    values = {k: v for k, v in params.items() if k in HISTORY_PARAMS - {"history"} and v}
    for key in ("since", "until"):
        if key in values:
            values[key] = _time(values[key])  # type: ignore[assignment]
    query = HistoryQuery.model_validate(values)
    for key in ("since", "until"):  # a time without a zone is UTC
        moment = getattr(query, key)
        if moment is not None and moment.tzinfo is None:
            setattr(query, key, moment.replace(tzinfo=UTC))
    return query


class HistoryApi:
    """`live_calls` answers `GET /calls` without history parameters (the control API)."""

    def __init__(
        self, token: SecretStr, nc: Callable[[], Client | None], live_calls: Endpoint | None
    ) -> None:
        self._bearer = Bearer(token)
        self._nc = nc
        self._live_calls = live_calls

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/calls", self.list_calls, methods=["GET"]),
            Route("/calls/{call_id}/events", self.events, methods=["GET"]),
            Route("/calls/{call_id}/report", self.report, methods=["GET"]),
        ]

    async def list_calls(self, request: Request) -> Response:
        if self._live_calls is not None and not HISTORY_PARAMS & set(request.query_params):
            return await self._live_calls(request)
        refused = self._bearer.refuse(request)
        if refused is not None:
            return _count("history", refused)
        try:
            query = query_of(dict(request.query_params))
        except ValidationError as error:
            details = [
                {"field": ".".join(map(str, e["loc"])), "problem": e["msg"]} for e in error.errors()
            ]
            return _count("history", JSONResponse({"error": "invalid query", "details": details},
                                                  status_code=422))  # fmt: skip
        nc = self._nc()
        if nc is None or not nc.is_connected:
            return _count("history", JSONResponse({"error": "not connected"}, status_code=503))
        page = await read_history(nc.jetstream(), query)
        return _count("history", JSONResponse(page.model_dump()))

    async def events(self, request: Request) -> Response:
        return await self._call(request, "events", report_only=False)

    async def report(self, request: Request) -> Response:
        return await self._call(request, "report", report_only=True)

    async def _call(self, request: Request, action: str, *, report_only: bool) -> Response:
        refused = self._bearer.refuse(request)
        if refused is not None:
            return _count(action, refused)
        call_id = request.path_params["call_id"]
        if not is_call_id(call_id):
            return _count(action, JSONResponse({"error": "no such call"}, status_code=404))
        nc = self._nc()
        if nc is None or not nc.is_connected:
            return _count(action, JSONResponse({"error": "not connected"}, status_code=503))
        events = await read_call_events(nc.jetstream(), call_id)
        if not report_only:
            if not events:
                return _count(action, JSONResponse({"error": "no such call"}, status_code=404))
            return _count(action, JSONResponse(
                {"events": [e.model_dump(mode="json") for e in events]}))  # fmt: skip
        report = next((e for e in reversed(events) if e.type == EventType.CALL_REPORT), None)
        if report is None:
            return _count(action, JSONResponse({"error": "no report for this call"},
                                               status_code=404))  # fmt: skip
        return _count(action, JSONResponse(report.model_dump(mode="json")))


def _count(action: str, response: Response) -> Response:
    metrics.CONTROL_REQUESTS.labels(action, str(response.status_code)).inc()
    return response


def history_routes(
    token: SecretStr | None, nc: Callable[[], Client | None], control: Sequence[BaseRoute]
) -> list[BaseRoute]:
    """The history routes, to be mounted before the control API's: `GET /calls` answers
    both (history with history parameters, the control API's live calls without)."""
    if token is None or not token.get_secret_value():
        return []
    live = next(
        (
            route.endpoint
            for route in control
            if isinstance(route, Route)
            and route.path == "/calls"
            and "GET" in (route.methods or ())
        ),
        None,
    )
    return HistoryApi(token, nc, live).routes()
