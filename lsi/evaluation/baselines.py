"""Baseline recommenders for the offline evaluation, on dense integer ids.

Each baseline follows a tiny river-like verb API and does no I/O: :meth:`learn_one` takes one
interaction ``(user, item, ts, weight)`` with ``0 <= item < n_items``, and :meth:`score_all`
returns one float32 score per catalogue item (higher is better). Nothing is masked: removing
the user's seen items is the evaluation's job. Interactions with ``weight <= 0`` are negative
feedback (``skip``); the count-based baselines ignore them, as :func:`lsi.core.stats.batch_deltas`
does.

* :class:`MostPop`: total weight per item;
* :class:`RecentPop`: weight decayed in event time to the newest interaction seen;
* :class:`CoVisit`: item-to-item co-visitation of each user's sequence plus a popularity
  prior (the statistic of :mod:`lsi.core.stats`, scored as :func:`lsi.core.scoring.score_user`);
* :class:`BiasedMF`: :class:`river.reco.BiasedMF` on implicit feedback with sampled
  negatives.

All are deterministic; :class:`BiasedMF` is seeded.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from river import optim, reco

__all__ = ["BiasedMF", "CoVisit", "MostPop", "RecentPop", "Recommender"]

Scores = npt.NDArray[np.float32]

#: Largest time exponent (in half-lives) kept before re-basing the scaled accumulators.
_REBASE_AT = 256.0


@runtime_checkable
class Recommender(Protocol):
    """What the evaluation needs from a recommender.

    Attributes
    ----------
    name
        Short label for reports.
    """

    name: str

    def learn_one(self, user: int, item: int, ts: float, weight: float = 1.0) -> None:
        """Learn one interaction (test-then-train order is the caller's)."""

    def score_all(self, user: int) -> Scores:
        """Scores of every item, shape ``[n_items]``, float32; higher is better."""


def _check_n_items(n_items: int) -> None:
    if n_items < 1:
        raise ValueError(f"n_items must be at least 1, got {n_items}")


class MostPop:
    """Most popular items: :math:`s(i) = \\sum_{(u, i, w) \\text{ seen}} w` over ``w > 0``.

    Parameters
    ----------
    n_items
        Catalogue size; items are ``0 .. n_items - 1``.

    Examples
    --------
    >>> m = MostPop(3)
    >>> for item in (2, 2, 0):
    ...     m.learn_one(user=0, item=item, ts=0.0)
    >>> m.score_all(user=1).tolist()
    [1.0, 0.0, 2.0]
    """

    name = "mostpop"

    def __init__(self, n_items: int) -> None:
        _check_n_items(n_items)
        self.n_items = n_items
        self.counts = np.zeros(n_items, dtype=np.float64)

    def learn_one(self, user: int, item: int, ts: float, weight: float = 1.0) -> None:
        if weight > 0:
            self.counts[item] += weight

    def score_all(self, user: int) -> Scores:
        return self.counts.astype(np.float32)


class RecentPop:
    """Popularity decayed in event time.

    With half-life :math:`h` and :math:`T` the newest ``ts`` learned,

    .. math::

        s(i) = \\sum_{(u, i, w, t) \\text{ seen}} w \\cdot 2^{-(T - t)/h}.

    Stored as :math:`w \\cdot 2^{(t - t_0)/h}` against a reference :math:`t_0` that moves
    forward only when the exponent grows large, so each update is O(1).

    Parameters
    ----------
    n_items
        Catalogue size.
    half_life_s
        :math:`h` in seconds (default: :attr:`lsi.core.stats.StatsConfig.pop_half_life_s`).

    Examples
    --------
    >>> m = RecentPop(2, half_life_s=10.0)
    >>> m.learn_one(0, 0, ts=0.0)
    >>> m.learn_one(0, 1, ts=10.0)
    >>> m.score_all(0).tolist()
    [0.5, 1.0]
    """

    name = "recentpop"

    def __init__(self, n_items: int, half_life_s: float = 3 * 86400.0) -> None:
        _check_n_items(n_items)
        if half_life_s <= 0:
            raise ValueError(f"half_life_s must be positive, got {half_life_s}")
        self.n_items = n_items
        self.half_life_s = half_life_s
        self._acc = np.zeros(n_items, dtype=np.float64)
        self._t0: float | None = None
        self.latest = float("-inf")

    def learn_one(self, user: int, item: int, ts: float, weight: float = 1.0) -> None:
        if weight <= 0:
            return
        if self._t0 is None:
            self._t0 = ts
        self.latest = max(self.latest, ts)
        if (self.latest - self._t0) / self.half_life_s > _REBASE_AT:
            self._acc *= 2.0 ** (-(self.latest - self._t0) / self.half_life_s)
            self._t0 = self.latest
        self._acc[item] += weight * 2.0 ** ((ts - self._t0) / self.half_life_s)

    def score_all(self, user: int) -> Scores:
        if self._t0 is None:
            return np.zeros(self.n_items, dtype=np.float32)
        scale = float(2.0 ** (-(self.latest - self._t0) / self.half_life_s))
        return (self._acc * scale).astype(np.float32)


class CoVisit:
    """Item-to-item co-visitation over each user's sequence, as in :mod:`lsi.core.stats`.

    When user :math:`u` consumes :math:`j` with weight :math:`w > 0` after their previous
    distinct items :math:`i_1, …, i_W` (newest first), both directions get
    :math:`\\Delta c(i_k, j) = \\Delta c(j, i_k) = w\\, \\gamma^{k-1}`, and weights decay with
    half-life :math:`h` in event time. The score of item :math:`i` for a user whose last
    distinct items are :math:`a_1, …, a_L` is, as in :func:`lsi.core.scoring.score_user`,

    .. math::

        s(i) = (1 - \\beta)\\, \\frac{1}{Z} \\sum_{k=1}^{L} \\rho^{k-1}
               \\frac{c(a_k, i)}{\\sum_j c(a_k, j)} + \\beta\\, \\frac{p(i)}{\\max_j p(j)},

    with :math:`Z` the sum of :math:`\\rho^{k-1}` over anchors that have neighbours and
    :math:`p` the decayed popularity over the whole catalogue (not a top-100 list). A user
    with no such anchor gets the popularity term alone (:math:`\\beta = 1`). Unlike the live
    statistics, neighbour lists are exact (no ``neighbors_max`` cut) unless
    ``neighbors_max`` is set, and negative events are ignored entirely rather than kept in
    the user's sequence.

    Parameters
    ----------
    n_items
        Catalogue size.
    window
        :math:`W`, previous distinct items paired with a new one.
    window_decay
        :math:`\\gamma`.
    half_life_s
        :math:`h` of co-visitation and popularity weights.
    anchors
        :math:`L`, recent distinct items that seed a user's scores.
    anchor_decay
        :math:`\\rho`.
    prior
        :math:`\\beta`, share of the popularity prior.
    neighbors_max
        If set, a neighbour list longer than twice this is cut back to its ``neighbors_max``
        strongest (amortised O(1) per update).

    Examples
    --------
    >>> m = CoVisit(3)
    >>> for item, ts in ((0, 0.0), (1, 1.0)):
    ...     m.learn_one(user=7, item=item, ts=ts)
    >>> m.learn_one(user=8, item=0, ts=2.0)
    >>> int(np.argmax(m.score_all(8)))
    1
    """

    name = "covisit"

    def __init__(
        self,
        n_items: int,
        *,
        window: int = 5,
        window_decay: float = 0.8,
        half_life_s: float = 30 * 86400.0,
        anchors: int = 10,
        anchor_decay: float = 0.7,
        prior: float = 0.1,
        neighbors_max: int | None = None,
    ) -> None:
        _check_n_items(n_items)
        if half_life_s <= 0:
            raise ValueError(f"half_life_s must be positive, got {half_life_s}")
        if not 0.0 <= prior <= 1.0:
            raise ValueError(f"prior must be in [0, 1], got {prior}")
        self.n_items = n_items
        self.window = window
        self.window_decay = window_decay
        self.half_life_s = half_life_s
        self.anchors = anchors
        self.anchor_decay = anchor_decay
        self.prior = prior
        self.neighbors_max = neighbors_max
        # all weights are stored as w * 2**((t - t0) / h): ratios are what scoring reads
        self.neighbors: list[dict[int, float]] = [{} for _ in range(n_items)]
        self._row_total = np.zeros(n_items, dtype=np.float64)
        self._pop = np.zeros(n_items, dtype=np.float64)
        self._t0: float | None = None
        self._latest = float("-inf")
        self._recent: dict[int, list[int]] = {}

    def learn_one(self, user: int, item: int, ts: float, weight: float = 1.0) -> None:
        if weight <= 0:
            return
        if self._t0 is None:
            self._t0 = ts
        self._latest = max(self._latest, ts)
        if (self._latest - self._t0) / self.half_life_s > _REBASE_AT:
            self._rebase(self._latest)
        w = weight * 2.0 ** ((ts - self._t0) / self.half_life_s)
        self._pop[item] += w
        recent = self._recent.setdefault(user, [])
        row_j = self.neighbors[item]
        for i in recent[: self.window]:
            if i != item:
                row_i = self.neighbors[i]
                row_j[i] = row_j.get(i, 0.0) + w
                row_i[item] = row_i.get(item, 0.0) + w
                self._row_total[i] += w
                self._row_total[item] += w
                self._cut(i)
            w *= self.window_decay
        self._cut(item)
        if item in recent:
            recent.remove(item)
        recent.insert(0, item)
        del recent[max(self.window, self.anchors) :]

    def _cut(self, i: int) -> None:
        row = self.neighbors[i]
        if self.neighbors_max is None or len(row) <= 2 * self.neighbors_max:
            return
        keep = sorted(row.items(), key=lambda kv: (-kv[1], kv[0]))[: self.neighbors_max]
        self.neighbors[i] = dict(keep)
        self._row_total[i] = sum(v for _, v in keep)

    def _rebase(self, t: float) -> None:
        assert self._t0 is not None
        f = 2.0 ** (-(t - self._t0) / self.half_life_s)
        for row in self.neighbors:
            for k in row:
                row[k] *= f
        self._row_total *= f
        self._pop *= f
        self._t0 = t

    def score_all(self, user: int) -> Scores:
        scores = np.zeros(self.n_items, dtype=np.float64)
        norm = 0.0
        rho = 1.0
        for a in self._recent.get(user, [])[: self.anchors]:
            total = self._row_total[a]
            row = self.neighbors[a]
            if row and total > 0:
                idx = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
                val = np.fromiter(row.values(), dtype=np.float64, count=len(row))
                scores[idx] += (rho / total) * val
                norm += rho
            rho *= self.anchor_decay
        beta = self.prior if norm > 0 else 1.0
        if norm > 0:
            scores *= (1.0 - beta) / norm
        top = self._pop.max()
        if top > 0 and beta > 0:
            scores += (beta / top) * self._pop
        return scores.astype(np.float32)


class BiasedMF:
    """Biased matrix factorisation (:class:`river.reco.BiasedMF`) on implicit feedback.

    .. math::

        \\hat y(u, i) = \\bar y + b_u + b_i + \\langle \\mathbf{v}_u, \\mathbf{v}_i \\rangle

    trained by SGD on the squared loss. Implicit feedback: each observed interaction is a
    target :math:`y = 1`, followed by ``n_negatives`` items drawn uniformly from the rest of
    the catalogue with :math:`y = 0` (seeded); an interaction with ``weight <= 0`` is a
    single :math:`y = 0` example. :math:`\\bar y` is river's running mean of the targets.

    :meth:`score_all` computes :math:`\\hat y` for the whole catalogue in one matrix-vector
    product from mirrors of river's item weights, refreshed after every river update (river
    updates the weights in place, so the mirrors are exact). It equals
    ``predict_one(user, item)`` for every item the model has learned; an item it has never
    seen scores :math:`\\bar y + b_u` (zero bias and zero vector), where ``predict_one``
    would draw it a random vector. An unknown user likewise scores :math:`\\bar y + b_i`.
    Scoring creates no entries in the model.

    Parameters
    ----------
    n_items
        Catalogue size.
    n_factors
        Latent dimension.
    lr
        SGD learning rate of biases and latent factors.
    l2
        L2 penalty of biases and latent factors.
    n_negatives
        Sampled :math:`y = 0` items per positive.
    init_std
        Standard deviation of the initial latent factors.
    seed
        Seeds the latent initialisation and the negative sampling.
    """

    name = "biasedmf"

    def __init__(
        self,
        n_items: int,
        *,
        n_factors: int = 32,
        lr: float = 0.05,
        l2: float = 0.001,
        n_negatives: int = 4,
        init_std: float = 0.1,
        seed: int = 0,
    ) -> None:
        _check_n_items(n_items)
        if n_negatives < 0:
            raise ValueError(f"n_negatives must be non-negative, got {n_negatives}")
        self.n_items = n_items
        self.n_negatives = n_negatives if n_items > 1 else 0
        # river's estimators are untyped
        self.model: Any = reco.BiasedMF(
            n_factors=n_factors,
            bias_optimizer=optim.SGD(lr),
            latent_optimizer=optim.SGD(lr),
            l2_bias=l2,
            l2_latent=l2,
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=init_std, seed=seed),
            seed=seed,
        )
        self._rng = np.random.default_rng(seed)
        self._item_vecs = np.zeros((n_items, n_factors), dtype=np.float64)
        self._item_bias = np.zeros(n_items, dtype=np.float64)

    def _fit(self, user: int, item: int, y: float) -> None:
        self.model.learn_one(user, item, y)
        self._item_vecs[item] = self.model.i_latents[item]
        self._item_bias[item] = self.model.i_biases[item]

    def learn_one(self, user: int, item: int, ts: float, weight: float = 1.0) -> None:
        if weight <= 0:
            self._fit(user, item, 0.0)
            return
        self._fit(user, item, 1.0)
        if self.n_negatives:
            draws = self._rng.integers(0, self.n_items - 1, size=self.n_negatives)
            for j in draws.tolist():
                self._fit(user, j + 1 if j >= item else j, 0.0)

    def score_all(self, user: int) -> Scores:
        m = self.model
        base = float(m.global_mean.get()) + float(m.u_biases.get(user, 0.0))
        scores = self._item_bias + base
        vec = m.u_latents.get(user)
        if vec is not None:
            scores = scores + self._item_vecs @ vec
        return scores.astype(np.float32)
