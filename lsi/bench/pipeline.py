"""``lsi bench pipeline``: throughput and latency of the whole streaming path on a real broker.

Two phases against one real worker process (its own topics and consumer group):

1. **Backlog drain.** ``n_backlog`` events of the dataset are published *before* the worker
   starts; once it starts, the time from its first learned event to the last is the
   sustained capacity of ingest → interest → item-stats on this machine (events/s).
2. **Live.** ``n_live`` further events are replayed at ``live_rate`` events/s with
   wall-clock timestamps; the worker's own histograms give the end-to-end latency (event
   time → recommendation sent) and the interest agent's processing latency (Kafka
   timestamp → done), as p50/p99 over this phase only.

With ``model`` the worker serves a snapshot with the fused scorer: before it starts, the
long-term model, the encoder and the gate are trained (:func:`lsi.evaluation.fused.
train_bundle`, the refresh job's training, encoder time capped by ``train_budget_s``) on the
backlog's events and published as the live version of the worker's model store; every list
is then scored by the encoder and the gate in the interest agent's micro-batches.
"""

from __future__ import annotations

import json
import os
import platform
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsi.broker import BrokerSettings, KafkaBroker
from lsi.config import Settings
from lsi.errors import LsiError
from lsi.kafka_io import ensure_topics
from lsi.present import MetricsSnapshot, histogram_quantile
from lsi.replay import replay
from lsi.worker_process import scrape_metrics, start_worker, stop_worker

__all__ = ["PipelineBenchOptions", "run_pipeline_bench"]


@dataclass(frozen=True, slots=True)
class PipelineBenchOptions:
    dataset: str = "ml-100k"
    n_backlog: int = 20_000
    n_live: int = 5_000
    live_rate: float = 500.0
    out: Path = Path("benchmarks/results/pipeline")
    web_port: int = 6099
    model: bool = False
    train_budget_s: float = 120.0
    max_len: int = 200


def _publish_model(settings: Settings, opts: PipelineBenchOptions) -> dict[str, Any]:
    """Train a snapshot with the fused scorer on the backlog's events; make it live."""
    from lsi.datasets import load
    from lsi.evaluation.fused import train_bundle
    from lsi.snapshots import SnapshotArrays, SnapshotStore
    from models.train import Log
    from models.train_sequence import SequenceConfig

    data = load(opts.dataset)
    log = Log.from_interactions(data, data.time_order()[: opts.n_backlog])
    cfg = SequenceConfig(max_len=opts.max_len, max_train_s=opts.train_budget_s, device="cpu")
    t0 = time.perf_counter()
    bundle = train_bundle(log, 0, cfg, version="bench")
    lt = bundle.served
    store = SnapshotStore(settings.models_dir)
    version = store.publish(
        SnapshotArrays(lt.user_ids, lt.item_ids, lt.user_vec, lt.item_vec, bundle.warm.base,
                       lt.hist_indptr, lt.hist_items, lt.sequence),
        {"model": "weighted-lightgcn", "trigger": "bench", "events": len(log)},
    )  # fmt: skip
    store.promote(version)
    return {"version": version, "train_seconds": round(time.perf_counter() - t0, 1),
            "max_len": opts.max_len, **bundle.info()}  # fmt: skip


def _learned(m: MetricsSnapshot) -> float:
    return m.total("lsi_events_total", agent="interest", outcome="accepted")


def _phase_quantiles(before: MetricsSnapshot, after: MetricsSnapshot, name: str,
                     **match: str) -> dict[str, float | None]:  # fmt: skip
    def buckets(m: MetricsSnapshot) -> dict[float, float]:
        out: dict[float, float] = {}
        for (metric, labels), pairs in m.histograms.items():
            if metric == name and all((k, v) in labels for k, v in match.items()):
                for bound, count in pairs:
                    out[bound] = out.get(bound, 0.0) + count
        return out

    b0, b1 = buckets(before), buckets(after)
    delta = [(bound, b1[bound] - b0.get(bound, 0.0)) for bound in b1]
    return {f"p{int(q * 100)}": histogram_quantile(q, delta) for q in (0.5, 0.99)}


