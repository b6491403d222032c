"""Global item statistics learned online: time-decayed popularity and co-visitation.

Events are keyed by user, but every user's scoring needs item-level statistics. The interest
agent turns each batch into per-item :class:`ItemDelta`\\ s (:func:`batch_deltas`), sends them
on an item-partitioned topic, one bundle per partition (:func:`encode_bundle`), and the stats agent folds them into a ``GlobalTable`` replicated to
every worker (:func:`apply_delta`), plus one trending list per stats partition
(:func:`update_trending`). The offline evaluation runs the very same functions on dicts.

Decay. Popularity and co-visitation weights share a half-life :math:`h` per statistic. An
item keeps one reference time :math:`t_0` (its newest event); all its weights are stored as of
:math:`t_0`, so moving to :math:`t` multiplies them by :math:`2^{-(t-t_0)/h}`. Because the
co-visitation scorer only uses ratios within one item's neighbour list, that factor cancels
and reads never need to decay anything.

Co-visitation. When a user interacts with item :math:`j` after recent items
:math:`i_1, …, i_w` (newest first), both directions get
:math:`\\Delta c(i_k, j) = \\Delta c(j, i_k) = s \\cdot \\gamma^{k-1}` where :math:`s` is the
event's strength and :math:`\\gamma` the window decay. Each item keeps its ``neighbors_max``
strongest neighbours.
"""

from __future__ import annotations

import heapq
import struct
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from lsi.wire.records import Event, ItemDelta

__all__ = [
    "ItemStats",
    "StatsConfig",
    "Trending",
    "apply_delta",
    "batch_deltas",
    "fold_deltas",
    "merge_into",
    "merge_trending",
    "update_trending",
]


@dataclass(frozen=True, slots=True)
class StatsConfig:
    """Clocks and bounds of the item statistics.

    Attributes:
        pop_half_life_s: half-life of popularity (trending).
        covis_half_life_s: half-life of co-visitation weights.
        window: how many of the user's previous distinct items pair with a new one.
        window_decay: weight factor per step back in the window (:math:`\\gamma`).
        neighbors_max: neighbours kept per item.
        trending_n: length of each trending list.
    """

    pop_half_life_s: float = 3 * 86400.0
    covis_half_life_s: float = 30 * 86400.0
    window: int = 5
    window_decay: float = 0.8
    neighbors_max: int = 64
    trending_n: int = 100


def merge_into(acc: ItemDelta, delta: ItemDelta) -> None:
    """Add ``delta`` to ``acc`` in place (deltas of one item are additive)."""
    acc.pop += delta.pop
    acc.ts = max(acc.ts, delta.ts)
    for k, v in delta.co.items():
        acc.co[k] = acc.co.get(k, 0.0) + v


@dataclass(slots=True)
class ItemStats:
    """Statistics of one item, all weights as of ``ref_ts``."""

    pop: float = 0.0
    ref_ts: float = 0.0
    neighbors: dict[str, float] = field(default_factory=dict)

    def pop_at(self, now: float, half_life_s: float) -> float:
        return float(self.pop * 0.5 ** (max(0.0, now - self.ref_ts) / half_life_s))

    def to_bytes(self) -> bytes:
        """Binary: tag ``0x01``, ``pop`` and ``ref_ts`` (float64), the neighbour count
        (uint32), their weights (float32, in order) and their ids, UTF-8, NUL-separated
        (an id holds no control character). One C call per part: the statistics agent
        writes every touched item once per batch."""
        ids = "\x00".join(self.neighbors).encode()
        weights = array("f", self.neighbors.values()).tobytes()
        return _STATS_HEAD.pack(1, self.pop, self.ref_ts, len(self.neighbors)) + weights + ids

    @classmethod
    def from_bytes(cls, raw: bytes) -> ItemStats:
        """Reads :meth:`to_bytes` and the JSON of earlier versions; ``ValueError`` if the
        bytes are neither."""
        if raw[:1] == b"{":
            d = orjson.loads(raw)
            return cls(pop=d["p"], ref_ts=d["t"], neighbors=d["n"])
        try:
            tag, pop, ref_ts, n = _STATS_HEAD.unpack_from(raw)
        except struct.error as exc:
            raise ValueError(f"item statistics too short ({len(raw)} bytes)") from exc
        end = _STATS_HEAD.size + 4 * n
        if tag != 1 or len(raw) < end:
            raise ValueError(f"not item statistics (tag {tag}, {len(raw)} bytes for {n})")
        weights = array("f")
        weights.frombytes(raw[_STATS_HEAD.size : end])
        ids = raw[end:].decode().split("\x00") if n else []
        if len(ids) != n:
            raise ValueError(f"item statistics hold {len(ids)} ids for {n} weights")
        return cls(pop=pop, ref_ts=ref_ts, neighbors=dict(zip(ids, weights.tolist(), strict=True)))


