"""The call-control REST API of the simulated OpenAI (`/v1/realtime/calls/{call_id}/…`),
answering with OpenAI's statuses and error shapes."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from simulator.calls import SimulatedCall
from simulator.faults import Faults
from simulator.validation import AcceptError, error_body, validate_accept_body


def error_response(
    status: int, message: str, type_: str, code: str | None, param: str | None = None
) -> web.Response:
    return web.json_response(error_body(message, type_, param, code), status=status)


def not_found(call_id: str) -> web.Response:
    return error_response(
        404, f"Call '{call_id}' not found.", "invalid_request_error", "call_not_found"
    )


async def accept(
    call: SimulatedCall | None, call_id: str, body: Any, faults: Faults
) -> web.Response:
    """`POST …/accept`: validated like OpenAI's SIP endpoint; faults may fail or delay it."""
    if call is not None:
        call.accept_attempts += 1
        call.mark("accept_received")
    if faults.accept_delay_s:
        await asyncio.sleep(faults.accept_delay_s)
    if call is None or call.state not in ("ringing", "accepted"):
        return not_found(call_id)
    try:
        validate_accept_body(body)
    except AcceptError as exc:
        return web.json_response(exc.to_json(), status=400)
    failing = faults.accept_fail_times and call.accept_attempts <= (faults.accept_fail_times)
    if failing or (faults.accept_status and not faults.accept_fail_times):
        status = faults.accept_status or 500
        return error_response(status, "The server had an error (simulated).", "server_error", None)
    call.accept(body)
    return web.Response(status=200)


def reject(call: SimulatedCall, body: Any) -> web.Response:
    """`POST …/reject` `{status_code?}`: only a ringing call."""
    call.reject_attempts += 1
    body = body if body is not None else {}
    if not isinstance(body, dict):
        return error_response(400, "The body must be a JSON object.", "invalid_request_error", None)
    for key in body:
        if key != "status_code":
            return error_response(
                400,
                f"Unknown parameter: '{key}'.",
                "invalid_request_error",
                "unknown_parameter",
                key,
            )
    status = body.get("status_code", 603)
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 699:
        return error_response(
            400,
            "Invalid 'status_code': a SIP status 400-699.",
            "invalid_request_error",
            "invalid_value",
            "status_code",
        )
    if call.state != "ringing":
        return error_response(
            400, "The call was already accepted.", "invalid_request_error", "invalid_state"
        )
    call.reject(status)
    return web.Response(status=200)


def refer(call: SimulatedCall, body: Any, faults: Faults) -> web.Response:
    """`POST …/refer` `{target_uri}`: the call leaves, or not, as `faults.refer_outcome` says."""
    if not isinstance(body, dict) or "target_uri" not in body:
        return error_response(
            400,
            "Missing required parameter: 'target_uri'.",
            "invalid_request_error",
            "missing_required_parameter",
            "target_uri",
        )
    for key in body:
        if key != "target_uri":
            return error_response(
                400,
                f"Unknown parameter: '{key}'.",
                "invalid_request_error",
                "unknown_parameter",
                key,
            )
    target = body["target_uri"]
    if not isinstance(target, str) or not target.startswith(("tel:", "sip:", "sips:")):
        return error_response(
            400,
            "Invalid 'target_uri': expected a tel: or sip: URI.",
            "invalid_request_error",
            "invalid_value",
            "target_uri",
        )
    if call.state != "accepted":
        return error_response(
            400, "The call is not answered yet.", "invalid_request_error", "invalid_state"
        )
    call.refer(target)
    outcome = faults.refer_outcome
    if outcome == "error":
        return error_response(500, "The server had an error (simulated).", "server_error", None)
    if outcome == "transfer":
        # The SIP REFER completes after the 200, like the real thing.
        asyncio.get_running_loop().call_soon(call.finish, "ended", "transferred", False)
    return web.Response(status=200)
