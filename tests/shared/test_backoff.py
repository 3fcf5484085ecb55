"""The one backoff rule: exponential, capped, never below the first delay."""

from __future__ import annotations

import pytest

from shared.backoff import Backoff


def test_delays_double_up_to_the_cap_and_stay_there() -> None:
    backoff = Backoff(first_s=0.1, max_s=1.0)
    assert [backoff.delay(a) for a in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.delay(10_000) == 1.0  # hours of retries: no overflow


def test_the_first_retry_waits_the_first_delay() -> None:
    assert Backoff(first_s=0.05, max_s=2.0, factor=3).delay(-1) == 0.05
    assert Backoff(first_s=0.05, max_s=2.0, factor=3).delay(1) == pytest.approx(0.15)


@pytest.mark.parametrize(("first", "cap", "factor"), [(0, 1, 2), (2, 1, 2), (0.1, 1, 0.5)])
def test_nonsense_is_refused(first: float, cap: float, factor: float) -> None:
    with pytest.raises(ValueError):
        Backoff(first_s=first, max_s=cap, factor=factor)
