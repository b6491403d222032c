"""The arithmetic and the report of ``lsi bench pipeline``: rates, quantiles, ratios, targets.

Pure functions over what the harness measured, so they are unit-tested without a broker.

Clock. A drain's rate is ``events / (t_done − t_0)``. ``t_done`` is when the last of the
events was handled (an anchor notes it; for lsi, where the workers' summed
``lsi_events_total{agent="interest",outcome="accepted"}`` crossed the count, interpolated
between scrapes). The rates the targets judge take ``t_0`` = the moment the consumer group
first had its partitions: the group Stable with its members on the topic, seen by the bench
from outside with the same admin request for every program (polled every 0.1 s), or the
anchor's own note of its assignment when it has one (a short drain can end between two
looks). Interpreter start, imports (torch for lsi) and the group join are a cost per
process, not per event. With two workers, the first to join starts on every partition;
the rebalance when the second joins counts. The rates from process start are reported
beside them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "BASIS",
    "DRAINS",
    "Drain",
    "Latency",
    "Ratio",
    "cdf",
    "crossing",
    "markdown",
    "plot",
    "quantiles",
    "ratios",
]

#: what the judged rates count from
BASIS = "the consumer group's assignment"

#: the drains, in the order they run, and how the report names them
DRAINS: dict[str, str] = {
    "aiokafka": "raw aiokafka consumer + json.loads",
    "faust": "bare Faust agent (stream.take + json.loads)",
    "faust_table": "Faust agent + one RocksDB table write per event",
    "lsi_x2": "lsi, two worker processes, one group, no model",
    "lsi": "lsi, one worker, no model",
    "lsi_model": "lsi, one worker, fused model",
}


@dataclass(frozen=True, slots=True)
class Drain:
    """One program draining the same backlog: when it started, got its partitions, finished.

    Times are wall-clock seconds (``time.time()``); ``assigned``/``done`` are ``None`` when
    not seen before the step's deadline.
    """

    name: str
    events: int
    processes: int
    started: float
    assigned: float | None
    done: float | None
    load_average: tuple[float, float, float]
    note: str = ""
    all_assigned: float | None = None

    @property
    def ok(self) -> bool:
        return self.done is not None

    def rate(self, basis: str = "assigned") -> float | None:
        """Events per second from ``assigned`` (default) or from ``started``."""
        t0 = self.assigned if basis == "assigned" else self.started
        if self.done is None or t0 is None or self.done <= t0:
            return None
        return self.events / (self.done - t0)

    def to_dict(self) -> dict[str, Any]:
        def since(t: float | None) -> float | None:
            return None if t is None else round(t - self.started, 3)

        r_asg, r_start = self.rate("assigned"), self.rate("started")
        return {
            "label": DRAINS.get(self.name, self.name),
            "events": self.events,
            "processes": self.processes,
            "assigned_after_s": since(self.assigned),
            **({"all_assigned_after_s": since(self.all_assigned)} if self.processes > 1 else {}),
            "done_after_s": since(self.done),
            "events_per_second": None if r_asg is None else round(r_asg, 1),
            "events_per_second_from_start": None if r_start is None else round(r_start, 1),
            "load_average": list(self.load_average),
            "ok": self.ok,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Latency:
    """Delays measured at a fixed offered rate, in seconds."""

    name: str
    label: str
    offered_rate: float
    sent: int
    samples: Sequence[float]
    load_average: tuple[float, float, float]
    source: str
    extra: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "offered_rate": self.offered_rate,
            "sent": self.sent,
            "records": len(self.samples),
            **{f"{k}_seconds": v for k, v in quantiles(self.samples).items()},
            "load_average": list(self.load_average),
            "source": self.source,
            **dict(self.extra or {}),
            "cdf_seconds": cdf(self.samples),
        }


def quantiles(
    samples: Iterable[float], qs: Sequence[float] = (0.5, 0.99)
) -> dict[str, float | None]:
    """``{"p50": …, "p99": …}``: linear interpolation between the closest ranks (numpy's
    default), ``None`` without samples.

    >>> quantiles([0.004, 0.001, 0.002, 0.003, 0.005])
    {'p50': 0.003, 'p99': 0.00496}
    """
    xs = sorted(samples)
    out: dict[str, float | None] = {}
    for q in qs:
        key = f"p{q * 100:g}"
        if not xs:
            out[key] = None
            continue
        pos = q * (len(xs) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        out[key] = round(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo), 9)
    return out


def cdf(samples: Iterable[float], points: int = 100) -> list[float]:
    """The samples' quantiles at ``0, 1/points, …, 1`` (for the plot; ``[]`` without any)."""
    xs = sorted(samples)
    if not xs:
        return []
    return [round(xs[round(i * (len(xs) - 1) / points)], 6) for i in range(points + 1)]


