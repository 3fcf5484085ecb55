"""The sideband's proxy comes from the environment as websockets reads it (`wss` and
`https` proxies, `no_proxy`), looked up once per host rather than on every connect."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.session.sideband_socket import _proxy, proxy_for


@pytest.fixture(autouse=True)
def fresh_lookups() -> Iterator[None]:
    _proxy.cache_clear()
    yield
    _proxy.cache_clear()


def test_no_proxy_in_the_environment_connects_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("https_proxy", "HTTPS_PROXY", "wss_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_for("wss://api.openai.com/v1/realtime?call_id=rtc_1") is None


def test_an_https_proxy_is_used_unless_the_host_is_excluded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    assert (
        proxy_for("wss://api.openai.com/v1/realtime?call_id=rtc_1") == "http://proxy.internal:3128"
    )
    assert proxy_for("ws://127.0.0.1:8100/v1/realtime?call_id=rtc_2") is None


def test_the_environment_is_read_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    proxy_for("wss://api.openai.com/v1/realtime?call_id=rtc_1")
    proxy_for("wss://api.openai.com/v1/realtime?call_id=rtc_2")
    assert _proxy.cache_info().misses == 1
