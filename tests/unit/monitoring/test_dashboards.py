"""The dashboards import into any Grafana: the data source is a variable, and every query
filters on the ``$job`` and ``$instance`` variables instead of naming a scrape job; the check
(:func:`lsi.monitoring.dashboards.to_promql`) runs a query as Grafana sends it with the
default selection (All: ``.*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lsi.errors import ConfigError
from lsi.monitoring.dashboards import (
    Query,
    Selector,
    all_panels,
    check,
    dashboard_queries,
    dashboard_variables,
    load_dashboards,
    selectors,
    to_promql,
)
from lsi.monitoring.prometheus_api import PrometheusClient, Series

ROOT = Path(__file__).resolve().parents[3]
PROVISIONED = ROOT / "monitoring" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
FILTERS = {("job", "=~", "$job"), ("instance", "=~", "$instance")}
BOARDS = load_dashboards()


def _variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in board["templating"]["list"]}


@pytest.mark.parametrize("uid", sorted(BOARDS))
def test_every_panel_and_target_uses_the_datasource_variable(uid: str) -> None:
    for panel in all_panels(BOARDS[uid]["panels"]):
        where = f"{uid}: panel {panel['title']!r}"
        assert panel["datasource"] == DATASOURCE, where
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, f"{where} [{target['refId']}]"
    for name, var in _variables(BOARDS[uid]).items():
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE, f"{uid}: variable {name}"


@pytest.mark.parametrize("uid", sorted(BOARDS))
def test_the_datasource_variable_defaults_to_the_provisioned_prometheus(uid: str) -> None:
    yaml = pytest.importorskip("yaml")
    provisioned = yaml.safe_load(PROVISIONED.read_text(encoding="utf-8"))["datasources"]
    default = next(ds for ds in provisioned if ds.get("isDefault"))
    var = _variables(BOARDS[uid])["datasource"]
    assert var["type"] == "datasource" and var["query"] == "prometheus"
    assert not var["multi"] and not var["includeAll"]
    # a Grafana without that uid falls back to a Prometheus data source of its own
    assert var["current"]["value"] == default["uid"] and default["type"] == "prometheus"
    assert var["current"]["text"] == default["name"]


@pytest.mark.parametrize("uid", sorted(BOARDS))
def test_job_and_instance_variables_list_lsi_targets_and_default_to_all(uid: str) -> None:
    variables = _variables(BOARDS[uid])
    names = [var["name"] for var in BOARDS[uid]["templating"]["list"]]
    assert names[:3] == ["datasource", "job", "instance"]  # instance depends on job
    for name in ("job", "instance"):
        var = variables[name]
        assert var["type"] == "query" and var["multi"] and var["includeAll"], name
        assert var["allValue"] == ".*" and var["current"]["value"] == ["$__all"], name
        assert var["query"]["query"] == var["definition"], name
        assert var["definition"].startswith('label_values({__name__=~"lsi_.+"'), name
        assert var["definition"].endswith(f", {name})"), name
    assert 'job=~"$job"' in variables["instance"]["definition"]
    assert dashboard_variables(BOARDS[uid]) == {"job": ".*", "instance": ".*"}
    for link in BOARDS[uid]["links"]:
        assert link["includeVars"], f"{uid}: link {link['title']!r} drops the selection"


def test_no_query_names_a_scrape_job_and_every_selector_filters_on_the_variables() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 40
    for q in queries:
        where = f"{q.source}: {q.panel} [{q.ref}]: {q.expr}"
        found = selectors(q.expr)
        assert found, where
        for sel in found:
            assert sel.metric and not sel.metric.startswith("lsi:"), (
                f"{where}: {sel.metric or 'a nameless selector'} cannot follow $job/$instance "
                "(a recorded series has no job or instance label)"
            )
            targeting = {m for m in sel.matchers if m[0] in ("job", "instance")}
            assert targeting == FILTERS, f"{where}: {sel.metric} matches {sorted(targeting)}"
        assert "lsi-worker" not in q.expr and "lsi-refresh" not in q.expr, where


def test_the_check_runs_every_query_with_the_variables_substituted() -> None:
    for q in dashboard_queries():
        assert q.variables == (("instance", ".*"), ("job", ".*")), q
        promql = to_promql(q.expr, "1m", dict(q.variables))
        assert "$" not in promql, promql
        for sel in selectors(promql):
            assert {m for m in sel.matchers if m[0] in ("job", "instance")} == {
                ("job", "=~", ".*"), ("instance", "=~", ".*")}, promql  # fmt: skip


def test_to_promql_substitutes_dashboard_and_time_variables() -> None:
    expr = 'sum(rate(x_total{job=~"$job", instance=~"${instance}"}[$__rate_interval]))'
    variables = {"job": "(a|b)", "instance": ".*"}
    assert to_promql(expr, "2m", variables) == (
        'sum(rate(x_total{job=~"(a|b)", instance=~".*"}[2m]))'
    )
    # a longer name is another variable, and a `$` that starts no name is PromQL's
    assert to_promql('x{a=~"^v$", b="$jobs"}', variables={"jobs": "j"}) == 'x{a=~"^v$", b="j"}'
    with pytest.raises(ConfigError, match=r"\$job"):
        to_promql('up{job=~"$job"}')  # a variable the dashboard does not define
    with pytest.raises(ConfigError, match=r"\$datasource"):
        to_promql('x{a="${datasource}"}', variables=variables)


def test_dashboard_variables_take_what_the_default_selection_sends() -> None:
    def var(name: str, kind: str, value: Any, **more: Any) -> dict[str, Any]:
        return {"name": name, "type": kind, "current": {"value": value}, **more}

    board = {"templating": {"list": [
        var("datasource", "datasource", "prometheus"),
        var("job", "query", ["$__all"], includeAll=True, allValue=".*"),
        var("env", "custom", "prod"),
        var("one", "query", ["a"]),
        var("some", "query", ["a", "b"]),  # only Grafana knows how it formats several
        var("every", "query", "$__all", includeAll=True),  # All without allValue: the values
        {"name": "region", "type": "constant", "query": "eu"},
        var("window", "interval", "5m"),
    ]}}  # fmt: skip
    assert dashboard_variables(board) == {"job": ".*", "env": "prod", "one": "a", "region": "eu"}


class _Recorder(PrometheusClient):
    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:1")
        self.sent: list[str] = []

    def query(self, expr: str, at: float) -> list[Series]:
        self.sent.append(expr)
        return []


def test_check_sends_each_query_with_its_dashboards_variables() -> None:
    client = _Recorder()
    queries = [
        Query("d", "p", "A", 'up{job=~"$job"}', (("job", "(w|r)"),)),
        Query("rules", "lsi:x:rate5m", "record", "lsi:x:rate5m"),
    ]
    answers = check(client, queries, rate_interval="30s", at=0.0)
    assert client.sent == ['up{job=~"(w|r)"}', "lsi:x:rate5m"]
    assert [a.promql for a in answers] == client.sent and not any(a.ok for a in answers)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('up{job=~"$job", instance=~"$instance"}',
         [Selector("up", (("job", "=~", "$job"), ("instance", "=~", "$instance")))]),
        ('sum by (job) (a{x="}", y!~"b,c"} and on (job, instance) b)',
         [Selector("a", (("x", "=", "}"), ("y", "!~", "b,c"))), Selector("b", ())]),
        ('{__name__=~"lsi_.+"} unless ignoring (k) group_left c offset 5m',
         [Selector("", (("__name__", "=~", "lsi_.+"),)), Selector("c", ())]),
        ('label_replace(d, "to", "$1", "from", "(.*)") > bool 1e3',
         [Selector("d", ())]),
    ],
)  # fmt: skip
def test_selectors_lexer(expr: str, expected: list[Selector]) -> None:
    assert selectors(expr) == expected
