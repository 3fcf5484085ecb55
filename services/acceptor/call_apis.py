"""Accepting and rejecting a call through the API whose webhook brought it.

What differs between OpenAI's two voice APIs for the acceptor is here and nowhere else:
Realtime accepts with a flat body (`/v1/realtime/calls/{call_id}/accept`), GPT-Live with
the session wrapped (`/v1/live/sessions/{session_id}/accept`, `{"session": {...}}`), and
Live requires a reject status. The acceptor's decision (deadline, claim, admission,
retries) is the same for both.
"""

from __future__ import annotations

from typing import Any, Protocol

import openai

from shared.accept_body import accept_body
from shared.agents import AgentProfile
from shared.live_accept import live_session


class CallApi(Protocol):
    """One API's call control, as the acceptor uses it."""

    name: str  # "realtime" | "live"

    async def accept(self, call_id: str, agent: AgentProfile, timeout: float) -> Any: ...

    async def reject(self, call_id: str, status_code: int, timeout: float) -> Any: ...


class RealtimeCalls:
    name = "realtime"

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self._calls = client.realtime.calls

    async def accept(self, call_id: str, agent: AgentProfile, timeout: float) -> Any:
        return await self._calls.accept(call_id, **accept_body(agent), timeout=timeout)

    async def reject(self, call_id: str, status_code: int, timeout: float) -> Any:
        return await self._calls.reject(call_id, status_code=status_code, timeout=timeout)


class LiveSessions:
    name = "live"

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self._sessions = client.live.sessions

    async def accept(self, call_id: str, agent: AgentProfile, timeout: float) -> Any:
        session: Any = live_session(agent)  # the SDK's `Session` TypedDict, checked at load
        return await self._sessions.accept(call_id, session=session, timeout=timeout)

    async def reject(self, call_id: str, status_code: int, timeout: float) -> Any:
        return await self._sessions.reject(call_id, status_code=status_code, timeout=timeout)


def call_apis(client: openai.AsyncOpenAI) -> dict[str, CallApi]:
    """Each API's call control by name (an `IncomingCall.api`)."""
    return {api.name: api for api in (RealtimeCalls(client), LiveSessions(client))}
