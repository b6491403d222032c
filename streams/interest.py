"""The ``interest`` agent: short-term state, scoring and emission.

Per micro-batch of ``lsi.interactions`` it calls :func:`lsi.engine.process_batch` (the same
function the offline evaluation runs) with lookups over the ``user_state`` table and the
global ``item_stats``/``trending`` tables, then, in this order: delivers the recommendation
records and the item-statistics deltas, writes each changed user's state once, and lets the
batch's offsets be acknowledged. A crash before the state write re-processes the batch; the
state's per-source-partition offsets make the replay idempotent (recommendations may be
re-emitted, state is never double-counted).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from lsi.config import Settings
from lsi.engine import EngineConfig, process_batch, recommend
from lsi.longterm import LongTermModel
from lsi.metrics import WorkerMetrics
from lsi.records import SOURCE_HEADER, Event, Recommendation
from lsi.state import UserState
from lsi.stats import ItemDelta, ItemStats, Trending, encode_bundle, merge_trending
from streams.context import acting_for, key_for_partition, partition_of
from streams.delivery import Outgoing, deliver
from streams.models import ModelWatcher
from streams.tables import Tables
from streams.topics import Topics

__all__ = ["Interest"]

log = logging.getLogger(__name__)


class Interest:
    """Short-term interest tracking and recommendation emission."""

    name = "interest"

    def __init__(self, settings: Settings, topics: Topics, tables: Tables, metrics: WorkerMetrics,
                 models: ModelWatcher | None = None):  # fmt: skip
        self.settings = settings
        self.models = models
        self.topics = topics
        self.tables = tables
        self.metrics = metrics
        self.engine: EngineConfig = settings.engine()

    def register(self, app: Any) -> None:
        @app.agent(self.topics.interactions, name="lsi.interest")
        async def interest(stream: Any) -> None:
            async for batch in stream.take_events(self.settings.batch_max,
                                                  within=self.settings.batch_within_s):  # fmt: skip
                await self.handle(batch)

    # -- lookups over the tables ----------------------------------------------------------
    def load_state(self, user: str) -> UserState | None:
        raw = self.tables.user_state.get(user.encode())
        return UserState.from_bytes(raw) if raw else None

    def stats_lookup(self) -> Any:
        """A per-batch memoised reader of the global item statistics."""
        cache: dict[str, ItemStats | None] = {}
        table = self.tables.item_stats

        def lookup(item: str) -> ItemStats | None:
            if item in cache:
                return cache[item]
            raw = table.get(item.encode())
            stats = cache[item] = ItemStats.from_bytes(raw) if raw else None
            return stats

        return lookup

    def trending(self) -> Trending:
        lists = []
        for raw in self.tables.trending.values():
            if raw:
                lists.append(Trending.from_bytes(raw))
        return merge_trending(lists, self.engine.stats)

    def recommend_now(self, user: str) -> Recommendation:
        """Score a user on request (``GET /recommendations/{user}``); changes nothing."""
        state = self.load_state(user) or UserState()
        rec = recommend(user, state, self.stats_lookup(), self.trending(), self.engine,
                        time.time(), event_ts=None, trigger="request",
                        model=self.live_model())  # fmt: skip
        self.metrics.recommendations.labels(trigger="request").inc()
        self.metrics.long_weight.labels(source=rec.source).observe(rec.long_weight)
        return rec

    def live_model(self) -> LongTermModel | None:
        """The snapshot to score with now (read once per batch)."""
        return self.models.current if self.models is not None else None

    def _delta_bundles(self, deltas: dict[str, ItemDelta]) -> list[Outgoing]:
        """One message per item-deltas partition, keyed so murmur2 lands it there.

        One record per touched item was ~1.5 extra messages per event through Faust's
        per-message machinery twice (send and consume); a bundle per partition is a few per
        batch. Each bundle holds only items whose own key hashes to that partition, so the
        stats agent's table writes stay on the partition of the message they came from.
        """
        n = self.settings.partitions
        groups: dict[int, dict[str, ItemDelta]] = {}
        for item, delta in deltas.items():
            groups.setdefault(partition_of(item.encode(), n), {})[item] = delta
        return [
            (self.topics.item_deltas, key_for_partition("deltas", p, n), encode_bundle(group), None)
            for p, group in sorted(groups.items())
        ]

    # -- the batch ------------------------------------------------------------------------
    async def handle(self, batch: Sequence[Any]) -> None:
        m = self.metrics
        m.batch_size.labels(agent=self.name).observe(len(batch))
        events: list[Event] = []
        origins: list[tuple[int, int] | None] = []
        source: dict[str, Any] = {}  # user -> an event of theirs (see streams.context)
        for ev in batch:
            try:
                event = Event.from_trusted(json.loads(ev.message.value))
                origins.append(_origin(ev.message.headers))
                events.append(event)
                source[event.user_id] = ev
            except (
                Exception
            ) as exc:  # only ingest writes this topic; this is a bug or a stray producer
                m.errors.labels(agent=self.name, kind="decode").inc()
                log.error("interest: cannot decode %s[%s]@%s: %r", ev.message.topic,
                          ev.message.partition, ev.message.offset, exc)  # fmt: skip
        now = time.time()
        result = process_batch(events, self.load_state, self.stats_lookup(), self.trending(),
                               self.engine, now, origins, model=self.live_model())  # fmt: skip

        out: list[Outgoing] = [
            (self.topics.recommendations, rec.user_id.encode(), rec.to_json(), None)
            for rec in result.recommendations
        ]
        out += self._delta_bundles(result.deltas)
        await deliver(out, self.name, m)
        sent = time.time()
        for user, state in result.states.items():
            with acting_for(source[user]):
                self.tables.user_state[user.encode()] = state.to_bytes()

        for etype, n in result.accepted.items():
            m.events.labels(agent=self.name, type=etype, outcome="accepted").inc(n)
        for etype, n in result.duplicates.items():
            m.events.labels(agent=self.name, type=etype, outcome="duplicate").inc(n)
        if result.redelivered:
            m.events.labels(agent=self.name, type="unknown", outcome="redelivered").inc(
                result.redelivered
            )
        if result.evaluated:
            m.online_evaluated.inc(result.evaluated)
        for k, n in result.hits.items():
            m.online_hits.labels(k=str(k)).inc(n)
        m.recommendations.labels(trigger="event").inc(len(result.recommendations))
        for rec in result.recommendations:
            if rec.event_ts is not None:
                m.end_to_end_latency.observe(max(0.0, sent - rec.event_ts))
            m.long_weight.labels(source=rec.source).observe(rec.long_weight)
        for ev in batch:
            m.processing_latency.labels(agent=self.name).observe(
                max(0.0, sent - ev.message.timestamp)
            )


def _origin(headers: Any) -> tuple[int, int] | None:
    """``(partition, offset)`` from the ``lsi-src`` header ingest adds, if present."""
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    for key, value in items:
        if key == SOURCE_HEADER and value:
            partition, _, offset = value.decode().partition(":")
            return int(partition), int(offset)
    return None
