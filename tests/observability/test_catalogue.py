"""The dashboard and the rules use only metrics that exist, and metrics keep to one scheme.

A renamed metric would otherwise leave a silent empty panel or an alert that never fires.
"""

from __future__ import annotations

import json
import re

import yaml
from prometheus_client import REGISTRY

import shared.metrics  # noqa: F401 - registers every Switchboard metric
from tests.observability.prometheus import (
    DASHBOARD_FILE,
    RULES_FILE,
    dashboard_queries,
    rule_expressions,
)

_NAME = re.compile(r"\b(switchboard[_:][a-zA-Z0-9_:]*|faststream_[a-zA-Z0-9_]*)")
_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_created")
# FastStream's NatsPrometheusMiddleware (the acceptor) exports these.
_FASTSTREAM = {
    "faststream_received_processed_messages_total",
    "faststream_received_processed_messages_duration_seconds_bucket",
}


def _catalogue() -> set[str]:
    names: set[str] = set()
    for metric in REGISTRY.collect():
        if metric.name.startswith("switchboard_"):
            names.update(metric.name + suffix for suffix in _SUFFIXES)
    return names


def _recorded() -> set[str]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def test_dashboard_and_rules_use_known_metrics() -> None:
    known = _catalogue() | _recorded() | _FASTSTREAM
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    queries = dashboard_queries(dashboard) + rule_expressions()
    unknown = {
        (where, name)
        for where, expr in queries
        for name in _NAME.findall(expr)
        if name not in known
    }
    assert unknown == set()


def test_metric_names_follow_the_scheme() -> None:
    for metric in REGISTRY.collect():
        if not metric.name.startswith("switchboard_"):
            continue
        if metric.type == "histogram":
            assert metric.name.endswith("_seconds"), metric.name
        for sample in metric.samples:
            assert "call_id" not in sample.labels, metric.name
            assert "worker" not in sample.labels, metric.name  # the instance label says it


def test_dashboard_is_provisionable() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    assert dashboard["uid"] == "switchboard"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    titles = {panel["title"] for panel in dashboard["panels"]}
    for wanted in (
        "Calls now", "Calls per minute", "Accept latency p50 / p99", "Rejects by reason",
        "Failures", "Capacity used", "Workers ready", "Tool runs", "Tool latency p50 / p99",
        "Transfers", "NATS backlog", "Webhook outcomes", "Webhook auth failures",
        "Call end reasons",
    ):  # fmt: skip
        assert wanted in titles
