"""GPT-Live's outbound calls, simulated: `POST /v1/live/sessions` with a SIP transport,
then the callee's side on the session's sideband (`transport.ringing`, `.answered`,
`.failed`).

The request is held to reference §3.1: `session` is the SDK's `MediaSessionConfigParam`
(no `type`, no audio format), `transport` is `{type: "sip", destination, trunk}` with
exactly `provider_url`, `auth` (`digest`) and `caller_number`. Refused as OpenAI refuses:
a plain `sip:` trunk, a private, loopback, link-local or local trunk host, a destination
that is not E.164 (a SIP URI included). The trunk password is checked, never kept or
echoed. 201 `{"session": {"id"}, "transport": {"type": "sip"}}` comes before the callee
answers; the callee's progress starts when a sideband attaches (or after a moment).

Callees are set per destination (`OutboundCallees.script`): each dial takes the next
behaviour of the number's list (the last one repeats), so "busy, then answers" is
`["busy", "answer"]`. Every dial is recorded (`dials`) for tests to count.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from openai.types.live.media_session_config_param import MediaSessionConfigParam

from shared.sdk_types import SdkTypeError, check_params
from simulator.callers import CallerScript
from simulator.live.contract import ContractError
from simulator.live.model import LiveModel
from simulator.live.session import LiveSession, new_id

if TYPE_CHECKING:
    from simulator.live.surface import LiveSurface

Behaviour = Literal["answer", "busy", "no_answer", "hangup"]
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_CTL = re.compile(r"[\r\n\x00]")
# OpenAI's `transport.failed` codes are unverified (reference §7): these are ours.
FAIL_CODES: dict[str, str] = {
    "busy": "busy_here",
    "no_answer": "no_answer",
    "hangup": "declined",
}


@dataclass
class Dial:
    destination: str
    session_id: str
    caller_number: str
    behaviour: Behaviour
    session: dict[str, Any]


@dataclass
class OutboundCallees:
    """Who answers, per destination; `default` for numbers not listed."""

    default: Behaviour = "answer"
    script: dict[str, list[Behaviour]] = field(default_factory=dict)
    ring_s: float = 0.05  # ringing before the callee answers or hangs up
    no_answer_s: float = 0.3  # ringing before the network gives up
    start_unattached_s: float = 2.0  # the callee's phone rings even if nobody watches
    answer_delay_s: float = 0.0  # a fault: the 201 comes this late (the call is placed)
    caller: CallerScript = field(default_factory=CallerScript)  # the callee once answered

    def next_for(self, destination: str, dialled_before: int) -> Behaviour:
        plan = self.script.get(destination)
        if not plan:
            return self.default
        return plan[min(dialled_before, len(plan) - 1)]


def _private_host(host: str) -> bool:
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith((".localhost", ".local", ".internal")):
        return True
    if "." not in name and not name.startswith("["):
        return True
    try:
        return not ipaddress.ip_address(name.strip("[]")).is_global
    except ValueError:
        return False


def _refuse(message: str, param: str, code: str = "invalid_value") -> ContractError:
    return ContractError(message, param, code)


def check_trunk(trunk: Any) -> None:
    if not isinstance(trunk, dict):
        raise _refuse("Missing required parameter: 'transport.trunk'.", "transport.trunk")
    for key in trunk:
        if key not in ("provider_url", "auth", "caller_number"):
            raise _refuse(f"Unknown parameter: 'transport.trunk.{key}'.",
                          f"transport.trunk.{key}", "unknown_parameter")  # fmt: skip
    url = trunk.get("provider_url")
    if not isinstance(url, str) or not url.startswith("sips:"):
        raise _refuse(
            "Invalid 'transport.trunk.provider_url': TLS is required (sips:); plaintext SIP "
            "is not supported.", "transport.trunk.provider_url",
        )  # fmt: skip
    host_port, _, params = url.removeprefix("sips:").partition(";")
    host = host_port.split("]")[0] + "]" if host_port.startswith("[") else host_port.split(":")[0]
    bad = "@" in host_port or "/" in host_port or (params and params != "transport=tcp")
    if bad or not host or _private_host(host):
        raise _refuse(
            "Invalid 'transport.trunk.provider_url': the host must be a public SIP provider.",
            "transport.trunk.provider_url",
        )
    caller = trunk.get("caller_number")
    if not isinstance(caller, str) or not _E164.match(caller):
        raise _refuse("Invalid 'transport.trunk.caller_number': an E.164 number.",
                      "transport.trunk.caller_number")  # fmt: skip
    auth = trunk.get("auth")
    if not isinstance(auth, dict) or set(auth) != {"type", "username", "password"}:
        raise _refuse("Invalid 'transport.trunk.auth': {type: digest, username, password}.",
                      "transport.trunk.auth")  # fmt: skip
    username, password = auth.get("username"), auth.get("password")
    if auth.get("type") != "digest" or not isinstance(username, str) or not username.strip():
        raise _refuse("Invalid 'transport.trunk.auth'.", "transport.trunk.auth")
    if len(username.encode()) > 256 or any(c.isspace() for c in username) or _CTL.search(username):
        raise _refuse("Invalid 'transport.trunk.auth.username'.", "transport.trunk.auth.username")
    if not isinstance(password, str) or len(password.encode()) > 4096 or _CTL.search(password):
        raise _refuse("Invalid 'transport.trunk.auth.password'.", "transport.trunk.auth.password")


def check_create_body(body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(session, transport) of an outbound create, or ContractError as OpenAI refuses."""
    if not isinstance(body, dict):
        raise _refuse("The request body must be a JSON object.", "", "invalid_type")
    for key in body:
        if key not in ("session", "transport"):
            raise _refuse(f"Unknown parameter: '{key}'.", key, "unknown_parameter")
    session, transport = body.get("session"), body.get("transport")
    if not isinstance(session, dict):
        raise _refuse("Missing required parameter: 'session'.", "session",
                      "missing_required_parameter")  # fmt: skip
    if isinstance(session.get("audio"), dict) and "format" in session["audio"]:
        raise _refuse("Invalid 'session.audio.format': SIP negotiates the media format.",
                      "session.audio.format", "invalid_parameter")  # fmt: skip
    try:
        check_params(MediaSessionConfigParam, session)
    except SdkTypeError as error:
        code = "unknown_parameter" if error.reason == "unknown field" else "invalid_value"
        raise _refuse(f"Invalid 'session.{error.path}': {error.reason}.",
                      f"session.{error.path}", code) from None  # fmt: skip
    if not isinstance(transport, dict) or transport.get("type") != "sip":
        raise _refuse("Invalid 'transport.type': outbound calls take 'sip'.", "transport.type")
    for key in transport:
        if key not in ("type", "destination", "trunk"):
            raise _refuse(f"Unknown parameter: 'transport.{key}'.", f"transport.{key}",
                          "unknown_parameter")  # fmt: skip
    destination = transport.get("destination")
    if not isinstance(destination, str) or not _E164.match(destination):
        raise _refuse(
            "Invalid 'transport.destination': an E.164 number; SIP URI destinations are not "
            "supported.", "transport.destination",
        )  # fmt: skip
    check_trunk(transport.get("trunk"))
    return session, transport


