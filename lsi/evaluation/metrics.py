r"""Ranking metrics for full-ranking offline evaluation, and paired significance tests.

Protocol. Every evaluated case (a user, or one held-out interaction) has a score for each of
the :math:`N` items in the catalogue and one target item. Its **rank** :math:`r` is 0-based:
the number of candidates scored strictly above the target, plus half the number of other
candidates tied with it (:func:`rank_of_target`). From :math:`r`, per case:

.. math::

    \mathrm{HR@}K = [r < K] \qquad
    \mathrm{NDCG@}K = \frac{[r < K]}{\log_2(r + 2)} \qquad
    \mathrm{MRR} = \frac{1}{r + 1} \qquad
    \mathrm{Recall@}K = \frac{|\{t \in T : r_t < K\}|}{|T|}

(one target: Recall@K = HR@K; the ideal DCG of one target is 1, so NDCG needs no
normaliser). A rank of ``NaN`` marks a case that could not be evaluated (no target); every
metric of it is ``NaN`` and :func:`summarize` leaves it out of the means.

Ties. Candidates whose score equals the target's are counted at their **expected** share,
:math:`r = g + e/2` with :math:`g` strictly greater and :math:`e` equal (target excluded):
the target's mean position when ties are broken uniformly at random. Counting only :math:`g`
(optimistic) gives a constant scorer rank 0 and HR = 1 on every case; counting :math:`g + e`
(pessimistic) punishes coarse but honest scores. The metrics are then evaluated at this
expected rank, a point estimate: for a scorer with a few ties it equals the expected metric,
for a constant scorer it gives HR@K = 0 where random tie-breaking would give :math:`K/N`.

Exclusion. Seen items may be filtered: an excluded candidate counts as scored :math:`-\infty`
and below a target that itself scores :math:`-\infty`. The target is never excluded.

Significance. :func:`paired_bootstrap` and :func:`paired_t_test` compare two scorers case by
case (same cases, same order), e.g. the per-case NDCG@10 of each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_KS",
    "Exclude",
    "case_metrics",
    "coverage_at_k",
    "hit_rate_at_k",
    "mrr",
    "ndcg_at_k",
    "paired_bootstrap",
    "paired_t_test",
    "rank_of_target",
    "ranks_of_targets",
    "recall_at_k",
    "student_t_sf",
    "summarize",
    "top_k",
]

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Exclude: TypeAlias = npt.NDArray[np.bool_] | Sequence[npt.NDArray[np.integer]]
"""Items to filter per row: a boolean mask ``[n_rows, n_items]``, or one array of item
indices per row (e.g. the ``seen`` items of :mod:`lsi.evaluation.splits`)."""


def _exclusion_block(
    exclude: Exclude | None, rows: IntArray | slice, n_rows: int, n_items: int
) -> npt.NDArray[np.bool_] | None:
    if exclude is None:
        return None
    if isinstance(exclude, np.ndarray):
        if exclude.ndim != 2 or exclude.shape[1] != n_items:
            raise ValueError(f"exclude mask must be [n_rows, {n_items}], got {exclude.shape}")
        return np.array(exclude[rows], dtype=np.bool_)  # a copy: the target bit is cleared
    picked = range(len(exclude))[rows] if isinstance(rows, slice) else rows.tolist()
    arrays = [np.asarray(exclude[i], dtype=np.int64) for i in picked]
    mask = np.zeros((n_rows, n_items), dtype=np.bool_)
    if arrays:
        cols = np.concatenate(arrays)
        mask[np.repeat(np.arange(n_rows), [a.shape[0] for a in arrays]), cols] = True
    return mask


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
    return np.asarray(n_greater + 0.5 * n_equal, dtype=np.float64)


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
        mask = _exclusion_block(exclude, sel, stop - start, n_items)
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


def _float(ranks: npt.ArrayLike) -> FloatArray:
    return np.asarray(ranks, dtype=np.float64)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"K must be >= 1, got {k}")


def hit_rate_at_k(ranks: npt.ArrayLike, k: int) -> FloatArray:
    r"""Per-case :math:`\mathrm{HR@}K = [r < K]` (``NaN`` rank → ``NaN``)."""
    _check_k(k)
    r = _float(ranks)
    return np.where(np.isnan(r), np.nan, (r < k).astype(np.float64))


def ndcg_at_k(ranks: npt.ArrayLike, k: int) -> FloatArray:
    r"""Per-case :math:`\mathrm{NDCG@}K = [r < K] / \log_2(r + 2)` for one target."""
    _check_k(k)
    r = _float(ranks)
    gain = 1.0 / np.log2(np.where(np.isnan(r), 0.0, r) + 2.0)
    return np.where(np.isnan(r), np.nan, np.where(r < k, gain, 0.0))


def mrr(ranks: npt.ArrayLike) -> FloatArray:
    r"""Per-case reciprocal rank :math:`1 / (r + 1)`, no cut-off."""
    return 1.0 / (_float(ranks) + 1.0)


def recall_at_k(ranks: npt.NDArray[np.floating] | Sequence[npt.ArrayLike], k: int) -> FloatArray:
    r"""Per-case :math:`\mathrm{Recall@}K = |\{t : r_t < K\}| / |T|`.

    Args:
        ranks: a 1-D array with one target's rank per case (then Recall@K = HR@K), or one
            array of target ranks per case (:func:`ranks_of_targets`); a case with no
            targets gets ``NaN``.
    """
    _check_k(k)
    if isinstance(ranks, np.ndarray) and ranks.ndim == 1:
        return hit_rate_at_k(ranks, k)
    rows = list(ranks)  # a 2-D array: one row of target ranks per case
    out = np.full(len(rows), np.nan, dtype=np.float64)
    for i, row in enumerate(rows):
        r = _float(row).reshape(-1)
        if r.shape[0] and not np.isnan(r).any():
            out[i] = np.count_nonzero(r < k) / r.shape[0]
    return out


def case_metrics(ranks: npt.ArrayLike, ks: Sequence[int] = DEFAULT_KS) -> dict[str, FloatArray]:
    """Every per-case metric of single-target ranks: ``HR@K``, ``NDCG@K``, ``Recall@K`` for
    each K, and ``MRR``. K may exceed the catalogue (every case then hits)."""
    r = _float(ranks)
    out: dict[str, FloatArray] = {}
    for k in ks:
        out[f"HR@{k}"] = hit_rate_at_k(r, k)
        out[f"NDCG@{k}"] = ndcg_at_k(r, k)
        out[f"Recall@{k}"] = recall_at_k(r, k)
    out["MRR"] = mrr(r)
    return out


def summarize(per_case: Mapping[str, npt.ArrayLike]) -> dict[str, float]:
    """Mean of each per-case metric over the evaluated cases (``NaN`` cases left out; a
    metric with no evaluated case is ``NaN``)."""
    out: dict[str, float] = {}
    for name, values in per_case.items():
        v = _float(values)
        v = v[~np.isnan(v)]
        out[name] = float(v.mean()) if v.shape[0] else math.nan
    return out


def top_k(
    scores: npt.NDArray[np.floating],
    k: int,
    exclude: Exclude | None = None,
    *,
    batch_size: int = 1024,
) -> IntArray:
    """The ``k`` best items per row, best first: ``[n_rows, min(k, n_items)]`` int64.

    Ties are ordered by item index, except at the K boundary, where ``np.argpartition``
    decides. Excluded items are never listed: a row with fewer than ``k`` candidates is
    padded with ``-1``.
    """
    _check_k(k)
    n_rows, n_items = scores.shape
    if exclude is not None and len(exclude) != n_rows:
        raise ValueError(f"exclude must have one row per score row ({n_rows})")
    k = min(k, n_items)
    out = np.empty((n_rows, k), dtype=np.int64)
    for start in range(0, n_rows, batch_size):
        stop = min(start + batch_size, n_rows)
        block = np.array(scores[start:stop], dtype=np.float64)
        mask = _exclusion_block(exclude, slice(start, stop), stop - start, n_items)
        if mask is not None:
            block[mask] = -np.inf
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        picked = np.take_along_axis(block, part, axis=1)
        order = np.lexsort((part, -picked), axis=1)
        best = np.take_along_axis(part, order, axis=1)
        if mask is not None:
            best[np.take_along_axis(mask, best, axis=1)] = -1
        out[start:stop] = best
    return out


def coverage_at_k(
    topk_lists: npt.NDArray[np.integer] | Sequence[npt.ArrayLike], n_items: int
) -> float:
    r"""Catalogue coverage: :math:`|\bigcup_u \mathrm{top}_K(u)| / N`.

    Args:
        topk_lists: ``[n_rows, K]`` item indices (e.g. from :func:`top_k`) or one array per
            row; negative entries are padding and ignored.
        n_items: catalogue size :math:`N`.
    """
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    if isinstance(topk_lists, np.ndarray):
        flat = topk_lists.astype(np.int64).reshape(-1)
    else:
        parts = [np.asarray(x, dtype=np.int64).reshape(-1) for x in topk_lists]
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    flat = flat[flat >= 0]
    if np.any(flat >= n_items):
        raise ValueError(f"item index out of range (catalogue has {n_items} items)")
    return float(np.unique(flat).shape[0] / n_items)


def _paired(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    x, y = _float(a), _float(b)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired samples must be 1-D and equal in shape, got {x.shape}, {y.shape}")
    d = x - y
    return d[~np.isnan(d)]  # a case missing on either side is left out


def paired_bootstrap(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    n: int = 2000,
    seed: int = 0,
    *,
    confidence: float = 0.95,
) -> tuple[float, float, float, float]:
    r"""Paired bootstrap of the mean difference :math:`\bar d = \overline{a - b}`.

    Resamples the cases with replacement ``n`` times; the interval is the percentile
    interval of the resampled means :math:`\bar d^*`; the two-sided p-value is that of the
    shifted (null) distribution,
    :math:`p = (1 + |\{\,|\bar d^* - \bar d| \ge |\bar d|\,\}|) / (n + 1)`, so never 0.
    Pairs with ``NaN`` on either side are left out.

    Returns:
        ``(mean_diff, ci_low, ci_high, p_value)``.
    """
    d = _paired(a, b)
    if d.shape[0] == 0:
        raise ValueError("paired_bootstrap needs at least one pair without NaN")
    if n < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need n >= 1 and 0 < confidence < 1, got n={n}, {confidence}")
    rng = np.random.default_rng(seed)
    mean = float(d.mean())
    means = np.empty(n, dtype=np.float64)
    chunk = max(1, 2_000_000 // d.shape[0])  # bounds the [chunk, cases] index matrix
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        idx = rng.integers(0, d.shape[0], size=(stop - start, d.shape[0]))
        means[start:stop] = d[idx].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    # the tolerance keeps resampled means equal to the observed one (rounding) as extreme
    extreme = np.count_nonzero(np.abs(means - mean) >= abs(mean) - 1e-12)
    return mean, float(low), float(high), float((1 + extreme) / (n + 1))


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        even = m * (b - m) * x / ((qam + m2) * (a + m2))
        odd = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        for num in (even, odd):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def _betainc(a: float, b: float, x: float) -> float:
    r"""Regularized incomplete beta :math:`I_x(a, b)` (Numerical Recipes §6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    log_front = a * math.log(x) + b * math.log1p(-x) - log_beta
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def student_t_sf(t: float, df: float) -> float:
    r"""Survival function :math:`P(T > t)` of Student's t with ``df`` degrees of freedom.

    Exact for every ``df`` via :math:`P(|T| > |t|) = I_{df/(df+t^2)}(df/2, 1/2)`.

    >>> round(2 * student_t_sf(2.0, 10), 4)
    0.0734
    """
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df}")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def paired_t_test(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[float, float]:
    r"""Paired Student t-test of :math:`H_0: E[a - b] = 0`, two-sided.

    :math:`t = \bar d / (s_d / \sqrt{n})` with :math:`s_d` the sample standard deviation
    (ddof 1), :math:`p = 2\,P(T_{n-1} > |t|)` (:func:`student_t_sf`, exact). Pairs with
    ``NaN`` on either side are left out. Identical samples give ``(0.0, 1.0)``; a constant
    non-zero difference gives ``(±inf, 0.0)``.

    Returns:
        ``(t, p_value)``.
    """
    d = _paired(a, b)
    n = d.shape[0]
    if n < 2:
        raise ValueError(f"paired_t_test needs at least 2 pairs without NaN, got {n}")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        return (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    t = mean / (sd / math.sqrt(n))
    return t, min(1.0, 2.0 * student_t_sf(abs(t), n - 1))
