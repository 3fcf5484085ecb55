"""`Sideband`: what the call runner needs from one OpenAI API to run one call.

The runner (services/session/runner.py) knows calls, not wire protocols. Each API that
serves phone calls (Realtime today; GPT-Live next) is one adapter implementing this
protocol: it opens the call's sideband, translates OpenAI's server events into the small
API-neutral vocabulary below, turns the runner's commands into its own client events, and
offers the call's REST controls (hang up, transfer). Adding an API means adding an
adapter and naming it in `services/session/sidebands.py`; the runner does not change.

"Is the call still there?" is answered by `attach`: a live call lets us (back) in, a
finished one raises `CallGone`. An API that says so on the socket (GPT-Live's
`session.closed`) yields a `CallEnded` event instead; either way the runner ends the call.

How Realtime maps (services/session/realtime.py), and how GPT-Live would (its reference is
../shared/reference/openai-live-sip.md): caller transcript ← `…transcription.completed`
(`.failed`: `failed=True`) | Live: `session.input_transcript.delta`, grouped per turn;
agent transcript ← `response.output_audio_transcript.done` | `session.output_transcript
.delta`, grouped; tool call ← `response.function_call_arguments.done` | `response.event`
wrapping `response.output_item.done` of a `function_call`; DTMF ←
`input_audio_buffer.dtmf_event_received` | `transport.dtmf.received`; response
started/done ← `response.created`/`response.done` | the nested `response.created`/
`response.completed`; call ended ← (a re-attach's 404) | `session.closed` (`remote_hangup`
→ hangup, `expired` → expired). Commands: `Speak` with instructions → `response.create`
| `session.instructions.append`; `Speak("continue")` → `response.create` (both);
`ToolOutput` → `conversation.item.create` | `response.item.create`. Live's requests to
speak never conflict: its adapter sets `responses_conflict = False`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# -- events: what happened on the call (adapter → runner) ---------------------------------


@dataclass(frozen=True)
class CallerSpeechStarted:
    """The caller started talking (the idle guard counts caller speech)."""


@dataclass(frozen=True)
class CallerTranscript:
    """What the caller said; `failed` when OpenAI could not transcribe the turn."""

    text: str
    item_id: str | None = None
    failed: bool = False
    error: dict[str, Any] | None = None  # OpenAI's error, when failed


@dataclass(frozen=True)
class AgentTranscript:
    """What the agent said (one whole turn)."""

    text: str
    item_id: str | None = None


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class ToolCallRequested:
    """The model called a tool; the answer goes back as a `ToolOutput` command."""

    tool_call_id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True)
class ResponseStarted:
    """The model began a response: a request to speak now would conflict."""


ResponseStatus = Literal["completed", "cancelled", "failed", "incomplete"]


@dataclass(frozen=True)
class ResponseDone:
    """The model's response ended; anything but `completed` is a turn the caller lost."""

    status: ResponseStatus = "completed"
    reason: str | None = None  # OpenAI's status_details reason (e.g. "turn_detected")
    error: dict[str, Any] | None = None  # OpenAI's status_details error, when failed


@dataclass(frozen=True)
class ResponseConflict:
    """Our request to speak met a response still running: it waits for that one."""


@dataclass(frozen=True)
class AgentAudioStopped:
    """The agent's audio finished playing to the caller."""


@dataclass(frozen=True)
class AgentAudioCleared:
    """The agent's audio was cut short (the caller talked over it)."""


@dataclass(frozen=True)
class IdlePrompted:
    """OpenAI prompted a silent caller on its own (not caller activity)."""


SessionField = Literal["model", "voice", "instructions", "transcription", "turn_detection"]


@dataclass(frozen=True)
class SessionConfigured:
    """The session as OpenAI reports it (created or updated), in the agent's terms, to
    compare with what the agent asked for. Only the fields the API reports are present;
    None means off (no transcription, no turn detection). `transcription` is the model's
    name, `turn_detection` its type."""

    reported: dict[SessionField, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionExpiring:
    """OpenAI's session cap was reached: the call ends now (`max_duration`)."""


@dataclass(frozen=True)
class SidebandError:
    """An error event that needs no action beyond the log."""

    code: str
    message: str


GoneCause = Literal["hangup", "expired", "error", "unknown"]


@dataclass(frozen=True)
class CallEnded:
    """The API says on the socket that the call is over."""

    cause: GoneCause = "unknown"


SidebandEvent = (
    CallerSpeechStarted
    | CallerTranscript
    | AgentTranscript
    | Dtmf
    | ToolCallRequested
    | ResponseStarted
    | ResponseDone
    | ResponseConflict
    | AgentAudioStopped
    | AgentAudioCleared
    | IdlePrompted
    | SessionConfigured
    | SessionExpiring
    | SidebandError
    | CallEnded
)

# -- commands: what the runner asks of the call (runner → adapter) ------------------------

SpeakPurpose = Literal["greeting", "goodbye", "idle_prompt", "operator", "continue"]


@dataclass(frozen=True)
class Speak:
    """The agent should speak now: with instructions for this turn, or (`continue`) carry
    on after tool outputs."""

    purpose: SpeakPurpose
    instructions: str | None = None


@dataclass(frozen=True)
class ToolOutput:
    """The answer to one tool call."""

    tool_call_id: str
    output: str


Command = Speak | ToolOutput

# -- errors --------------------------------------------------------------------------------


class CallGone(Exception):
    """The call is over: the API no longer knows it (a re-attach answered 404)."""


class SidebandUnavailable(Exception):
    """The sideband could not be opened now (network, 5xx, timeout): try again later."""


class SidebandRefused(Exception):
    """The API refused the sideband for good (bad key, bad request): retrying cannot help."""


# -- the protocol --------------------------------------------------------------------------


class Sideband(Protocol):
    """One call's connection to one OpenAI API. Not thread-safe; one runner uses it."""

    api: str  # "realtime" | "live": goes into events and metrics
    # True when the API refuses a new response while one runs (Realtime): the runner then
    # asks for one response at a time (services/session/turns.py).
    responses_conflict: bool

    async def attach(self) -> None:
        """Open (or re-open) the sideband. Raises `CallGone`, `SidebandUnavailable` or
        `SidebandRefused`."""
        ...

    def events(self) -> AsyncIterator[SidebandEvent]:
        """The call's events until the socket closes (for whatever reason)."""
        ...

    async def send(self, command: Command) -> bool:
        """Send one command; False when no socket is attached (the caller keeps it)."""
        ...

    async def close(self) -> None:
        """Close our socket; the call itself goes on."""
        ...

    async def hang_up(self) -> str:
        """End the call over REST: the HTTP status as text ("timeout"/"error": none)."""
        ...

    async def transfer(self, uri: str) -> str:
        """SIP REFER over REST: the HTTP status as text."""
        ...
