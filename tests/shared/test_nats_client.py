"""Every service's NATS connection is set up deliberately (shared/nats.py)."""

from __future__ import annotations

from shared.nats import CLIENT_OPTIONS, MAX_OUTSTANDING_PINGS, PING_INTERVAL_S


def test_pings_tolerate_two_minutes_without_cpu_and_every_service_uses_them() -> None:
    assert PING_INTERVAL_S * MAX_OUTSTANDING_PINGS == 120
    assert CLIENT_OPTIONS["ping_interval"] == PING_INTERVAL_S
    assert CLIENT_OPTIONS["max_outstanding_pings"] == MAX_OUTSTANDING_PINGS
