"""``lsi report metrics`` (:mod:`lsi.monitoring.charts`) against a fake Prometheus HTTP API.

The fake answers ``/api/v1/query_range`` and ``/api/v1/query`` in Prometheus' JSON format,
synthesizing each answer from the ``query`` parameter: rates of counters that grow linearly
(constant slopes, one that speeds up so its last value is known), latency quantiles with a
trailing ``NaN``, and cumulative ``le`` buckets of the gate's long-term weight.
"""

from __future__ import annotations

import json
import math
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import lsi.monitoring.charts
import lsi.monitoring.prometheus_api
from lsi.errors import ConfigError, LsiError
from lsi.monitoring.charts import (
    Bucket,
    ReportOptions,
    ReportResult,
    choose_step,
    decumulate_buckets,
    rate_window,
    render_report,
)
from lsi.monitoring.prometheus_api import PrometheusClient
from tests.http import JsonServer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
END = 1_700_000_000.0
SINCE, STEP = 600.0, 5.0
POINTS = int(SINCE / STEP) + 1  # start and end both evaluated: 121
#: per-bucket counts of the long weight: bucket i (upper bound 0.05·i) holds i lists
LE = [f"{round(0.05 * i, 2):g}" for i in range(1, 21)]
COUNTS = [float(i) for i in range(1, 21)]

Answer = tuple[int, Any]  # HTTP status, JSON body (bytes are sent as they are)
Responder = Callable[[str, dict[str, str]], Answer]


def value(v: float) -> str:
    return "NaN" if math.isnan(v) else repr(v)


def constant(v: float) -> Callable[[int], float]:
    return lambda i: v


def matrix(
    params: dict[str, str], series: list[tuple[dict[str, str], Callable[[int], float]]]
) -> Answer:
    start, end, step = (float(params[k]) for k in ("start", "end", "step"))
    times = [start + i * step for i in range(int((end - start) / step + 1e-9) + 1)]
    result = [
        {"metric": labels, "values": [[t, value(f(i))] for i, t in enumerate(times)]}
        for labels, f in series
    ]
    return 200, {"status": "success", "data": {"resultType": "matrix", "result": result}}


def synthesized(path: str, params: dict[str, str]) -> Answer:
    """What a Prometheus scraping a busy lsi worker would answer."""
    q = params["query"]
    if path == "/api/v1/query":
        assert "lsi_long_weight_bucket" in q
        cumulative = [sum(COUNTS[: i + 1]) for i in range(len(COUNTS))]
        rows = list(zip([*LE, "+Inf"], [*cumulative, cumulative[-1]], strict=True))
        rows.reverse()  # Prometheus does not promise an order
        result = [
            {"metric": {"le": le}, "value": [float(params["time"]), value(c)]} for le, c in rows
        ]
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}
    if "lsi_events_total" in q:  # ingest speeds up: 10, 11, … events/s
        return matrix(
            params,
            [
                ({"agent": "ingest", "outcome": "accepted"}, lambda i: 10.0 + i),
                ({"agent": "ingest", "outcome": "invalid"}, lambda i: 0.5),
                ({"agent": "interest", "outcome": "accepted"}, lambda i: 8.0),
            ],
        )
    if "lsi_recommendations_total" in q:
        return matrix(params, [({}, lambda i: 12.5)])
    if "histogram_quantile" in q:
        p99 = "0.99" in q
        if "lsi_processing_latency_seconds" in q:  # the last point: no event in the window
            v = 0.02 if p99 else 0.004
            return matrix(
                params, [({"agent": "interest"}, lambda i: math.nan if i == POINTS - 1 else v)]
            )
        return matrix(params, [({}, lambda i: 0.1 if p99 else 0.01)])
    if "lsi_online_hits_total" in q:
        rates = {"1": 0.05, "5": 0.15, "10": 0.22, "20": 0.3}
        return matrix(params, [({"k": k}, constant(r)) for k, r in rates.items()])
    if "lsi_long_weight_sum" in q:
        return matrix(params, [({"source": "fused"}, lambda i: 0.6)])
    if "lsi_consumer_lag" in q:
        return matrix(params, [({"topic": "lsi-events"}, lambda i: 42.0)])
    return 400, {"status": "error", "errorType": "bad_data", "error": f"unknown query {q}"}


