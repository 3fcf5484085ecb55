"""A faithful stand-in for OpenAI's side of a SIP call, for tests, demos and load.

It sends signed `realtime.call.incoming` webhooks, serves the call-control REST API and the
sideband WebSocket, and plays scripted callers, with switchable faults.
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
