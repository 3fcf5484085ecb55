"""Dashboard queries and rule expressions, run by a real Prometheus scraping a live stack.

Grafana cannot run here; Prometheus can. If every panel's query and every rule's
expression parses and evaluates in the Prometheus that scraped real calls, and the key
ones return data, the dashboard shows what it claims to.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from simulator import CallerScript
from simulator.webhooks import incoming_call_event, new_webhook_id, signed_headers
from tests.observability.conftest import needs_prometheus
from tests.observability.prometheus import (
    DASHBOARD_FILE,
    Prometheus,
    QueryError,
    dashboard_queries,
    grafana_to_promql,
    rule_expressions,
)
from tests.stack import Stack, new_webhook_secret

HANG_UP = CallerScript.model_validate(
    {"name": "short", "steps": [{"say": "Is the shop open today?", "reply": "Yes."},
                                {"hangup": True}]}
)  # fmt: skip
AGENT_ENDS = CallerScript.model_validate(
    {"name": "bye", "steps": [{"say": "That's all, thanks.", "reply": "Goodbye!"},
                              {"tool_call": {"name": "end_call"}}]}
)  # fmt: skip
FORGED = 12  # more than the auth-failure alert's threshold of 10 in 5 minutes

# Panels whose every query must return data once calls have flowed.
KEY_PANELS = (
    "Calls now",
    "Calls per minute",
    "Workers ready",
    "Free slots",
    "Active calls and capacity",
    "Call end reasons",
    "Webhook outcomes",
    "Webhook auth failures",
    "Accept latency p50 / p99",
)


@pytest.fixture
async def prometheus(stack: Stack, tmp_path: Path) -> AsyncIterator[Prometheus]:
    """Scrapes the stack's ingress and acceptor ports. In-process, they share one registry,
    so sums count twice; these tests look for data and validity, not exact values."""
    assert stack.ingress is not None and stack.acceptor is not None
    server = Prometheus(
        tmp_path / "prometheus",
        {
            "switchboard-ingress": [f"127.0.0.1:{stack.ingress.http.port}"],
            "switchboard-acceptor": [f"127.0.0.1:{stack.acceptor.http.port}"],
        },
    )
    # Blocking calls go to a thread: the stack serves the scrapes from this event loop.
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def _forge_webhooks(url: str, count: int) -> None:
    """Webhooks signed with a secret the ingress does not know: 401 bad_signature."""
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            webhook_id = new_webhook_id()
            body = incoming_call_event("rtc_" + "0" * 32, "+18005551212", "+15550000000")
            headers = signed_headers(new_webhook_secret(), webhook_id, body)
            async with session.post(url, data=body, headers=headers) as reply:
                assert reply.status == 401


@needs_prometheus
async def test_dashboard_and_rules_against_a_real_prometheus(
    stack: Stack, prometheus: Prometheus
) -> None:
    assert stack.simulator is not None
    # A baseline scrape before any call, so rates and increases see the calls arrive.
    await asyncio.to_thread(prometheus.wait_for, 'count(up{job=~"switchboard-.*"} == 1) == 2')

    calls = [await stack.simulator.place_call(HANG_UP) for _ in range(3)]
    calls.append(await stack.simulator.place_call(AGENT_ENDS))
    await _forge_webhooks(stack.webhook_url, FORGED)
    await stack.events.wait_all([call.call_id for call in calls], "call.report", timeout=30)

    for condition in (
        'sum(switchboard_calls_ended_total{reason="caller_hangup"}) >= 3',
        'sum(switchboard_calls_ended_total{reason="agent_hangup"}) >= 1',
        'sum(switchboard_accept_decisions_total{outcome="accepted"}) >= 4',
        'sum(switchboard_webhooks_total{outcome="published"}) >= 4',
        f'sum(switchboard_webhook_auth_failures_total{{reason="bad_signature"}}) >= {FORGED}',
        "sum(switchboard_session_free_slots) > 0",
        "sum(switchboard_session_capacity) > 0",
        "count(switchboard_session_active_calls) > 0",
        "count(max by (stream, consumer) (switchboard_nats_consumer_pending_messages)) == 2",
    ):
        await asyncio.to_thread(prometheus.wait_for, condition)

    dashboard = json.loads(DASHBOARD_FILE.read_text())
    failures: list[str] = []
    empty: list[tuple[str, str]] = []
    for title, expr in dashboard_queries(dashboard):
        promql = grafana_to_promql(expr)
        try:
            instant = await asyncio.to_thread(prometheus.query, promql)
            ranged = await asyncio.to_thread(prometheus.query_range, promql)
        except QueryError as error:
            failures.append(f"{title}: {expr}: {error}")
            continue
        if title in KEY_PANELS and not (instant and ranged):
            empty.append((title, promql))
    for name, expr in rule_expressions():
        try:
            await asyncio.to_thread(prometheus.query, expr)
        except QueryError as error:
            failures.append(f"rule {name}: {error}")
    assert failures == []
    # A series born with the first call needs a few scrapes before rate() sees it.
    for title, promql in empty:
        try:
            await asyncio.to_thread(prometheus.wait_for, promql, 20.0)
        except TimeoutError:
            failures.append(f"{title}: no data for {promql}")
    assert failures == []

    await _rules_evaluate_cleanly(prometheus)
    await _alert_goes_pending(prometheus, "SwitchboardWebhookAuthFailureSpike")


async def _rules_evaluate_cleanly(prometheus: Prometheus, timeout: float = 30.0) -> None:
    """Prometheus itself evaluated every rule of the file, without an error."""
    deadline = time.monotonic() + timeout
    while True:
        groups = (await asyncio.to_thread(prometheus.api, "rules"))["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if rules and all(rule["health"] != "unknown" for rule in rules):
            break
        assert time.monotonic() < deadline, "rules never evaluated"
        await asyncio.sleep(0.25)  # polling Prometheus' rule evaluation
    assert len(rules) == len(rule_expressions())
    bad = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert bad == {}


async def _alert_goes_pending(prometheus: Prometheus, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        alerts = (await asyncio.to_thread(prometheus.api, "alerts"))["alerts"]
        states = {a["labels"]["alertname"]: a["state"] for a in alerts}
        if states.get(name) in ("pending", "firing"):
            return
        assert time.monotonic() < deadline, f"{name} not pending; alerts: {states}"
        await asyncio.sleep(0.25)  # polling Prometheus' alert state
