"""Baseline recommenders of the offline evaluation, on synthetic data."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest

from lsi.evaluation.baselines import BiasedMF, CoVisit, MostPop, RecentPop, Recommender


def test_every_baseline_is_a_recommender_with_full_catalogue_scores() -> None:
    for model in (MostPop(5), RecentPop(5), CoVisit(5), BiasedMF(5, seed=1)):
        assert isinstance(model, Recommender)
        model.learn_one(0, 1, 0.0)
        scores = model.score_all(0)
        assert scores.shape == (5,) and scores.dtype == np.float32
        assert model.name


def test_mostpop_ranks_by_count_and_ignores_negative_feedback() -> None:
    m = MostPop(4)
    for item in (3, 3, 3, 1, 1, 0):
        m.learn_one(0, item, 0.0)
    m.learn_one(1, 2, 0.0, weight=-1.0)
    assert list(np.argsort(-m.score_all(9), kind="stable")) == [3, 1, 0, 2]
    assert m.score_all(9).tolist() == [1.0, 2.0, 0.0, 3.0]


def test_recentpop_prefers_recent_items_and_decays_by_half_life() -> None:
    m = RecentPop(3, half_life_s=100.0)
    for _ in range(3):
        m.learn_one(0, 0, ts=0.0)  # three old events
    m.learn_one(1, 1, ts=1000.0)  # one recent: 3 * 2**-10 < 1
    s = m.score_all(2)
    assert int(np.argmax(s)) == 1
    assert s[0] == pytest.approx(3 * 2**-10) and s[1] == pytest.approx(1.0) and s[2] == 0.0


def test_recentpop_rebases_without_overflow_over_long_spans() -> None:
    m = RecentPop(2, half_life_s=1.0)
    m.learn_one(0, 0, ts=0.0)
    m.learn_one(0, 1, ts=5000.0)  # 5000 half-lives: 2**5000 would overflow a float
    s = m.score_all(0)
    assert np.isfinite(s).all() and s[1] == pytest.approx(1.0) and s[0] == 0.0


def test_covisit_recommends_the_item_that_followed_the_users_last_item() -> None:
    m = CoVisit(6)
    # many users go 0 -> 1 and 2 -> 3; item 5 is the most popular overall
    for u in range(10):
        m.learn_one(u, 0, float(u))
        m.learn_one(u, 1, float(u) + 0.5)
    for u in range(10, 13):
        m.learn_one(u, 2, float(u))
        m.learn_one(u, 3, float(u) + 0.5)
    for u in range(20, 40):
        m.learn_one(u, 5, 50.0)
    m.learn_one(99, 2, 60.0)
    assert int(np.argmax(m.score_all(99))) == 3
    m.learn_one(98, 0, 61.0)
    assert int(np.argmax(m.score_all(98))) == 1
    # no anchors: the popularity prior alone ranks
    assert int(np.argmax(m.score_all(12345))) == 5


def test_covisit_weights_follow_lsi_stats_window_decay() -> None:
    m = CoVisit(4, window=2, window_decay=0.5, half_life_s=1e12)
    for n, item in enumerate((0, 1, 2)):
        m.learn_one(0, item, float(n))
    # 2 after [1, 0]: c(1,2) += 1, c(0,2) += 0.5; 1 after [0]: c(0,1) += 1
    assert m.neighbors[2] == pytest.approx({1: 1.0, 0: 0.5})
    assert m.neighbors[0] == pytest.approx({1: 1.0, 2: 0.5})


def test_covisit_neighbors_max_bounds_rows() -> None:
    m = CoVisit(50, window=1, neighbors_max=3)
    for n in range(1, 50):
        m.learn_one(n, 0, 0.0)
        m.learn_one(n, n, 1.0)
    assert len(m.neighbors[0]) <= 6


def _blocks(
    n_users: int = 60, n_blocks: int = 4, block: int = 10, per_user: int = 8, seed: int = 3
) -> tuple[list[tuple[int, int]], dict[int, int], int]:
    """Users of block b consume only items of block b; one held-out item per user."""
    rng = np.random.default_rng(seed)
    train: list[tuple[int, int]] = []
    held: dict[int, int] = {}
    for u in range(n_users):
        b = u % n_blocks
        items = rng.permutation(block)[: per_user + 1] + b * block
        train += [(u, int(i)) for i in items[:-1]]
        held[u] = int(items[-1])
    order = rng.permutation(len(train))
    return [train[k] for k in order], held, n_blocks * block


def _hr_at_10(scores_of: dict[int, np.ndarray], train: list[tuple[int, int]], held: dict[int, int]) -> float:  # fmt: skip
    seen: dict[int, set[int]] = {}
    for u, i in train:
        seen.setdefault(u, set()).add(i)
    hits = 0
    for u, target in held.items():
        s = scores_of[u].astype(np.float64).copy()
        s[list(seen[u])] = -np.inf
        hits += int((s > s[target]).sum() < 10)
    return hits / len(held)


def test_biasedmf_learns_block_structure_better_than_random() -> None:
    train, held, n_items = _blocks()
    mf = BiasedMF(n_items, n_factors=8, lr=0.05, n_negatives=4, seed=0)
    for _ in range(15):
        for u, i in train:
            mf.learn_one(u, i, 0.0)
    rng = np.random.default_rng(0)
    hr_mf = _hr_at_10({u: mf.score_all(u) for u in held}, train, held)
    hr_random = _hr_at_10({u: rng.random(n_items) for u in held}, train, held)
    # 32 unseen items, 2 of them in the user's block: random HR@10 ~ 10/32
    assert hr_mf >= 0.9 and hr_random <= 0.5 and hr_mf > hr_random + 0.4


def test_biasedmf_is_seeded_and_score_all_equals_river_predict_one() -> None:
    train, _, n_items = _blocks(n_users=12)

    def fit(seed: int) -> BiasedMF:
        mf = BiasedMF(n_items, n_factors=4, seed=seed)
        for u, i in train:
            mf.learn_one(u, i, 0.0)
        return mf

    a, b = fit(7), fit(7)
    assert np.array_equal(a.score_all(0), b.score_all(0))
    assert not np.array_equal(a.score_all(0), fit(8).score_all(0))
    river = copy.deepcopy(a.model)  # predict_one creates entries: query a copy
    learned = sorted(river.i_latents)
    want = np.array([river.predict_one(0, i) for i in learned], dtype=np.float32)
    np.testing.assert_allclose(a.score_all(0)[learned], want, rtol=1e-5, atol=1e-6)
    assert len(a.model.i_latents) == len(learned)  # scoring created nothing


def test_biasedmf_unknown_user_scores_mean_plus_item_bias() -> None:
    mf = BiasedMF(3, n_negatives=0, seed=0)
    mf.learn_one(0, 2, 0.0)
    s = mf.score_all(42)
    mean = mf.model.global_mean.get()
    assert s[0] == pytest.approx(mean) and s[2] == pytest.approx(mean + mf.model.i_biases[2])
    assert 42 not in mf.model.u_latents


@pytest.mark.parametrize("make", [MostPop, RecentPop, CoVisit, lambda n: BiasedMF(n, seed=2)])
def test_pickle_round_trip_then_learning_stays_identical(make: Any) -> None:
    train, _, n_items = _blocks(n_users=8)
    a = make(n_items)
    for n, (u, i) in enumerate(train[:30]):
        a.learn_one(u, i, float(n))
    b = pickle.loads(pickle.dumps(a))
    for n, (u, i) in enumerate(train[30:], start=30):
        a.learn_one(u, i, float(n))
        b.learn_one(u, i, float(n))
    assert np.array_equal(a.score_all(3), b.score_all(3))


def test_doctests_pin_the_examples() -> None:
    import doctest

    import lsi.evaluation.baselines as mod

    result = doctest.testmod(mod)
    assert result.failed == 0 and result.attempted >= 10
