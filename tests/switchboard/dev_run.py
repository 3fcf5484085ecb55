"""`switchboard dev` as a real process for the tests: its output line by line as it comes,
its descendants (from /proc), and waiting for processes to end (pidfds, no polling)."""

from __future__ import annotations

import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

START_TIMEOUT_S = 150.0  # two cores shared by several test runs: starting is slow


class DevRun:
    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "dev", *args],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.errors: list[str] = []
        self._errors_changed = threading.Condition()
        self._error_reader = threading.Thread(target=self._read_errors, daemon=True)
        self._error_reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._errors_changed:
                self.errors.append(line.rstrip("\n"))
                self._errors_changed.notify_all()

    def wait_for_error(self, needle: str, timeout: float = 60.0) -> str:
        """The first stderr line containing `needle`."""
        with self._errors_changed:
            found = self._errors_changed.wait_for(
                lambda: next((line for line in self.errors if needle in line), None), timeout
            )
        assert found, f"no {needle!r} on stderr:\n" + "\n".join(self.errors)
        return found

    def wait_for_line(self, needle: str, timeout: float = START_TIMEOUT_S) -> str:
        """The first output line containing `needle` (lines seen earlier included)."""
        for line in self.lines:
            if needle in line:
                return line
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {needle!r} in:\n" + "\n".join(self.lines)) from None
            if line is None:
                raise AssertionError(
                    f"dev exited before {needle!r}:\n" + "\n".join(self.lines) + self.stderr()
                )
            self.lines.append(line)
            if needle in line:
                return line

    def finish(self, timeout: float = START_TIMEOUT_S) -> int:
        """Wait for the exit; all of stdout is in `lines` afterwards."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        self._error_reader.join(timeout=10)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        return code

    @property
    def stdout(self) -> str:
        return "\n".join(self.lines)

    def stderr(self) -> str:
        """What it wrote to stderr so far (all of it after `finish`)."""
        with self._errors_changed:
            return "".join(f"{line}\n" for line in self.errors)

    def descendants(self) -> list[int]:
        return descendants(self.process.pid)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children of all its threads, recursively)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except FileNotFoundError:
            continue
        for child in map(int, children):
            found.append(child)
            found.extend(descendants(child))
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until each process has exited (a pidfd turns readable); the ones still
    running after `timeout`."""
    deadline = time.monotonic() + timeout
    left = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                left.append(pid)
        finally:
            os.close(fd)
    return left
