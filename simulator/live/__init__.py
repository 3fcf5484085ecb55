"""GPT-Live's side of a SIP call in the simulator (webhook, REST, sideband, the model).

`Simulator.live` is the `LiveSurface`; `Simulator.live.rules` switches the behaviours the
reference leaves unverified.
"""

from simulator.live.contract import ContractError, check_client_event, check_server_event
from simulator.live.rules import LiveRules
from simulator.live.session import LiveSession
from simulator.live.surface import LiveSurface

__all__ = [
    "ContractError",
    "LiveRules",
    "LiveSession",
    "LiveSurface",
    "check_client_event",
    "check_server_event",
]
