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

import copy
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from lsi.config import Settings
from lsi.engine import BatchResult, EngineConfig, process_batch, recommend
from lsi.errors import InvalidRecord
from lsi.longterm import LongTermModel
from lsi.metrics import WorkerMetrics
from lsi.records import Event, Recommendation
from lsi.state import UserState
from lsi.stats import ItemDelta, ItemStats, Trending, encode_bundle, merge_into, merge_trending
from lsi.validation import validate_interaction
from streams.context import acting_for, key_for_partition, partition_of
from streams.delivery import Outgoing, deliver
from streams.dlq import DeadLetters
from streams.models import ModelWatcher
from streams.tables import Tables, item_key, user_key
from streams.topics import Topics

__all__ = ["Interest"]

log = logging.getLogger(__name__)

#: test hook: the worker kills itself right after the Nth batch's state writes, before their
#: changelog records can leave the process (a deterministic crash for the changelog test)
CRASH_AFTER_STATE_WRITES = "LSI_TEST_CRASH_AFTER_STATE_WRITES"


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
        self.limits = settings.limits()
        self.dead = DeadLetters(topics.dlq, self.name, metrics)
        self._crash_after = int(os.environ.get(CRASH_AFTER_STATE_WRITES, "0") or 0)
        self._state_writes = 0

    def register(self, app: Any) -> None:
        @app.agent(self.topics.interactions, name="lsi.interest")
        async def interest(stream: Any) -> None:
            async for batch in stream.take_events(self.settings.batch_max,
                                                  within=self.settings.batch_within_s):  # fmt: skip
                await self.handle(batch)

    # -- lookups over the tables ----------------------------------------------------------
    def load_state(self, user: str) -> UserState | None:
        raw = self.tables.user_state.get(user_key(user))
        return UserState.from_bytes(raw) if raw else None

    def stats_lookup(self) -> Any:
        """A per-batch memoised reader of the global item statistics (an entry that cannot
        be read counts as absent, and as an error)."""
        cache: dict[str, ItemStats | None] = {}
        table = self.tables.item_stats

        def lookup(item: str) -> ItemStats | None:
            if item in cache:
                return cache[item]
            raw = table.get(item_key(item))
            stats: ItemStats | None = self._read(ItemStats.from_bytes, raw, "item_stats")
            cache[item] = stats
            return stats

        return lookup

    def trending(self) -> Trending:
        lists = []
        for raw in self.tables.trending.values():
            trend = self._read(Trending.from_bytes, raw, "trending")
            if trend is not None:
                lists.append(trend)
        return merge_trending(lists, self.engine.stats)

    def _read(self, parse: Any, raw: bytes | None, table: str) -> Any:
        if not raw:
            return None
        try:
            return parse(raw)
        except Exception as exc:  # a damaged global entry must not stop every batch
            self.metrics.errors.labels(agent=self.name, kind=f"read_{table}").inc()
            log.error("interest: unreadable %s entry (%r); treated as absent", table, exc)
            return None

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
        now = time.time()
        out: list[Outgoing] = []
        events: list[Event] = []
        origins: list[tuple[int, int] | None] = []
        carriers: list[Any] = []  # the Faust event of each entry of ``events``
        for ev in batch:
            msg = ev.message
            try:
                event, origin = validate_interaction(msg.value, msg.key, msg.headers,
                                                     msg.partition, self.settings.partitions,
                                                     now, self.limits)  # fmt: skip
            except InvalidRecord as exc:  # only ingest should write here: count it as such
                m.errors.labels(agent=self.name, kind="decode").inc()
                out.append(self.dead.record(msg, exc.reason, exc.detail, now))
                continue
            except Exception as exc:
                out.append(self._internal_error(msg, "interest.validate", exc, now))
                continue
            events.append(event)
            origins.append(origin)
            carriers.append(ev)
        result = self._process(events, origins, carriers, out, now)
        source = {event.user_id: ev for event, ev in zip(events, carriers, strict=True)}

        for rec in result.recommendations:
            try:
                value = rec.to_json()
            except ValueError as exc:  # NaN or Infinity: never on the wire
                m.errors.labels(agent=self.name, kind="nonfinite").inc()
                log.error("interest: dropped the list of user %r: %s", rec.user_id, exc)
                continue
            out.append((self.topics.recommendations, rec.user_id.encode(), value, None))
        out += self._delta_bundles(result.deltas)
        await deliver(out, self.name, m, replace=self.dead.undeliverable)
        sent = time.time()
        for user, state in result.states.items():
            with acting_for(source[user]):
                self.tables.user_state[user_key(user)] = state.to_bytes()
        if self._crash_after:
            self._state_writes += 1
            if self._state_writes >= self._crash_after:
                os._exit(137)  # no await since the writes: their changelog records never left
        self._count(result, batch, sent)

    def _process(
        self,
        events: list[Event],
        origins: list[tuple[int, int] | None],
        carriers: list[Any],
        out: list[Outgoing],
        now: float,
    ) -> BatchResult:
        """:func:`process_batch` on the whole batch; if it raises, event by event, so that the
        event that fails is dead-lettered alone and the others are applied."""
        lookup, trending, model = self.stats_lookup(), self.trending(), self.live_model()
        try:
            return process_batch(events, self.load_state, lookup, trending, self.engine, now,
                                 origins, model=model)  # fmt: skip
        except Exception:
            log.exception("interest: a batch of %d failed; applying it event by event",
                          len(events))  # fmt: skip
        result = BatchResult()

        def load(user: str) -> UserState | None:
            # a copy: an event that fails half-way must not leave its half-applied state behind
            state = result.states.get(user)
            return copy.deepcopy(state) if state is not None else self.load_state(user)

        for event, origin, ev in zip(events, origins, carriers, strict=True):
            try:
                one = process_batch([event], load, lookup, trending, self.engine, now, [origin],
                                    model=model)  # fmt: skip
            except Exception as exc:
                out.append(self._internal_error(ev.message, "interest.process", exc, now))
                continue
            _merge(result, one)
        return result

    def _internal_error(self, msg: Any, stage: str, exc: Exception, now: float) -> Outgoing:
        log.error("interest: %s[%s]@%s failed in %s: %r", msg.topic, msg.partition, msg.offset,
                  stage, exc)  # fmt: skip
        self.metrics.errors.labels(agent=self.name, kind="internal").inc()
        detail = f"stage {stage}: {type(exc).__name__}: {exc}"
        return self.dead.record(msg, "internal_error", detail, now)

    def _count(self, result: BatchResult, batch: Sequence[Any], sent: float) -> None:
        m = self.metrics
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


def _merge(into: BatchResult, one: BatchResult) -> None:
    """Add the result of one event to the batch's."""
    into.states.update(one.states)
    into.recommendations.extend(one.recommendations)
    for item, delta in one.deltas.items():
        acc = into.deltas.get(item)
        if acc is None:
            into.deltas[item] = delta
        else:
            merge_into(acc, delta)
    into.accepted.update(one.accepted)
    into.duplicates.update(one.duplicates)
    into.redelivered += one.redelivered
    into.evaluated += one.evaluated
    into.hits.update(one.hits)
