"""The child processes of `switchboard dev`: they die with it, and their logs say why.

Each child gets `PR_SET_PDEATHSIG` (Linux): when `switchboard dev` dies without stopping
them in order (SIGKILL, say), the kernel signals the child, so neither a service nor
`nats-server` outlives the stack: SIGKILL for the services (with NATS gone too, a graceful
drain would only wait for it), SIGTERM for `nats-server` (it closes its store cleanly).
Each run appends to the children's logs after a separator line, and a child that exits
early is explained by the last line it wrote after that separator (a service's
configuration error is one line).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn` that makes the child get `sig` when this process dies."""
    parent = os.getpid()

    def arm() -> None:  # runs in the child, between fork and exec
        with contextlib.suppress(Exception):  # not Linux: Ctrl-C and SIGTERM still stop it
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def open_log(path: Path, run: str) -> tuple[BinaryIO, int]:
    """The child's log, opened for appending after a line that starts this run; and the
    offset where this run's lines begin."""
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "ab")
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    log.write(f"\n===== switchboard dev run {run}, {stamp} =====\n".encode())
    log.flush()
    return log, log.tell()


def last_line(path: Path, since: int) -> str:
    """The last non-empty line written to `path` after offset `since` ('' if none)."""
    try:
        with open(path, "rb") as log:
            log.seek(since)
            tail = log.read()[-8192:].decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ServiceFailed(RuntimeError):
    """A child exited or never became ready; the message is its own last log line."""

    def __init__(self, name: str, reason: str, returncode: int | None) -> None:
        if returncode is None:
            what = f"not ready: {reason}"
        elif returncode < 0:
            what = f"killed by {signal.Signals(-returncode).name} (last log line: {reason})"
        elif returncode == 2:  # a configuration error: its one line says it all
            what = f"exited: {reason}"
        else:
            what = f"exited with code {returncode}: {reason}"
        super().__init__(f"{name} {what}")
        self.returncode = returncode


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    ready_url: str | None
    log: Path
    since: int  # where this run's lines begin in `log`

    def alive(self) -> bool:
        return self.process.poll() is None

    def failure(self) -> ServiceFailed:
        """Why it exited (or is not ready): its last log line of this run."""
        reason = last_line(self.log, self.since) or f"no output; see {self.log}"
        return ServiceFailed(self.name, reason, self.process.poll())


def report_exits(children: list[Child]) -> None:
    """Say on the terminal, with its reason, when a child dies while the loop runs (a
    pidfd per child turns readable when it exits; Linux only)."""
    loop = asyncio.get_running_loop()
    for child in children:
        try:
            fd = os.pidfd_open(child.process.pid)
        except (AttributeError, OSError):
            continue

        def exited(child: Child = child, fd: int = fd) -> None:
            loop.remove_reader(fd)
            os.close(fd)
            child.process.wait()
            print(f"switchboard dev: {child.failure()}", file=sys.stderr, flush=True)

        loop.add_reader(fd, exited)
