"""Full-ranking metrics and paired tests against hand-computed cases and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lsi.evaluation.measures import (
    case_metrics,
    coverage_at_k,
    hit_rate_at_k,
    mrr,
    ndcg_at_k,
    paired_bootstrap,
    paired_t_test,
    rank_of_target,
    ranks_of_targets,
    recall_at_k,
    student_t_sf,
    summarize,
    top_k,
)

SCORES = np.array([[0.1, 0.9, 0.5, 0.5]], dtype=np.float32)


@pytest.mark.parametrize(("target", "rank"), [(1, 0.0), (2, 1.5), (3, 1.5), (0, 3.0)])
def test_rank_counts_strictly_greater_plus_half_the_ties(target: int, rank: float) -> None:
    assert rank_of_target(SCORES, [target]).tolist() == [rank]


def test_constant_scorer_gets_the_expected_middle_rank_not_rank_zero() -> None:
    scores = np.zeros((3, 5), dtype=np.float32)
    ranks = rank_of_target(scores, [0, 2, 4])
    assert ranks.tolist() == [2.0, 2.0, 2.0]
    assert hit_rate_at_k(ranks, 1).tolist() == [0.0, 0.0, 0.0]


def test_rank_matches_brute_force_with_ties_masks_and_small_batches() -> None:
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 4, size=(37, 11)).astype(np.float32)  # many ties
    targets = rng.integers(0, 11, size=37)
    mask = rng.random((37, 11)) < 0.3
    expected = []
    for row, t, m in zip(scores, targets, mask, strict=True):
        others = [j for j in range(11) if j != t and not m[j]]
        greater = sum(row[j] > row[t] for j in others)
        equal = sum(row[j] == row[t] for j in others)
        expected.append(greater + equal / 2)
    as_lists = [np.flatnonzero(m) for m in mask]
    for batch_size in (1, 5, 1024):
        got_mask = rank_of_target(scores, targets, mask, batch_size=batch_size)
        got_list = rank_of_target(scores, targets, as_lists, batch_size=batch_size)
        np.testing.assert_array_equal(got_mask, expected)
        np.testing.assert_array_equal(got_list, expected)


def test_exclusion_never_removes_the_target() -> None:
    everything = np.ones((1, 4), dtype=np.bool_)
    assert rank_of_target(SCORES, [0], everything).tolist() == [0.0]
    assert rank_of_target(SCORES, [0], [np.array([0, 1, 2])]).tolist() == [1.0]
    assert everything.all()  # the caller's mask is not modified


def test_excluded_items_rank_below_a_target_scored_minus_inf() -> None:
    scores = np.array([[-np.inf, -np.inf, -np.inf, 1.0]], dtype=np.float32)
    # item 1 ties with the target, item 2 is excluded, item 3 is above
    assert rank_of_target(scores, [0], [np.array([2])]).tolist() == [1.5]


def test_negative_target_marks_a_case_without_evaluation() -> None:
    scores = np.zeros((2, 3), dtype=np.float32)
    ranks = rank_of_target(scores, [-1, 0])
    assert math.isnan(ranks[0]) and ranks[1] == 1.0
    per_case = case_metrics(ranks)
    assert math.isnan(per_case["NDCG@10"][0])
    assert summarize(per_case)["HR@5"] == 1.0  # the NaN case is left out of the mean


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        rank_of_target(np.array([[np.nan, 1.0]]), [1])
    with pytest.raises(ValueError, match="out of range"):
        rank_of_target(SCORES, [4])
    with pytest.raises(ValueError, match="targets must be"):
        rank_of_target(SCORES, [0, 1])
    with pytest.raises(ValueError, match="one row per score row"):
        rank_of_target(SCORES, [0], [np.array([1]), np.array([2])])


def test_metric_formulas_by_hand() -> None:
    ranks = np.array([0.0, 1.0, 1.5, 9.0, 10.0])
    np.testing.assert_allclose(hit_rate_at_k(ranks, 10), [1, 1, 1, 1, 0])
    np.testing.assert_allclose(
        ndcg_at_k(ranks, 10), [1.0, 1 / math.log2(3), 1 / math.log2(3.5), 1 / math.log2(11), 0.0]
    )
    np.testing.assert_allclose(mrr(ranks), [1.0, 0.5, 0.4, 0.1, 1 / 11])
    np.testing.assert_array_equal(recall_at_k(ranks, 10), hit_rate_at_k(ranks, 10))


def test_k_larger_than_the_catalogue_hits_every_case() -> None:
    scores = np.array([[0.3, 0.2, 0.1]], dtype=np.float32)
    metrics = summarize(case_metrics(rank_of_target(scores, [2]), ks=(20,)))
    assert metrics["HR@20"] == 1.0
    assert metrics["NDCG@20"] == pytest.approx(0.5)  # rank 2 → 1 / log2(4)
    assert metrics["MRR"] == pytest.approx(1 / 3)
    assert top_k(scores, 20).tolist() == [[0, 1, 2]]


def test_multi_target_recall_counts_hits_over_targets() -> None:
    scores = np.array([[0.9, 0.8, 0.1, 0.5], [0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
    ranks = ranks_of_targets(scores, [[0, 2], []])
    assert ranks[0].tolist() == [0.0, 3.0] and ranks[1].shape == (0,)
    recall = recall_at_k(ranks, 2)
    assert recall[0] == 0.5 and math.isnan(recall[1])  # a user without targets: no case
    masked = ranks_of_targets(scores, [[0, 2], [3]], [np.array([1, 3]), np.array([3])])
    assert masked[0].tolist() == [0.0, 1.0] and masked[1].tolist() == [0.0]


def test_summarize_means_and_all_nan_metric() -> None:
    out = summarize({"HR@10": np.array([1.0, 0.0, 1.0, 0.0]), "MRR": np.array([np.nan])})
    assert out["HR@10"] == 0.5 and math.isnan(out["MRR"])
    assert set(case_metrics(np.array([0.0]))) == {
        *(f"{m}@{k}" for m in ("HR", "NDCG", "Recall") for k in (5, 10, 20)),
        "MRR",
    }


def test_top_k_orders_by_score_then_item_and_pads_excluded() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.1], [1.0, 1.0, 1.0, 1.0]], dtype=np.float32)
    assert top_k(scores, 3).tolist() == [[1, 0, 2], [0, 1, 2]]
    assert top_k(scores, 3, [np.array([0, 1, 2]), np.array([3])]).tolist() == [
        [3, -1, -1],
        [0, 1, 2],
    ]


def test_coverage_share_of_catalogue_in_any_list() -> None:
    assert coverage_at_k(np.array([[0, 1], [1, 2]]), 10) == pytest.approx(0.3)
    assert coverage_at_k([np.array([4, -1]), np.array([], dtype=np.int64)], 5) == 0.2
    with pytest.raises(ValueError, match="out of range"):
        coverage_at_k(np.array([[5]]), 5)


def test_bootstrap_and_t_test_on_identical_samples() -> None:
    a = np.random.default_rng(1).random(200)
    assert paired_bootstrap(a, a.copy()) == (0.0, 0.0, 0.0, 1.0)
    assert paired_t_test(a, a.copy()) == (0.0, 1.0)


def test_bootstrap_and_t_test_detect_a_clear_difference() -> None:
    rng = np.random.default_rng(2)
    b = rng.random(500)
    a = b + 0.1 + 0.05 * rng.standard_normal(500)
    diff, low, high, p = paired_bootstrap(a, b, n=2000, seed=0)
    assert 0.0 < low < diff < high and p < 0.01
    assert paired_bootstrap(a, b, seed=0) == (diff, low, high, p)  # seeded
    t, p_t = paired_t_test(a, b)
    assert t > 10 and p_t < 0.01
    assert paired_t_test(b, a)[0] == pytest.approx(-t)


def test_t_test_p_value_against_known_values() -> None:
    assert 2 * student_t_sf(2.0, 10) == pytest.approx(0.0734, abs=1e-3)
    assert 2 * student_t_sf(2.228, 10) == pytest.approx(0.05, abs=1e-4)
    assert student_t_sf(1.0, 1) == pytest.approx(0.25)  # Cauchy
    assert student_t_sf(-1.0, 5) == pytest.approx(1 - student_t_sf(1.0, 5))
    assert 2 * student_t_sf(1.959964, 1e6) == pytest.approx(0.05, abs=1e-4)  # → normal
    # a paired sample whose t statistic is exactly 2.0 with df = 10
    base = np.arange(11, dtype=np.float64)
    base -= base.mean()
    d = base + 2.0 * base.std(ddof=1) / math.sqrt(11)
    t, p = paired_t_test(d, np.zeros(11))
    assert t == pytest.approx(2.0) and p == pytest.approx(0.0734, abs=1e-3)


def test_constant_nonzero_difference_and_nan_pairs() -> None:
    assert paired_t_test([2.0, 2.0, 2.0], [1.0, 1.0, 1.0]) == (math.inf, 0.0)
    with pytest.raises(ValueError, match="at least 2"):
        paired_t_test([1.0, np.nan], [0.0, 0.0])
