"""docs/metrics.md stays the catalogue: every metric, recorded series, alert and panel is in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsi.monitoring.dashboards import all_panels, load_dashboards, rules_from_files

pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")


def test_every_exported_metric_is_documented_with_its_labels() -> None:
    from prometheus_client import CollectorRegistry

    from lsi.monitoring.metrics import RefreshMetrics, WorkerMetrics

    registry = CollectorRegistry()
    WorkerMetrics(registry)
    RefreshMetrics(registry)
    rows = {line.split("|")[1].strip().strip("`"): line for line in DOC.splitlines()
            if line.startswith("| `lsi_")}  # fmt: skip
    for family in registry.collect():
        name = family.name + {"counter": "_total", "info": "_info"}.get(family.type, "")
        assert name in rows, f"{name} is not in docs/metrics.md"
        labels = {label for s in family.samples for label in s.labels if label != "le"}
        for label in labels:
            assert f"`{label}`" in rows[name], f"{name}: label {label} not documented"


def test_every_rule_alert_and_panel_is_documented() -> None:
    import yaml

    for name, _ in rules_from_files():
        assert f"`{name}`" in DOC, f"recording rule {name} is not in docs/metrics.md"
    rules = yaml.safe_load((ROOT / "monitoring/prometheus/rules/lsi.rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert f"`{rule['alert']}`" in DOC, f"alert {rule['alert']} is not documented"
    for uid, board in load_dashboards().items():
        assert f"(`{uid}`)" in DOC, f"dashboard {uid} is not documented"
        for panel in all_panels(board["panels"]):
            assert f"| {panel['title']} |" in DOC, f"{uid}: panel {panel['title']!r} missing"