#: tag, pop, ref_ts, neighbour count
_STATS_HEAD = struct.Struct("<BddI")


def batch_deltas(
    pairs: Iterable[tuple[Event, Sequence[str]]], cfg: StatsConfig
) -> dict[str, ItemDelta]:
    """Aggregate the item increments of a batch.

    Args:
        pairs: each event with the user's previous distinct items, newest first (taken from
            the state *before* the event was learned).
        cfg: window and decay.

    Returns:
        item id → its summed :class:`ItemDelta`. Negative events (``skip``) add nothing.
    """
    out: dict[str, ItemDelta] = {}
    for event, previous in pairs:
        strength = event.strength
        if strength <= 0:
            continue
        j = event.item_id
        dj = out.get(j)
        if dj is None:
            dj = out[j] = ItemDelta()
        dj.pop += strength
        dj.ts = max(dj.ts, event.ts)
        w = strength
        for i in previous[: cfg.window]:
            if i != j:
                dj.co[i] = dj.co.get(i, 0.0) + w
                di = out.get(i)
                if di is None:
                    di = out[i] = ItemDelta()
                di.ts = max(di.ts, event.ts)
                di.co[j] = di.co.get(j, 0.0) + w
            w *= cfg.window_decay
    return out


def apply_delta(stats: ItemStats | None, delta: ItemDelta, cfg: StatsConfig) -> ItemStats:
    """Fold one delta into an item's statistics (returns a new object)."""
    if stats is None:
        stats = ItemStats(ref_ts=delta.ts)
    ref = max(stats.ref_ts, delta.ts)
    pop_f = 0.5 ** ((ref - stats.ref_ts) / cfg.pop_half_life_s)
    co_f = 0.5 ** ((ref - stats.ref_ts) / cfg.covis_half_life_s)
    neighbors = (
        {k: v * co_f for k, v in stats.neighbors.items()} if co_f != 1.0 else dict(stats.neighbors)
    )
    for k, v in delta.co.items():
        neighbors[k] = neighbors.get(k, 0.0) + v
    if len(neighbors) > cfg.neighbors_max:
        neighbors = dict(heapq.nlargest(cfg.neighbors_max, neighbors.items(), key=lambda kv: kv[1]))
    return ItemStats(pop=stats.pop * pop_f + delta.pop, ref_ts=ref, neighbors=neighbors)


@dataclass(frozen=True, slots=True)
class Trending:
    """Most popular items at ``ts``, best first, as ``(item_id, popularity)``."""

    ts: float
    items: tuple[tuple[str, float], ...]

    def to_bytes(self) -> bytes:
        return orjson.dumps({"t": self.ts, "i": [[k, round(v, 5)] for k, v in self.items]})

    @classmethod
    def from_bytes(cls, raw: bytes) -> Trending:
        d = orjson.loads(raw)
        return cls(ts=d["t"], items=tuple((k, float(v)) for k, v in d["i"]))