def empty_result(path: str, params: dict[str, str]) -> Answer:
    kind = "vector" if path == "/api/v1/query" else "matrix"
    return 200, {"status": "success", "data": {"resultType": kind, "result": []}}


class FakePrometheus(JsonServer):
    """Prometheus' HTTP API played by :class:`tests.http.JsonServer`: ``responder(path,
    params)`` answers; each request is recorded as ``(path, params)``."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.requests: list[tuple[str, dict[str, str]]] = []
        super().__init__(self._answer)

    def _answer(self, raw: str) -> tuple[int, dict[str, str], Any]:
        url = urllib.parse.urlsplit(raw)
        params = dict(urllib.parse.parse_qsl(url.query))
        self.requests.append((url.path, params))
        status, body = self.responder(url.path, params)
        return status, {}, body

    def __enter__(self) -> FakePrometheus:
        super().__enter__()
        return self


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    with FakePrometheus(synthesized) as fake:
        yield fake


@pytest.fixture(scope="module")
def report(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ReportResult, FakePrometheus]]:
    """One full report, rendered once for the tests that read it."""
    out = tmp_path_factory.mktemp("report") / "metrics"  # not there yet: render_report creates it
    with FakePrometheus(synthesized) as fake:
        yield render_report(ReportOptions(fake.url, out, since_s=SINCE, step_s=STEP, end=END)), fake


def chart(summary: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in summary["charts"] if c["name"] == name)


def last_values(entry: dict[str, Any], query: int = 0) -> dict[str, float | None]:
    return {s["legend"]: s["value"] for s in entry["queries"][query]["last"]}


# -- pure helpers ----------------------------------------------------------------------------
def test_decumulate_buckets_sorts_and_differences() -> None:
    cumulative = [(math.inf, 10.0), (0.5, 4.0), (0.1, 1.0), (1.0, 10.0)]
    assert decumulate_buckets(cumulative) == (
        Bucket(0.0, 0.1, 1.0),
        Bucket(0.1, 0.5, 3.0),
        Bucket(0.5, 1.0, 6.0),
        Bucket(1.0, math.inf, 0.0),
    )


def test_decumulate_buckets_nan_and_decreases_count_zero() -> None:
    # a NaN bucket repeats the previous total; a dip (extrapolation noise) is not negative
    got = decumulate_buckets([(0.1, 2.0), (0.2, math.nan), (0.3, 1.5), (0.4, 3.0)])
    assert [b.count for b in got] == [2.0, 0.0, 0.0, 1.0]
    assert decumulate_buckets([]) == ()


def test_step_and_rate_window() -> None:
    assert choose_step(900.0) == 3.75  # 240 points
    assert choose_step(60.0) == 1.0  # never under a second
    assert choose_step(900.0, 30.0) == 30.0
    assert rate_window(3.75) == "60s"
    assert rate_window(30.0) == "120s"
    assert rate_window(2.6) == "60s"


def test_exports_are_pinned() -> None:
    assert sorted(lsi.monitoring.charts.__all__) == [
        "Bucket",
        "Chart",
        "ReportOptions",
        "ReportResult",
        "choose_step",
        "decumulate_buckets",
        "rate_window",
        "render_report",
    ]
    assert sorted(lsi.monitoring.prometheus_api.__all__) == [
        "PrometheusClient",
        "Series",
        "check_url",
    ]


# -- the report ------------------------------------------------------------------------------
def test_report_writes_valid_pngs_and_pages(report: tuple[ReportResult, FakePrometheus]) -> None:
    result, _ = report
    names = ["throughput", "latency", "hit_rate", "long_weight", "consumer_lag"]
    assert [c.name for c in result.charts] == names
    assert result.empty == ()
    for c in result.charts:
        assert c.path == result.summary.parent / f"{c.name}.png"
        assert c.path.read_bytes()[:8] == PNG_MAGIC
        assert not c.empty and c.series > 0
    readme = result.readme.read_text()
    for name in names:
        assert f"({name}.png)" in readme
    assert "(summary.json)" in readme


def test_report_queries_cover_the_window(report: tuple[ReportResult, FakePrometheus]) -> None:
    result, fake = report
    assert (result.start, result.end, result.step_s, result.rate_window) == (
        END - SINCE,
        END,
        STEP,
        "60s",
    )
    ranges = [p for path, p in fake.requests if path == "/api/v1/query_range"]
    instants = [p for path, p in fake.requests if path == "/api/v1/query"]
    assert len(ranges) == 9 and len(instants) == 1
    assert {(float(p["start"]), float(p["end"]), float(p["step"])) for p in ranges} == {
        (END - SINCE, END, STEP)
    }
    assert all("[60s]" in p["query"] for p in ranges if "rate(" in p["query"])
    assert float(instants[0]["time"]) == END
    assert instants[0]["query"] == (
        'sum by (le) (increase(lsi_long_weight_bucket{source="fused"}[600s]))'
    )


def test_summary_holds_last_values(report: tuple[ReportResult, FakePrometheus]) -> None:
    result, _ = report
    summary = json.loads(result.summary.read_text())
    assert (summary["since_s"], summary["step_s"], summary["rate_window"]) == (SINCE, STEP, "60s")
    throughput = chart(summary, "throughput")
    assert throughput["series"] == 4
    assert last_values(throughput) == {
        "ingest accepted": 10.0 + POINTS - 1,
        "ingest invalid": 0.5,
        "interest accepted": 8.0,
    }
    assert last_values(throughput, 1) == {"recommendations": 12.5}
    latency = chart(summary, "latency")
    # the trailing NaN is skipped: the last finite value is reported
    assert last_values(latency, 1) == {"interest p99": 0.02}
    assert last_values(latency, 3) == {"end-to-end p99": 0.1}
    assert list(last_values(chart(summary, "hit_rate"))) == ["@1", "@5", "@10", "@20"]
    assert last_values(chart(summary, "hit_rate")) == {
        "@1": 0.05,
        "@5": 0.15,
        "@10": 0.22,
        "@20": 0.3,
    }
    assert last_values(chart(summary, "long_weight")) == {"fused": 0.6}
    assert last_values(chart(summary, "consumer_lag")) == {"lsi-events": 42.0}
    assert (
        chart(summary, "consumer_lag")["queries"][0]["expr"] == "sum by (topic) (lsi_consumer_lag)"
    )


def test_summary_decumulates_long_weight_buckets(
    report: tuple[ReportResult, FakePrometheus],
) -> None:
    result, _ = report
    buckets = chart(json.loads(result.summary.read_text()), "long_weight")["buckets"]
    assert [b["le"] for b in buckets] == [*LE, "+Inf"]
    assert [b["count"] for b in buckets] == [*COUNTS, 0.0]


def test_charts_without_data_are_written_and_listed(tmp_path: Path) -> None:
    def sparse(path: str, params: dict[str, str]) -> Answer:
        q = params["query"]
        if "lsi_consumer_lag" in q or "lsi_online_hits_total" in q:
            return empty_result(path, params)
        if "histogram_quantile" in q:  # series that are all NaN: no data either
            return matrix(params, [({"agent": "interest"}, lambda i: math.nan)])
        return synthesized(path, params)

    with FakePrometheus(sparse) as fake:
        result = render_report(ReportOptions(fake.url, tmp_path, since_s=SINCE, end=END))
    assert result.empty == ("Latency p50 and p99", "Online hit rate @K", "Consumer lag")
    assert all(c.path.read_bytes()[:8] == PNG_MAGIC for c in result.charts)
    summary = json.loads(result.summary.read_text())
    assert chart(summary, "consumer_lag") | {"queries": None} == {
        "name": "consumer_lag",
        "title": "Consumer lag",
        "file": "consumer_lag.png",
        "empty": True,
        "series": 0,
        "queries": None,
    }
    assert last_values(chart(summary, "latency")) == {"interest p50": None}
    assert "No data in this window." in result.readme.read_text()


def test_all_empty_report(tmp_path: Path) -> None:
    with FakePrometheus(empty_result) as fake:
        result = render_report(ReportOptions(fake.url, tmp_path, since_s=60.0, step_s=1.0))
    assert len(result.empty) == len(result.charts) == 5
    assert all(c.path.read_bytes()[:8] == PNG_MAGIC for c in result.charts)
    buckets = chart(json.loads(result.summary.read_text()), "long_weight")["buckets"]
    assert buckets == []


# -- errors ----------------------------------------------------------------------------------
def closed_port() -> socket.socket:
    """A socket bound to a local port that does not listen: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def test_unreachable_prometheus(tmp_path: Path) -> None:
    with closed_port() as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(
            LsiError, match=r"^cannot reach Prometheus at http://127\.0\.0\.1:"
        ) as err:
            render_report(ReportOptions(url, tmp_path / "out", end=END))
    assert "start it or pass --prometheus" in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing written before every query answered


