"""What the Grafana dashboards and the Prometheus rules query, and a live check of it.

The dashboards (``monitoring/grafana/dashboards/*.json``) and the recording rules
(``monitoring/prometheus/rules/*.yml``) are read as data: every panel target becomes a
:class:`Query`, and :func:`check` runs each through a Prometheus server's HTTP API as Grafana
would send it with the dashboard's default selection (:func:`to_promql`: ``$job`` and
``$instance`` become their "All" value ``.*``, ``$__rate_interval`` a fixed duration). A query
with no series means a panel that would show "No data" (a metric that is not exported, a label
that never gets a value, a rule that never evaluates), so ``lsi monitoring check`` and the live
integration test require every one to answer. :func:`coverage` is the other direction: a
metric the workers export that no panel shows, or a panel that shows no lsi metric.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsi.errors import ConfigError, LsiError
from lsi.monitoring.prometheus_api import PrometheusClient

__all__ = [
    "DASHBOARDS_DIR",
    "PROMETHEUS_BUILTINS",
    "RULES_DIR",
    "Answer",
    "Query",
    "Selector",
    "all_panels",
    "check",
    "coverage",
    "dashboard_queries",
    "dashboard_variables",
    "exported_families",
    "load_dashboards",
    "metric_names",
    "recording_rules",
    "rules_from_files",
    "selectors",
    "server_queries",
    "to_promql",
]


def _monitoring_dir() -> Path:
    """The checkout's ``monitoring/`` (what the compose stack mounts), or, in an installed
    wheel, the copy the build puts at ``lsi/_monitoring`` (``pyproject.toml``,
    ``force-include``)."""
    package = Path(__file__).resolve().parents[1]  # lsi/
    checkout = package.parent / "monitoring"
    return checkout if checkout.is_dir() else package / "_monitoring"


_MONITORING = _monitoring_dir()
DASHBOARDS_DIR = _MONITORING / "grafana" / "dashboards"
RULES_DIR = _MONITORING / "prometheus" / "rules"


@dataclass(frozen=True, slots=True)
class Query:
    """One expression a dashboard panel (or a recording rule) asks Prometheus for.

    Attributes:
        source: the dashboard's uid, or ``rules`` for a recording rule.
        panel: the panel's title, or the recorded series' name.
        ref: the target's refId (``record`` for a rule).
        expr: the expression as written (Grafana variables included).
        variables: the dashboard's variables and the value each has under its default
            selection (:func:`dashboard_variables`), for :func:`to_promql`.
    """

    source: str
    panel: str
    ref: str
    expr: str
    variables: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Answer:
    """What Prometheus answered to one :class:`Query` (``error`` set when it refused)."""

    query: Query
    promql: str
    series: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.series > 0


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> dict[str, dict[str, Any]]:
    """Every dashboard JSON of ``directory`` by uid."""
    files = sorted(directory.glob("*.json"))
    if not files:
        raise ConfigError(f"no dashboard JSON files in {directory}; pass --dashboards DIR")
    out: dict[str, dict[str, Any]] = {}
    for path in files:
        try:
            board = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc})") from None
        out[str(board.get("uid") or path.stem)] = board
    return out


def all_panels(panels: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Panels including those nested in collapsed rows; row headers themselves are skipped."""
    out: list[dict[str, Any]] = []
    for panel in panels:
        if panel.get("type") == "row":
            out.extend(all_panels(panel.get("panels", [])))
        else:
            out.append(panel)
    return out


def dashboard_variables(board: Mapping[str, Any]) -> dict[str, str]:
    """What each of a dashboard's variables puts into a query under its default selection.

    A variable whose "All" is selected gives its ``allValue`` (``$job`` and ``$instance``:
    ``.*``, every target), a constant its value, any other its selected value. A variable
    whose value only Grafana can know (All without ``allValue``, several values, a data
    source) is left out, so :func:`to_promql` refuses an expression that uses it.
    """
    out = {}
    for var in board.get("templating", {}).get("list", []):
        kind, name = var.get("type"), str(var.get("name", ""))
        value = (var.get("current") or {}).get("value")
        if kind == "constant":
            value = var.get("query", value)
        elif kind not in ("query", "custom", "textbox"):
            continue
        if isinstance(value, list):
            value = value[0] if len(value) == 1 else None
        if value == "$__all":
            value = var.get("allValue") if var.get("includeAll") else None
        if name and isinstance(value, str) and value:
            out[name] = value
    return out


