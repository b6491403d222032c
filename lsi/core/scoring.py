"""Short-term baseline scorer: co-visitation of the user's recent items plus trending.

For user :math:`u` with recent distinct items :math:`a_1, …, a_L` (newest first, ``skip``
events excluded), the co-visitation score of a candidate :math:`i` is

.. math::

    s_{cv}(i) = \\frac{1}{Z} \\sum_{k=1}^{L} \\rho^{k-1}\\, \\frac{c(a_k, i)}{\\sum_{j} c(a_k, j)},
    \\qquad Z = \\sum_{k:\\,a_k \\text{ known}} \\rho^{k-1}

(the conditional "people who took :math:`a_k` next took :math:`i`", weighted towards the most
recent anchors), and trending popularity is :math:`s_{tr}(i) = p(i) / \\max_j p(j)` over the
trending list. The short-term score is :math:`(1-\\beta) s_{cv} + \\beta s_{tr}`; a user with
no known anchor gets :math:`s_{tr}` alone (cold start).

Long-term scores come from the live snapshot (:class:`lsi.serving.snapshot.Snapshot`): the inner
products :math:`s_L(u, i)` over the catalogue, the user's training items and (with
``filter_seen``) recent items excluded. The best ``long_candidates`` are rescaled to [0, 1]
by :math:`(s_L - s_{(C)}) / (s_{(1)} - s_{(C)})` (best → 1, the C-th → 0; items below are
clipped to 0) so that both sources share a scale. Modes (``ScoringConfig.mode``):

* ``fused``: :math:`w \\cdot \\ell_i + (1 - w) \\cdot s_i` over the union of both candidate
  sets, with the fixed ``long_weight`` :math:`w` (the learned per-user gate replaces it when
  the sequence model lands);
* ``long_only``: the long-term list alone (:math:`w = 1`), the evaluation's ``long_only``;
* ``short_only``: the short-term list alone (:math:`w = 0`).

Request filters. ``exclude`` (the items a ``GET /recommendations/{user}?exclude=…`` names) are
removed like seen items, from every candidate set before anything is ranked, so each list still
holds ``top_k`` items whenever that many candidates remain (the request's ``n`` is ``top_k``).

Here a user the snapshot does not know (or no snapshot at all) is served by the short-term
path with :math:`w = 0` in every mode, until the next refresh. (The fused scorer of
:mod:`lsi.serving.fusion`, which serves whenever the snapshot carries one, folds such a user in from
their recent events instead.)
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from lsi.core.ranking import top_rows
from lsi.core.snapshot_view import SnapshotView
from lsi.core.state import UserState
from lsi.core.stats import ItemStats, Trending
from lsi.wire.records import NEGATIVE_CODES, RecItem, ScoredItem

__all__ = ["SCORING_MODES", "ScoreResult", "ScoringConfig", "StatsLookup", "score_user"]

SCORING_MODES = ("fused", "long_only", "short_only")

#: Reads one item's statistics (a GlobalTable in the worker, a dict offline).
StatsLookup = Callable[[str], ItemStats | None]


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """How lists are built.

    Attributes:
        top_k: length of the emitted lists.
        anchors: how many recent distinct items seed co-visitation (:math:`L`).
        anchor_decay: :math:`\\rho`, weight factor per step back.
        trending_weight: :math:`\\beta`, share of trending in the short-term score.
        filter_seen: drop items in the user's recent window from the lists.
        mode: ``fused``, ``long_only`` or ``short_only`` (see the module docstring).
        long_weight: :math:`w` of the ``fused`` mode, in [0, 1].
        long_candidates: :math:`C`, long-term candidates rescaled and fused.
    """

    top_k: int = 20
    anchors: int = 10
    anchor_decay: float = 0.7
    trending_weight: float = 0.1
    filter_seen: bool = True
    mode: str = "fused"
    long_weight: float = 0.5
    long_candidates: int = 200

    def __post_init__(self) -> None:
        if self.mode not in SCORING_MODES:
            raise ValueError(f"mode must be one of {SCORING_MODES}, got {self.mode!r}")
        if not 0.0 <= self.long_weight <= 1.0:
            raise ValueError(f"long_weight must be in [0, 1], got {self.long_weight}")
        if self.long_candidates < 1:
            raise ValueError("long_candidates must be at least 1")


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """A scored list before it becomes a :class:`~lsi.wire.records.Recommendation`."""

    items: tuple[RecItem, ...]
    short_term: tuple[ScoredItem, ...]
    long_term: tuple[ScoredItem, ...]
    long_weight: float
    source: str


def score_user(
    state: UserState,
    lookup: StatsLookup,
    trending: Trending,
    cfg: ScoringConfig,
    model: SnapshotView | None = None,
    user_id: str = "",
    exclude: Collection[str] = frozenset(),
    own: Collection[str] | None = None,
) -> ScoreResult:
    """Rank items for one user from their short-term state, the global statistics and (if
    the snapshot knows ``user_id``) the long-term model; no list holds an item of
    ``exclude``, nor of the user's own items ``own`` (``None``: the recent window's items
    when ``filter_seen``; see :func:`lsi.core.rules.own_items`)."""
    scores: dict[str, float] = {}
    norm = 0.0
    weight = 1.0
    anchors = [
        item for item, code in state.recent_distinct(cfg.anchors * 2) if code not in NEGATIVE_CODES
    ]
    for item in anchors[: cfg.anchors]:
        stats = lookup(item)
        if stats is not None and stats.neighbors:
            total = sum(stats.neighbors.values())
            if total > 0:
                norm += weight
                for other, c in stats.neighbors.items():
                    scores[other] = scores.get(other, 0.0) + weight * c / total
        weight *= cfg.anchor_decay

    default = state.items if cfg.filter_seen else ()
    seen = set(default if own is None else own)
    seen.update(exclude)
    beta = cfg.trending_weight if norm > 0 else 1.0
    if norm > 0:
        scale = (1.0 - beta) / norm
        scores = {k: v * scale for k, v in scores.items() if k not in seen}
    top_pop = trending.items[0][1] if trending.items else 0.0
    if top_pop > 0 and beta > 0:
        for item, pop in trending.items:
            if item not in seen:
                scores[item] = scores.get(item, 0.0) + beta * pop / top_pop

    best = heapq.nlargest(cfg.top_k, scores.items(), key=lambda kv: (kv[1], kv[0]))
    short_term = tuple(ScoredItem(k, v) for k, v in best)
    source = "covisit" if norm > 0 else ("trending" if best else "empty")
    long = None
    if model is not None and cfg.mode != "short_only":
        long = _long_scores(model, user_id, seen, cfg.long_candidates)
    if long is None:
        return ScoreResult(
            items=tuple(RecItem(k, v, 0.0, v) for k, v in best),
            short_term=short_term,
            long_term=(),
            long_weight=0.0,
            source=source,
        )
    cand, full = long
    long_term = tuple(ScoredItem(k, v) for k, v in cand[: cfg.top_k])
    w = 1.0 if cfg.mode == "long_only" else cfg.long_weight
    pool = dict(cand)
    if w < 1.0:
        for item in scores:
            if item not in pool:
                pool[item] = full(item)
    fused = {k: w * lv + (1.0 - w) * scores.get(k, 0.0) for k, lv in pool.items()}
    if w == 1.0:  # the snapshot's own order (ties by catalogue row, as Snapshot.top)
        top = [(k, fused[k]) for k, _ in cand[: cfg.top_k]]
    else:
        top = heapq.nlargest(cfg.top_k, fused.items(), key=lambda kv: (kv[1], kv[0]))
    return ScoreResult(
        items=tuple(RecItem(k, v, pool[k], scores.get(k, 0.0)) for k, v in top),
        short_term=short_term,
        long_term=long_term,
        long_weight=w,
        source="long_term" if cfg.mode == "long_only" else "fused",
    )


def _long_scores(
    model: SnapshotView, user_id: str, seen: set[str], n: int
) -> tuple[list[tuple[str, float]], Callable[[str], float]] | None:
    """The user's best ``n`` long-term items rescaled to [0, 1], and a rescaler for any
    other item (0 for items the snapshot lacks); ``None`` if the snapshot lacks the user."""
    s = model.scores(user_id)
    if s is None:
        return None
    index = model.item_index
    rows = [index[x] for x in seen if x in index]
    if rows:
        s[rows] = -np.inf
    finite = int(np.isfinite(s).sum())
    n = min(n, finite)
    if n <= 0:
        return None
    order = top_rows(s, n)
    hi, lo = float(s[order[0]]), float(s[order[-1]])
    span = hi - lo if hi > lo else 1.0
    ids = model.item_ids
    cand = [(ids[j], (float(s[j]) - lo) / span) for j in order.tolist()]

    def full(item: str) -> float:
        j = index.get(item)
        if j is None or not np.isfinite(s[j]):
            return 0.0
        return min(1.0, max(0.0, (float(s[j]) - lo) / span))

    return cand, full
