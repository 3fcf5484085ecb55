"""The embedded `nats-server` the suite, `switchboard dev` and the benchmarks run."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from switchboard.nats_server import NatsServer, PortTaken, free_port


def test_free_port_never_hands_out_the_same_port_twice() -> None:
    """Two servers given ports in one breath must not be given the same one."""
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


def test_two_processes_picking_at_once_never_get_the_same_port() -> None:
    """pytest-xdist workers and the dev stacks they start pick ports at the same time."""
    script = (
        "from switchboard.nats_server import free_port\nprint([free_port() for _ in range(300)])"
    )
    other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    mine = {free_port() for _ in range(300)}
    theirs = set(ast.literal_eval(other.communicate(timeout=60)[0]))
    assert len(theirs) == 300 and not mine & theirs


def test_a_server_that_cannot_bind_says_why(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = NatsServer(tmp_path / "nats", port=port)  # a port of ours: no re-pick
        with pytest.raises(PortTaken, match="address already in use"):
            server.start()
        server.stop()


def test_a_server_picking_its_own_ports_starts_past_a_taken_one(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", server.port))
        taken.listen()
        busy = server.port
        try:
            server.start()
            assert server.port != busy
        finally:
            server.stop()