@pytest.mark.parametrize("http_status", [200, 400])
def test_rejected_query_names_it(tmp_path: Path, http_status: int) -> None:
    def picky(path: str, params: dict[str, str]) -> Answer:
        if "lsi_online_hits_total" in params["query"]:
            error = {"status": "error", "errorType": "bad_data", "error": "parse error at char 9"}
            return http_status, error
        return synthesized(path, params)

    with FakePrometheus(picky) as fake, pytest.raises(LsiError) as err:
        render_report(ReportOptions(fake.url, tmp_path, end=END))
    message = str(err.value)
    assert message.startswith(
        "Prometheus rejected the query sum by (k) (rate(lsi_online_hits_total["
    )
    assert message.endswith(": parse error at char 9")


def test_not_prometheus(tmp_path: Path) -> None:
    def html(path: str, params: dict[str, str]) -> Answer:
        return 200, b"<html>Grafana</html>"

    def missing(path: str, params: dict[str, str]) -> Answer:
        return 404, b"404 page not found"

    with (
        FakePrometheus(html) as fake,
        pytest.raises(LsiError, match=r"did not answer .* with JSON"),
    ):
        PrometheusClient(fake.url).query("up", END)
    with FakePrometheus(missing) as fake, pytest.raises(LsiError, match="answered HTTP 404"):
        PrometheusClient(fake.url + "/").query_range("up", END - 60, END, 15.0)


