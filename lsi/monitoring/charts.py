"""PNG charts of a running lsi, read from Prometheus: the engine of ``lsi report metrics``.

For docs/metrics.md and for users without Grafana: five charts of the key series over a window
that ends now (or at a given time), each drawn from Prometheus' HTTP API
(``/api/v1/query_range`` and ``/api/v1/query``)::

    throughput.png     events/s by agent and outcome, recommendations/s
    latency.png        p50 and p99 of processing latency by agent, and of end-to-end latency
    hit_rate.png       online hit rate @K, one line per K
    long_weight.png    the gate's long-term weight: its distribution over the window, its mean
    consumer_lag.png   records not yet committed, by topic

Beside them, ``summary.json`` (window, step, and per chart the queries, the number of series
and each series' last value) and ``README.md`` (a page embedding the charts).

Rates use the window ``W = max(4 · step, 60 s)``, so each point averages several scrapes. A
chart whose queries return no data is still written, saying so, and listed in
:attr:`ReportResult.empty`.

Example::

    result = render_report(ReportOptions("http://127.0.0.1:9090", Path("var/metrics")))
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsi.errors import ConfigError, LsiError
from lsi.monitoring.prometheus_api import PrometheusClient, Series, check_url

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "Bucket",
    "Chart",
    "ReportOptions",
    "ReportResult",
    "choose_step",
    "decumulate_buckets",
    "rate_window",
    "render_report",
]

MAX_POINTS = 11_000  # Prometheus refuses range queries with more points per series
TARGET_POINTS = 240  # points per series when the step is left to us
MIN_RATE_WINDOW_S = 60.0  # a rate needs a few scrapes (default scrape interval: 15 s)


# -- pure helpers ----------------------------------------------------------------------------
def choose_step(since_s: float, step_s: float = 0.0) -> float:
    """The query step: ``step_s`` if positive, else ``since_s / 240`` but at least 1 s."""
    return step_s if step_s > 0 else max(1.0, since_s / TARGET_POINTS)


def rate_window(step_s: float) -> str:
    """The ``rate()`` window as a Prometheus duration: ``max(4 · step, 60 s)``, e.g. ``"60s"``."""
    return f"{math.ceil(max(4.0 * step_s, MIN_RATE_WINDOW_S))}s"


@dataclass(frozen=True, slots=True)
class Bucket:
    """One histogram bucket ``(lower, upper]`` and the observations that fell in it."""

    lower: float
    upper: float
    count: float


def decumulate_buckets(
    cumulative: Iterable[tuple[float, float]], lowest: float = 0.0
) -> tuple[Bucket, ...]:
    """Per-bucket counts from Prometheus' cumulative ``le`` buckets.

    Sorted by upper bound ``le_i``, bucket *i* holds ``c_i − c_{i−1}`` (``c_0 = 0``) and spans
    ``(le_{i−1}, le_i]``, the first one starting at ``lowest``. A non-finite count (a bucket
    with no samples) repeats the previous cumulative count; a negative difference (counter
    reset, extrapolation noise of ``increase``) counts 0.

    >>> decumulate_buckets([(1.0, 5.0), (0.5, 2.0), (math.inf, 5.0)])
    (Bucket(lower=0.0, upper=0.5, count=2.0), Bucket(lower=0.5, upper=1.0, count=3.0), \
Bucket(lower=1.0, upper=inf, count=0.0))
    """
    out: list[Bucket] = []
    lower, previous = lowest, 0.0
    for upper, count in sorted(cumulative, key=lambda pair: pair[0]):
        total = count if math.isfinite(count) else previous
        out.append(Bucket(min(lower, upper), upper, max(0.0, total - previous)))
        lower, previous = upper, max(previous, total)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """What ``lsi report metrics`` draws; the constructor raises :class:`ConfigError`.

    Attributes:
        prometheus: Prometheus' base URL, e.g. ``http://127.0.0.1:9090``.
        out: the folder for the charts, ``summary.json`` and ``README.md`` (created).
        since_s: length of the window, in seconds.
        step_s: seconds between points; 0 chooses ``since_s / 240``, at least 1 s.
        end: unix time the window ends at; ``None`` is now.
        timeout_s: seconds to wait for each answer of Prometheus.
    """

    prometheus: str
    out: Path
    since_s: float = 900.0
    step_s: float = 0.0
    end: float | None = None
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        check_url(self.prometheus)
        if not (math.isfinite(self.since_s) and self.since_s > 0):
            raise ConfigError(f"--since must be a positive duration, got {self.since_s} s")
        if not (math.isfinite(self.step_s) and self.step_s >= 0):
            raise ConfigError(f"--step must be a positive duration, got {self.step_s} s")
        if not self.timeout_s > 0:
            raise ConfigError(f"the timeout must be positive, got {self.timeout_s} s")
        points = self.since_s / choose_step(self.since_s, self.step_s)
        if points > MAX_POINTS:
            raise ConfigError(
                f"--since {self.since_s:g}s at --step {self.step_s:g}s makes {points:,.0f} "
                f"points per series, more than Prometheus' {MAX_POINTS:,}; pass a --step of at "
                f"least {math.ceil(self.since_s / MAX_POINTS)}s"
            )


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart written: its file, title, queries, how many series they returned."""

    name: str
    title: str
    path: Path
    queries: tuple[str, ...]
    series: int
    empty: bool


