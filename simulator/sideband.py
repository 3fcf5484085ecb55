"""The sideband's client-event protocol for one call: what the worker may send, what each
event does, and the errors OpenAI answers with (GA event names only)."""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
from typing import Any

from simulator.model import SimulatedModel
from simulator.sockets import SidebandSockets, new_id
from simulator.validation import AcceptError, validate_accept_body


class SidebandProtocol:
    def __init__(
        self, sockets: SidebandSockets, model: SimulatedModel, changed: Callable[[], None]
    ) -> None:
        self._sockets = sockets
        self._model = model
        self._changed = changed  # something observable happened (for `wait_until`)
        self.session: dict[str, Any] = {}  # the session as OpenAI holds it
        self.client_events: list[dict[str, Any]] = []
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "session.update": self._session_update,
            "response.create": self._response_create,
            "conversation.item.create": self._item_create,
            "response.cancel": self._response_cancel,
            "output_audio_buffer.clear": self._audio_clear,
        }

    def start_session(self, accept_body: dict[str, Any], *, transcription: bool = True) -> None:
        """The call was accepted with `accept_body`: the session holds its configuration
        (without input transcription when it did not take: `transcription=False`)."""
        self.session = copy.deepcopy(accept_body)
        if not transcription:
            self.session.get("audio", {}).get("input", {}).pop("transcription", None)

    @property
    def transcribing(self) -> bool:
        """Caller audio is transcribed (the session has an input transcription model)."""
        return bool(self.session.get("audio", {}).get("input", {}).get("transcription"))

    @property
    def idle_timeout_ms(self) -> int | None:
        """Server VAD's idle timeout, when the session sets one."""
        turn = self.session.get("audio", {}).get("input", {}).get("turn_detection") or {}
        value = turn.get("idle_timeout_ms") if turn.get("type") == "server_vad" else None
        return value if isinstance(value, int) else None

    async def session_created(self) -> None:
        """The first event on every socket."""
        await self._sockets.emit({"type": "session.created", "session": self.session})

    async def handle(self, text: str) -> None:
        """One JSON message from the worker."""
        try:
            event = json.loads(text)
        except ValueError:
            await self._sockets.error("invalid_json", "The message is not valid JSON.")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self._sockets.error(
                "invalid_event", "An event must be a JSON object with a 'type'."
            )
            return
        self.client_events.append(event)
        self._changed()
        kind = event["type"]
        handler = self._handlers.get(kind)
        if handler is None:
            await self._sockets.error(
                "invalid_value",
                f"Invalid value: '{kind}'. Supported values are: "
                + ", ".join(f"'{name}'" for name in self._handlers)
                + ".",
                "type",
                event.get("event_id"),
            )
            return
        await handler(event)

    async def _session_update(self, event: dict[str, Any]) -> None:
        session = event.get("session")
        if not isinstance(session, dict) or session.get("type") != "realtime":
            await self._sockets.error(
                "missing_required_parameter",
                "Missing required parameter: 'session.type'. It must be 'realtime'.",
                "session.type",
                event.get("event_id"),
            )
            return
        try:
            validate_accept_body(session)
        except AcceptError as exc:
            param = f"session.{exc.param}" if exc.param else None
            await self._sockets.error(exc.code, exc.message, param, event.get("event_id"))
            return
        for key, value in session.items():
            if key == "audio" and isinstance(value, dict):
                audio = self.session.setdefault("audio", {})
                for side, part in value.items():
                    if isinstance(part, dict) and isinstance(audio.get(side), dict):
                        audio[side] = {**audio[side], **part}
                    else:
                        audio[side] = part
            else:
                self.session[key] = value
        await self._sockets.emit({"type": "session.updated", "session": self.session})

    async def _response_create(self, event: dict[str, Any]) -> None:
        if self._model.active:
            await self._sockets.error(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: "
                f"{self._model.response_id}. Wait until the response is finished before "
                "creating a new one.",
                None,
                event.get("event_id"),
            )
            return
        response = event.get("response") or {}
        instructions = response.get("instructions") if isinstance(response, dict) else None
        self._model.respond(instructions)

    async def _item_create(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            await self._sockets.error(
                "missing_required_parameter",
                "Missing required parameter: 'item.type'.",
                "item.type",
                event.get("event_id"),
            )
            return
        if item["type"] == "function_call_output":
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("output"), str):
                await self._sockets.error(
                    "invalid_value",
                    "A function_call_output item needs a string 'call_id' and 'output'.",
                    "item",
                    event.get("event_id"),
                )
                return
            self._model.tool_output(item["call_id"])
        item = {"id": item.get("id") or new_id("item"), "object": "realtime.item", **item}
        item.setdefault("status", "completed")
        emit = self._sockets.emit
        await emit({"type": "conversation.item.added", "previous_item_id": None, "item": item})
        await emit({"type": "conversation.item.done", "previous_item_id": None, "item": item})

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        if not await self._model.cancel():
            await self._sockets.error(
                "response_cancel_not_active",
                "Cancellation failed: no active response found.",
                None,
                event.get("event_id"),
            )

    async def _audio_clear(self, event: dict[str, Any]) -> None:
        await self._model.clear_audio()
