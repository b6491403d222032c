"""The live scoring path, replayed offline: :func:`lsi.core.engine.process_batch` plus the fold of
its statistics deltas that the ``item-stats`` agent does.

:class:`StreamingModel` keeps in dicts what the workers keep in tables: ``states`` (the
``user_state`` table), ``stats`` (``item_stats``) and one trending list per item partition
(``trending_by_partition``, merged into ``trending``; partitions by Kafka's murmur2, as
:func:`lsi.wire.partitioning.partition_of`). One step is what one interest micro-batch does:

1. ``process_batch(batch, states.get, stats.get, trending, engine, now)`` with ``now`` the
   batch's newest event time;
2. write back ``result.states``;
3. fold ``result.deltas`` as :meth:`streams.item_stats.ItemStatsAgent.handle` does: each
   item's delta once through :func:`lsi.core.stats.apply_delta`, then
   :func:`lsi.core.stats.update_trending` for every partition touched (this glue is duplicated
   here, a dozen lines: the agent's version reads Faust tables and messages);
4. :func:`lsi.core.stats.merge_trending` of the partition lists, as the interest agent does
   before its next batch (lazily: only when a batch or :meth:`StreamingModel.score_all`
   reads it).

Offline, the statistics are current at every batch; live they lag by the ``item-deltas``
round trip, and one item-stats batch may fold several interest batches. The partition lists
are merged in partition order (the workers use the table's order, which only matters for
exact ties). With ``wire=True`` every state, statistic and trending list also round-trips
through its table serialiser, so the replay reads the rounded values the workers read.

Prequential evaluation (:meth:`StreamingModel.prequential`): each event is judged against
the list last emitted to its user *before* the event is learned, which is what
``BatchResult.evaluated``/``hits`` count. Per-event ranks are read from ``last_recs`` before
the batch (and, with the ``event`` emission policy, from the lists the batch emitted for the
user's earlier events), and checked against the batch's counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import islice

import numpy as np
import numpy.typing as npt

from lsi.core.engine import HIT_KS, BatchResult, EngineConfig, process_batch
from lsi.core.ranking import hit_rate_at_k, ndcg_at_k
from lsi.core.scoring import score_user
from lsi.core.state import UserState, event_hash
from lsi.core.stats import ItemStats, Trending, fold_deltas, merge_trending
from lsi.serving.snapshot import Snapshot
from lsi.wire.partitioning import partition_of
from lsi.wire.records import Event, ItemDelta

__all__ = [
    "EVENT_ENGINE",
    "MISS",
    "NOT_EVALUATED",
    "PrequentialResult",
    "StreamingModel",
    "partition_of",
    "prequential",
]

#: The per-event emission policy: every event is judged against the list its user's
#: previous event produced.
EVENT_ENGINE = EngineConfig(emit_policy="event")
#: Rank of an evaluated event whose item was not in the list shown.
MISS = -1
#: Rank of an event with no list to judge it against (first event, duplicate).
NOT_EVALUATED = -2

_EMPTY = Trending(ts=0.0, items=())


@dataclass(frozen=True, slots=True)
class PrequentialResult:
    """Per-event outcome of a prequential replay.

    Attributes:
        ranks: int32 ``[n]``: 0-based position of the event's item in the list shown to
            the user before it, :data:`MISS` if absent (the list holds at most
            ``last_recs_n`` items), :data:`NOT_EVALUATED` if there was no list or the event
            was a duplicate.
        ts: float64 ``[n]``: event times.
        evaluated: events with a list to be judged against (``sum BatchResult.evaluated``).
        hits: K → events in the top K (``sum BatchResult.hits``), K in ``(1, 5, 10, 20)``.
        duplicates: events dropped as duplicates.
        batches: calls to ``process_batch``.
        seconds: wall time of the replay.
    """

    ranks: npt.NDArray[np.int32]
    ts: npt.NDArray[np.float64]
    evaluated: int
    hits: dict[int, int]
    duplicates: int
    batches: int
    seconds: float

    @property
    def n_events(self) -> int:
        return int(self.ranks.shape[0])

    @property
    def events_per_s(self) -> float:
        return self.n_events / self.seconds if self.seconds > 0 else 0.0

    def judged_ranks(self) -> npt.NDArray[np.float64]:
        """The evaluated events' ranks as :mod:`lsi.core.ranking` reads them, float64
        ``[evaluated]``: a :data:`MISS` becomes ``inf``."""
        judged = self.ranks[self.ranks != NOT_EVALUATED]
        return np.where(judged >= 0, judged.astype(np.float64), np.inf)

    def hit_rate(self, k: int) -> float:
        """HR@K over evaluated events (:func:`lsi.core.ranking.hit_rate_at_k`): share with
        ``0 <= rank < k``; 0.0 if none was evaluated."""
        judged = self.judged_ranks()
        return float(np.mean(hit_rate_at_k(judged, k))) if judged.size else 0.0

    def ndcg(self, k: int) -> float:
        """NDCG@K over evaluated events, one relevant item (:func:`lsi.core.ranking.ndcg_at_k`);
        0.0 if none was evaluated."""
        judged = self.judged_ranks()
        return float(np.mean(ndcg_at_k(judged, k))) if judged.size else 0.0


class StreamingModel:
    """The live scorer and statistics, held in dicts and driven batch by batch.

    Args:
        engine: the scorer's configuration (default: per-event emission).
        partitions: partitions of the item-deltas topic (one trending list each).
        wire: round-trip states, statistics and trending lists through their serialisers.
    """

    def __init__(
        self, engine: EngineConfig = EVENT_ENGINE, partitions: int = 8, *, wire: bool = False
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        self.engine = engine
        self.partitions = partitions
        self.wire = wire
        self.states: dict[str, UserState] = {}
        self.stats: dict[str, ItemStats] = {}
        self.trending_by_partition: dict[int, Trending] = {}
        self._trending: Trending = _EMPTY
        self._merged = True
        self._partition: dict[str, int] = {}
        self._learn_engine = replace(engine, emit_policy="request")
        #: the live long-term snapshot, as a worker's model watcher holds it (swap freely
        #: between batches)
        self.long_model: Snapshot | None = None
        self._n_learned = 0

    @property
    def trending(self) -> Trending:
        """The merged trending list, as the interest agent reads it before a batch."""
        if not self._merged:
            parts = self.trending_by_partition
            self._trending = merge_trending([parts[p] for p in sorted(parts)], self.engine.stats)
            self._merged = True
        return self._trending

    # -- one interest batch, then the item-stats fold -------------------------------------
    def step(self, events: Sequence[Event], engine: EngineConfig | None = None) -> BatchResult:
        """Run one micro-batch through ``process_batch`` and fold its deltas.

        Under the ``request`` policy ``process_batch`` scores nothing and never reads the
        trending list, so the merge is skipped (it happens when the list is next read).
        """
        engine = engine or self.engine
        trending = self._trending if engine.emit_policy == "request" else self.trending
        now = max(e.ts for e in events)
        result = process_batch(events, self.states.get, self.stats.get, trending, engine, now,
                               model=self.long_model)  # fmt: skip
        if self.wire:
            for user, state in result.states.items():
                self.states[user] = UserState.from_bytes(state.to_bytes())
        else:
            self.states.update(result.states)
        self.fold(result.deltas)
        return result

    def fold(self, deltas: Mapping[str, ItemDelta]) -> None:
        """Apply a batch's deltas with :func:`lsi.core.stats.fold_deltas`, as the item-stats agent
        does (the merge of the partition lists is left to the next read of :attr:`trending`)."""
        if not deltas:
            return
        by_partition: dict[int, dict[str, ItemDelta]] = {}
        for item, delta in deltas.items():
            by_partition.setdefault(self._partition_of(item), {})[item] = delta
        parts = self.trending_by_partition
        new_stats, new_trending = fold_deltas(
            by_partition, self.stats.get, parts.get, self.engine.stats
        )
        for items in new_stats.values():
            for item, stats in items.items():
                self.stats[item] = ItemStats.from_bytes(stats.to_bytes()) if self.wire else stats
        for partition, fresh in new_trending.items():
            parts[partition] = Trending.from_bytes(fresh.to_bytes()) if self.wire else fresh
        if new_trending:
            self._merged = False

    def _partition_of(self, item: str) -> int:
        p = self._partition.get(item)
        if p is None:
            p = self._partition[item] = partition_of(item.encode(), self.partitions)
        return p

    # -- replay ---------------------------------------------------------------------------
    def prequential(self, events: Iterable[Event], batch_size: int = 1) -> PrequentialResult:
        """Replay ``events`` in micro-batches, judging each against its user's last list.

        Args:
            events: interactions in replay (time) order.
            batch_size: events per ``process_batch`` call (1: the lowest-latency worker).

        Raises:
            RuntimeError: if the per-event ranks disagree with the batch's counts.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        per_event = self.engine.emit_policy == "event"
        last_n = self.engine.state.last_recs_n
        ranks: list[int] = []
        times: list[float] = []
        hits = dict.fromkeys(HIT_KS, 0)
        evaluated = duplicates = batches = 0
        it = iter(events)
        started = time.perf_counter()
        while batch := list(islice(it, batch_size)):
            shown: dict[str, list[str]] = {}
            seen: dict[str, list[int]] = {}
            for e in batch:
                if e.user_id not in shown:
                    st = self.states.get(e.user_id)
                    # remember_recs replaces last_recs; the seen ring is mutated: copy it
                    shown[e.user_id] = st.last_recs if st is not None else []
                    seen[e.user_id] = list(st.seen) if st is not None else []
            result = self.step(batch)
            batches += 1
            n_dup = sum(result.duplicates.values())
            emitted = iter(result.recommendations) if per_event else None
            batch_ranks: list[int] = []
            for e in batch:
                user = e.user_id
                if n_dup and self._is_duplicate(e, seen[user]):
                    batch_ranks.append(NOT_EVALUATED)
                    continue
                lst = shown[user]
                if not lst:
                    batch_ranks.append(NOT_EVALUATED)
                elif e.item_id in lst:
                    batch_ranks.append(lst.index(e.item_id))
                else:
                    batch_ranks.append(MISS)
                if emitted is not None:
                    rec = next(emitted)
                    shown[user] = [i.item_id for i in rec.items][:last_n]
            self._check(batch_ranks, result)
            for k in HIT_KS:
                hits[k] += result.hits[k]
            evaluated += result.evaluated
            duplicates += n_dup
            ranks += batch_ranks
            times += [e.ts for e in batch]
        return PrequentialResult(
            ranks=np.array(ranks, dtype=np.int32),
            ts=np.array(times, dtype=np.float64),
            evaluated=evaluated,
            hits=hits,
            duplicates=duplicates,
            batches=batches,
            seconds=time.perf_counter() - started,
        )

    def _is_duplicate(self, event: Event, seen: list[int]) -> bool:
        """``UserState.learn_one``'s duplicate rule, on a copy of the user's ring."""
        h = event_hash(event.event_id)
        if h in seen:
            return True
        seen.append(h)
        del seen[: max(0, len(seen) - self.engine.state.seen_ids)]
        return False

    @staticmethod
    def _check(ranks: list[int], result: BatchResult) -> None:
        judged = [r for r in ranks if r != NOT_EVALUATED]
        got = (len(judged), *(sum(0 <= r < k for r in judged) for k in HIT_KS))
        want = (result.evaluated, *(result.hits[k] for k in HIT_KS))
        if got != want:
            raise RuntimeError(
                "prequential: per-event ranks disagree with process_batch's counts "
                f"(evaluated, hits@{HIT_KS}): expected {want}, got {got}"
            )

    # -- leave-one-out --------------------------------------------------------------------
    def learn(self, events: Iterable[Event], batch_size: int = 1, *, emit: bool = False) -> int:
        """Feed ``events`` through ``process_batch`` batch by batch; returns events learned.

        With ``emit=False`` the batches run under the ``request`` policy: no list is
        scored, which changes only ``last_recs``/``last_emit``, never read by the scorer.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        engine = self.engine if emit else self._learn_engine
        learned = 0
        it = iter(events)
        while batch := list(islice(it, batch_size)):
            learned += sum(self.step(batch, engine).accepted.values())
        return learned

    def learn_sequence(
        self,
        user_id: str,
        items: Sequence[str],
        ts: Sequence[float],
        *,
        batch_size: int = 1,
        event_type: str = "view",
    ) -> int:
        """Learn one user's training sequence (fresh event ids); returns events learned."""
        if len(items) != len(ts):
            raise ValueError(f"items and ts differ in length: {len(items)} != {len(ts)}")
        start = self._n_learned
        self._n_learned += len(items)
        events = [
            Event(f"learn:{start + n}", user_id, item, event_type, float(t))
            for n, (item, t) in enumerate(zip(items, ts, strict=True))
        ]
        return self.learn(events, batch_size)

    def score_all(
        self, user_id: str, n_items: int, item_index: Mapping[str, int]
    ) -> npt.NDArray[np.float32]:
        """Full-catalogue scores from the live scorer, shape ``[n_items]``, float32.

        :func:`lsi.core.scoring.score_user` with ``top_k`` large enough to keep every candidate
        (co-visitation neighbours of the user's anchors and trending items). Every other
        item, and with ``filter_seen`` every item of the user's recent window, scores 0.0:
        the scorer's scores are positive, so they rank below every candidate and tie among
        themselves (the metrics resolve ties by expected rank). Ids missing from
        ``item_index`` are dropped. Changes nothing.
        """
        state = self.states.get(user_id) or UserState()
        cfg = replace(self.engine.scoring, top_k=max(n_items, len(self.stats), 1))
        res = score_user(state, self.stats.get, self.trending, cfg, self.long_model, user_id)
        out = np.zeros(n_items, dtype=np.float32)
        for rec in res.items:
            j = item_index.get(rec.item_id)
            if j is not None:
                out[j] = rec.score
        return out


def prequential(
    events: Iterable[Event],
    batch_size: int = 1,
    engine: EngineConfig = EVENT_ENGINE,
    *,
    partitions: int = 8,
    wire: bool = False,
) -> PrequentialResult:
    """Prequential replay of ``events`` through a fresh :class:`StreamingModel`."""
    return StreamingModel(engine, partitions, wire=wire).prequential(events, batch_size)
