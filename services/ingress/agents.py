"""The agents the ingress knows, for `POST /calls` (which agent may dial, with which trunk).

The same file as the acceptor's (`SWITCHBOARD_AGENTS_FILE`), read and hot-reloaded the same
way. A bad file never stops the ingress (webhooks matter more): it logs why and knows the
environment's default agent only until the file is fixed.
"""

from __future__ import annotations

import logging

from shared.agent_directory import AgentDirectory
from shared.agents import AgentProfile, default_agent
from shared.agents_file import AgentsFileError
from shared.agents_reloader import AgentsReloader
from shared.settings import Settings

log = logging.getLogger(__name__)


class IngressAgents:
    def __init__(self, settings: Settings) -> None:
        default = default_agent(settings)
        self.directory = AgentDirectory.build(default, [])
        self.reloader: AgentsReloader | None = None
        if settings.switchboard_agents_file is not None:
            self.reloader = AgentsReloader(
                settings.switchboard_agents_file, default, apply=self._swap
            )
            try:
                self.directory = self.reloader.load_initial()
            except AgentsFileError as error:
                log.error("agents file not loaded; outbound calls refused until fixed:\n%s", error)

    def _swap(self, directory: AgentDirectory) -> None:
        self.directory = directory

    def named(self, name: str) -> AgentProfile | None:
        return self.directory.named(name)

    def start(self) -> None:
        if self.reloader is not None:
            self.reloader.start()

    async def stop(self) -> None:
        if self.reloader is not None:
            await self.reloader.stop()
