"""The ``item-stats`` agent: folds item-keyed deltas into the global statistics tables.

Consumes ``lsi.item-deltas`` (bundles of item deltas, one per partition per interest batch,
each holding only items whose key hashes to that partition), sums a batch's deltas per item, applies each once with :func:`lsi.stats.apply_delta` into the
``item_stats`` GlobalTable, and refreshes the trending list of every partition it touched
(:func:`lsi.stats.update_trending`). Every worker replicates both tables, so any worker can
score any user.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from lsi.config import Settings
from lsi.metrics import WorkerMetrics
from lsi.stats import (
    ItemDelta,
    ItemStats,
    StatsConfig,
    Trending,
    apply_delta,
    decode_bundle,
    merge_into,
    update_trending,
)
from streams.context import acting_for, key_for_partition
from streams.tables import Tables
from streams.topics import Topics

__all__ = ["ItemStatsAgent"]

log = logging.getLogger(__name__)


class ItemStatsAgent:
    """Maintains the global item statistics."""

    name = "item_stats"

    def __init__(self, settings: Settings, topics: Topics, tables: Tables, metrics: WorkerMetrics):
        self.settings = settings
        self.topics = topics
        self.tables = tables
        self.metrics = metrics
        self.cfg: StatsConfig = settings.engine().stats

    def register(self, app: Any) -> None:
        @app.agent(self.topics.item_deltas, name="lsi.item-stats")
        async def item_stats(stream: Any) -> None:
            async for batch in stream.take_events(self.settings.batch_max * 4,
                                                  within=self.settings.batch_within_s * 4):  # fmt: skip
                self.handle(batch)

    def handle(self, batch: Sequence[Any]) -> None:
        m = self.metrics
        m.batch_size.labels(agent=self.name).observe(len(batch))
        merged: dict[tuple[int, str], ItemDelta] = {}
        source: dict[int, Any] = {}  # partition -> one of its events (see streams.context)
        for ev in batch:
            msg = ev.message
            try:
                bundle = decode_bundle(msg.value)
            except Exception as exc:
                m.errors.labels(agent=self.name, kind="decode").inc()
                log.error("item-stats: cannot decode %s[%s]@%s: %r", msg.topic, msg.partition,
                          msg.offset, exc)  # fmt: skip
                continue
            source[msg.partition] = ev
            for item, delta in bundle.items():
                acc = merged.get((msg.partition, item))
                if acc is None:
                    merged[(msg.partition, item)] = delta
                else:
                    merge_into(acc, delta)

        table = self.tables.item_stats
        updated: dict[int, dict[str, ItemStats]] = {}
        for (partition, item), delta in merged.items():
            raw = table.get(item.encode())
            stats = apply_delta(ItemStats.from_bytes(raw) if raw else None, delta, self.cfg)
            with acting_for(source[partition]):
                table[item.encode()] = stats.to_bytes()
            updated.setdefault(partition, {})[item] = stats
        for partition, items in updated.items():
            key = key_for_partition("trending", partition, self.settings.partitions)
            raw = self.tables.trending.get(key)
            previous = Trending.from_bytes(raw) if raw else None
            with acting_for(source[partition]):
                self.tables.trending[key] = update_trending(previous, items, self.cfg).to_bytes()
        done = time.time()
        for ev in batch:
            m.processing_latency.labels(agent=self.name).observe(
                max(0.0, done - ev.message.timestamp)
            )