@dataclass(frozen=True, slots=True)
class ReportResult:
    """What :func:`render_report` wrote: the charts, those without data, the two pages."""

    charts: tuple[Chart, ...]
    empty: tuple[str, ...]
    summary: Path
    readme: Path
    start: float
    end: float
    step_s: float
    rate_window: str


# -- the charts ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Line:
    expr: str
    legend: str  # "{label}" placeholders filled from each series' labels
    style: str = "-"


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    title: str
    about: str  # one line for the README
    ylabel: str
    lines: tuple[_Line, ...]
    ylim: tuple[float, float] | None = None
    log: bool = False  # log y scale, if there is positive data
    buckets: str = ""  # instant query of cumulative `le` buckets (long_weight only)


def _specs(w: str, window: str) -> tuple[_Spec, ...]:
    def quantile(q: str, metric: str, by: str) -> str:
        return f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket[{w}])))"

    processing, e2e = "lsi_processing_latency_seconds", "lsi_end_to_end_latency_seconds"
    hits = f"sum by (k) (rate(lsi_online_hits_total[{w}]))"
    judged = f"sum(rate(lsi_online_evaluated_total[{w}]))"
    mean = (
        f"sum by (source) (rate(lsi_long_weight_sum[{w}])) / "
        f"sum by (source) (rate(lsi_long_weight_count[{w}]))"
    )
    return (
        _Spec("throughput", "Throughput",
              about="Events handled per second by each agent and outcome, and recommendation "
                    "records emitted per second.",
              ylabel="per second",
              lines=(_Line(f"sum by (agent, outcome) (rate(lsi_events_total[{w}]))",
                           "{agent} {outcome}"),
                     _Line(f"sum(rate(lsi_recommendations_total[{w}]))", "recommendations", "--"))),
        _Spec("latency", "Latency p50 and p99",
              about="Processing latency (Kafka timestamp → agent done) by agent, and end-to-end "
                    "latency (event time → recommendation sent).",
              ylabel="seconds", log=True,
              lines=(_Line(quantile("0.5", processing, "agent, le"), "{agent} p50", "--"),
                     _Line(quantile("0.99", processing, "agent, le"), "{agent} p99"),
                     _Line(quantile("0.5", e2e, "le"), "end-to-end p50", "--"),
                     _Line(quantile("0.99", e2e, "le"), "end-to-end p99"))),
        _Spec("hit_rate", "Online hit rate @K",
              about="Share of events whose item was in the top-K of the list last shown to "
                    "their user, one line per K.",
              ylabel="hit rate (hits / events judged)", ylim=(0.0, 1.0),
              lines=(_Line(f"{hits} / ignoring(k) group_left {judged}", "@{k}"),)),
        _Spec("long_weight", "Gate long-term weight",
              about="How much the gate trusted the long-term (GNN) model: the distribution of "
                    "its weight over the fused lists of the window (the other sources have a "
                    "fixed weight: 0 for short-term, co-visitation and trending, 1 for "
                    "long-term), and the mean weight over time by the source of the list.",
              ylabel="mean long-term weight", ylim=(0.0, 1.0),
              lines=(_Line(mean, "{source}"),),
              buckets=("sum by (le) (increase(lsi_long_weight_bucket{source=\"fused\"}"
                       f"[{window}]))")),
        _Spec("consumer_lag", "Consumer lag",
              about="Records not yet committed by the lsi consumers, by topic.",
              ylabel="records not yet committed",
              lines=(_Line("sum by (topic) (lsi_consumer_lag)", "{topic}"),)),
    )  # fmt: skip


