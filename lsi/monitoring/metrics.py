"""Prometheus metrics of a worker, grouped in one object built from an injected registry.

Conventions: base units (seconds), ``_total`` counters, no per-user or per-item labels. The
catalogue (names, labels, meaning) is these classes; ``docs/metrics.md`` lists it for operators,
with the recording rules, alerts and dashboard panels built on it.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from lsi.wire.records import EVENT_TYPES
from lsi.wire.validation import REASONS

__all__ = ["AGENTS", "ERROR_KINDS", "LATENCY_BUCKETS", "RefreshMetrics", "WorkerMetrics"]

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: the ``agent`` label values that count errors, and the kinds they count (``ingest`` is the
#: admission stage of the interest agent: validation, re-keying, client duplicates)
AGENTS = ("ingest", "interest", "item_stats", "sampler")
ERROR_KINDS = ("decode", "send", "internal")
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)


class WorkerMetrics:
    """Every metric a worker exports.

    Attributes:
        events: ``lsi_events_total{agent,type,outcome}``. The worker has one agent; its
            admission stage counts as ``agent="ingest"``: ``forwarded`` (learned and appended
            to the interaction log), ``rekeyed`` (sent to ``lsi.events.rekeyed``: it arrived
            off its user's partition), ``dlq`` (an invalid ``lsi.events`` record, or a bug while
            validating one) and ``duplicate`` (same event id among the user's last 32).
            ``agent="interest"``:
            ``accepted`` (learned), ``redelivered`` (a re-delivery after a crash, skipped by
            source offset) and ``dlq`` (a bad ``lsi.events.rekeyed`` record, or a bug while
            learning an event). ``item_stats``: ``dlq`` (a bad bundle).
        dlq: ``lsi_dlq_total{reason}``: dead-lettered events by validation reason.
        processing_latency: ``lsi_processing_latency_seconds{agent}``: from the message's
            Kafka timestamp to the end of the agent's work on it (``interest``: its output
            delivered; ``item_stats``: its tables written).
        end_to_end_latency: ``lsi_end_to_end_latency_seconds``: from event time (``ts``) to
            the recommendation being sent.
        batch_size: ``lsi_batch_size{agent}``: events per micro-batch.
        recommendations: ``lsi_recommendations_total{trigger}``: records emitted / served.
        online_evaluated: ``lsi_online_evaluated_total``: events judged against the user's
            previous list.
        online_hits: ``lsi_online_hits_total{k}``: of those, events whose item was in its
            top-K. Hit rate @K = hits / evaluated.
        errors: ``lsi_errors_total{agent,kind}``: unexpected failures caught by an agent;
            kind ``decode`` (a record of an internal topic that does not parse), ``send``
            (a produce that failed after retries) or ``internal`` (a bug; logged with its
            traceback).
        consumer_lag: ``lsi_consumer_lag{topic,partition}``: records of an assigned source
            partition (``lsi.events``, ``lsi.events.rekeyed``, ``lsi.item-deltas``) not yet
            committed by this worker (see :mod:`streams.sampler`).
        table_keys: ``lsi_table_keys{table}``: estimated keys of a table on this worker
            (``user_state``, ``item_stats``, ``trending``).
        info: ``lsi_worker_info{version,...}``.
        model_version: ``lsi_model_version_info{version}``: 1 for the snapshot this worker
            scores with (``none`` before the first).
        model_created: ``lsi_model_created_timestamp_seconds``: its creation time (age =
            ``time() - this``).
        model_age: ``lsi_model_age_seconds``: age of that snapshot at scrape time (0: none).
        model_swaps: ``lsi_model_swaps_total``: live snapshot changes applied.
        model_load_failures: ``lsi_model_load_failures_total``: announced snapshots that could
            not be loaded (the worker keeps the previous one); also an experiment's candidate
            that could not be loaded, or a malformed experiment in ``LIVE`` (the worker runs
            no experiment then).
        experiment_fraction: ``lsi_experiment_fraction{experiment,candidate}``: the share of
            users the running experiment's candidate serves on this worker (no series while
            none runs).
        experiment_judged: ``lsi_experiment_judged_total{experiment,arm}``: events judged
            against a list their user's arm emitted (``arm``: ``control`` or ``candidate``).
        experiment_hits: ``lsi_experiment_hits_total{experiment,arm,k}``: of those, events
            whose item was in that list's top-K. Per-arm hit rate@K = hits / judged.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "lsi_events",
            "Events handled by an agent, by type and outcome.",
            ["agent", "type", "outcome"],
            registry=registry,
        )
        self.dlq = Counter(
            "lsi_dlq", "Events sent to the dead-letter topic, by reason.", ["reason"],
            registry=registry,
        )  # fmt: skip
        self.processing_latency = Histogram(
            "lsi_processing_latency_seconds",
            "From the message's Kafka timestamp to the end of the agent's work on it.",
            ["agent"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.end_to_end_latency = Histogram(
            "lsi_end_to_end_latency_seconds",
            "From event time (ts) to the recommendation being sent.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "lsi_batch_size", "Events per micro-batch.", ["agent"], buckets=BATCH_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.long_weight = Histogram(
            "lsi_long_weight", "The gate's long-term weight of each list emitted or served, by source.",
            ["source"], buckets=tuple(round(0.05 * k, 2) for k in range(1, 21)),
            registry=registry,
        )  # fmt: skip
        self.recommendations = Counter(
            "lsi_recommendations", "Recommendation records emitted or served.", ["trigger"],
            registry=registry,
        )  # fmt: skip
        self.online_evaluated = Counter(
            "lsi_online_evaluated",
            "Events judged against the list last shown to their user.",
            registry=registry,
        )
        self.online_hits = Counter(
            "lsi_online_hits",
            "Events whose item was in the top-K of the list last shown to their user.",
            ["k"],
            registry=registry,
        )
        self.errors = Counter(
            "lsi_errors", "Unexpected failures caught by an agent, by kind.", ["agent", "kind"],
            registry=registry,
        )  # fmt: skip
        self.consumer_lag = Gauge(
            "lsi_consumer_lag",
            "Records of an assigned source partition not yet committed by this worker.",
            ["topic", "partition"],
            registry=registry,
        )
        self.table_keys = Gauge(
            "lsi_table_keys", "Estimated keys of a table held by this worker.", ["table"],
            registry=registry,
        )  # fmt: skip
        self.info = Info("lsi_worker", "Worker build and configuration.", registry=registry)
        self.model_version = Gauge(
            "lsi_model_version_info", "1 for the model snapshot this worker scores with.",
            ["version"], registry=registry,
        )  # fmt: skip
        self.model_created = Gauge(
            "lsi_model_created_timestamp_seconds",
            "Creation time of the snapshot this worker scores with (0: none).",
            registry=registry,
        )
        model_age = Gauge(
            "lsi_model_age_seconds",
            "Age of the snapshot this worker scores with, at scrape time (0: none).",
            registry=registry,
        )
        model_age.set_function(lambda: _age(self.model_created))
        self.model_swaps = Counter(
            "lsi_model_swaps", "Live snapshot changes applied by this worker.", registry=registry
        )
        self.model_load_failures = Counter(
            "lsi_model_load_failures",
            "Announced snapshots this worker could not load (it kept the previous one).",
            registry=registry,
        )
        self.experiment_fraction = Gauge(
            "lsi_experiment_fraction",
            "Share of users the running experiment's candidate serves (no series: none runs).",
            ["experiment", "candidate"],
            registry=registry,
        )
        self.experiment_judged = Counter(
            "lsi_experiment_judged",
            "Events judged against the list their user's experiment arm emitted.",
            ["experiment", "arm"],
            registry=registry,
        )
        self.experiment_hits = Counter(
            "lsi_experiment_hits",
            "Judged events of an experiment arm whose item was in that list's top-K.",
            ["experiment", "arm", "k"],
            registry=registry,
        )
        self.model_version.labels(version="none").set(1)
        # Create the label sets users will query, so dashboards show 0 rather than nothing.
        for reason in REASONS:
            self.dlq.labels(reason=reason)
        for etype in EVENT_TYPES:
            self.events.labels(agent="interest", type=etype, outcome="accepted")
        for k in (1, 5, 10, 20):
            self.online_hits.labels(k=str(k))
        for agent in AGENTS:
            for kind in ERROR_KINDS:
                self.errors.labels(agent=agent, kind=kind)

    def experiment_started(self, name: str, candidate: str, fraction: float) -> None:
        """The series of an experiment this worker now runs: its fraction, and both arms'
        counters at 0 (so a panel shows an arm before its first judged event)."""
        self.experiment_fraction.clear()
        self.experiment_fraction.labels(experiment=name, candidate=candidate).set(fraction)
        for arm in ("control", "candidate"):
            self.experiment_judged.labels(experiment=name, arm=arm)
            for k in (1, 5, 10, 20):
                self.experiment_hits.labels(experiment=name, arm=arm, k=str(k))

    def experiment_stopped(self) -> None:
        """No experiment runs (its counters stay, for the record of its last minutes)."""
        self.experiment_fraction.clear()


DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class RefreshMetrics:
    """Every metric the refresh job exports (``lsi refresh --every``, port 9108).

    Attributes:
        runs: ``lsi_refresh_runs_total{trigger,outcome}``: trigger ``start``/``schedule``/
            ``events``/``drift``/``manual``; outcome ``promoted``, ``rejected`` (validated
            worse than live by more than the margin), ``empty`` (no data) or ``failed``.
        failures: ``lsi_refresh_failures_total``: refreshes that raised.
        rejected: ``lsi_refresh_rejected_total``: candidates not promoted.
        duration: ``lsi_refresh_duration_seconds``: read + train + validate + publish.
        last_success: ``lsi_refresh_last_success_timestamp_seconds``.
        snapshot_created: ``lsi_snapshot_created_timestamp_seconds``: the live snapshot's
            creation time; ``lsi_snapshot_age_seconds`` is derived from it at scrape time.
        validation_ndcg: ``lsi_refresh_validation_ndcg_at_10{model}``: NDCG@10 of the
            ``candidate`` and of the ``live`` snapshot on the same held-out cases.
        edges / events: ``lsi_refresh_graph_edges``, ``lsi_refresh_log_events``: size of the
            last training graph and of the interaction log read.
        new_interactions: ``lsi_refresh_new_interactions``: interactions since the last refresh.
        online_hit_rate: ``lsi_refresh_online_hit_rate``: ADWIN's current estimate of the
            online hit rate @10; ``lsi_refresh_drift_total`` counts detected shifts.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.runs = Counter("lsi_refresh_runs", "Refresh runs by trigger and outcome.",
                            ["trigger", "outcome"], registry=registry)  # fmt: skip
        self.failures = Counter("lsi_refresh_failures", "Refreshes that failed.",
                                registry=registry)  # fmt: skip
        self.rejected = Counter("lsi_refresh_rejected",
                                "Candidates validated worse than live by more than the margin.",
                                registry=registry)  # fmt: skip
        self.duration = Histogram("lsi_refresh_duration_seconds",
                                  "Refresh wall time: read, train, validate, publish.",
                                  buckets=DURATION_BUCKETS, registry=registry)  # fmt: skip
        self.last_success = Gauge("lsi_refresh_last_success_timestamp_seconds",
                                  "End of the last successful refresh.",
                                  registry=registry)  # fmt: skip
        self.snapshot_created = Gauge("lsi_snapshot_created_timestamp_seconds",
                                      "Creation time of the live snapshot (0: none).",
                                      registry=registry)  # fmt: skip
        age = Gauge("lsi_snapshot_age_seconds", "Age of the live snapshot (0: none).",
                    registry=registry)  # fmt: skip
        age.set_function(lambda: _age(self.snapshot_created))
        self.validation_ndcg = Gauge("lsi_refresh_validation_ndcg_at_10",
                                     "NDCG@10 on the refresh's held-out cases.", ["model"],
                                     registry=registry)  # fmt: skip
        self.edges = Gauge("lsi_refresh_graph_edges", "Edges of the last training graph.",
                           registry=registry)  # fmt: skip
        self.events = Gauge("lsi_refresh_log_events", "Interactions read for the last refresh.",
                            registry=registry)  # fmt: skip
        self.new_interactions = Gauge("lsi_refresh_new_interactions",
                                      "Interactions seen since the last refresh.",
                                      registry=registry)  # fmt: skip
        self.online_hit_rate = Gauge("lsi_refresh_online_hit_rate",
                                     "ADWIN estimate of the online hit rate @10.",
                                     registry=registry)  # fmt: skip
        self.drifts = Counter("lsi_refresh_drift", "Online hit-rate shifts detected (ADWIN).",
                              registry=registry)  # fmt: skip
        for trigger in ("start", "schedule", "events", "drift", "manual"):
            for outcome in ("promoted", "rejected", "empty", "failed"):
                self.runs.labels(trigger=trigger, outcome=outcome)
        for model in ("candidate", "live"):
            self.validation_ndcg.labels(model=model)


def _age(created_at: Gauge) -> float:
    """Seconds since the timestamp a gauge holds (0 while it holds none)."""
    created = created_at._value.get()
    return max(0.0, time.time() - created) if created > 0 else 0.0
