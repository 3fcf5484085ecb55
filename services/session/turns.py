"""`TurnGate`: when Switchboard may add to the conversation. Pure: no sockets.

The Realtime API refuses a `response.create` while a response is active
(`conversation_already_has_active_response`), and a tool's output must follow the
`response.done` of the response that asked for it. So tool outputs and operator
instructions wait here until the conversation is idle, and go out together: every finished
output, then one `response.create`. The gate also remembers an ordered goodbye (end_call):
the call is hung up once the audio of the response that speaks the goodbye has played.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def function_output_item(tool_call_id: str, output_text: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": tool_call_id, "output": output_text},
    }


def say_event(instructions: str) -> dict[str, Any]:
    return {"type": "response.create", "response": {"instructions": instructions}}


@dataclass
class TurnGate:
    active: set[str] = field(default_factory=set)  # response ids in progress
    requested: bool = False  # we sent response.create; its response.created is due
    running_tools: set[str] = field(default_factory=set)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (tool_call_id, text)
    instructions: list[str] = field(default_factory=list)
    goodbye_pending: bool = False  # end_call: the next response we ask for is the goodbye
    goodbye_response: str | None = None
    _goodbye_next: bool = False

    # -- what the sideband says ------------------------------------------------------------

    def observe(self, event: dict[str, Any]) -> bool:
        """Feed a sideband event; True when the goodbye has finished playing (hang up)."""
        kind = event.get("type")
        response = event.get("response")
        response_id = response.get("id") if isinstance(response, dict) else None
        if kind == "response.created":
            self.requested = False
            if response_id:
                self.active.add(response_id)
                if self._goodbye_next:
                    self._goodbye_next = False
                    self.goodbye_response = response_id
        elif kind == "response.done":
            self.requested = False
            self.active.discard(response_id or "")
            if not response_id:
                self.active.clear()
        elif kind == "error":
            self.requested = False
        elif kind == "output_audio_buffer.stopped":
            stopped = event.get("response_id")
            return self.goodbye_response is not None and (
                stopped == self.goodbye_response or stopped is None
            )
        return False

    def reattached(self) -> None:
        """Events were lost while detached: assume nothing is in progress any more."""
        self.active.clear()
        self.requested = False

    # -- what we want to say ---------------------------------------------------------------

    def tool_started(self, tool_call_id: str) -> None:
        self.running_tools.add(tool_call_id)

    def tool_finished(self, tool_call_id: str, output_text: str, *, goodbye: bool = False) -> None:
        self.running_tools.discard(tool_call_id)
        self.outputs.append((tool_call_id, output_text))
        if goodbye:
            self.goodbye_pending = True

    def say(self, instructions: str) -> None:
        self.instructions.append(instructions)

    @property
    def idle(self) -> bool:
        return not self.active and not self.requested

    def take(self) -> list[dict[str, Any]]:
        """The events to send now (possibly none); the caller sends them in order."""
        if not self.idle or self.running_tools:
            return []
        events: list[dict[str, Any]] = []
        if self.outputs:
            events = [function_output_item(cid, text) for cid, text in self.outputs]
            self.outputs = []
            events.append({"type": "response.create"})
        elif self.instructions:
            events = [say_event(self.instructions.pop(0))]
        if events:
            self.requested = True
            if self.goodbye_pending:
                self.goodbye_pending = False
                self._goodbye_next = True
        return events