def dashboard_queries(directory: Path = DASHBOARDS_DIR) -> list[Query]:
    """Every non-empty target expression of every panel of every dashboard."""
    out = []
    for uid, board in load_dashboards(directory).items():
        variables = tuple(sorted(dashboard_variables(board).items()))
        for panel in all_panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                expr = str(target.get("expr", "")).strip()
                if expr:
                    out.append(Query(uid, str(panel.get("title", "")), target.get("refId", ""),
                                     expr, variables))  # fmt: skip
    return out


def rules_from_files(directory: Path = RULES_DIR) -> list[tuple[str, str]]:
    """``(recorded series, expression)`` of every recording rule in ``directory``'s ``*.yml``
    (needs PyYAML; a live check reads the rules from the server instead)."""
    import yaml

    out = []
    for path in sorted(directory.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                if "record" in rule:
                    out.append((str(rule["record"]), str(rule["expr"])))
    return out


def recording_rules(rules: Sequence[tuple[str, str]]) -> list[Query]:
    """One query per recording rule: the recorded series itself, so an answer proves that
    Prometheus loaded the rule and that its expression produced data."""
    return [Query("rules", name, "record", name) for name, _ in rules]


_TIME_VARIABLES = ("__rate_interval", "__interval", "__range")
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def to_promql(
    expr: str, rate_interval: str = "1m", variables: Mapping[str, str] | None = None
) -> str:
    """``expr`` as Grafana sends it, so a check can run what a panel runs.

    ``$__rate_interval``, ``$__interval`` and ``$__range`` become ``rate_interval``; a
    dashboard variable (``$job``, ``${instance}``) its value in ``variables``, as
    :func:`dashboard_variables` reads it (``.*`` where "All" is selected), inserted as is
    (Grafana does not escape an ``allValue`` either). Any other variable is a
    :class:`~lsi.errors.ConfigError`.
    """
    values = {var: rate_interval for var in _TIME_VARIABLES} | dict(variables or {})

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise ConfigError(f"unsupported Grafana variable ${name} in {expr!r} (known: "
                              f"{', '.join('$' + v for v in sorted(values))})")  # fmt: skip
        return values[name]

    return _VARIABLE.sub(value, expr)


_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_PROMQL_KEYWORDS = _LABEL_LISTS | {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'
_TOKEN = re.compile("|".join((
    rf"(?P<string>{_STRING})",
    r"(?P<variable>\$\{[^}]*\}|\$\w+)",  # Grafana's
    rf"(?P<matchers>\{{(?:[^{{}}\"'`]|{_STRING})*\}})",
    r"(?P<range>\[[^\]]*\])",  # range or subquery
    r"(?P<name>(?<![\w.:])[A-Za-z_:][\w:]*)",  # metric, function, keyword or label
    r"(?P<space>\s+)",
    r"(?P<other>.)",
)), re.S)  # fmt: skip
_MATCHER = re.compile(rf"([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*({_STRING})")


@dataclass(frozen=True, slots=True)
class Selector:
    """One vector selector of an expression: ``metric{label op "value", …}``.

    Attributes:
        metric: the metric name (``""`` for a selector of matchers only, ``{__name__=~…}``).
        matchers: ``(label, operator, value)`` each, the value without its quotes.
    """

    metric: str
    matchers: tuple[tuple[str, str, str], ...]


def selectors(expr: str) -> list[Selector]:
    """The vector selectors of a PromQL expression, in order (a small lexer, enough for our
    expressions: strings, Grafana variables, ranges and the label lists of ``by``, ``on`` …
    are skipped; a name followed by ``(`` or ``by`` / ``without`` is a function)."""
    tokens = [(m.lastgroup or "", m.group()) for m in _TOKEN.finditer(expr)
              if m.lastgroup != "space"]  # fmt: skip
    out: list[Selector] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        i += 1
        if kind == "matchers":
            out.append(Selector("", _matchers(text)))
        elif kind != "name" or text.lower() in _PROMQL_KEYWORDS:
            if text.lower() in _LABEL_LISTS and following == "(":
                while i < len(tokens) and tokens[i][1] != ")":
                    i += 1
        elif following != "(" and following.lower() not in ("by", "without"):
            if i < len(tokens) and tokens[i][0] == "matchers":
                out.append(Selector(text, _matchers(tokens[i][1])))
                i += 1
            else:
                out.append(Selector(text, ()))
    return out


def _matchers(text: str) -> tuple[tuple[str, str, str], ...]:
    return tuple((m[1], m[2], m[3][1:-1]) for m in _MATCHER.finditer(text))


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (see :func:`selectors`)."""
    return {s.metric for s in selectors(expr) if s.metric}


_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "info": ("_info",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def exported_families() -> dict[str, set[str]]:
    """Every metric family the worker and the refresh job export → its series names."""
    from prometheus_client import CollectorRegistry

    from lsi.monitoring.metrics import RefreshMetrics, WorkerMetrics

    registry = CollectorRegistry()
    WorkerMetrics(registry)
    RefreshMetrics(registry)
    return {f.name: {f.name + s for s in _SUFFIXES.get(f.type, ("",))}
            for f in registry.collect()}  # fmt: skip


#: series Prometheus itself produces for every target and alert
PROMETHEUS_BUILTINS = frozenset({
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE",
})  # fmt: skip


def coverage(
    panels: Sequence[Query], rules: Sequence[tuple[str, str]]
) -> tuple[list[str], list[str]]:
    """(metric families no panel shows, panels with a query that names no known metric).

    A panel may query a recorded series (``lsi:…``); it then shows the metrics that rule's
    expression reads. Known metrics: what :func:`exported_families` lists, recorded series
    and :data:`PROMETHEUS_BUILTINS`.
    """
    recorded = {name: metric_names(expr) for name, expr in rules}
    families = exported_families()
    known = set().union(*families.values()) | set(recorded) | PROMETHEUS_BUILTINS
    shown: set[str] = set()
    blind = set()
    for q in panels:
        names = metric_names(q.expr)
        if not names or not names <= known:
            blind.add(f"{q.source}: {q.panel} ({q.ref}: {sorted(names - known) or 'no metric'})")
        for name in names:
            shown |= recorded.get(name, {name})
    unshown = sorted(fam for fam, series in families.items() if not series & shown)
    return unshown, sorted(blind)


def server_queries(
    client: PrometheusClient, directory: Path = DASHBOARDS_DIR
) -> tuple[list[Query], list[tuple[str, str]]]:
    """The panel queries of ``directory``'s dashboards, and the recording rules the server
    has loaded (``(series, expression)``: what it evaluates, not what a file says)."""
    panels = dashboard_queries(directory)
    loaded = client.recording_rules()
    if not any(name.startswith("lsi:") for name, _ in loaded):
        raise LsiError(f"Prometheus at {client.base_url} has no lsi recording rules loaded; "
                       "add monitoring/prometheus/rules/*.yml to its rule_files")  # fmt: skip
    return panels, loaded


def check(
    client: PrometheusClient,
    queries: Sequence[Query],
    rate_interval: str = "1m",
    at: float | None = None,
) -> list[Answer]:
    """Run every query at ``at`` (now by default); an answer per query, in order."""
    when = time.time() if at is None else at
    answers = []
    for q in queries:
        promql = to_promql(q.expr, rate_interval, dict(q.variables))
        try:
            answers.append(Answer(q, promql, len(client.query(promql, when))))
        except LsiError as exc:
            answers.append(Answer(q, promql, 0, str(exc)))
    return answers
