"""`Turns`: who speaks when on a call. Pure: no sockets, no clock.

OpenAI runs one response at a time: a request to speak sent while a response runs is
refused as a conflict, and a tool's output sent before the response that asked for it is
done makes the follow-up response conflict too. So requests to speak wait in order for
the running response to end, tool outputs wait for it as well and then go out together
with one request to continue, and a request refused as a conflict goes again after the
response that was running. Outputs go before queued requests to speak: the model is
waiting for them.

The runner feeds in what happened (attached, response started/done, conflict) and what
it wants (speak, tool output), and sends the commands it gets back, in order. Commands it
could not send (the socket went) come back through `unsent` and go out after re-attach.
"""

from __future__ import annotations

from collections import deque

from services.session.sideband import Command, Speak, ToolOutput

CONTINUE = Speak("continue")


def greeting(text: str) -> Speak:
    """The model does not speak first on SIP: ask it to greet at once."""
    return Speak("greeting", f"Greet the caller: {text}")


def goodbye() -> Speak:
    """The call reached its time limit: the agent says goodbye before we hang up."""
    return Speak(
        "goodbye",
        "Say goodbye to the caller: I'm sorry, we have reached the time limit for this call. "
        "Thank you for calling, goodbye!",
    )


def idle_prompt() -> Speak:
    """The caller has been silent: ask once whether they are still there."""
    return Speak("idle_prompt", "Say to the caller: Are you still there?")


class Turns:
    def __init__(self, *, responses_conflict: bool = True) -> None:
        # False for an API whose requests to speak never conflict: they go out at once,
        # and only the continuation after tool outputs waits for the running response.
        self._serial = responses_conflict
        self.responding = False  # a response is running (or our request for one is out)
        self._attached = False
        self._queue: deque[Speak] = deque()
        self._in_flight: Speak | None = None  # the last request sent, until it is answered
        self._outputs: list[ToolOutput] = []

    @property
    def waiting(self) -> int:
        """Requests and outputs not sent yet."""
        return len(self._queue) + len(self._outputs)

    def attached(self, first: Speak | None = None) -> list[Command]:
        """A socket is open: a new socket starts with no response we know of (a conflict
        tells us otherwise); `first` goes before anything queued (the greeting)."""
        self._attached = True
        self.responding = False
        self._in_flight = None
        if first is not None:
            self._queue.appendleft(first)
        return self._next()

    def detached(self) -> None:
        self._attached = False

    def speak(self, request: Speak) -> list[Command]:
        if not self._serial and request.instructions is not None and self._attached:
            return [request]
        self._queue.append(request)
        return self._next()

    def tool_output(self, output: ToolOutput) -> list[Command]:
        self._outputs.append(output)
        return self._next()

    def response_started(self) -> None:
        self.responding = True

    def response_done(self) -> tuple[Speak | None, list[Command]]:
        """The request the response answered (None: one we did not ask for), and what
        goes out now."""
        answered, self._in_flight = self._in_flight, None
        self.responding = False
        return answered, self._next()

    def conflict(self) -> None:
        """Our request met a running response: it goes again after that one."""
        self.responding = True
        if self._in_flight is not None:
            self._queue.appendleft(self._in_flight)
            self._in_flight = None

    def unsent(self, commands: list[Command]) -> None:
        """Commands handed out but not sent (the socket went): kept for the next socket."""
        outputs = [c for c in commands if isinstance(c, ToolOutput)]
        self._outputs[:0] = outputs
        for command in reversed(commands):
            if isinstance(command, Speak) and not (command.purpose == "continue" and outputs):
                self._queue.appendleft(command)  # a continuation comes again with its outputs
        if self._in_flight is not None and self._in_flight in commands:
            self._in_flight = None
            self.responding = False

    def _next(self) -> list[Command]:
        if not self._attached:
            return []
        commands: list[Command] = []
        while not self._serial and self._queue and self._queue[0].instructions is not None:
            commands.append(self._queue.popleft())
        if self.responding:
            return commands
        if self._outputs:
            commands += [*self._outputs, CONTINUE]
            self._outputs = []
            self._start(CONTINUE)
        elif self._queue:
            request = self._queue.popleft()
            self._start(request)
            commands.append(request)
        return commands

    def _start(self, request: Speak) -> None:
        self._in_flight = request
        self.responding = True
