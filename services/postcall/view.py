"""This process' view of the endpoints, reloaded only when the bucket changed.

The fan-out must never miss an endpoint made before an event was stored, so it checks
the bucket's revision (one small request) before each batch, and reloads the endpoints
when it moved; a watcher could lag behind and nobody would know.
"""

from __future__ import annotations

import asyncio

from shared.endpoints import Endpoint, EndpointStore


class EndpointView:
    def __init__(self, store: EndpointStore) -> None:
        self.store = store
        self.endpoints: dict[str, Endpoint] = {}
        self._revision = -1
        self._lock = asyncio.Lock()

    async def refresh(self) -> bool:
        """Reload if the bucket changed since the last look; True when it did."""
        async with self._lock:
            revision = await self.store.revision()
            if revision == self._revision:
                return False
            self.endpoints = {e.id: e for e in await self.store.all()}
            self._revision = revision
            return True
