"""The ``item-stats`` agent: folds item-keyed deltas into the global statistics tables.

Consumes ``lsi.item-deltas`` (bundles of item deltas, one per partition per interest batch,
each holding only items whose key hashes to that partition), sums a batch's deltas per item, applies each once with :func:`lsi.core.stats.apply_delta` into the
``item_stats`` GlobalTable, and refreshes the trending list of every partition it touched
(:func:`lsi.core.stats.update_trending`). Every worker replicates both tables, so any worker can
score any user.

Bundles are validated (:func:`lsi.wire.validation.validate_bundle`): anyone with access can write
to ``lsi.item-deltas``, and one NaN or negative number would poison an item's statistics for
good. A bad bundle is dead-lettered whole with its topic and reason; the rest of the batch is
folded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from lsi.config import Settings
from lsi.core.stats import (
    ItemStats,
    StatsConfig,
    Trending,
    fold_deltas,
    merge_into,
)
from lsi.errors import InvalidRecord
from lsi.monitoring.metrics import WorkerMetrics
from lsi.wire.records import ItemDelta
from lsi.wire.validation import validate_bundle
from streams.context import acting_for
from streams.delivery import Outgoing, deliver
from streams.dlq import DeadLetters
from streams.tables import Tables, item_key, read, trending_key
from streams.topics import Topics

__all__ = ["STATS_WINDOW_S", "ItemStatsAgent"]

#: longest wait of the statistics agent to fill a batch of bundles
STATS_WINDOW_S = 0.2

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
        self.dead = DeadLetters(topics.dlq, self.name, metrics)

    def register(self, app: Any) -> None:
        @app.agent(self.topics.item_deltas, name="lsi.item-stats")
        async def item_stats(stream: Any) -> None:
            # a longer window than the worker's: a popular item touched by several worker
            # batches is folded, written and changelogged once, and each touched trending
            # list (~2 KB) once per fold; statistics lag the stream by up to this window
            async for batch in stream.take_events(self.settings.batch_max * 4,
                                                  within=STATS_WINDOW_S):  # fmt: skip
                await self.handle(batch)

    def _stats(self, item: str) -> ItemStats | None:
        raw = read(self.tables.item_stats, item_key(item))
        return ItemStats.from_bytes(raw) if raw else None

    def _trending(self, partition: int) -> Trending | None:
        raw = read(self.tables.trending, trending_key(partition))
        return Trending.from_bytes(raw) if raw else None

    async def handle(self, batch: Sequence[Any]) -> None:
        m = self.metrics
        m.batch_size.labels(agent=self.name).observe(len(batch))
        merged: dict[int, dict[str, ItemDelta]] = {}
        source: dict[int, Any] = {}  # partition -> one of its events (see streams.context)
        rejected: list[Outgoing] = []
        now = time.time()
        for ev in batch:
            msg = ev.message
            try:
                bundle = validate_bundle(msg.value, msg.partition, self.settings.partitions)
            except InvalidRecord as exc:
                rejected.append(self.dead.refused(msg, exc, now))
                continue
            except Exception as exc:
                rejected.append(self.dead.failed(msg, "item_stats.validate", exc, now))
                continue
            source[msg.partition] = ev
            acc_items = merged.setdefault(msg.partition, {})
            for item, delta in bundle.items():
                acc = acc_items.get(item)
                if acc is None:
                    acc_items[item] = delta
                else:
                    merge_into(acc, delta)

        if rejected:
            await deliver(rejected, self.name, m, replace=self.dead.undeliverable)
        new_stats, new_trending = fold_deltas(merged, self._stats, self._trending, self.cfg)
        for partition, items in new_stats.items():
            with acting_for(source[partition]):
                for item, stats in items.items():
                    self.tables.item_stats[item_key(item)] = stats.to_bytes()
                if partition in new_trending:
                    self.tables.trending[trending_key(partition)] = new_trending[
                        partition
                    ].to_bytes()
        done = time.time()
        for ev in batch:
            m.processing_latency.labels(agent=self.name).observe(
                max(0.0, done - ev.message.timestamp)
            )
