"""The worker's agent: validation, short-term state, scoring and emission, in one pass.

It consumes ``lsi.events`` and ``lsi.events.rekeyed`` together (co-partitioned), in
micro-batches, and pays Faust's per-record cost once per event:

1. **Admit.** A record of ``lsi.events`` is validated (:func:`lsi.wire.validation.validate_event`);
   a rejected one goes to ``lsi.events.dlq`` with its original bytes and a reason. A valid
   event on its user's partition (murmur2 of ``user_id``, what Kafka's default partitioner
   and the documented producer settings give) is learned here and now; one on another
   partition is re-keyed to ``lsi.events.rekeyed`` with an ``lsi-src: <partition>:<offset>``
   header and learned when it comes back on the right partition. A record of
   ``lsi.events.rekeyed`` is validated again (anyone with access can write it:
   :func:`lsi.wire.validation.validate_interaction`).
2. **Learn and score.** :func:`lsi.core.engine.process_batch` (the function the offline
   evaluation runs) with lookups over the ``user_state`` table and the global
   ``item_stats``/``trending`` tables. A duplicate ``event_id`` or an event whose source
   offset the user's state already applied is skipped there.
3. **Output, then state, then offsets.** One delivery (:mod:`streams.delivery`) of the
   batch's recommendation records, its interaction-log records (``lsi.interactions``: each
   learned event once, canonical JSON, with ``lsi-src``), its item-statistics bundles
   (``lsi.item-deltas``), re-keyed events and dead letters; then each changed user's state
   written once; then the loop body returns and Faust acknowledges the batch's offsets.

A crash before the state write re-processes the batch: the state's per-source-partition
offsets make the replay idempotent (records may be sent again, state is never double-counted),
and the users whose events were skipped as applied have their state written again, so the
changelog catches up with a local write the crash kept from it. A bug on one event
dead-letters that event alone (``internal_error``), never the batch or the worker.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import time
from collections import Counter
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from lsi.config import Settings
from lsi.core.engine import (
    BatchResult,
    EngineConfig,
    emit,
    fused_lists,
    learn_batch,
    process_batch,
    recommend,
)
from lsi.core.rules import Categories
from lsi.core.state import UserState
from lsi.core.stats import ItemStats, Trending, merge_into, merge_trending
from lsi.errors import InvalidEvent, InvalidRecord
from lsi.monitoring.metrics import WorkerMetrics
from lsi.serving.similar import Similar, similar_items
from lsi.serving.snapshot import Snapshot
from lsi.wire.records import SOURCE_HEADER, Event, ItemDelta, Recommendation, encode_bundle
from lsi.wire.validation import validate_event, validate_interaction
from streams.catalogue import CatalogueView
from streams.context import acting_for, key_for_partition, partition_of
from streams.delivery import Outgoing, deliver
from streams.dlq import DeadLetters
from streams.experiments import ActiveExperiment, count_judged, labelled, model_for, split_pending
from streams.models import ModelWatcher
from streams.tables import Tables, item_key, read, user_key
from streams.topics import Topics

__all__ = ["Interest"]

log = logging.getLogger(__name__)

#: keys whose murmur2 partition is remembered (a bounded memo: murmur2 is pure Python)
HOME_MEMO = 1 << 16

#: test hook: the worker kills itself right after the Nth batch's state writes, before their
#: changelog records can leave the process (a deterministic crash for the changelog test)
CRASH_AFTER_STATE_WRITES = "LSI_TEST_CRASH_AFTER_STATE_WRITES"


class Interest:
    """Validation, short-term interest tracking and recommendation emission."""

    name = "interest"

    def __init__(self, settings: Settings, topics: Topics, tables: Tables, metrics: WorkerMetrics,
                 models: ModelWatcher | None = None,
                 catalogue: CatalogueView | None = None):  # fmt: skip
        self.settings = settings
        self.catalogue = catalogue
        self.models = models
        self.topics = topics
        self.tables = tables
        self.metrics = metrics
        self.engine: EngineConfig = settings.engine()
        self.limits = settings.limits()
        self.dead = DeadLetters(topics.dlq, self.name, metrics)
        self.dead_events = DeadLetters(topics.dlq, "ingest", metrics)
        self._events_topic = settings.events_topic
        self._home: dict[bytes, int] = {}
        self._latency = metrics.processing_latency.labels(agent=self.name)
        self._pool: ThreadPoolExecutor | None = None
        self._crash_after = int(os.environ.get(CRASH_AFTER_STATE_WRITES, "0") or 0)
        self._state_writes = 0

    def register(self, app: Any) -> None:
        @app.agent(self.topics.source, name="lsi.interest")
        async def interest(stream: Any) -> None:
            async for batch in stream.take_events(self.settings.batch_max,
                                                  within=self.settings.batch_within_s):  # fmt: skip
                await self.handle(batch)

    def home(self, key: bytes) -> int:
        """The partition of a user's state: murmur2 of the key, as the producer picks it."""
        partition = self._home.get(key)
        if partition is None:
            if len(self._home) >= HOME_MEMO:
                self._home.clear()
            partition = self._home[key] = partition_of(key, self.settings.partitions)
        return partition

    # -- lookups over the tables ----------------------------------------------------------
    def load_state(self, user: str) -> UserState | None:
        """The stored state of ``user``; one that cannot be read (damaged, or written by a
        format this version does not know) counts as absent and as an error: the user
        starts afresh and the next write replaces it, instead of every event of theirs
        failing for good."""
        raw = read(self.tables.user_state, user_key(user))
        state: UserState | None = self._read(UserState.from_bytes, raw, "user_state")
        return state

    def stats_lookup(self) -> Any:
        """A per-batch memoised reader of the global item statistics (an entry that cannot
        be read counts as absent, and as an error)."""
        cache: dict[str, ItemStats | None] = {}
        table = self.tables.item_stats

        def lookup(item: str) -> ItemStats | None:
            if item in cache:
                return cache[item]
            raw = read(table, item_key(item))
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

    def recommend_now(self, user: str, n: int | None = None,
                      exclude: Collection[str] = frozenset(),
                      category: str | None = None) -> Recommendation:  # fmt: skip
        """Score a user on request (``GET /recommendations/{user}``); changes nothing.

        ``n``: the length of the lists (``LSI_TOP_K`` by default); ``exclude``: items none of
        them may hold; ``category``: the catalogue category every listed item must be in.
        Both scorers leave the excluded items out before ranking, so the lists still hold
        ``n`` items while enough other candidates exist; the deployment's rules apply as on
        the stream (:mod:`lsi.core.rules`)."""
        cfg, now = self.engine, time.time()
        if n is not None and n != cfg.scoring.top_k:
            cfg = replace(cfg, scoring=replace(cfg.scoring, top_k=n))
        state = self.load_state(user) or UserState()
        hidden = self.hidden(now)
        experiment = self.experiment()
        arm, model = model_for(user, self.live_model(), experiment)
        rec = recommend(user, state, self.stats_lookup(), self.trending(), cfg, now,
                        event_ts=None, trigger="request", model=model,
                        exclude=hidden.union(exclude),
                        categories=self.categories(always=category is not None),
                        category=category, new_items=self.new_items(now, hidden))  # fmt: skip
        self.metrics.recommendations.labels(trigger="request").inc()
        self.metrics.long_weight.labels(source=rec.source).observe(rec.long_weight)
        return labelled(self.labelled(rec), experiment, arm)

    def similar_now(self, item: str, n: int) -> Similar | None:
        """The ``n`` items most similar to ``item`` (``GET /items/{item}/similar/``): by the
        live snapshot's item vectors, else by the co-visitation statistics
        (:func:`lsi.serving.similar.similar_items`); ``None`` if neither knows the item.
        Reads the snapshot and the global ``item_stats`` table, changes nothing."""
        stats = self.stats_lookup()(item)
        neighbors = None if stats is None else stats.neighbors
        return similar_items(item, n, self.live_model(), neighbors, self.engine.model_version,
                             self.hidden(time.time()))  # fmt: skip

    def labelled(self, rec: Recommendation) -> Recommendation:
        """``rec`` with its items' catalogue categories (unchanged without a catalogue)."""
        return self.catalogue.label(rec) if self.catalogue is not None else rec

    def categories(self, always: bool = False) -> Categories | None:
        """The catalogue's categories of an item, for the rules (:mod:`lsi.core.rules`);
        ``None`` (nothing to cap) while no catalogued item has categories, unless
        ``always`` (a request's category filter: without categories nothing passes it)."""
        view = self.catalogue
        if view is None:
            return (lambda item: ()) if always else None
        return view.categories_of if always or view.has_categories() else None

    def new_items(self, now: float, hidden: frozenset[str]) -> tuple[str, ...]:
        """The catalogue's new items for the rules' exploration places, newest first (none
        without a catalogue, or with the places off); ``hidden``: :meth:`hidden` at ``now``."""
        rules = self.engine.rules
        if self.catalogue is None or not rules.new_slots:
            return ()
        return self.catalogue.new_items(now, rules.new_days, hidden)

    def hidden(self, now: float) -> frozenset[str]:
        """The items the catalogue hides at ``now`` (none without a catalogue)."""
        return self.catalogue.hidden(now) if self.catalogue is not None else frozenset()

    def experiment(self) -> ActiveExperiment | None:
        """The running experiment between snapshots (read once per batch, as the snapshot)."""
        return self.models.experiment if self.models is not None else None

    def live_model(self) -> Snapshot | None:
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
        counts: Counter[tuple[str, str, str]] = Counter()  # (agent, type, outcome)
        for ev in batch:
            admitted = self._admit(ev.message, now, out, counts)
            if admitted is not None:
                events.append(admitted[0])
                origins.append(admitted[1])
                carriers.append(ev)
        experiment = self.experiment()  # one for the batch: its lists and its judgements
        result = await self._process(events, origins, carriers, out, now, experiment)
        source = {event.user_id: ev for event, ev in zip(events, carriers, strict=True)}

        for rec in result.recommendations:
            try:
                value = self.labelled(rec).to_json()
            except ValueError as exc:  # NaN or Infinity: never on the wire
                m.errors.labels(agent=self.name, kind="nonfinite").inc()
                log.error("interest: dropped the list of user %r: %s", rec.user_id, exc)
                continue
            out.append((self.topics.recommendations, rec.user_id.encode(), value, None))
        log_topic = self.topics.interactions
        for i in result.applied:
            event, origin = events[i], origins[i]
            src = None if origin is None else _source_header(origin)
            out.append((log_topic, event.user_id.encode(), event.to_json(), src))
            counts["ingest", event.type, "forwarded"] += 1
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
        self._count(result, batch, sent, counts, experiment)

    def _admit(self, msg: Any, now: float, out: list[Outgoing],
               counts: Counter[tuple[str, str, str]]) -> tuple[Event, tuple[int, int] | None] | None:  # fmt: skip
        """The event of one source record and its ``(partition, offset)`` in ``lsi.events``,
        to learn in this batch; ``None`` if the record was re-keyed or dead-lettered (its
        output record is in ``out``)."""
        if msg.topic == self._events_topic:
            try:
                event = validate_event(msg.value, msg.key, now, self.limits)
                origin = (msg.partition, msg.offset)
                if self.home(msg.key) == msg.partition:
                    return event, origin
                out.append((self.topics.rekeyed, msg.key, event.to_json(), _source_header(origin)))
                counts["ingest", event.type, "rekeyed"] += 1
            except InvalidEvent as exc:
                out.append(self.dead_events.record(msg, exc.reason, exc.detail, now))
            except Exception as exc:  # a bug must cost one event, not the worker
                out.append(self._internal_error(msg, "ingest.validate", exc, now))
            return None
        try:
            return validate_interaction(msg.value, msg.key, msg.headers, msg.partition,
                                        self.settings.partitions, now, self.limits)  # fmt: skip
        except InvalidRecord as exc:  # only this agent should write here: count it as such
            out.append(self.dead.refused(msg, exc, now))
        except Exception as exc:
            out.append(self._internal_error(msg, "interest.validate", exc, now))
        return None

    async def _process(
        self,
        events: list[Event],
        origins: list[tuple[int, int] | None],
        carriers: list[Any],
        out: list[Outgoing],
        now: float,
        experiment: ActiveExperiment | None,
    ) -> BatchResult:
        """:func:`process_batch` on the whole batch; if it raises, event by event, so that the
        event that fails is dead-lettered alone and the others are applied.

        With a snapshot that carries the fused scorer, the batch's one forward pass runs on a
        thread of its own (torch releases the interpreter), so the event loop goes on
        fetching, sending and folding statistics meanwhile; everything that touches a table
        stays on the loop."""
        lookup, trending, model = self.stats_lookup(), self.trending(), self.live_model()
        hidden, cats = self.hidden(now), self.categories()
        new = self.new_items(now, hidden)
        model_of = None if experiment is None else (
            lambda user: model_for(user, model, experiment)[1])  # fmt: skip
        try:
            if experiment is None and (model is None or model.sequence is None):
                return process_batch(events, self.load_state, lookup, trending, self.engine,
                                     now, origins, model=model, exclude=hidden,
                                     categories=cats, new_items=new)  # fmt: skip
            result, pending = learn_batch(events, self.load_state, lookup, trending,
                                          self.engine, now, origins, model=model,
                                          exclude=hidden, categories=cats, new_items=new,
                                          model_of=model_of)  # fmt: skip
            for group in split_pending(pending, model, experiment):
                lists = None
                if group.pending and group.model is not None and group.model.sequence is not None:
                    lists = await asyncio.get_running_loop().run_in_executor(
                        self._scoring_pool(), fused_lists, group.pending, group.model,
                        self.engine, hidden, cats,
                    )  # fmt: skip
                emit(result, group.pending, lookup, trending, self.engine, now, group.model,
                     lists=lists, exclude=hidden, categories=cats, new_items=new)  # fmt: skip
            return _arms(result, experiment)
        except Exception:
            log.exception("interest: a batch of %d failed; applying it event by event",
                          len(events))  # fmt: skip
        result = BatchResult()

        def load(user: str) -> UserState | None:
            # a copy: an event that fails half-way must not leave its half-applied state behind
            state = result.states.get(user)
            return copy.deepcopy(state) if state is not None else self.load_state(user)

        for n, (event, origin, ev) in enumerate(zip(events, origins, carriers, strict=True)):
            try:
                scorer = model_for(event.user_id, model, experiment)[1]
                one = process_batch([event], load, lookup, trending, self.engine, now, [origin],
                                    model=scorer, exclude=hidden, categories=cats,
                                    new_items=new)  # fmt: skip
            except Exception as exc:
                out.append(self._internal_error(ev.message, "interest.process", exc, now))
                continue
            _merge(result, one, n)
        return _arms(result, experiment)

    def _scoring_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="lsi-scoring")
        return self._pool

    def _internal_error(self, msg: Any, stage: str, exc: Exception, now: float) -> Outgoing:
        """The dead letter of a record a bug failed on; counted under the stage's agent
        (``ingest`` for the validation of ``lsi.events``, ``interest`` otherwise)."""
        dead = self.dead_events if stage.startswith("ingest.") else self.dead
        return dead.failed(msg, stage, exc, now)

    def _count(self, result: BatchResult, batch: Sequence[Any], sent: float,
               counts: Counter[tuple[str, str, str]],
               experiment: ActiveExperiment | None) -> None:  # fmt: skip
        m = self.metrics
        for etype, n in result.accepted.items():
            counts[self.name, etype, "accepted"] += n
        for etype, n in result.duplicates.items():
            counts["ingest", etype, "duplicate"] += n
        if result.redelivered:
            counts[self.name, "unknown", "redelivered"] += result.redelivered
        for (agent, etype, outcome), n in counts.items():
            m.events.labels(agent=agent, type=etype, outcome=outcome).inc(n)
        if result.evaluated:
            m.online_evaluated.inc(result.evaluated)
        for k, n in result.hits.items():
            m.online_hits.labels(k=str(k)).inc(n)
        count_judged(m, result.judged, experiment)
        m.recommendations.labels(trigger="event").inc(len(result.recommendations))
        for rec in result.recommendations:
            if rec.event_ts is not None:
                m.end_to_end_latency.observe(max(0.0, sent - rec.event_ts))
            m.long_weight.labels(source=rec.source).observe(rec.long_weight)
        latency = self._latency
        for ev in batch:
            latency.observe(max(0.0, sent - ev.message.timestamp))


def _source_header(origin: tuple[int, int]) -> list[tuple[str, bytes]]:
    """``lsi-src: <partition>:<offset>``, the event's place in ``lsi.events``."""
    return [(SOURCE_HEADER, b"%d:%d" % origin)]


def _arms(result: BatchResult, experiment: ActiveExperiment | None) -> BatchResult:
    """``result`` with each record labelled with the experiment and its user's arm."""
    if experiment is not None:
        result.recommendations[:] = [labelled(r, experiment, experiment.arm(r.user_id))
                                     for r in result.recommendations]  # fmt: skip
    return result


def _merge(into: BatchResult, one: BatchResult, position: int) -> None:
    """Add the result of the event at ``position`` of the batch to the batch's."""
    into.states.update(one.states)
    into.applied += [position + i for i in one.applied]
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
    into.judged += one.judged
    into.hits.update(one.hits)
