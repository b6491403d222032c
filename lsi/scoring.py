"""Short-term baseline scorer: co-visitation of the user's recent items plus trending.

For user :math:`u` with recent distinct items :math:`a_1, …, a_L` (newest first, ``skip``
events excluded), the co-visitation score of a candidate :math:`i` is

.. math::

    s_{cv}(i) = \\frac{1}{Z} \\sum_{k=1}^{L} \\rho^{k-1}\\, \\frac{c(a_k, i)}{\\sum_{j} c(a_k, j)},
    \\qquad Z = \\sum_{k:\\,a_k \\text{ known}} \\rho^{k-1}

(the conditional "people who took :math:`a_k` next took :math:`i`", weighted towards the most
recent anchors), and trending popularity is :math:`s_{tr}(i) = p(i) / \\max_j p(j)` over the
trending list. The short-term score is :math:`(1-\\beta) s_{cv} + \\beta s_{tr}`; a user with
no known anchor gets :math:`s_{tr}` alone (cold start). Without a long-term model the gate is
``long_weight = 0`` and every ``long_score`` is 0.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from lsi.records import EVENT_TYPES, TYPE_WEIGHTS, RecItem, ScoredItem
from lsi.state import UserState
from lsi.stats import ItemStats, Trending

__all__ = ["ScoreResult", "ScoringConfig", "StatsLookup", "score_user"]

#: Reads one item's statistics (a GlobalTable in the worker, a dict offline).
StatsLookup = Callable[[str], ItemStats | None]

_NEGATIVE = frozenset(code for code, name in enumerate(EVENT_TYPES) if TYPE_WEIGHTS[name] <= 0)


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """How lists are built.

    Attributes:
        top_k: length of the emitted lists.
        anchors: how many recent distinct items seed co-visitation (:math:`L`).
        anchor_decay: :math:`\\rho`, weight factor per step back.
        trending_weight: :math:`\\beta`, share of trending in the short-term score.
        filter_seen: drop items in the user's recent window from the lists.
    """

    top_k: int = 20
    anchors: int = 10
    anchor_decay: float = 0.7
    trending_weight: float = 0.1
    filter_seen: bool = True


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """A scored list before it becomes a :class:`~lsi.records.Recommendation`."""

    items: tuple[RecItem, ...]
    short_term: tuple[ScoredItem, ...]
    long_term: tuple[ScoredItem, ...]
    long_weight: float
    source: str


def score_user(
    state: UserState, lookup: StatsLookup, trending: Trending, cfg: ScoringConfig
) -> ScoreResult:
    """Rank items for one user from their short-term state and the global statistics."""
    scores: dict[str, float] = {}
    norm = 0.0
    weight = 1.0
    anchors = [
        item for item, code in state.recent_distinct(cfg.anchors * 2) if code not in _NEGATIVE
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

    seen = set(state.items) if cfg.filter_seen else set()
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
    items = tuple(RecItem(k, v, 0.0, v) for k, v in best)
    source = "covisit" if norm > 0 else ("trending" if items else "empty")
    return ScoreResult(
        items=items,
        short_term=tuple(ScoredItem(k, v) for k, v in best),
        long_term=(),
        long_weight=0.0,
        source=source,
    )
