"""Accepting and rejecting a call through the API whose webhook brought it.

What differs between OpenAI's two voice APIs for the acceptor is here and nowhere else:
Realtime accepts with a flat body (`/v1/realtime/calls/{call_id}/accept`), GPT-Live with
the session wrapped (`/v1/live/sessions/{session_id}/accept`, `{"session": {...}}`), and
Live requires a reject status. The acceptor's decision (deadline, claim, admission,
retries) is the same for both.

An accept goes out through the SDK's client (`client.post`, its documented way to a path:
the same auth, timeout, transport and errors as `calls.accept`), with the body made once
per agent profile: the SDK's resource methods run each body through their TypedDict
transform on every call, ~0.2 ms of CPU, a tenth of what the acceptor spends on a call,
to produce what `accept_body(agent)` already is (tests/services/acceptor/test_call_apis.py
holds the two equal).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import openai
from openai._utils import path_template  # the SDK's own path encoding

from shared.accept_body import accept_body
from shared.agents import AgentProfile
from shared.live_accept import live_session


class CallApi(Protocol):
    """One API's call control, as the acceptor uses it."""

    name: str  # "realtime" | "live"

    async def accept(self, call_id: str, agent: AgentProfile, timeout: float) -> Any: ...

    async def reject(self, call_id: str, status_code: int, timeout: float) -> Any: ...


class AcceptBodies:
    """Each agent profile's accept body, made once. Profiles are not changed once built (a
    reload or a hook makes new ones), so a profile object maps to one body; the entry holds
    the profile itself, so its id cannot be reused while cached. Bounded: a hook that
    overrides profiles makes a new one per call."""

    def __init__(self, make: Callable[[AgentProfile], dict[str, Any]], size: int = 64) -> None:
        self._make = make
        self._size = size
        self._bodies: dict[int, tuple[AgentProfile, dict[str, Any]]] = {}

    def __call__(self, agent: AgentProfile) -> dict[str, Any]:
        cached = self._bodies.get(id(agent))
        if cached is not None and cached[0] is agent:
            return cached[1]
        if len(self._bodies) >= self._size:
            self._bodies.clear()
        body = self._make(agent)
        self._bodies[id(agent)] = (agent, body)
        return body


def _accept_options(timeout: float) -> Any:  # the SDK's `RequestOptions`, as its methods send
    return {"headers": {"Accept": "*/*"}, "timeout": timeout}


class RealtimeCalls:
    name = "realtime"

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self._client = client
        self._calls = client.realtime.calls
        self._bodies = AcceptBodies(accept_body)

    async def accept(self, call_id: str, agent: AgentProfile, timeout: float) -> Any:
        # `calls.accept(call_id, **accept_body(agent))` without its per-call transform.
        return await self._client.post(
            path_template("/realtime/calls/{call_id}/accept", call_id=call_id),
            body=self._bodies(agent),
            options=_accept_options(timeout),
            cast_to=type(None),
        )

    async def reject(self, call_id: str, status_code: int, timeout: float) -> Any:
        return await self._calls.reject(call_id, status_code=status_code, timeout=timeout)


class LiveSessions:
    name = "live"

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self._client = client
        self._sessions = client.live.sessions
        # The SDK's `Session` TypedDict, checked when the profile loads.
        self._bodies = AcceptBodies(lambda agent: {"session": live_session(agent)})

    async def accept(self, call_id: str, agent: AgentProfile, timeout: float) -> Any:
        # `sessions.accept(call_id, session=live_session(agent))` without its transform.
        return await self._client.post(
            path_template("/live/sessions/{session_id}/accept", session_id=call_id),
            body=self._bodies(agent),
            options=_accept_options(timeout),
            cast_to=type(None),
        )

    async def reject(self, call_id: str, status_code: int, timeout: float) -> Any:
        return await self._sessions.reject(call_id, status_code=status_code, timeout=timeout)


def call_apis(client: openai.AsyncOpenAI) -> dict[str, CallApi]:
    """Each API's call control by name (an `IncomingCall.api`)."""
    return {api.name: api for api in (RealtimeCalls(client), LiveSessions(client))}
