"""A real `prometheus` binary on loopback, for tests, and a small client for its query API.

Grafana cannot run here, so dashboards and rules are checked the next best way: every
query goes through the same Prometheus engine Grafana would send it to.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from switchboard.nats_server import free_port

REPO = Path(__file__).resolve().parents[2]
RULES_FILE = REPO / "deploy/prometheus/rules/switchboard.yml"
RULE_TESTS_FILE = REPO / "deploy/prometheus/tests/switchboard_test.yml"
DASHBOARD_FILE = REPO / "deploy/grafana/dashboards/switchboard.json"


class QueryError(Exception):
    """Prometheus refused a query (it does not parse, or fails to evaluate)."""


class Prometheus:
    """Runs `prometheus` with a temp config that scrapes `targets` every second."""

    def __init__(self, workdir: Path, targets: dict[str, list[str]]) -> None:
        self.binary = shutil.which("prometheus")
        if self.binary is None:
            raise FileNotFoundError("prometheus")
        self.workdir = workdir
        self.targets = targets
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log: BinaryIO | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(RULES_FILE)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]}
                for job, targets in self.targets.items()
            ],
        }
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.log = open(self.workdir / "prometheus.log", "wb")  # closed in stop()
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready: {self.log_text()[-2000:]}")
            time.sleep(0.1)  # polling the child's readiness endpoint

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    def log_text(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a success, QueryError otherwise."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                body = json.load(reply)
        except urllib.error.HTTPError as error:  # 400 bad_data: a query that does not parse
            body = json.load(error)
        if body.get("status") != "success":
            raise QueryError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's samples (a scalar result comes back as one sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def query_range(self, expr: str, seconds: int = 60, step: str = "1s") -> list[dict[str, Any]]:
        end = time.time()
        data = self.api(
            "query_range", query=expr, start=str(end - seconds), end=str(end), step=step
        )
        return data["result"]

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until `expr` returns data (a filter like `> 0` makes this a condition)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"no data for {expr!r} within {timeout}s")
            time.sleep(0.25)  # polling Prometheus until the scraped data is there


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel, rows' nested panels included."""
    found = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((panel["title"], target["expr"]))

    walk(dashboard["panels"])
    return found


def grafana_to_promql(expr: str, rate_interval: str = "15s") -> str:
    """Grafana's built-in variables replaced by what Grafana would send."""
    for variable, value in (
        ("$__rate_interval", rate_interval),
        ("$__interval", "1s"),
        ("$__range", "5m"),
    ):
        expr = expr.replace(variable, value)
    return expr


def rule_expressions() -> list[tuple[str, str]]:
    """(rule name, expr) of every recording and alerting rule."""
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return [
        (rule.get("alert") or rule["record"], rule["expr"])
        for group in groups
        for rule in group["rules"]
    ]