def crossing(timeline: Sequence[tuple[float, float]], target: float) -> float | None:
    """When a growing count first reached ``target``, interpolated linearly between the two
    samples ``(time, count)`` around it; ``None`` if it never did.

    >>> crossing([(0.0, 0), (1.0, 100), (2.0, 300)], 200)
    1.5
    """
    prev: tuple[float, float] | None = None
    for t, n in timeline:
        if n >= target:
            if prev is None or n == prev[1]:
                return t
            return prev[0] + (t - prev[0]) * (target - prev[1]) / (n - prev[1])
        prev = (t, n)
    return None


@dataclass(frozen=True, slots=True)
class Ratio:
    """A measured ratio or latency against its target (``op`` ``>=`` or ``<=``; no target:
    shown for context). ``unit`` is ``x`` (a ratio) or ``ms``."""

    key: str
    label: str
    value: float | None
    unit: str
    target: float | None = None
    op: str = ">="
    detail: str = ""
    from_start: float | None = None

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        if self.value is None:
            return False
        return self.value >= self.target if self.op == ">=" else self.value <= self.target

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def ratios(drains: Mapping[str, Drain], latency: Mapping[str, Latency],
           model: bool = True) -> list[Ratio]:  # fmt: skip
    """Every ratio of the report: the four targets of the issue first, then context."""

    def rate(name: str, basis: str = "assigned") -> float | None:
        d = drains.get(name)
        return None if d is None else d.rate(basis)

    def rows(key: str, label: str, num: str, den: str, target: float | None = None) -> Ratio:
        a, b = rate(num), rate(den)
        detail = "" if a is None or b is None else f"{a:,.0f} ÷ {b:,.0f} events/s"
        return Ratio(key, label, _div(a, b), "x", target, ">=", detail,
                     _div(rate(num, "started"), rate(den, "started")))  # fmt: skip

    out = [
        rows("lsi_vs_faust", "one lsi worker, no model ÷ bare Faust agent", "lsi", "faust", 0.75),
        rows(
            "lsi_model_vs_faust",
            "one lsi worker, fused model ÷ bare Faust agent",
            "lsi_model",
            "faust",
            0.50,
        ),
        rows("two_workers_vs_one", "two lsi workers ÷ one, same backlog", "lsi_x2", "lsi", 1.6),
    ]
    lsi, hop = latency.get("lsi"), latency.get("hop")
    lq = quantiles(lsi.samples) if lsi else {"p50": None, "p99": None}
    hq = quantiles(hop.samples) if hop else {"p50": None, "p99": None}
    served = "fused model" if model else "no model"
    rate_txt = f"{lsi.offered_rate:,.0f} events/s" if lsi else "the offered rate"
    for q, target in (("p50", 30.0), ("p99", 100.0)):
        v, h = lq[q], hq[q]
        detail = "" if h is None else f"bare produce→consume hop {h * 1000:.1f} ms"
        if v is not None and h:
            detail += f" (lsi {v / h:,.1f}× it)"
        out.append(Ratio(f"latency_{q}", f"lsi event→recommendation {q} at {rate_txt}, {served}",
                         None if v is None else v * 1000, "ms", target, "<=", detail))  # fmt: skip
    out += [
        rows("faust_vs_aiokafka", "bare Faust agent ÷ raw aiokafka", "faust", "aiokafka"),
        rows(
            "faust_table_vs_faust", "Faust + table write ÷ bare Faust agent", "faust_table", "faust"
        ),
        rows(
            "lsi_vs_faust_table",
            "one lsi worker, no model ÷ Faust + table write",
            "lsi",
            "faust_table",
        ),
        rows("lsi_vs_aiokafka", "one lsi worker, no model ÷ raw aiokafka", "lsi", "aiokafka"),
        rows("lsi_model_vs_lsi", "fused model ÷ no model, one lsi worker", "lsi_model", "lsi"),
    ]
    fh = latency.get("faust_hop")
    fq = quantiles(fh.samples) if fh and fh.samples else {"p50": None, "p99": None}
    for key, what, base in (("hop", "bare hop", hq), ("faust_hop", "bare Faust agent's hop", fq)):
        for q in ("p50", "p99"):
            v, h = lq[q], base[q]
            out.append(Ratio(f"latency_{q}_vs_{key}",
                             f"lsi event→recommendation {q} ÷ {what} {q}",
                             _div(v, h), "x", detail="" if v is None or h is None else
                             f"{v * 1000:.1f} ms ÷ {h * 1000:.1f} ms"))  # fmt: skip
    return out


