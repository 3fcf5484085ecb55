"""Did an accept whose answer never came go through? Ask the call itself.

An accept that timed out may still have been applied by OpenAI; sending it again could
accept the call twice (what OpenAI does then is undocumented). The sideband tells: it
opens for an accepted call and answers 404 otherwise. Opening and closing it does not
affect the call.
"""

from __future__ import annotations

import websockets
from websockets.exceptions import InvalidHandshake, InvalidStatus

from shared.settings import Settings


class SidebandProbe:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def is_accepted(self, call_id: str, timeout: float, api: str = "realtime") -> bool | None:
        """True: accepted; False: not (yet) accepted or gone; None: could not tell."""
        key = self._settings.openai_api_key.get_secret_value()
        settings = self._settings
        url = (
            settings.live_sideband_url(call_id) if api == "live" else settings.sideband_url(call_id)
        )
        try:
            async with websockets.connect(
                url,
                additional_headers={"Authorization": f"Bearer {key}"},
                open_timeout=timeout,
                close_timeout=0.5,
            ):
                return True
        except InvalidStatus as error:
            return False if error.response.status_code == 404 else None
        except (OSError, TimeoutError, InvalidHandshake):
            return None