def test_client_parses_vector_matrix_and_scalar(prometheus: FakePrometheus) -> None:
    client = PrometheusClient(prometheus.url + "/", timeout_s=5.0)
    lag = client.query_range("sum by (topic) (lsi_consumer_lag)", END - 10, END, 5.0)
    assert [(dict(s.labels), s.times, s.values) for s in lag] == [
        ({"topic": "lsi-events"}, (END - 10, END - 5, END), (42.0, 42.0, 42.0))
    ]
    prometheus.responder = lambda path, params: (
        200,
        {"status": "success", "data": {"resultType": "scalar", "result": [END, "+Inf"]}},
    )
    (scalar,) = client.query("1/0", END)
    assert scalar.values == (math.inf,) and scalar.last() is None


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"prometheus": "ftp://127.0.0.1:9090"}, "http:// or https:// URL"),
        ({"prometheus": "127.0.0.1:9090"}, "http:// or https:// URL"),
        ({"prometheus": "http://"}, "http:// or https:// URL"),
        ({"since_s": 0.0}, "--since must be a positive duration"),
        ({"since_s": -60.0}, "--since must be a positive duration"),
        ({"step_s": -1.0}, "--step must be a positive duration"),
        ({"step_s": math.nan}, "--step must be a positive duration"),
        ({"since_s": 86400.0 * 7, "step_s": 1.0}, "pass a --step of at least 55s"),
    ],
)
def test_bad_options(changes: dict[str, Any], match: str) -> None:
    base: dict[str, Any] = {"prometheus": "http://127.0.0.1:9090", "out": Path("x")}
    with pytest.raises(ConfigError, match=match):
        ReportOptions(**(base | changes))
    assert issubclass(ConfigError, LsiError)
