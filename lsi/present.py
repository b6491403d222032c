"""Human-readable views of recommendation records and worker metrics (CLI output)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["MetricsSnapshot", "format_recommendation", "histogram_quantile", "parse_metrics"]


def _title(item: str, titles: Mapping[str, str]) -> str:
    title = titles.get(item)
    return f"{item} {title}" if title else item


def format_recommendation(rec: Mapping[str, Any], titles: Mapping[str, str] | None = None,
                          limit: int = 10) -> str:  # fmt: skip
    """A record as a person reads it: who, the gate ("short-term 0.85 / long-term 0.15"), the
    fused list with each item's per-source scores, then each source's own top picks."""
    titles = titles or {}
    lw = float(rec.get("long_weight", 0.0))
    when = time.strftime("%H:%M:%S", time.localtime(float(rec.get("emitted_at") or rec["ts"])))
    lines = [
        f"user {rec['user_id']}  ·  short-term {1 - lw:.2f} / long-term {lw:.2f}  ·  "
        f"{rec.get('source', '?')}  ·  model {rec['model_version']}  ·  "
        f"{rec.get('history_size', 0)} events  ·  {when} ({rec.get('trigger', 'event')})"
    ]
    items = rec.get("items", [])[:limit]
    if not items:
        lines.append("   (nothing to recommend yet)")
    for rank, item in enumerate(items, 1):
        lines.append(
            f"  {rank:>2}. {_title(str(item['item_id']), titles)[:60]:<60} "
            f"score {item['score']:.4f}  (short {item['short_score']:.4f}, long {item['long_score']:.4f})"
        )
    if items:
        for label, key in (("short-term picks", "short_term"), ("long-term picks ", "long_term")):
            picks = rec.get(key) or []
            if picks:
                shown = " · ".join(_title(str(p["item_id"]), titles)[:28] for p in picks[:3])
                lines.append(f"      {label}: {shown}")
    return "\n".join(lines)


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
