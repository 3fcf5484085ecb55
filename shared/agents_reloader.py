"""Hot reload of the agents file, on SIGHUP or when the file changes.

A new file is read and validated in full before anything changes; then the resolver
gets a new directory in one reference swap, so calls being decided finish with the
profiles they started with and no work is dropped. A bad new file changes nothing: the
old profiles stay and the log says which line is wrong and why.

Changes are found by polling the file's identity (inode, size, mtime) rather than with
inotify: it works the same for a Kubernetes ConfigMap (a symlink swapped under the file)
and for editors that replace the file instead of writing into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from shared.agent_directory import AgentDirectory
from shared.agents import AgentProfile
from shared.agents_file import AgentsFileError, load_agents_file
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)

FileIdentity = tuple[int, int, int] | None


def identity(path: Path) -> FileIdentity:
    try:
        stat = os.stat(path)  # follows symlinks: a swapped ConfigMap is a new file
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class AgentsReloader:
    def __init__(
        self,
        path: Path,
        default: AgentProfile,
        apply: Callable[[AgentDirectory], None],
        poll_s: float = 1.0,
    ) -> None:
        self.path = path
        self._default = default
        self._apply = apply
        self._poll_s = poll_s
        self._seen: FileIdentity = None
        self._task: asyncio.Task[None] | None = None
        self._signal_installed = False
        self.reloads = 0  # successful reloads (tests wait on it)
        self.failures = 0
        self.last_error: str | None = None
        self._changed = asyncio.Event()

    def load_initial(self) -> AgentDirectory:
        """Read the file at start-up; raises `AgentsFileError` (the service must not start)."""
        self._seen = identity(self.path)
        profiles = load_agents_file(self.path, self._default)
        log.info("agents file loaded: %d profiles", len(profiles))
        return AgentDirectory.build(self._default, profiles)

    def reload(self) -> bool:
        """Read and swap in the file now; False (old profiles kept) when it is bad."""
        self._seen = identity(self.path)
        try:
            profiles = load_agents_file(self.path, self._default)
        except AgentsFileError as error:
            self.failures += 1
            self.last_error = str(error)
            log.error("agents file not reloaded, keeping the old profiles:\n%s", error)
            self._changed.set()
            return False
        self._apply(AgentDirectory.build(self._default, profiles))
        self.reloads += 1
        self.last_error = None
        log.info("agents file reloaded: %d profiles", len(profiles))
        self._changed.set()
        return True

    async def wait_reloaded(self, attempts: int, timeout: float = 10.0) -> None:
        """Wait until `reloads + failures` reaches `attempts` (tests)."""
        async with asyncio.timeout(timeout):
            while True:
                self._changed.clear()
                if self.reloads + self.failures >= attempts:
                    return
                await self._changed.wait()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, self.reload)  # main thread only
            self._signal_installed = True
        if self._poll_s > 0:
            self._task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            if identity(self.path) != self._seen:
                self.reload()

    @property
    def signal_installed(self) -> bool:
        """SIGHUP reloads: only where the loop runs in the main thread."""
        return self._signal_installed

    async def stop(self) -> None:
        if self._signal_installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._signal_installed = False
        await cancel_and_wait(self._task)
