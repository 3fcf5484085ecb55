"""The sideband's proxy comes from the environment as websockets reads it (`wss` and
`https` proxies, `no_proxy`), looked up once per host rather than on every connect."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.session.sideband_socket import _PROXIES, proxy_for

PROXY = "http://proxy.internal:3128"


@pytest.fixture(autouse=True)
def fresh_lookups() -> Iterator[None]:
    _PROXIES.clear()
    yield
    _PROXIES.clear()


def test_no_proxy_in_the_environment_connects_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("https_proxy", "HTTPS_PROXY", "wss_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_for("wss://api.openai.com/v1/realtime?call_id=rtc_1") is None


def test_an_https_proxy_is_used_unless_the_host_is_excluded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("https_proxy", PROXY)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    assert proxy_for("wss://api.openai.com/v1/realtime?call_id=rtc_1") == PROXY
    assert proxy_for("ws://127.0.0.1:8100/v1/realtime?call_id=rtc_2") is None
    assert proxy_for("ws://[::1]:8100/v1/live?session_id=live_3") == PROXY


def test_the_environment_is_read_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", PROXY)
    assert proxy_for("wss://api.openai.com/v1/realtime?call_id=rtc_1") == PROXY
    monkeypatch.delenv("https_proxy")
    assert proxy_for("wss://api.openai.com/v1/realtime?call_id=rtc_2") == PROXY  # remembered
    assert proxy_for("wss://other.example/v1/realtime?call_id=rtc_3") is None
