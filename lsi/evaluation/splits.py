"""Dense id maps and the offline evaluation protocols on an :class:`~lsi.evaluation.datasets.Interactions` log.

Both protocols replay the log in :meth:`~lsi.evaluation.datasets.Interactions.time_order` (by time, ties
in file order) and index users and items densely in order of first appearance (:class:`IdMap`).
The item catalogue is every item in the log, so a target first seen at test time is still a
candidate (full ranking), as in the published ``ml-1m`` / ``amazon-beauty`` numbers.

* :func:`loo_split`, leave-one-out: per user, the last interaction is the test target, the one
  before it the validation target, the rest is training. Users with fewer than 3 interactions
  stay entirely in training and are not evaluated. Cut-offs are per user, so one user's
  training may be later than another user's test: the benchmark protocol, not a causal one.
* :func:`temporal_split`: two global time cut-offs :math:`t_1 \\le t_2` (quantiles of the
  timestamps); train :math:`ts < t_1`, validation :math:`t_1 \\le ts < t_2`, test
  :math:`ts \\ge t_2`, so no training timestamp is later than any test timestamp and ties at
  a cut-off go to the later split. Every validation or test interaction is a case.

Each split exposes an :class:`EvalPhase` for validation and for test: the cases (user,
target), each user's history before the phase (training for validation; training plus
validation for test) in time order, for sequence scorers, and the distinct ``seen`` items of
that history, for the optional filter of :func:`lsi.evaluation.measures.rank_of_target`.
A case whose user has no history is cold start: it is counted apart, not evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np
import numpy.typing as npt

from lsi.errors import DatasetError
from lsi.evaluation.datasets import Interactions

__all__ = [
    "EvalPhase",
    "IdMap",
    "LooSplit",
    "Ragged",
    "TemporalSplit",
    "loo_split",
    "temporal_split",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class IdMap:
    """Raw id ↔ dense index ``0..n-1``.

    Attributes:
        raw: ``[n]`` int64 raw id of each dense index (dense → raw).
    """

    raw: IntArray
    _sorted_raw: IntArray = field(init=False, repr=False)
    _sorted_dense: IntArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        order = np.argsort(self.raw, kind="stable").astype(np.int64)
        sorted_raw = self.raw[order]
        if sorted_raw.shape[0] > 1 and np.any(sorted_raw[1:] == sorted_raw[:-1]):
            raise ValueError("IdMap raw ids must be distinct")
        object.__setattr__(self, "_sorted_raw", sorted_raw)
        object.__setattr__(self, "_sorted_dense", order)

    @classmethod
    def build(cls, raw_ids: npt.ArrayLike) -> IdMap:
        """Dense indices in order of first appearance in ``raw_ids``."""
        ids = np.asarray(raw_ids, dtype=np.int64).reshape(-1)
        unique, first = np.unique(ids, return_index=True)
        return cls(unique[np.argsort(first, kind="stable")])

    def __len__(self) -> int:
        return int(self.raw.shape[0])

    def encode(self, raw_ids: npt.ArrayLike, *, missing: int | None = None) -> IntArray:
        """Dense indices of ``raw_ids``; an unknown id raises ``KeyError`` unless ``missing``
        gives the index to put in its place (e.g. ``-1``)."""
        ids = np.asarray(raw_ids, dtype=np.int64)
        known = np.zeros(ids.shape, dtype=np.bool_)
        dense = np.zeros(ids.shape, dtype=np.int64)
        if len(self):
            pos = np.searchsorted(self._sorted_raw, ids).clip(0, len(self) - 1)
            known, dense = self._sorted_raw[pos] == ids, self._sorted_dense[pos]
        if known.all():
            return dense
        if missing is None:
            raise KeyError(f"unknown id {int(ids[~known].reshape(-1)[0])}")
        return np.where(known, dense, np.int64(missing))

    def decode(self, dense: npt.ArrayLike) -> IntArray:
        """Raw ids of dense indices."""
        return self.raw[np.asarray(dense, dtype=np.int64)]


@dataclass(frozen=True, slots=True, eq=False)
class Ragged(Sequence[IntArray]):
    """Rows of different lengths in one flat array (CSR): row ``i`` is
    ``values[indptr[i]:indptr[i + 1]]``, a view."""

    indptr: IntArray
    values: IntArray

    @classmethod
    def from_groups(cls, groups: IntArray, values: IntArray, n_groups: int) -> Ragged:
        """Row ``g`` holds the ``values`` whose group is ``g``, in their input order."""
        order = np.argsort(groups, kind="stable")
        counts = np.bincount(groups, minlength=n_groups)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(indptr, values[order].astype(np.int64))

    def __len__(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @overload
    def __getitem__(self, index: int) -> IntArray: ...
    @overload
    def __getitem__(self, index: slice) -> Ragged: ...
    def __getitem__(self, index: int | slice) -> IntArray | Ragged:
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        i = range(len(self))[index]  # bounds check, negative indices
        return self.values[self.indptr[i] : self.indptr[i + 1]]

    def lengths(self) -> IntArray:
        """``[n_rows]`` row lengths."""
        return np.diff(self.indptr)

    def take(self, rows: npt.ArrayLike) -> Ragged:
        """A new :class:`Ragged` of the given rows (copied)."""
        picked = [self[int(r)] for r in np.asarray(rows, dtype=np.int64).reshape(-1)]
        lengths = [p.shape[0] for p in picked]
        values = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
        return Ragged(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), values)

    def unique_per_row(self) -> Ragged:
        """Each row's distinct values, sorted."""
        rows = np.repeat(np.arange(len(self), dtype=np.int64), self.lengths())
        order = np.lexsort((self.values, rows))
        r, v = rows[order], self.values[order]
        keep = np.ones(r.shape[0], dtype=np.bool_)
        keep[1:] = (r[1:] != r[:-1]) | (v[1:] != v[:-1])
        return Ragged.from_groups(r[keep], v[keep], len(self))


