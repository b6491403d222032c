"""Prometheus metrics of a worker, grouped in one object built from an injected registry.

Conventions: base units (seconds), ``_total`` counters, no per-user or per-item labels. The
catalogue (names, labels, meaning) is this class; ``docs/operations.md`` lists it for operators.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, Info

from lsi.records import EVENT_TYPES
from lsi.validation import REASONS

__all__ = ["LATENCY_BUCKETS", "WorkerMetrics"]

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)


class WorkerMetrics:
    """Every metric a worker exports.

    Attributes:
        events: ``lsi_events_total{agent,type,outcome}``; outcome is ``accepted`` (learned),
            ``forwarded`` (ingest passed it on), ``dlq``, ``duplicate`` (same event id) or
            ``redelivered`` (a re-delivery after a crash, skipped by source offset).
        dlq: ``lsi_dlq_total{reason}``: dead-lettered events by validation reason.
        processing_latency: ``lsi_processing_latency_seconds{agent}``: from the message's
            Kafka timestamp to the end of the agent's work on it.
        end_to_end_latency: ``lsi_end_to_end_latency_seconds``: from event time (``ts``) to
            the recommendation being sent.
        batch_size: ``lsi_batch_size{agent}``: events per micro-batch.
        recommendations: ``lsi_recommendations_total{trigger}``: records emitted / served.
        online_evaluated: ``lsi_online_evaluated_total``: events judged against the user's
            previous list.
        online_hits: ``lsi_online_hits_total{k}``: of those, events whose item was in its
            top-K. Hit rate @K = hits / evaluated.
        errors: ``lsi_errors_total{agent,kind}``: unexpected failures caught by an agent.
        info: ``lsi_worker_info{version,...}``.
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
        self.info = Info("lsi_worker", "Worker build and configuration.", registry=registry)
        # Create the label sets users will query, so dashboards show 0 rather than nothing.
        for reason in REASONS:
            self.dlq.labels(reason=reason)
        for etype in EVENT_TYPES:
            self.events.labels(agent="interest", type=etype, outcome="accepted")
        for k in (1, 5, 10, 20):
            self.online_hits.labels(k=str(k))
