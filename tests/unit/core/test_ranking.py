"""The one ranking rule (lsi.core.ranking): hand-computed ranks and metrics with ties and excluded
items, the single and batched versions against each other, torchmetrics without ties, and
the trainers that count on their own arrays against it."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from lsi.core.ranking import (
    expected_rank,
    hit_rate_at_k,
    mrr,
    ndcg_at_k,
    rank_in_row,
    rank_of_target,
    ranks_of_targets,
)

ROW = np.array([0.1, 0.9, 0.5, 0.5, 0.3], dtype=np.float32)


@pytest.mark.parametrize(("target", "rank"), [(1, 0.0), (2, 1.5), (3, 1.5), (4, 3.0), (0, 4.0)])
def test_rank_is_strictly_greater_plus_half_the_ties(target: int, rank: float) -> None:
    assert rank_in_row(ROW, target) == rank
    assert rank_of_target(ROW[None, :], [target]).tolist() == [rank]


def test_excluded_items_leave_the_ranking_but_never_the_target() -> None:
    # target 2 (0.5): 0.9 excluded, the tie 3 excluded -> nothing left above or level
    assert rank_in_row(ROW, 2, exclude=[1, 3]) == 0.0
    assert rank_in_row(ROW, 2, exclude=np.array([False, True, False, False, False])) == 0.5
    assert rank_in_row(ROW, 2, exclude=[2]) == 1.5  # the target itself: ignored
    assert rank_of_target(ROW[None, :], [2], [np.array([1, 3])]).tolist() == [0.0]
    everything = np.ones((1, 5), dtype=np.bool_)
    assert rank_of_target(ROW[None, :], [0], everything).tolist() == [0.0]
    assert everything.all()  # the caller's mask is not modified


def test_a_constant_scorer_ranks_in_the_middle_not_first() -> None:
    assert rank_in_row(np.zeros(5), 3) == 2.0
    np.testing.assert_array_equal(hit_rate_at_k([2.0], 1), [0.0])


def test_expected_rank_from_counts_and_misses() -> None:
    np.testing.assert_array_equal(expected_rank([0, 2, 4], [0, 1, 3]), [0.0, 2.5, 5.5])
    r = expected_rank([1, 9], [0, -1], valid=[True, False])  # a miss's counts are not read
    assert r.tolist() == [1.0, math.inf]
    with pytest.raises(ValueError, match=">= 0"):
        expected_rank([1], [-1])


def test_metrics_by_hand_with_misses_and_cases_not_evaluated() -> None:
    ranks = np.array([0.0, 1.5, 9.0, 10.0, math.inf, math.nan])
    np.testing.assert_array_equal(hit_rate_at_k(ranks, 10), [1, 1, 1, 0, 0, math.nan])
    np.testing.assert_allclose(
        ndcg_at_k(ranks, 10), [1.0, 1 / math.log2(3.5), 1 / math.log2(11), 0.0, 0.0, math.nan]
    )
    np.testing.assert_allclose(mrr(ranks), [1.0, 0.4, 0.1, 1 / 11, 0.0, math.nan])
    np.testing.assert_allclose(mrr(ranks, 10), [1.0, 0.4, 0.1, 0.0, 0.0, math.nan])
    # NDCG@K and HR@K from ranks computed on a tied row with an excluded item
    r = [rank_in_row(ROW, t, exclude=[1]) for t in (2, 4, 0)]  # 0.5, 2.0, 3.0
    assert r == [0.5, 2.0, 3.0]
    np.testing.assert_allclose(ndcg_at_k(r, 3), [1 / math.log2(2.5), 0.5, 0.0])
    np.testing.assert_array_equal(hit_rate_at_k(r, 3), [1.0, 1.0, 0.0])


def test_sentinels_and_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="ranks must be >= 0"):
        ndcg_at_k([-1.0], 10)  # e.g. a MISS sentinel passed as a rank
    with pytest.raises(ValueError, match="K must be"):
        hit_rate_at_k([0.0], 0)
    with pytest.raises(ValueError, match="NaN"):
        rank_in_row([math.nan, 1.0], 1)
    with pytest.raises(ValueError, match="out of range"):
        rank_in_row(ROW, 5)
    with pytest.raises(ValueError, match="exclude mask"):
        rank_in_row(ROW, 0, exclude=np.zeros(3, dtype=np.bool_))


def test_single_and_batched_versions_agree_with_ties_and_exclusions() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, size=(41, 13)).astype(np.float32)  # many ties
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    targets = rng.integers(0, 13, size=41)
    mask = rng.random((41, 13)) < 0.25
    seen = [np.flatnonzero(m) for m in mask]
    single = [rank_in_row(s, int(t), exclude=e) for s, t, e in zip(scores, targets, seen,
                                                                    strict=True)]  # fmt: skip
    for batch_size in (1, 7, 1024):
        np.testing.assert_array_equal(
            rank_of_target(scores, targets, mask, batch_size=batch_size), single
        )
        np.testing.assert_array_equal(
            rank_of_target(scores, targets, seen, batch_size=batch_size), single
        )
    multi = ranks_of_targets(scores, [[t] for t in targets.tolist()], seen)
    np.testing.assert_array_equal(np.concatenate(multi), single)


def test_metrics_agree_with_torchmetrics_without_ties() -> None:
    torch = pytest.importorskip("torch")
    from torchmetrics.functional.retrieval import retrieval_hit_rate, retrieval_normalized_dcg

    rng = np.random.default_rng(11)
    n_cases, n_items = 200, 60
    scores = rng.normal(size=(n_cases, n_items))
    assert all(np.unique(row).shape[0] == n_items for row in scores)  # no ties
    targets = rng.integers(0, n_items, size=n_cases)
    ranks = rank_of_target(scores, targets)
    for k in (1, 5, 10, 20):
        want_ndcg, want_hr = [], []
        for row, t in zip(scores, targets.tolist(), strict=True):
            relevant = torch.zeros(n_items, dtype=torch.bool)
            relevant[t] = True
            preds = torch.from_numpy(row)
            want_ndcg.append(float(retrieval_normalized_dcg(preds, relevant, top_k=k)))
            want_hr.append(float(retrieval_hit_rate(preds, relevant, top_k=k)))
        np.testing.assert_allclose(ndcg_at_k(ranks, k), want_ndcg, rtol=0, atol=1e-6)
        np.testing.assert_allclose(hit_rate_at_k(ranks, k), want_hr, rtol=0, atol=1e-6)
        assert float(ndcg_at_k(ranks, k).mean()) == pytest.approx(np.mean(want_ndcg), abs=1e-6)


def test_the_encoders_early_stopping_uses_the_same_rule() -> None:
    torch = pytest.importorskip("torch")
    from models.training.gate import logprob_ndcg

    inf = math.inf
    logp = torch.tensor(
        [
            [-1.0, -2.0, -2.0, -3.0, -inf],  # target 2 ties with 1: rank 1.5
            [-1.0, -1.0, -1.0, -1.0, -1.0],  # constant: rank 2
            [-1.0, -2.0, -inf, -3.0, -4.0],  # target scored -inf: a miss
            [-1.0, -2.0, -2.0, -3.0, -4.0],  # target unknown (-1): a miss
        ]
    )
    targets = torch.tensor([2, 0, 2, -1])
    want = ndcg_at_k([1.5, 2.0, inf, inf], 10)
    np.testing.assert_allclose(logprob_ndcg(logp, targets), want)
    row = logp[0].numpy()
    assert rank_in_row(row, 2) == 1.5


def test_the_promotion_gates_validation_uses_the_same_rule() -> None:
    from lsi.serving.snapshot import Snapshot
    from models.training.longterm import Log, validate

    # u's items: 'a' and 'b' tie above 'c'; 'old' is u's history (excluded)
    model = Snapshot("v1", ("u",), ("a", "b", "c", "old"), np.ones((1, 1), np.float32),
                          np.array([[5.0], [5.0], [1.0], [100.0]], np.float32),
                          np.array([0, 1], np.int64), np.array([3], np.int32))  # fmt: skip
    log = Log(users=["u", "u"], items=["b", "c"], strength=np.ones(2, np.float32),
              ts=np.ones(2, np.float64))  # fmt: skip
    out = validate(model, log, np.arange(2, dtype=np.int64))
    ranks = [0.5, 2.0]  # 'b': half of the tie with 'a'; 'c': below both
    for k in (5, 10, 20):
        assert out[f"ndcg@{k}"] == pytest.approx(float(ndcg_at_k(ranks, k).mean()))
        assert out[f"hr@{k}"] == 1.0


def test_the_prequential_replays_metrics_read_misses_as_zero() -> None:
    from lsi.evaluation.replay import MISS, NOT_EVALUATED, PrequentialResult

    res = PrequentialResult(ranks=np.array([NOT_EVALUATED, 0, 2, MISS], dtype=np.int32),
                            ts=np.zeros(4), evaluated=3, hits={}, duplicates=0, batches=4,
                            seconds=1.0)  # fmt: skip
    assert res.judged_ranks().tolist() == [0.0, 2.0, math.inf]
    assert res.ndcg(5) == pytest.approx((1.0 + 0.5) / 3)
    assert res.hit_rate(1) == pytest.approx(1 / 3) and res.hit_rate(5) == pytest.approx(2 / 3)


def test_the_module_is_pure() -> None:
    code = "import sys, lsi.core.ranking; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