@dataclass(frozen=True, slots=True, eq=False)
class EvalPhase:
    """The cases of one evaluation phase (``valid`` or ``test``), dense-indexed.

    Attributes:
        name: ``"valid"`` or ``"test"``.
        users: ``[n_cases]`` user of each case.
        targets: ``[n_cases]`` held-out item of each case.
        ts: ``[n_cases]`` time of the held-out interaction.
        rows: ``[n_cases]`` its row in the :class:`~lsi.evaluation.datasets.Interactions` (types, weights).
        history: per user (``len == n_users``), the items before this phase, in time order.
        seen: per user, the distinct items of ``history``, sorted (the optional filter).
        cold_users: users of the cold-start cases (no history), not evaluated.
        cold_targets: items of the cold-start cases.
    """

    name: str
    users: IntArray
    targets: IntArray
    ts: FloatArray
    rows: IntArray
    history: Ragged
    seen: Ragged
    cold_users: IntArray
    cold_targets: IntArray

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def history_of_cases(self) -> list[IntArray]:
        """Each case's user history (views), aligned with :attr:`targets`."""
        return [self.history[int(u)] for u in self.users]

    def seen_of_cases(self) -> list[IntArray]:
        """Each case's seen items (views), aligned with :attr:`targets`: the ``exclude`` of
        :func:`lsi.evaluation.measures.rank_of_target`."""
        return [self.seen[int(u)] for u in self.users]


def _phase(
    name: str,
    cases: npt.NDArray[np.bool_],
    history: npt.NDArray[np.bool_],
    u: IntArray,
    i: IntArray,
    ts: FloatArray,
    rows: IntArray,
    n_users: int,
) -> EvalPhase:
    """One phase from boolean selections over the time-ordered arrays."""
    hist = Ragged.from_groups(u[history], i[history], n_users)
    idx = np.flatnonzero(cases)
    warm = hist.lengths()[u[idx]] > 0
    w, c = idx[warm], idx[~warm]
    return EvalPhase(name, u[w], i[w], ts[w], rows[w], hist, hist.unique_per_row(), u[c], i[c])


@dataclass(frozen=True, slots=True, eq=False)
class LooSplit:
    """Leave-one-out split (see the module docstring).

    Attributes:
        users, items: the id maps (``n_users``, ``n_items`` = catalogue).
        train_rows: training rows of the log, in time order.
        train_users, train_items, train_ts: the training interactions, dense, time order.
        valid: one case per evaluated user (second-to-last item), history = training.
        test: one case per evaluated user (last item), history = training + validation.
        n_short_users: users with fewer than 3 interactions (all training, not evaluated).
    """

    users: IdMap
    items: IdMap
    train_rows: IntArray
    train_users: IntArray
    train_items: IntArray
    train_ts: FloatArray
    valid: EvalPhase
    test: EvalPhase
    n_short_users: int

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True, eq=False)
class TemporalSplit:
    """Global-time split (see the module docstring).

    Attributes:
        users, items: the id maps over the whole log.
        t_valid, t_test: the cut-offs :math:`t_1 \\le t_2`.
        train_rows, train_users, train_items, train_ts: training (``ts < t_valid``), time order.
        valid: cases ``t_valid <= ts < t_test`` whose user has training history.
        test: cases ``ts >= t_test`` whose user has history before ``t_test``.
    """

    users: IdMap
    items: IdMap
    t_valid: float
    t_test: float
    train_rows: IntArray
    train_users: IntArray
    train_items: IntArray
    train_ts: FloatArray
    valid: EvalPhase
    test: EvalPhase

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)


