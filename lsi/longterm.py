"""The long-term model as the scorer serves it: user and item vectors from a snapshot.

A :class:`LongTermModel` is immutable and read-only: workers hold a reference to the live one
and replace the reference when a new snapshot is announced, so a batch scores with exactly one
version from start to end and a swap never pauses the stream.

Scores. For a user :math:`u` known to the snapshot, the long-term score of item :math:`i` is
the inner product of the propagated LightGCN vectors (:mod:`models.lightgcn`),

.. math::

    s_L(u, i) = \\langle X_u, X_{U+i} \\rangle,

computed for the whole catalogue at once (``item_vec @ user_vec``, ``[I, d] @ [d]``; exact
top-K by a partial sort, fine up to ~10^5 items). Items the user already interacted with in the
training data are excluded (``-inf``): the snapshot carries each user's history as a CSR
array. Users or items the snapshot does not know get no long-term score and are served by the
short-term path until the next refresh.

The offline evaluation ranks with the same :meth:`LongTermModel.scores`, so the accuracy
reports measure the code the ``interest`` agent runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["LongTermModel", "top_rows"]

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class LongTermModel:
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
            (:class:`lsi.fusion.SequenceModel`), or ``None`` (the statistics scorer serves).
    """

    version: str
    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    user_vec: FloatArray
    item_vec: FloatArray
    hist_indptr: IntArray
    hist_items: npt.NDArray[np.int32]
    manifest: dict[str, Any] = field(default_factory=dict)
    #: the snapshot's fused scorer (:class:`lsi.fusion.SequenceModel`), if it has one
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


def top_rows(s: FloatArray, k: int) -> IntArray:
    """Rows of the ``k`` highest scores, best first, ties by row (exact, by partial sort)."""
    k = min(k, s.shape[0])
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-s, k - 1)[:k]
    order: IntArray = part[np.lexsort((part, -s[part]))]
    return order
