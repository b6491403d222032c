r"""Ranking metrics for full-ranking offline evaluation, and paired significance tests.

Protocol. Every evaluated case (a user, or one held-out interaction) has a score for each of
the :math:`N` items in the catalogue and one target item. Its **rank** :math:`r` is 0-based:
the number of candidates scored strictly above the target, plus half the number of other
candidates tied with it. The rank, its tie rule and the per-case HR / NDCG / MRR live in
:mod:`lsi.core.ranking` (re-exported here: :func:`rank_of_target`, :func:`ranks_of_targets`,
:func:`hit_rate_at_k`, :func:`ndcg_at_k`, :func:`mrr`), the one place every caller ranks.
From :math:`r`, per case:

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
the target's mean position when ties are broken uniformly at random
(:func:`lsi.core.ranking.expected_rank`; why, in :mod:`lsi.core.ranking`).

Exclusion. Seen items may be filtered: an excluded candidate counts as scored :math:`-\infty`
and below a target that itself scores :math:`-\infty`. The target is never excluded.

Significance. :func:`paired_bootstrap` and :func:`paired_t_test` compare two scorers case by
case (same cases, same order), e.g. the per-case NDCG@10 of each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from lsi.core.ranking import (
    Exclude,
    exclusion_mask,
    hit_rate_at_k,
    mrr,
    ndcg_at_k,
    rank_of_target,
    ranks_of_targets,
)

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


def _float(ranks: npt.ArrayLike) -> FloatArray:
    return np.asarray(ranks, dtype=np.float64)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"K must be >= 1, got {k}")


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
        mask = exclusion_mask(exclude, slice(start, stop), stop - start, n_items)
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