def _dense(data: Interactions) -> tuple[IdMap, IdMap, IntArray, IntArray, IntArray, FloatArray]:
    """The user and item maps, then in time order: log rows, dense users, dense items, ts."""
    order = data.time_order()
    users, items = IdMap.build(data.users[order]), IdMap.build(data.items[order])
    u, i = users.encode(data.users[order]), items.encode(data.items[order])
    return users, items, order, u, i, data.ts[order]


def loo_split(data: Interactions) -> LooSplit:
    """Leave-one-out split of ``data`` (see the module docstring)."""
    users, items, order, u, i, ts = _dense(data)
    counts = np.bincount(u, minlength=len(users))
    by_user = np.argsort(u, kind="stable")  # each user's rows stay in time order
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.empty_like(u)
    position[by_user] = np.arange(u.shape[0]) - np.repeat(starts, counts)
    length = counts[u]
    evaluated = length >= 3
    is_test = evaluated & (position == length - 1)
    is_valid = evaluated & (position == length - 2)
    train = ~(is_test | is_valid)
    # exactly one case per evaluated user: sort the cases by user
    valid = _phase("valid", is_valid, train, u, i, ts, order, len(users))
    test = _phase("test", is_test, train | is_valid, u, i, ts, order, len(users))
    valid, test = (_by_user(p) for p in (valid, test))
    return LooSplit(
        users, items, order[train], u[train], i[train], ts[train], valid, test,
        int(np.count_nonzero((counts > 0) & (counts < 3))),
    )  # fmt: skip


def _by_user(p: EvalPhase) -> EvalPhase:
    o = np.argsort(p.users, kind="stable")
    return EvalPhase(
        p.name, p.users[o], p.targets[o], p.ts[o], p.rows[o], p.history, p.seen,
        p.cold_users, p.cold_targets,
    )  # fmt: skip


def temporal_split(
    data: Interactions, valid_frac: float = 0.1, test_frac: float = 0.1
) -> TemporalSplit:
    """Split ``data`` at two global time cut-offs (see the module docstring).

    The cut-offs are the timestamps at positions ``floor(n (1 - valid_frac - test_frac))``
    and ``floor(n (1 - test_frac))`` of the sorted timestamps; rows tied with a cut-off go to
    the later split, so the split fractions are approximate when timestamps are coarse.

    Raises:
        ValueError: fractions outside ``valid_frac >= 0``, ``test_frac > 0``, sum ``< 1``.
        DatasetError: the log is empty or its timestamps leave no training rows.
    """
    if not (valid_frac >= 0 and test_frac > 0 and valid_frac + test_frac < 1):
        raise ValueError(
            f"need valid_frac >= 0, test_frac > 0, valid_frac + test_frac < 1; "
            f"got {valid_frac}, {test_frac}"
        )
    users, items, order, u, i, ts = _dense(data)
    n = ts.shape[0]
    if n == 0:
        raise DatasetError(f"{data.name}: empty log, nothing to split")
    t_valid = float(ts[min(n - 1, math.floor(n * (1 - valid_frac - test_frac)))])
    t_test = float(ts[min(n - 1, math.floor(n * (1 - test_frac)))])
    train, test_rows = ts < t_valid, ts >= t_test
    if not train.any():
        raise DatasetError(
            f"{data.name}: no interaction before the validation cut-off {t_valid}; "
            "timestamps too coarse for these fractions"
        )
    valid_rows = ~train & ~test_rows
    valid = _phase("valid", valid_rows, train, u, i, ts, order, len(users))
    test = _phase("test", test_rows, ~test_rows, u, i, ts, order, len(users))
    return TemporalSplit(
        users, items, t_valid, t_test, order[train], u[train], i[train], ts[train], valid, test
    )