# -- the Markdown report ----------------------------------------------------------------------
def _num(v: float | None, unit: str) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}×" if unit == "x" else f"{v:,.1f} ms"


def _load(v: Sequence[float] | None) -> str:
    return "–" if not v else " / ".join(f"{x:.2f}" for x in v)


def _verdict(passed: bool | None) -> str:
    return "" if passed is None else ("**pass**" if passed else "**miss**")


#: the issue's target for a user with a full window (200 kept events)
STATE_P99_BYTES = 2048


def markdown(report: Mapping[str, Any]) -> str:
    """``report.md`` from ``report.json``'s content."""
    m, s = report["machine"], report["settings"]
    lines = [
        f"# Pipeline benchmark: {report['dataset']}, anchors and lsi on one broker",
        "",
        f"Commit `{report.get('commit') or 'unknown'}`"
        f"{' (with uncommitted changes)' if report.get('dirty') else ''}, {report['date']}; "
        f"{m['cpus']} CPUs, Python {m['python']}, Kafka {m['kafka']} on the same host. "
        f"Load average (1/5/15 min) at the start {_load(report['load_average']['start'])}, "
        f"at the end {_load(report['load_average']['end'])}.",
        "",
        f"Every program below read the same {report['events']:,} {report['dataset']} events "
        f"(one topic, {s['partitions']} partitions) in a process of its own with a consumer "
        f"group of its own, one after the other. Rates count from {BASIS} to the last event "
        "handled; from process start in brackets. lsi: micro-batches of up to "
        f"{s['batch_max']} ({s['batch_within_s']} s), emit policy `{s['emit_policy']}`, "
        f"`OMP_NUM_THREADS={s['omp_num_threads']}`.",
        "",
        "## Targets and ratios",
        "",
        "| measure | value | target | result | detail (from process start) |",
        "|---|---|---|---|---|",
    ]
    for r in report["ratios"]:
        sign = {">=": "≥", "<=": "≤"}[r["op"]]
        target = "" if r["target"] is None else f"{sign} {_num(r['target'], r['unit'])}"
        detail = r["detail"]
        if r.get("from_start") is not None:
            detail += f" ({_num(r['from_start'], 'x')})"
        lines.append(f"| {r['label']} | {_num(r['value'], r['unit'])} | {target} | "
                     f"{_verdict(r['passed'])} | {detail} |")  # fmt: skip
    lines += [
        "",
        "## Throughput: the same backlog",
        "",
        "| program | processes | events/s | from process start | partitions assigned after | load before |",
        "|---|---|---|---|---|---|",
    ]
    for d in report["drains"].values():
        rate = "–" if d["events_per_second"] is None else f"{d['events_per_second']:,.0f}"
        start = ("–" if d["events_per_second_from_start"] is None
                 else f"{d['events_per_second_from_start']:,.0f}")  # fmt: skip
        asg = "–" if d["assigned_after_s"] is None else f"{d['assigned_after_s']:.1f} s"
        if d.get("all_assigned_after_s") is not None:
            asg += f" (all {d['processes']}: {d['all_assigned_after_s']:.1f} s)"
        note = f" ({d['note']})" if d.get("note") else ""
        lines.append(f"| {d['label']}{note} | {d['processes']} | {rate} | {start} | {asg} | "
                     f"{_load(d['load_average'])} |")  # fmt: skip
    lines += [
        "",
        "## Latency at a fixed offered rate",
        "",
        "| path | offered | records | p50 | p99 | measured from | load before |",
        "|---|---|---|---|---|---|---|",
    ]
    for lat in report["latency"].values():
        p50, p99 = lat["p50_seconds"], lat["p99_seconds"]
        lines.append(
            f"| {lat['label']} | {lat['offered_rate']:,.0f} events/s ({lat['sent']:,}) | "
            f"{lat['records']:,} | {_num(None if p50 is None else p50 * 1000, 'ms')} | "
            f"{_num(None if p99 is None else p99 * 1000, 'ms')} | {lat['source']} | "
            f"{_load(lat['load_average'])} |"
        )
    lsi = report["latency"].get("lsi") or {}
    hist = lsi.get("histogram_seconds")
    if hist:
        lines += ["", f"The worker's own `lsi_end_to_end_latency_seconds` histogram over the "
                  f"same phase: p50 {_num(_ms(hist.get('p50')), 'ms')}, p99 "
                  f"{_num(_ms(hist.get('p99')), 'ms')} (bucket interpolation)."]  # fmt: skip
    model = report.get("model")
    if model:
        lines += ["", f"Model: snapshot {model['version']} trained on the same "
                  f"{model['events']:,} events in {model['train_seconds']:.0f} s (encoder window "
                  f"{model['max_len']}), promoted before the worker started."]  # fmt: skip
    state = report.get("state")
    if state:
        full, every = state["binary"]["full"], state["binary"]["all"]
        ok = "pass" if full["p99"] <= STATE_P99_BYTES else "miss"
        lines += ["", "## Per-user state", "",
                  f"The worker's state code replayed over all {state['events']:,} events of "
                  f"{state['dataset']} ({state['users']:,} users), {state['recent_n']} events "
                  "kept per user (`lsi.bench.state_size`):", "",
                  "| users | p50 | p99 | max | target p99 | result |", "|---|---|---|---|---|---|",
                  f"| with ≥ {state['recent_n']} events ({full['count']:,}) | {full['p50']:,} B | "
                  f"{full['p99']:,} B | {full['max']:,} B | ≤ {STATE_P99_BYTES:,} B | {ok} |",
                  f"| all ({every['count']:,}) | {every['p50']:,} B | {every['p99']:,} B | "
                  f"{every['max']:,} B | | |"]  # fmt: skip
    lines += ["", "## Serving time per event by catalogue size", ""]
    cat = report.get("catalogue")
    if cat and cat.get("markdown"):
        # the link goes from the report's own folder (``link``, set when it is written)
        lines += [f"From `lsi bench catalogue` ([{cat['path']}]({cat.get('link', cat['path'])})):",
                  ""]  # fmt: skip
        lines += [("#" + ln if ln.startswith("#") else ln) for ln in cat["markdown"].splitlines()]
    else:
        where = cat["path"] if cat else "its report folder"
        lines.append(f"Not included: no `lsi bench catalogue` report in `{where}` when this ran.")
    lines += ["", "Steps and the load average before each: "
              + "; ".join(f"{st['step']} {_load(st['load_average'])}" for st in report["steps"]),
              "", f"Reproduce: `{report['command']}`", ""]  # fmt: skip
    return "\n".join(lines)


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