def _legend(template: str, labels: Mapping[str, str]) -> str:
    used = set(re.findall(r"\{(\w+)\}", template))
    text = re.sub(r"\{(\w+)\}", lambda m: labels.get(m.group(1), ""), template)
    extra = [f"{k}={v}" for k, v in sorted(labels.items()) if k not in used and k != "__name__"]
    return " ".join([*text.split(), *extra]) or "value"


def _human(seconds: float) -> str:
    for size, unit in ((86400.0, "days"), (3600.0, "hours"), (60.0, "minutes")):
        if seconds >= 2 * size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} seconds"


def _order(series: Series) -> list[tuple[str, float, str]]:
    """Sort key of series by labels, numbers by value (``k`` = 1, 5, 10, 20)."""
    key = []
    for name, text in sorted(series.labels.items()):
        try:
            key.append((name, float(text), ""))
        except ValueError:
            key.append((name, math.inf, text))
    return key


def _finite(series: Iterable[Series]) -> bool:
    return any(math.isfinite(v) for s in series for v in s.values)


def _le(series: Series) -> float | None:
    try:
        return float(series.labels["le"])
    except (KeyError, ValueError):
        return None


def _fmt_le(upper: float) -> str:
    return "+Inf" if upper == math.inf else f"{upper:g}"


# -- rendering -------------------------------------------------------------------------------
def render_report(opts: ReportOptions) -> ReportResult:
    """Query Prometheus and write the charts, ``summary.json`` and ``README.md`` to ``opts.out``.

    Every query runs before anything is written, so an unreachable Prometheus or a rejected
    query (:class:`LsiError`) leaves ``opts.out`` as it was.
    """
    end = time.time() if opts.end is None else opts.end
    step = choose_step(opts.since_s, opts.step_s)
    start, w = end - opts.since_s, rate_window(step)
    specs = _specs(w, f"{max(1, round(opts.since_s))}s")
    client = PrometheusClient(opts.prometheus, opts.timeout_s)
    answers = {
        spec.name: [client.query_range(line.expr, start, end, step) for line in spec.lines]
        for spec in specs
    }
    buckets = {s.name: client.query(s.buckets, end) for s in specs if s.buckets}

    out = Path(opts.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LsiError(
            f"cannot create the report folder {out} ({exc}); pass another --out"
        ) from exc
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(end))
    scale, unit = (60.0, "minutes") if opts.since_s <= 3 * 3600 else (3600.0, "hours")
    charts, pages = [], []
    for spec in specs:
        fig = Figure(figsize=(8, 6.5 if spec.buckets else 4), layout="constrained")
        axes: list[Axes] = list(fig.subplots(2, 1)) if spec.buckets else [fig.subplots()]
        drawn, page = _draw_lines(axes[-1], spec, answers[spec.name], end, scale)
        axes[-1].set_xlabel(f"{unit} before {when}")
        axes[-1].set_xlim(-opts.since_s / scale, 0)
        if spec.buckets:
            axes[0].set_title("distribution over the window", fontsize="medium")
            axes[1].set_title("mean over time", fontsize="medium")
            cumulative = [
                (le, s.values[-1]) for s in buckets[spec.name] if (le := _le(s)) is not None
            ]
            counts = decumulate_buckets(cumulative)
            drawn |= _draw_buckets(axes[0], counts)
            page["buckets"] = [{"le": _fmt_le(b.upper), "count": b.count} for b in counts]
            page["queries"].append(
                {"expr": spec.buckets, "kind": "instant", "series": len(buckets[spec.name])}
            )
        fig.suptitle(f"lsi: {spec.title}" + ("" if drawn else " (no data in this window)"))
        path = out / f"{spec.name}.png"
        fig.savefig(path, dpi=110)
        queries = tuple(q["expr"] for q in page["queries"])
        series = sum(q["series"] for q in page["queries"])
        charts.append(Chart(spec.name, spec.title, path, queries, series, not drawn))
        pages.append(
            {
                "name": spec.name,
                "title": spec.title,
                "file": path.name,
                "empty": not drawn,
                "series": series,
                **page,
            }
        )

    summary = out / "summary.json"
    window = {
        "prometheus": opts.prometheus,
        "start": start,
        "end": end,
        "end_utc": when,
        "since_s": float(opts.since_s),
        "step_s": float(step),
        "rate_window": w,
    }
    summary.write_text(json.dumps({**window, "charts": pages}, indent=2, allow_nan=False) + "\n")
    readme = out / "README.md"
    readme.write_text(_readme(specs, charts, opts, step, w, when))
    empty = tuple(c.title for c in charts if c.empty)
    return ReportResult(tuple(charts), empty, summary, readme, start, end, step, w)


