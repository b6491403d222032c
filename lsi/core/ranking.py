r"""The one ranking rule: a target's 0-based rank among scored items, and HR / NDCG / MRR of it.

Every place that ranks a held-out item computes the rank here, or counts with its own tensors
and hands the counts to :func:`expected_rank`: the published evaluation
(:mod:`lsi.evaluation.measures`), the prequential replays (:mod:`lsi.evaluation.replay`,
:mod:`lsi.evaluation.fused`), the refresh job's validation and promotion gate
(:func:`models.training.longterm.validate`), the encoder's early stopping
(:mod:`models.training.sequence`) and ``lsi bench accuracy``.

Rank. A case has a score :math:`s_j` for each of the :math:`N` items and one target
:math:`t`. Its rank is 0-based:

.. math::

    r = g + \tfrac12 e, \qquad
    g = |\{j \ne t : s_j > s_t\}|, \qquad
    e = |\{j \ne t : s_j = s_t\}|

over the candidates :math:`j` that are not excluded. Ties count at their **expected** share:
:math:`r` is the target's mean position when ties are broken uniformly at random. Counting
only :math:`g` (optimistic) gives a constant scorer rank 0 and HR = 1 on every case;
counting :math:`g + e` (pessimistic) punishes coarse but honest scores. The metrics are read
at this expected rank, a point estimate: for a scorer with a few ties it is the expected
metric, for a constant scorer it gives HR@K = 0 where random tie-breaking would give
:math:`K/N`. Without ties :math:`r` is the plain position in the sorted list.

Per case, from :math:`r`:

.. math::

    \mathrm{HR@}K = [r < K] \qquad
    \mathrm{NDCG@}K = \frac{[r < K]}{\log_2(r + 2)} \qquad
    \mathrm{MRR@}K = \frac{[r < K]}{r + 1}

(one relevant item, so the ideal DCG is 1 and NDCG needs no normaliser). Two ranks are
special: ``inf`` is a **miss** (the case was judged but the target could not be ranked: an
unknown item, a target scored :math:`-\infty`, an item absent from a list shown), every
metric of it is 0; ``NaN`` is a case **not evaluated**, every metric of it is ``NaN`` (the
callers' means leave it out). Negative ranks are refused, so a sentinel such as ``-1`` is
never read as a rank.

Exclusion. Seen items may be filtered: an excluded candidate counts as scored
:math:`-\infty` and below a target that itself scores :math:`-\infty`. The target is never
excluded.

Pure: numpy and the standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "Exclude",
    "exclusion_mask",
    "expected_rank",
    "hit_rate_at_k",
    "mrr",
    "ndcg_at_k",
    "rank_in_row",
    "rank_of_target",
    "ranks_of_targets",
    "top_rows",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Exclude: TypeAlias = npt.NDArray[np.bool_] | Sequence[npt.NDArray[np.integer]]
"""Items to filter per row: a boolean mask ``[n_rows, n_items]``, or one array of item
indices per row (e.g. the ``seen`` items of :mod:`lsi.evaluation.splits`)."""


def expected_rank(
    n_greater: npt.ArrayLike, n_equal: npt.ArrayLike, valid: npt.ArrayLike | None = None
) -> FloatArray:
    r"""The tie rule: :math:`r = g + e / 2` from the counts of candidates scored strictly
    above the target (:math:`g`) and equal to it, the target itself not counted (:math:`e`).

    For callers that count on their own arrays (a torch tensor ``[B, N]``): count there, hand
    the counts here. ``valid`` (optional, broadcast with the counts) marks the cases whose
    target could be ranked; the others are misses, rank ``inf``, and their counts are not
    read. Shapes broadcast; returns float64.

    >>> expected_rank([0, 3, 7], [1, 0, -1], valid=[True, True, False]).tolist()
    [0.5, 3.0, inf]
    """
    g = np.asarray(n_greater, dtype=np.float64)
    e = np.asarray(n_equal, dtype=np.float64)
    ok = np.ones(np.broadcast_shapes(g.shape, e.shape), dtype=np.bool_)
    if valid is not None:
        ok = ok & np.asarray(valid, dtype=np.bool_)
    g, e = np.where(ok, g, 0.0), np.where(ok, e, 0.0)
    if np.any(g < 0) or np.any(e < 0):
        raise ValueError("rank counts must be >= 0 (is the target counted among its ties?)")
    out: FloatArray = np.where(ok, g + 0.5 * e, np.inf)
    return out


def exclusion_mask(
    exclude: Exclude | None, rows: IntArray | slice, n_rows: int, n_items: int
) -> npt.NDArray[np.bool_] | None:
    """The rows ``rows`` of ``exclude`` as a fresh boolean mask ``[n_rows, n_items]`` (the
    caller may write to it), or ``None`` without exclusion."""
    if exclude is None:
        return None
    if isinstance(exclude, np.ndarray):
        if exclude.ndim != 2 or exclude.shape[1] != n_items:
            raise ValueError(f"exclude mask must be [n_rows, {n_items}], got {exclude.shape}")
        return np.array(exclude[rows], dtype=np.bool_)
    picked = range(len(exclude))[rows] if isinstance(rows, slice) else rows.tolist()
    arrays = [np.asarray(exclude[i], dtype=np.int64) for i in picked]
    mask = np.zeros((n_rows, n_items), dtype=np.bool_)
    if arrays:
        cols = np.concatenate(arrays)
        mask[np.repeat(np.arange(n_rows), [a.shape[0] for a in arrays]), cols] = True
    return mask


def rank_in_row(
    scores: npt.ArrayLike,
    target: int,
    exclude: npt.ArrayLike | None = None,
) -> float:
    r"""Expected rank of one target among one row of scores (the single-case version of
    :func:`rank_of_target`).

    Args:
        scores: ``[n_items]`` float scores; ``NaN`` is an error (give unwanted items
            ``-inf``).
        target: the target's item index, ``0 <= target < n_items``.
        exclude: item indices, or a boolean mask ``[n_items]``, to leave out of the ranking;
            the target is never excluded.

    Returns:
        :math:`r = g + e/2` (see the module docstring).

    >>> rank_in_row([0.1, 0.9, 0.5, 0.5], 2)
    1.5
    >>> rank_in_row([0.1, 0.9, 0.5, 0.5], 2, exclude=[1, 3])
    0.0
    """
    s = np.asarray(scores)
    if s.ndim != 1:
        raise ValueError(f"scores must be [n_items], got shape {s.shape}")
    if not 0 <= target < s.shape[0]:
        raise ValueError(f"target item index {target} out of range (catalogue has "
                         f"{s.shape[0]} items)")  # fmt: skip
    mask = None
    if exclude is not None:
        ex = np.asarray(exclude)
        if ex.dtype == np.bool_:
            if ex.shape != s.shape:
                raise ValueError(f"exclude mask must be [{s.shape[0]}], got {ex.shape}")
            mask = ex[None, :].copy()  # _rank_block clears the target's bit
        else:
            mask = np.zeros((1, s.shape[0]), dtype=np.bool_)
            mask[0, ex.astype(np.int64)] = True
    return float(_rank_block(s[None, :], np.array([target], dtype=np.int64), mask)[0])


def _rank_block(
    block: npt.NDArray[np.floating], targets: IntArray, mask: npt.NDArray[np.bool_] | None
) -> FloatArray:
    """Expected ranks of ``targets`` in one block of score rows (targets valid, >= 0)."""
    if np.isnan(block).any():
        raise ValueError("scores contain NaN; give unwanted items -inf instead")
    rows = np.arange(block.shape[0])
    target_scores = block[rows, targets][:, None]
    greater = block > target_scores
    equal = block == target_scores
    if mask is not None:
        mask[rows, targets] = False  # the target is never excluded
        greater &= ~mask
        equal &= ~mask
    n_greater = np.count_nonzero(greater, axis=1)
    n_equal = np.count_nonzero(equal, axis=1) - 1  # the target equals itself
    return expected_rank(n_greater, n_equal)


def _ranks(
    scores: npt.NDArray[np.floating],
    rows: IntArray | None,
    targets: IntArray,
    exclude: Exclude | None,
    batch_size: int,
) -> FloatArray:
    if scores.ndim != 2:
        raise ValueError(f"scores must be [n_rows, n_items], got shape {scores.shape}")
    n_items = scores.shape[1]
    if np.any(targets >= n_items):
        raise ValueError(f"target item index out of range (catalogue has {n_items} items)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if exclude is not None and len(exclude) != scores.shape[0]:
        raise ValueError(f"exclude must have one row per score row ({scores.shape[0]})")
    out = np.full(targets.shape[0], np.nan, dtype=np.float64)
    for start in range(0, targets.shape[0], batch_size):
        stop = min(start + batch_size, targets.shape[0])
        tgt = targets[start:stop]
        valid = tgt >= 0
        if not valid.any():
            continue
        sel: IntArray | slice = slice(start, stop) if rows is None else rows[start:stop]
        block = scores[sel]
        mask = exclusion_mask(exclude, sel, stop - start, n_items)
        if not valid.all():
            block = block[valid]
            mask = None if mask is None else mask[valid]
        out[start:stop][valid] = _rank_block(block, tgt[valid], mask)
    return out


def rank_of_target(
    scores: npt.NDArray[np.floating],
    targets: npt.ArrayLike,
    exclude: Exclude | None = None,
    *,
    batch_size: int = 1024,
) -> FloatArray:
    r"""0-based expected rank of each row's target among all items.

    :math:`r_u = |\{j \ne t_u : s_{uj} > s_{ut_u}\}| + \tfrac12 |\{j \ne t_u : s_{uj} = s_{ut_u}\}|`,
    over non-excluded items :math:`j` (see the module docstring for why ties count half).

    Args:
        scores: ``[n_rows, n_items]`` float scores (float32 is fine); never modified. ``NaN``
            is an error: give unwanted items ``-inf``.
        targets: ``[n_rows]`` target item index per row; a negative target marks a row with
            no case, whose rank is ``NaN``.
        exclude: items to filter per row (:data:`Exclude`); the target is never excluded.
        batch_size: rows ranked at a time (bounds the temporary ``[batch, n_items]`` masks).

    Returns:
        ``[n_rows]`` float64 ranks: integers, or halves where there are ties.

    >>> rank_of_target(np.array([[0.1, 0.9, 0.5, 0.5]], dtype=np.float32), [2]).tolist()
    [1.5]
    """
    tgt = np.asarray(targets, dtype=np.int64)
    if tgt.ndim != 1 or tgt.shape[0] != scores.shape[0]:
        raise ValueError(f"targets must be [{scores.shape[0]}], got shape {tgt.shape}")
    return _ranks(scores, None, tgt, exclude, batch_size)


def ranks_of_targets(
    scores: npt.NDArray[np.floating],
    targets: Sequence[npt.ArrayLike],
    exclude: Exclude | None = None,
    *,
    batch_size: int = 1024,
) -> list[FloatArray]:
    """Like :func:`rank_of_target` for several targets per row (for multi-target Recall@K).

    Each target is ranked against all non-excluded items, the row's other targets included,
    so ``rank < K`` exactly when the target is in the row's top K (ties aside).

    Returns:
        one float64 array of ranks per row, in the order of that row's targets.
    """
    if len(targets) != scores.shape[0]:
        raise ValueError(f"need one target array per row ({scores.shape[0]}), got {len(targets)}")
    per_row = [np.asarray(t, dtype=np.int64).reshape(-1) for t in targets]
    lengths = [t.shape[0] for t in per_row]
    flat = np.concatenate(per_row) if per_row else np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(len(per_row), dtype=np.int64), lengths)
    ranks = _ranks(scores, rows, flat, exclude, batch_size)
    return np.split(ranks, np.cumsum(lengths)[:-1]) if per_row else []


def _checked(ranks: npt.ArrayLike) -> FloatArray:
    r = np.asarray(ranks, dtype=np.float64)
    if np.any(r < 0):  # NaN compares False: not evaluated is fine
        raise ValueError("ranks must be >= 0, inf (a miss) or NaN (not evaluated); "
                         f"got {float(r[r < 0].min())}")  # fmt: skip
    return r


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"K must be >= 1, got {k}")


def hit_rate_at_k(ranks: npt.ArrayLike, k: int) -> FloatArray:
    r"""Per-case :math:`\mathrm{HR@}K = [r < K]`, same shape as ``ranks``.

    >>> hit_rate_at_k([0.0, 9.5, 10.0, np.inf], 10).tolist()
    [1.0, 1.0, 0.0, 0.0]
    """
    _check_k(k)
    r = _checked(ranks)
    return np.where(np.isnan(r), np.nan, (r < k).astype(np.float64))


def ndcg_at_k(ranks: npt.ArrayLike, k: int) -> FloatArray:
    r"""Per-case :math:`\mathrm{NDCG@}K = [r < K] / \log_2(r + 2)` for one relevant item,
    same shape as ``ranks``.

    >>> ndcg_at_k([0.0, 2.0, 10.0, np.inf], 10).tolist()
    [1.0, 0.5, 0.0, 0.0]
    """
    _check_k(k)
    r = _checked(ranks)
    hit = r < k  # False for NaN and inf
    gain = 1.0 / np.log2(np.where(hit, r, 0.0) + 2.0)
    return np.where(np.isnan(r), np.nan, np.where(hit, gain, 0.0))


def mrr(ranks: npt.ArrayLike, k: int | None = None) -> FloatArray:
    r"""Per-case reciprocal rank :math:`[r < K] / (r + 1)`; without ``k`` no cut-off.

    >>> mrr([0.0, 1.5, np.inf]).tolist()
    [1.0, 0.4, 0.0]
    >>> mrr([3.0, 19.0, 20.0], k=20).tolist()
    [0.25, 0.05, 0.0]
    """
    r = _checked(ranks)
    if k is not None:
        _check_k(k)
        r = np.where(r < k, r, np.where(np.isnan(r), np.nan, np.inf))
    out: FloatArray = 1.0 / (r + 1.0)
    return out


def top_rows(s: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    """Rows of the ``k`` highest scores, best first, ties by row (exact, by partial sort)."""
    k = min(k, s.shape[0])
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-s, k - 1)[:k]
    order: npt.NDArray[np.int64] = part[np.lexsort((part, -s[part]))]
    return order