def plot(report: Mapping[str, Any], path: Any) -> None:
    """Rates of every drain, the two latency distributions, and lsi's drain timelines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.2))
    drains = report["drains"]
    names = list(drains)
    ys = range(len(names))
    ax1.barh([y + 0.2 for y in ys], [drains[n]["events_per_second"] or 0 for n in names],
             height=0.4, label=f"from {BASIS}")  # fmt: skip
    ax1.barh([y - 0.2 for y in ys], [drains[n]["events_per_second_from_start"] or 0 for n in names],
             height=0.4, label="from process start")  # fmt: skip
    ax1.set_yticks(list(ys), [drains[n]["label"].split(" (")[0] for n in names], fontsize=7)
    ax1.invert_yaxis()
    ax1.set_xscale("log")
    ax1.set_xlabel("events/s (log)")
    ax1.set_title(f"{report['events']:,} events, same topic", fontsize=9)
    ax1.legend(fontsize=7)
    for lat in report["latency"].values():
        xs = [max(v, 1e-4) * 1000 for v in lat.get("cdf_seconds") or []]
        if xs:
            ax2.plot(xs, [i / (len(xs) - 1) for i in range(len(xs))], label=lat["label"])
    for r in report["ratios"]:
        if r["key"] in ("latency_p50", "latency_p99"):
            ax2.axvline(r["target"], color="grey", ls=":", lw=1)
    ax2.set_xscale("log")
    ax2.set_xlabel("ms (log)")
    ax2.set_ylabel("fraction of records")
    ax2.set_title("latency at the offered rate (targets dotted)", fontsize=9)
    ax2.legend(fontsize=7, loc="lower right")
    for name, tl in report.get("timelines", {}).items():
        ax3.plot([t for t, _ in tl], [n for _, n in tl], label=DRAINS.get(name, name))
    ax3.axhline(report["events"], color="grey", ls=":", lw=1)
    ax3.set_xlabel("seconds since the worker process(es) started")
    ax3.set_ylabel("events learned")
    ax3.set_title("lsi drains", fontsize=9)
    ax3.legend(fontsize=7, loc="lower right")
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
