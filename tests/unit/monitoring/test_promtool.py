"""The alert unit tests (``monitoring/prometheus/tests``) make every alert of the shipped rules
fire at least once. promtool itself, on the config, the rules and those tests, runs in
``tests/component/test_promtool.py`` (slow: a process each)."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

PROMETHEUS = Path(__file__).resolve().parents[3] / "monitoring" / "prometheus"


def test_every_alert_has_a_firing_unit_test() -> None:
    alerts = {
        rule["alert"]
        for path in (PROMETHEUS / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    tested = set()
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                if case["exp_alerts"]:
                    tested.add(case["alertname"])
    assert alerts - tested == set(), (
        f"alerts without a test that makes them fire: {alerts - tested}"
    )
