"""A faithful stand-in for OpenAI's side of a SIP call, for tests, demos and load.

It sends signed `realtime.call.incoming` webhooks, serves the call-control REST API and the
sideband WebSocket, and plays scripted callers, with switchable faults.

Layout: `server` (the HTTP side, `Simulator`) → `rest` (call control) and `calls` (one
call's state) → `sideband` (the worker's client events), `model` (the voice model),
`scripted_caller` (the person on the line) → `sockets` (what goes out on the wire).
Arrows are imports; none points back.
"""

from simulator.callers import CallerScript, ScriptError, Step
from simulator.calls import CallStateError, SimulatedCall
from simulator.faults import Faults
from simulator.server import Simulator

__all__ = [
    "CallStateError",
    "CallerScript",
    "Faults",
    "ScriptError",
    "SimulatedCall",
    "Simulator",
    "Step",
]