def run_pipeline_bench(opts: PipelineBenchOptions) -> dict[str, Any]:
    """Run both phases; write the report files; return the report."""
    opts.out.mkdir(parents=True, exist_ok=True)
    broker = KafkaBroker(BrokerSettings.from_env())
    was_running = broker.status().running
    status = broker.up()
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    workdir = opts.out / ".work"
    # LSI_* tuning from the environment applies; names, ports and dirs are the bench's own
    settings = Settings.from_env(
        None, brokers=status.bootstrap, app_id=f"lsi-{prefix}", data_dir=workdir / prefix,
        web_port=opts.web_port, events_topic=f"{prefix}.events",
        interactions_topic=f"{prefix}.interactions",
        recommendations_topic=f"{prefix}.recommendations", dlq_topic=f"{prefix}.dlq",
        item_deltas_topic=f"{prefix}.item-deltas", models_dir=workdir / prefix / "models",
        models_topic=f"{prefix}.models",
    )  # fmt: skip
    ensure_topics(settings)
    model_info: dict[str, Any] | None = None
    if opts.model:
        print(f"[bench] training a snapshot with the fused scorer on the backlog's "
              f"{opts.n_backlog} events", flush=True)  # fmt: skip
        model_info = _publish_model(settings, opts)
    print(f"[bench] publishing a backlog of {opts.n_backlog} {opts.dataset} events", flush=True)
    backlog = replay(settings, opts.dataset, limit=opts.n_backlog, run_id="backlog")

    log = workdir / f"{prefix}.log"
    proc = start_worker(settings, log)
    timeline: list[tuple[float, float]] = []
    try:
        t_start = time.time()
        first: float | None = None
        m: MetricsSnapshot | None = None
        while True:
            if proc.poll() is not None:
                raise LsiError(f"the worker exited; see {log}")
            if time.time() - t_start > 600:
                raise LsiError(f"the worker did not drain the backlog in 600 s; see {log}")
            m = scrape_metrics(settings)
            now = time.time()
            if m is not None:
                learned = _learned(m)
                timeline.append((now - t_start, learned))
                if learned > 0 and first is None:
                    first = now
                if learned >= opts.n_backlog:
                    break
            time.sleep(0.25)
        assert first is not None and m is not None
        drain_s = time.time() - first
        drain_rate = opts.n_backlog / drain_s
        print(f"[bench] backlog drained: {opts.n_backlog} events in {drain_s:.1f} s "
              f"({drain_rate:,.0f} ev/s)", flush=True)  # fmt: skip

        # let the item-stats agent finish the backlog's deltas, so the live phase measures
        # live traffic, not the tail of the backlog
        settle_start = time.time()
        before = m
        stats_seen = -1.0
        while time.time() - settle_start < 120:
            time.sleep(1.0)
            snap = scrape_metrics(settings)
            if snap is None:
                continue
            before = snap
            handled = sum(
                b[-1][1] for (name, labels), b in snap.histograms.items()
                if name == "lsi_batch_size" and ("agent", "item_stats") in labels
            )  # fmt: skip
            if handled == stats_seen:
                break
            stats_seen = handled
        settle_s = time.time() - settle_start
        live = replay(settings, opts.dataset, start=opts.n_backlog, limit=opts.n_live,
                      rate=opts.live_rate, run_id="live")  # fmt: skip
        deadline = time.time() + 120
        after = before
        while time.time() < deadline:
            snap = scrape_metrics(settings)
            if snap is not None:
                after = snap
                timeline.append((time.time() - t_start, _learned(after)))
                if _learned(after) >= opts.n_backlog + live.sent:
                    break
            time.sleep(0.25)
        report: dict[str, Any] = {
            "benchmark": "pipeline",
            "dataset": opts.dataset,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "kafka": status.version,
            },
            "settings": {
                "partitions": settings.partitions,
                "batch_max": settings.batch_max,
                "emit_policy": settings.emit_policy,
                "scorer": settings.scorer,
                "workers": 1,
            },
            "model": model_info,
            "backlog": {
                "events": opts.n_backlog,
                "publish_rate": round(backlog.rate, 1),
                "drain_seconds": round(drain_s, 3),
                "item_stats_settle_seconds": round(settle_s, 1),
                "events_per_second": round(drain_rate, 1),
            },
            "live": {
                "events": live.sent,
                "offered_rate": opts.live_rate,
                "end_to_end_latency_seconds": _phase_quantiles(
                    before, after, "lsi_end_to_end_latency_seconds"
                ),
                "interest_processing_latency_seconds": _phase_quantiles(
                    before, after, "lsi_processing_latency_seconds", agent="interest"
                ),
                "all_processed": _learned(after) >= opts.n_backlog + live.sent,
            },
            "recommendations": after.total("lsi_recommendations_total"),
        }
    finally:
        stop_worker(proc)
        if not was_running:
            broker.down()
    _write(opts.out, report, timeline)
    return report


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v * 1000:.0f} ms"


def _write(out: Path, report: dict[str, Any], timeline: list[tuple[float, float]]) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    b, lv = report["backlog"], report["live"]
    e2e, proc = lv["end_to_end_latency_seconds"], lv["interest_processing_latency_seconds"]
    model = report.get("model")
    serving = ("the fused scorer (encoder + gate) from snapshot "
               f"{model['version']}, window {model['max_len']}" if model
               else "the statistics scorer (no snapshot)")  # fmt: skip
    md = [
        f"# Pipeline benchmark: {report['dataset']}",
        "",
        f"Serving: {serving}.",
        "",
        f"One worker, {report['settings']['partitions']} partitions, micro-batches of up to "
        f"{report['settings']['batch_max']}, emit policy `{report['settings']['emit_policy']}`; "
        f"Kafka {report['machine']['kafka']} on the same host; {report['machine']['cpus']} CPUs.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| backlog drain (ingest → interest: events learned per second) | {b['events_per_second']:,.0f} events/s "
        f"({b['events']} events in {b['drain_seconds']:.1f} s) |",
        f"| item-stats settled after the drain | {b['item_stats_settle_seconds']:.1f} s |",
        f"| live: offered rate | {lv['offered_rate']:.0f} events/s ({lv['events']} events) |",
        f"| live: end-to-end latency p50 / p99 (event time → recommendation sent) | "
        f"{_ms(e2e['p50'])} / {_ms(e2e['p99'])} |",
        f"| live: interest processing latency p50 / p99 (Kafka timestamp → done) | "
        f"{_ms(proc['p50'])} / {_ms(proc['p99'])} |",
        f"| live: every event processed | {lv['all_processed']} |",
        "",
        "Reproduce: `lsi bench pipeline --dataset "
        f"{report['dataset']} --backlog {b['events']} --live {lv['events']} --rate {lv['offered_rate']:.0f}"
        f"{' --model' if model else ''}`",
        "",
    ]
    (out / "report.md").write_text("\n".join(md))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([t for t, _ in timeline], [n for _, n in timeline])
    ax.set_xlabel("seconds since the worker started")
    ax.set_ylabel("events learned")
    ax.set_title(f"lsi pipeline on {report['dataset']}: backlog drain, then live replay")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "timeline.png", dpi=120)
    plt.close(fig)
