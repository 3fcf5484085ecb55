"""Alert and recording rules: valid for promtool, and behaving as their unit tests say."""

from __future__ import annotations

import subprocess

from tests.observability.conftest import needs_promtool
from tests.observability.prometheus import RULE_TESTS_FILE, RULES_FILE


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_test_rules() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_every_alert_has_a_unit_test() -> None:
    import yaml

    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES_FILE.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    tests = yaml.safe_load(RULE_TESTS_FILE.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert alerts - fired == set(), "alerts no unit test makes fire"
