"""The pure decisions of post-call delivery, without servers: retries, targets, URLs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from services.postcall.retry import Step, decide, parse_retry_after, schedule_delay
from services.postcall.signing import signed_headers, webhook_id
from shared.endpoints import Endpoint, new_secret, wants
from shared.url_safety import UnsafeUrl, check_url, is_public_address
from tests.services.ingress.conftest import sign

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
schedules = st.lists(st.floats(0, 7200), min_size=1, max_size=8)


@given(schedules, st.integers(1, 1000), st.floats(0, 90000), st.integers(0, 2**32))
def test_retries_go_on_until_the_give_up_age_and_never_past_it(
    schedule: list[float], attempt: int, age: float, seed: int
) -> None:
    decision = decide(500, attempt=attempt, age_s=age, schedule=schedule, max_age_s=86400,
                      rng=random.Random(seed))  # fmt: skip
    base = schedule_delay(schedule, attempt)
    if age >= 86400:
        assert decision.step is Step.DEAD
        return
    assert decision.step is Step.RETRY  # tries go on until the give-up age
    assert age + decision.delay_s <= 86400 + 1e-6
    assert min(base * 0.8, 86400 - age) - 1e-6 <= decision.delay_s <= base * 1.2 + 1e-6


@given(schedules, st.integers(1, 50))
def test_the_last_delay_repeats(schedule: list[float], extra: int) -> None:
    assert schedule_delay(schedule, len(schedule) + extra) == schedule[-1]
    assert [schedule_delay(schedule, i + 1) for i in range(len(schedule))] == schedule


@given(st.integers(200, 299) | st.just(410), st.integers(1, 100), st.floats(0, 10**6))
def test_success_and_gone_are_final_whatever_the_age(status: int, attempt: int, age: float) -> None:
    decision = decide(status, attempt=attempt, age_s=age, schedule=[1.0], max_age_s=60)
    assert decision.step is (Step.DONE if status != 410 else Step.DISABLE)


@pytest.mark.parametrize(("retry_after", "expected"), [(30.0, 30.0), (0.5, None)])
def test_retry_after_wins_only_when_longer(retry_after: float, expected: float | None) -> None:
    decision = decide(503, attempt=1, age_s=0, schedule=[5.0], max_age_s=3600,
                      retry_after_s=retry_after, rng=random.Random(1))  # fmt: skip
    if expected is None:
        assert 4.0 <= decision.delay_s <= 6.0
    else:
        assert decision.delay_s == expected


def test_retry_after_forms() -> None:
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after("Tue, 01 Dec 2026 12:01:00 GMT", NOW) == 60
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def _endpoint(**fields: object) -> Endpoint:
    values = {"id": "ep_1", "url": "https://x.example", "secret": SecretStr(new_secret()),
              "created_at": NOW, **fields}  # fmt: skip
    return Endpoint.model_validate(values)


def test_which_endpoints_want_an_event() -> None:
    later = NOW + timedelta(seconds=1)
    plain = _endpoint()
    assert wants(plain, "call.report", None, later)
    assert not wants(plain, "call.report", None, NOW - timedelta(seconds=1))  # before it existed
    assert not wants(plain, "transcript.agent", "salon", later)
    assert wants(_endpoint(events=["*"]), "transcript.agent", None, later)
    salon = _endpoint(agents=["salon"])
    assert wants(salon, "call.report", "salon", later)
    assert not wants(salon, "call.report", "reminders", later)
    assert not wants(salon, "call.report", None, later)  # agent unknown: all-agent ones only
    assert not wants(_endpoint(disabled="gone"), "call.report", None, later)


def test_webhook_ids_are_stable_per_event_and_endpoint() -> None:
    assert webhook_id("ep_1", "rtc_a", 5) == webhook_id("ep_1", "rtc_a", 5)
    assert len({webhook_id(e, c, s) for e in ("ep_1", "ep_2") for c in ("rtc_a", "rtc_b")
                for s in (1, 2)}) == 8  # fmt: skip


def test_signatures_match_the_standard_by_hand() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"type":"call.report"}'
    headers = signed_headers([new, old], "msg_1", body, NOW)
    assert headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    expected = [sign(s, "msg_1", headers["webhook-timestamp"], body) for s in (new, old)]
    assert headers["webhook-signature"] == " ".join(expected)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
     "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:10.0.0.1", "2002:7f00:1::", "224.0.0.1",
     "ff02::1", "not-an-ip"],
)  # fmt: skip
def test_private_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111"])
def test_public_addresses(address: str) -> None:
    assert is_public_address(address)


def test_urls() -> None:
    assert check_url("https://hooks.example.com/x?a=1", allow_private=False)
    refused = (
        "http://hooks.example.com", "https://127.0.0.1", "https://foo.localhost/",
        "https://a:b@example.com", "javascript:alert(1)", "https://", "https://[::1]:8",
    )  # fmt: skip
    for bad in refused:
        with pytest.raises(UnsafeUrl):
            check_url(bad, allow_private=False)
    assert check_url("http://127.0.0.1:8080/hook", allow_private=True)
    with pytest.raises(UnsafeUrl):
        check_url("file:///etc/passwd", allow_private=True)
