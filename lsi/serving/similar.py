r"""Similar items: the neighbours of one item, for ``GET /items/{item_id}/similar/``.

Long-term neighbours come from the live snapshot (:class:`lsi.serving.snapshot.Snapshot`):
with the item vectors :math:`v_j = X_{U+j}` (the rows of ``item_vec``, ``[I, d]``), the
similarity of item :math:`j` to the asked item :math:`a` is their cosine,

.. math::

    \cos(a, j) = \frac{\langle v_a, v_j \rangle}{\lVert v_a \rVert \, \lVert v_j \rVert},
    \qquad j \ne a,

in :math:`[-1, 1]`; an item whose vector is zero scores 0, and an asked item whose vector is
zero has no long-term neighbours. The list is the ``n`` best, best first, ties by catalogue row
(:func:`lsi.core.ranking.top_rows`, the rule of :meth:`Snapshot.top`). One matrix-vector
product per request, :math:`O(I d)`; the row norms are computed once per snapshot and kept
with it (read-only afterwards, like the snapshot).

Co-visitation is the fallback when there is no snapshot or the snapshot lacks the item (one
that arrived after it was trained): the item's neighbour weights :math:`c(a, j)` from the
global item statistics (:class:`lsi.core.stats.ItemStats`, the table every worker follows),
normalised as the statistics scorer reads them (:mod:`lsi.core.scoring`),

.. math::

    s(a, j) = \frac{c(a, j)}{\sum_k c(a, k)}

(the share of the co-visits of :math:`a` that went to :math:`j`; the weights' common decay
factor cancels), over the positive weights, best first, ties by item id. At most
``StatsConfig.neighbors_max`` (64) neighbours are kept per item.

Pure: numpy on the snapshot and a plain mapping, no I/O; :meth:`streams.interest.Interest.
similar_now` reads the worker's state and calls :func:`similar_items`.

>>> import numpy as np
>>> snap = Snapshot("v000001", ("u",), ("a", "b", "c", "d"), np.ones((1, 2), np.float32),
...                 np.array([[1, 0], [2, 0], [0, 1], [1, 1]], np.float32),
...                 np.array([0, 0]), np.zeros(0, np.int32))
>>> [(s.item_id, round(s.score, 4)) for s in cosine_neighbours(snap, "a", 3)]
[('b', 1.0), ('d', 0.7071), ('c', 0.0)]
>>> [(s.item_id, s.score) for s in covisit_neighbours({"x": 3.0, "y": 1.0}, "a", 5)]
[('x', 0.75), ('y', 0.25)]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lsi.core.engine import BASELINE_VERSION
from lsi.core.ranking import top_rows
from lsi.serving.snapshot import Snapshot
from lsi.wire.records import ScoredItem

__all__ = ["SOURCES", "Similar", "cosine_neighbours", "covisit_neighbours", "similar_items"]

#: where a list of similar items came from
SOURCES = ("long_term", "covisitation")


@dataclass(frozen=True, slots=True)
class Similar:
    """The items most similar to ``item_id``, best first.

    Attributes:
        item_id: the item asked about.
        source: ``long_term`` (cosine of the snapshot's item vectors) or ``covisitation``
            (the item statistics).
        model_version: the snapshot's version, or the statistics' (``baseline-covisit``).
        items: ``(item_id, score)``: a cosine in [-1, 1], or a co-visitation share in (0, 1].
    """

    item_id: str
    source: str
    model_version: str
    items: tuple[ScoredItem, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the HTTP answer."""
        return {"item_id": self.item_id, "source": self.source,
                "model_version": self.model_version,
                "items": [item.to_dict() for item in self.items]}  # fmt: skip


def _row_norms(snapshot: Snapshot) -> npt.NDArray[np.float32]:
    """:math:`\\lVert v_j \\rVert` ``[I]``, computed on first use and kept with the snapshot."""
    cache = getattr(snapshot, "_lsi_item_norms", None)
    if cache is None:
        cache = np.linalg.norm(snapshot.item_vec, axis=1).astype(np.float32)
        object.__setattr__(snapshot, "_lsi_item_norms", cache)
    norms: npt.NDArray[np.float32] = cache
    return norms


def cosine_neighbours(snapshot: Snapshot, item_id: str, n: int,
                      exclude: Collection[str] = frozenset()) -> tuple[ScoredItem, ...] | None:  # fmt: skip
    """The ``n`` items of ``snapshot`` nearest to ``item_id`` by cosine, best first, ties by
    catalogue row, the item itself and ``exclude`` left out; ``None`` if the snapshot lacks
    the item or its vector is zero."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    row = snapshot.item_index.get(item_id)
    if row is None:
        return None
    norms = _row_norms(snapshot)
    if not norms[row] > 0:
        return None
    scale = norms * norms[row]
    dots = snapshot.item_vec @ snapshot.item_vec[row]
    cos = np.divide(dots, scale, out=np.zeros_like(dots), where=scale > 0)
    cos[row] = -np.inf
    for other in exclude:
        j = snapshot.item_index.get(other)
        if j is not None:
            cos[j] = -np.inf
    ids = snapshot.item_ids
    return tuple(ScoredItem(ids[j], float(cos[j])) for j in top_rows(cos, n).tolist()
                 if np.isfinite(cos[j]))  # fmt: skip


def covisit_neighbours(neighbors: Mapping[str, float], item_id: str, n: int,
                       exclude: Collection[str] = frozenset()) -> tuple[ScoredItem, ...]:  # fmt: skip
    """The ``n`` strongest co-visitation neighbours of ``item_id`` (its
    :attr:`lsi.core.stats.ItemStats.neighbors`), as shares of their positive total, best
    first, ties by item id; the item itself and ``exclude`` left out (the shares stay those
    of all its neighbours)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    weights = {k: float(c) for k, c in neighbors.items() if k != item_id and c > 0}
    total = sum(weights.values())
    if total <= 0 or n == 0:
        return ()
    best = sorted(((k, c) for k, c in weights.items() if k not in exclude),
                  key=lambda kv: (-kv[1], kv[0]))[:n]  # fmt: skip
    return tuple(ScoredItem(k, c / total) for k, c in best)


def similar_items(
    item_id: str,
    n: int,
    snapshot: Snapshot | None,
    neighbors: Mapping[str, float] | None,
    covisit_version: str = BASELINE_VERSION,
    exclude: Collection[str] = frozenset(),
) -> Similar | None:
    """The ``n`` items most similar to ``item_id``: by the snapshot's cosine when it knows the
    item, else by co-visitation; ``None`` when neither knows it.

    Args:
        item_id: the item asked about.
        n: how many (at most; fewer when fewer exist).
        snapshot: the live snapshot, or ``None``.
        neighbors: the item's co-visitation weights, or ``None`` when the statistics have no
            entry for it (an entry with no neighbours is known: its list is empty).
        covisit_version: the ``model_version`` of a co-visitation answer.
        exclude: items the answer may not hold (those the catalogue hides).
    """
    if snapshot is not None:
        near = cosine_neighbours(snapshot, item_id, n, exclude)
        if near is not None:
            return Similar(item_id, "long_term", snapshot.version, near)
    if neighbors is None:
        return None
    return Similar(item_id, "covisitation", covisit_version,
                   covisit_neighbours(neighbors, item_id, n, exclude))  # fmt: skip
