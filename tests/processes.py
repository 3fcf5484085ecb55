"""Stopping a real process (nats-server, a worker) the way a long GC pause or a stalled disk
would: SIGSTOP, and SIGCONT when the fault is over."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def stopped(pid: int, timeout_s: float = 5.0) -> Iterator[None]:
    """The process is stopped for the whole block. A stop signal is delivered
    asynchronously (a thread running on another core stops a moment later): the block
    starts only once every thread of the process is stopped, so nothing sent inside it is
    answered before the block ends (seen once in CI: a lease renewal answered "under" a
    SIGSTOP that had not landed yet)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        _until_every_thread_stopped(pid, timeout_s)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _until_every_thread_stopped(pid: int, timeout_s: float) -> None:
    give_up = time.monotonic() + timeout_s
    while not all(_state(task) in ("T", "t") for task in Path(f"/proc/{pid}/task").iterdir()):
        if time.monotonic() > give_up:
            raise TimeoutError(f"process {pid} did not stop")
        time.sleep(0.0005)  # the kernel tells no one when a stop lands: look again


def _state(task: Path) -> str:
    try:
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "T"  # a thread that exited is not running either