def _draw_lines(
    ax: Axes, spec: _Spec, answers: Sequence[list[Series]], end: float, scale: float
) -> tuple[bool, dict[str, Any]]:
    """Plot each query's series on ``ax``; return whether anything finite was drawn and the
    summary entries of the queries."""
    queries: list[dict[str, Any]] = []
    drawn = False
    for line, answer in zip(spec.lines, answers, strict=True):
        last = []
        for s in sorted(answer, key=_order):
            label = _legend(line.legend, s.labels)
            last.append({"legend": label, "labels": dict(s.labels), "value": s.last()})
            if not _finite([s]):
                continue
            ys = [v if math.isfinite(v) else math.nan for v in s.values]
            ax.plot([(t - end) / scale for t in s.times], ys, line.style, label=label, lw=1.4)
            drawn = True
        queries.append({"expr": line.expr, "kind": "range", "series": len(answer), "last": last})
    ax.set_ylabel(spec.ylabel)
    if spec.ylim is not None:
        ax.set_ylim(*spec.ylim)
    # log scale only with positive data: matplotlib warns otherwise
    if spec.log and any(v > 0 for a in answers for s in a for v in s.values if math.isfinite(v)):
        ax.set_yscale("log")
    _finish(ax, drawn)
    return drawn, {"queries": queries}


def _draw_buckets(ax: Axes, buckets: Sequence[Bucket]) -> bool:
    """Bars of the per-bucket counts over [0, 1]; the ``+Inf`` bucket is left out."""
    shown = [b for b in buckets if math.isfinite(b.upper)]
    drawn = any(b.count > 0 for b in buckets)
    if drawn:
        ax.bar(
            [b.lower for b in shown],
            [b.count for b in shown],
            width=[b.upper - b.lower for b in shown],
            align="edge",
            edgecolor="white",
        )
    ax.set_xlim(0, 1)
    ax.set_xlabel("long-term weight of the gate")
    ax.set_ylabel("fused lists in the window")
    _finish(ax, drawn, legend=False)
    return drawn


def _finish(ax: Axes, drawn: bool, legend: bool = True) -> None:
    ax.grid(alpha=0.3)
    if not drawn:
        ax.text(
            0.5,
            0.5,
            "no data in this window",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="grey",
            fontsize="large",
        )
    elif legend:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _readme(
    specs: Sequence[_Spec],
    charts: Sequence[Chart],
    opts: ReportOptions,
    step: float,
    w: str,
    when: str,
) -> str:
    lines = [
        "# lsi metrics",
        "",
        f"The {_human(opts.since_s)} up to {when}, from Prometheus at {opts.prometheus} "
        f"(a point every {step:g} s; rates over {w}). Numbers: [summary.json](summary.json).",
        "",
    ]
    for spec, chart in zip(specs, charts, strict=True):
        none = " No data in this window." if chart.empty else ""
        lines += [
            f"## {chart.title}",
            "",
            f"{spec.about}{none}",
            "",
            f"![{chart.title}]({chart.path.name})",
            "",
        ]
    return "\n".join(lines)
