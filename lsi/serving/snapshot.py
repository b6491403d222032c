"""The long-term model as the scorer serves it: user and item vectors from a snapshot.

A :class:`Snapshot` is immutable and read-only: workers hold a reference to the live one
and replace the reference when a new snapshot is announced, so a batch scores with exactly one
version from start to end and a swap never pauses the stream.

Scores. For a user :math:`u` known to the snapshot, the long-term score of item :math:`i` is
the inner product of the propagated LightGCN vectors (:mod:`models.nn.lightgcn`),

.. math::

    s_L(u, i) = \\langle X_u, X_{U+i} \\rangle,

computed for the whole catalogue at once (``item_vec @ user_vec``, ``[I, d] @ [d]``; exact
top-K by a partial sort, fine up to ~10^5 items). The fused scorer does not score every item
of larger catalogues: it retrieves candidates from an inner-product index over ``item_vec``
(:mod:`lsi.serving.retrieval`, built once per snapshot) and re-ranks them exactly. Items the user already interacted with in the
training data are excluded (``-inf``): the snapshot carries each user's history as a CSR
array. Items the snapshot does not know get no long-term score until the next refresh.

Users who arrived after the snapshot was trained are *folded in* (:meth:`Snapshot.fold_in`):
their long-term vector is built from the items they interacted with since, as LightGCN builds
every user vector from its neighbours,

.. math::

    \\hat X_u = c \\cdot \\frac{1}{|N_u|} \\sum_{i \\in N_u} X_{U+i}, \\qquad
    c = \\frac{\\sum_v \\langle X_v, m_v \\rangle}{\\sum_v \\lVert m_v \\rVert^2},
    \\quad m_v = \\frac{1}{|N_v|} \\sum_{i \\in N_v} X_{U+i},

where :math:`c` is the least-squares scale that maps a trained user's item mean :math:`m_v`
onto their trained vector :math:`X_v` (fitted once per snapshot on up to
``FOLD_SCALE_USERS`` of its users), so folded vectors score on the trained vectors' scale. The
fused scorer uses them (:meth:`lsi.serving.fusion.SequenceModel.inputs`); a user with no item the
snapshot knows has no long-term part.

The offline evaluation ranks with the same :meth:`Snapshot.scores`, so the accuracy
reports measure the code the ``interest`` agent runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from lsi.core.ranking import top_rows

__all__ = ["FOLD_SCALE_USERS", "Snapshot"]

#: trained users (evenly spaced rows) that fit the fold-in scale ``c``
FOLD_SCALE_USERS = 2000

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class Snapshot:
    """User and item vectors of one snapshot version.

    Attributes:
        version: the snapshot version (``v000003``); recommendations carry it.
        user_ids: raw user ids, position = row of ``user_vec``.
        item_ids: raw item ids, position = row of ``item_vec``.
        user_vec: float32 ``[U, d]``.
        item_vec: float32 ``[I, d]``.
        hist_indptr: int64 ``[U+1]``: user ``u``'s training items are
            ``hist_items[hist_indptr[u]:hist_indptr[u+1]]``.
        hist_items: int32 ``[nnz]`` item rows.
        manifest: the snapshot's manifest (metrics, watermark, …).
        sequence: the short-term encoder and gate trained with these vectors
            (:class:`lsi.serving.fusion.SequenceModel`), or ``None`` (the statistics scorer serves).
    """

    version: str
    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    user_vec: FloatArray
    item_vec: FloatArray
    hist_indptr: IntArray
    hist_items: npt.NDArray[np.int32]
    manifest: dict[str, Any] = field(default_factory=dict)
    #: the snapshot's fused scorer (:class:`lsi.serving.fusion.SequenceModel`), if it has one
    sequence: Any = None
    user_index: dict[str, int] = field(init=False, repr=False)
    item_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        u, d = self.user_vec.shape
        i, d2 = self.item_vec.shape
        if u != len(self.user_ids) or i != len(self.item_ids) or d != d2:
            raise ValueError(
                f"snapshot {self.version}: shapes disagree (users {len(self.user_ids)} vs {u}, "
                f"items {len(self.item_ids)} vs {i}, dims {d} vs {d2})"
            )
        if self.hist_indptr.shape != (u + 1,) or int(self.hist_indptr[-1]) != len(self.hist_items):
            raise ValueError(f"snapshot {self.version}: history index does not match its users")
        object.__setattr__(self, "user_index", {k: j for j, k in enumerate(self.user_ids)})
        object.__setattr__(self, "item_index", {k: j for j, k in enumerate(self.item_ids)})

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        return int(self.user_vec.shape[1])

    def knows(self, user_id: str) -> bool:
        return user_id in self.user_index

    def history(self, user_row: int) -> npt.NDArray[np.int32]:
        return self.hist_items[self.hist_indptr[user_row] : self.hist_indptr[user_row + 1]]

    def scores(self, user_id: str, *, exclude_history: bool = True) -> FloatArray | None:
        """:math:`s_L(u, \\cdot)`, float32 ``[I]``, or ``None`` for a user the snapshot lacks.

        With ``exclude_history`` the user's training items score ``-inf``.
        """
        row = self.user_index.get(user_id)
        if row is None:
            return None
        s: FloatArray = self.item_vec @ self.user_vec[row]
        if exclude_history:
            s[self.history(row)] = -np.inf
        return s

    @cached_property
    def fold_scale(self) -> float:
        """:math:`c`, the least-squares scale from a trained user's item mean to their vector
        (see the module docstring); 1.0 when no trained user has history. Computed on first
        use and kept."""
        rows = np.unique(np.linspace(0, self.n_users - 1, min(self.n_users, FOLD_SCALE_USERS))
                         .astype(np.int64)) if self.n_users else np.zeros(0, np.int64)  # fmt: skip
        num = den = 0.0
        for row in rows.tolist():
            hist = self.history(row)
            if hist.size == 0:
                continue
            m = self.item_vec[hist].mean(axis=0, dtype=np.float64)
            num += float(m @ self.user_vec[row])
            den += float(m @ m)
        return num / den if den > 0 and num > 0 else 1.0

    def fold_in(self, item_ids: Sequence[str]) -> FloatArray | None:
        """:math:`\\hat X_u` float32 ``[d]`` for a user the snapshot lacks, from the items they
        interacted with (positive events only; repeats count once); ``None`` when the
        snapshot knows none of them."""
        rows = sorted({j for k in item_ids if (j := self.item_index.get(k)) is not None})
        if not rows:
            return None
        vec: FloatArray = (self.item_vec[rows].mean(axis=0) * self.fold_scale).astype(np.float32)
        return vec

    def top(
        self, user_id: str, k: int, exclude: frozenset[str] | set[str] = frozenset()
    ) -> list[tuple[str, float]]:
        """The user's best ``k`` items (raw id, score), best first; ``[]`` if unknown."""
        s = self.scores(user_id)
        if s is None:
            return []
        if exclude:
            rows = [self.item_index[x] for x in exclude if x in self.item_index]
            s[rows] = -np.inf
        order = top_rows(s, k)
        return [(self.item_ids[j], float(s[j])) for j in order.tolist() if np.isfinite(s[j])]
