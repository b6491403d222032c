"""A worker's ``/metrics`` page read back: the few series the tools watch, and histogram quantiles."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["MetricsSnapshot", "histogram_quantile", "parse_metrics"]


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus-style quantile from cumulative ``(upper_bound, count)`` buckets."""
    pairs = sorted(buckets)
    if not pairs or pairs[-1][1] <= 0:
        return None
    rank = q * pairs[-1][1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in pairs:
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """The worker numbers the demo prints, from one scrape of ``/metrics``."""

    counters: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    histograms: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]]
    gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)

    def value(self, name: str, **match: str) -> float | None:
        """The gauge ``name`` whose labels include ``match`` (``None`` if absent)."""
        for (metric, labels), value in self.gauges.items():
            if metric == name and all((k, v) in labels for k, v in match.items()):
                return value
        return None

    def total(self, name: str, **match: str) -> float:
        out = 0.0
        for (metric, labels), value in self.counters.items():
            if metric == name and all((k, v) in labels for k, v in match.items()):
                out += value
        return out

    def quantile(self, name: str, q: float, **match: str) -> float | None:
        merged: dict[float, float] = {}
        for (metric, labels), buckets in self.histograms.items():
            if metric == name and all((k, v) in labels for k, v in match.items()):
                for bound, count in buckets:
                    merged[bound] = merged.get(bound, 0.0) + count
        return histogram_quantile(q, merged.items())


def parse_metrics(text: str) -> MetricsSnapshot:
    counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    histograms: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}
    gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = (sample.name, tuple(sorted(sample.labels.items())))
                counters[key] = sample.value
            elif sample.name.endswith("_bucket"):
                labels = dict(sample.labels)
                bound = float(labels.pop("le"))
                hkey = (sample.name[: -len("_bucket")], tuple(sorted(labels.items())))
                histograms.setdefault(hkey, []).append((bound, sample.value))
            elif family.type in ("gauge", "info"):
                gauges[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return MetricsSnapshot(counters, histograms, gauges)