def update_trending(
    previous: Trending | None, updated: Mapping[str, ItemStats], cfg: StatsConfig
) -> Trending:
    """Exact top-N by decayed popularity after a batch of updates.

    Every item decays at the same rate, so an item that was not updated cannot overtake one
    of the previous list: the new top-N is within the previous list plus the updated items.
    When no updated item is in a full previous list or would enter it, the previous list is
    returned as it is (its scores are as of its own ``ts``; readers decay them).
    """
    if previous is not None and len(previous.items) >= cfg.trending_n:
        listed = dict(previous.items)
        floor = previous.items[-1][1]
        h = cfg.pop_half_life_s
        if not any(
            item in listed or st.pop * 0.5 ** ((previous.ts - st.ref_ts) / h) > floor
            for item, st in updated.items()
        ):
            return previous
    now = max([s.ref_ts for s in updated.values()] + [previous.ts if previous else 0.0])
    scores: dict[str, float] = {}
    if previous is not None:
        f = 0.5 ** ((now - previous.ts) / cfg.pop_half_life_s)
        scores = {k: v * f for k, v in previous.items}
    for item, st in updated.items():
        scores[item] = st.pop_at(now, cfg.pop_half_life_s)
    top = heapq.nlargest(cfg.trending_n, scores.items(), key=lambda kv: kv[1])
    return Trending(ts=now, items=tuple(top))


def fold_deltas(
    by_partition: Mapping[int, Mapping[str, ItemDelta]],
    stats: Callable[[str], ItemStats | None],
    trending: Callable[[int], Trending | None],
    cfg: StatsConfig,
) -> tuple[dict[int, dict[str, ItemStats]], dict[int, Trending]]:
    """One item-stats step: the new statistics of every item in the deltas, and the new
    trending list of every partition they touch.

    The ``item-stats`` agent runs this on a batch (reading and writing its tables) and the
    offline :class:`lsi.evaluation.replay.StreamingModel` on dicts, so both fold alike.

    Args:
        by_partition: partition → item → summed delta of the batch.
        stats: the stored statistics of an item (``None`` if new).
        trending: the stored trending list of a partition (``None`` if none yet).
        cfg: clocks and bounds.

    Returns:
        The new statistics per partition, and the trending lists that changed (a partition
        whose list is unchanged is left out: nothing to write).
    """
    new_stats: dict[int, dict[str, ItemStats]] = {}
    new_trending: dict[int, Trending] = {}
    for partition, deltas in by_partition.items():
        updated = {item: apply_delta(stats(item), delta, cfg) for item, delta in deltas.items()}
        new_stats[partition] = updated
        if updated:
            previous = trending(partition)
            fresh = update_trending(previous, updated, cfg)
            if fresh is not previous:
                new_trending[partition] = fresh
    return new_stats, new_trending


def merge_trending(lists: Iterable[Trending], cfg: StatsConfig) -> Trending:
    """Merge per-partition trending lists into one global list, decayed to the newest ts.

    Each list is sorted, and one decay factor per list keeps it sorted, so a k-way merge
    yields the global order without sorting everything (this runs on every interest batch).
    An item in several lists keeps its highest score (the first seen in merged order).
    """
    lists = [t for t in lists if t.items]
    if not lists:
        return Trending(ts=0.0, items=())
    now = max(t.ts for t in lists)

    def stream(t: Trending) -> Iterator[tuple[float, str]]:
        f = 0.5 ** ((now - t.ts) / cfg.pop_half_life_s)
        return ((-v * f, k) for k, v in t.items)

    out: list[tuple[str, float]] = []
    seen: set[str] = set()
    for neg, k in heapq.merge(*(stream(t) for t in lists)):
        if k in seen:
            continue
        seen.add(k)
        out.append((k, -neg))
        if len(out) == cfg.trending_n:
            break
    return Trending(ts=now, items=tuple(out))