class OutboundSide:
    """The outbound calls of the simulated GPT-Live."""

    def __init__(self, surface: LiveSurface) -> None:
        self._surface = surface
        self.callees = OutboundCallees()
        self.dials: list[Dial] = []
        self.active: set[str] = set()  # outbound sessions ringing or answered now
        self.most_active = 0  # the most at once (the cap's proof)
        self._dialled = asyncio.Event()

    async def wait_for_dials(self, count: int, timeout: float = 30.0) -> None:
        """Until `count` dials have reached the simulator (tests)."""
        async with asyncio.timeout(timeout):
            while len(self.dials) < count:
                self._dialled.clear()
                await self._dialled.wait()

    def dialled(self, destination: str) -> int:
        return sum(1 for dial in self.dials if dial.destination == destination)

    def create(self, session_config: dict[str, Any], transport: dict[str, Any]) -> LiveSession:
        destination = transport["destination"]
        caller = transport["trunk"]["caller_number"]
        behaviour = self.callees.next_for(destination, self.dialled(destination))
        session_id = "live_" + secrets.token_hex(16)
        session = LiveSession(
            self._surface, session_id, self.callees.caller, destination, caller,
            str(uuid.uuid4()),
        )  # fmt: skip
        session.state = "dialing"
        session.outbound_config = {"type": "live", **session_config}
        self.dials.append(Dial(destination, session_id, caller, behaviour, session_config))
        self.active.add(session_id)
        self._dialled.set()
        self.most_active = max(self.most_active, len(self.active))
        surface = self._surface
        surface.track(session)
        session.on_first_attach = lambda: surface.spawn(self._progress(session, behaviour))
        session.start_after(self.callees.start_unattached_s)
        return session

    def ended(self, session: LiveSession) -> None:
        self.active.discard(session.session_id)

    async def _progress(self, session: LiveSession, behaviour: Behaviour) -> None:
        if behaviour == "busy":
            await self._fail(session, FAIL_CODES["busy"], "The callee is busy (486).")
            return
        await session.emit_transport({"type": "transport.ringing"})
        if behaviour == "no_answer":
            await asyncio.sleep(self.callees.no_answer_s)  # the network's ring timer
            await self._fail(session, FAIL_CODES["no_answer"], "Nobody answered.")
            return
        await asyncio.sleep(self.callees.ring_s)  # the callee's hand reaching the phone
        if behaviour == "hangup":
            await self._fail(session, FAIL_CODES["hangup"], "The callee declined (603).")
            return
        if session.state != "dialing":
            return
        session.model = LiveModel(session)
        session.accept(session.outbound_config)
        await session.emit_transport({"type": "transport.answered"})

    @staticmethod
    async def _fail(session: LiveSession, code: str, message: str) -> None:
        if session.state != "dialing":
            return
        await session.emit_transport(
            {"type": "transport.failed",
             "error": {"type": "call_error", "code": code, "message": message}}
        )  # fmt: skip
        session.finish("missed")


__all__ = ["FAIL_CODES", "OutboundCallees", "OutboundSide", "check_create_body", "new_id"]
