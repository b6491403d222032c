"""Candidate retrieval (:mod:`lsi.serving.retrieval`), the exact re-ranking of the candidates
(:mod:`lsi.serving.rerank`) and how the fused scorer chooses between them (:mod:`lsi.serving.fusion`).
`lsi bench catalogue`, which measures them, runs in ``tests/component/test_bench_catalogue.py``
(slow)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from lsi.bench.catalogue import synthetic_snapshot
from lsi.core.snapshot_view import SeqRequest
from lsi.errors import ConfigError
from lsi.serving.fusion import SequenceModel, scorer_from_config
from lsi.serving.rerank import fuse_candidates
from lsi.serving.retrieval import (
    CandidateIndex,
    CandidateRetriever,
    ExactIndex,
    IVFIndex,
    RetrievalConfig,
    build_index,
    recall_at,
)
from lsi.serving.snapshot import Snapshot
from models.nn.sequence import fuse
from tests.threads import one_thread  # noqa: F401  (an autouse fixture)
from tests.unit.serving.test_fusion import CONFIG, ITEMS, long_model, seq_model

BACKENDS = ("exact", "ivf")


def clustered(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Item vectors in ``n / 100`` clusters with popularity-like norms, and 50 queries near
    the cluster centres (the structure trained embeddings have)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(8, n // 100), d)).astype(np.float32)
    x = centres[rng.integers(0, centres.shape[0], n)] + 0.5 * rng.standard_normal((n, d))
    x *= rng.uniform(0.5, 1.5, (n, 1))
    q = centres[rng.integers(0, centres.shape[0], 50)] + 0.5 * rng.standard_normal((50, d))
    return x.astype(np.float32), q.astype(np.float32)


def make_index(kind: str, x: np.ndarray, ids: np.ndarray | None = None) -> CandidateIndex:
    if kind == "exact":
        return ExactIndex(x, ids)
    return IVFIndex(x, RetrievalConfig(mode="ann", nprobe=64), ids)


# -- the index: one suite for both backends ---------------------------------------------------
@pytest.mark.parametrize("kind", BACKENDS)
def test_an_index_returns_the_best_items_first_and_never_an_excluded_one(kind: str) -> None:
    x, q = clustered(4000, 16)
    ids = np.arange(4000, dtype=np.int64) * 3 + 7  # ids are the caller's, not positions
    index = make_index(kind, x, ids)
    assert index.n_items == 4000
    exclude = [ids[np.argsort(-(x @ q[b]))[:5]] for b in range(q.shape[0])]  # each one's top 5
    found = index.search(q, 20, exclude)
    assert found.shape == (50, 20)
    scores = {int(j): p for p, j in enumerate(ids.tolist())}
    for b in range(q.shape[0]):
        assert not set(found[b].tolist()) & set(exclude[b].tolist())
        s = x[[scores[int(j)] for j in found[b]]] @ q[b]
        assert np.all(np.diff(s) <= 1e-5)  # best first
    truth = ExactIndex(x, ids).search(q, 20, exclude)
    assert recall_at(found, truth) >= 0.95


@pytest.mark.parametrize("kind", BACKENDS)
def test_an_index_pads_with_minus_one_past_its_items(kind: str) -> None:
    x, q = clustered(40, 8)
    found = make_index(kind, x).search(q[:2], 50, [np.arange(30, dtype=np.int64)] * 2)
    assert sorted(found[0][found[0] >= 0].tolist()) == list(range(30, 40))
    assert np.all(found[:, 10:] == -1)


@pytest.mark.parametrize("excluded_top", [0, 5, 30])
def test_one_batched_ivf_search_finds_what_a_search_skipping_the_excluded_finds(
    excluded_top: int,
) -> None:
    """The batched search drops excluded ids from a wider answer; a row that loses too many
    (each query's best 30 excluded, k = 20: 20 more are not enough) is searched again with a
    faiss selector. Either way: the ids a per-query search with the selector gives."""
    x, q = clustered(4000, 16, seed=2)
    ids = np.arange(4000, dtype=np.int64) * 3 + 7
    index = IVFIndex(x, RetrievalConfig(mode="ann", nprobe=8), ids)
    rng = np.random.default_rng(3)
    exclude = [
        np.concatenate(
            [ids[np.argsort(-(x @ q[b]))[:excluded_top]], rng.choice(ids, 50, replace=False)]
        )
        for b in range(q.shape[0])
    ]
    found = index.search(q, 20, exclude)
    for b in range(q.shape[0]):
        alone = index._search_without(q[b : b + 1], 20, exclude[b])
        assert found[b].tolist() == alone.tolist()
        assert not set(found[b].tolist()) & set(exclude[b].tolist())


def test_the_candidates_are_the_sorted_union_of_both_indexes_without_the_excluded() -> None:
    x, q = clustered(3000, 16, seed=4)
    long_x, long_q = clustered(2000, 8, seed=5)
    long_ids = np.arange(1000, 3000, dtype=np.int64)  # the long-term side knows rows 1000+
    ret = CandidateRetriever.build(x, long_x, long_ids, RetrievalConfig(mode="ann", candidates=40))
    known = np.arange(q.shape[0]) % 3 != 0  # a third of the requests have no long-term vector
    exclude = [np.arange(b, 3000, 97, dtype=np.int64) for b in range(q.shape[0])]
    found = ret.candidates(q, long_q[: q.shape[0]], known, exclude)
    short = ret.short.search(q, 40, exclude)
    assert ret.long is not None
    for b in range(q.shape[0]):
        want = set(short[b][short[b] >= 0].tolist())
        if known[b]:
            got_long = ret.long.search(long_q[b : b + 1], 40, [exclude[b]])[0]
            want |= set(got_long[got_long >= 0].tolist())
        assert found[b].tolist() == sorted(want)  # each id once, in order
        assert not set(found[b].tolist()) & set(exclude[b].tolist())


def test_ivf_recall_at_100_against_exact_search() -> None:
    x, q = clustered(20_000, 32, seed=1)
    ivf = IVFIndex(x, RetrievalConfig(mode="ann"))
    assert ivf.nlist == 512 and ivf.nprobe == 32  # ceil(4 sqrt(I)) <= I / 39, default probes
    assert recall_at(ivf.search(q, 100), ExactIndex(x).search(q, 100)) >= 0.95


@pytest.mark.parametrize(("storage", "code"), [("flat", 4 * 32), ("sq8", 32)])
def test_memory_per_item_is_the_code_the_id_and_the_centroids_share(storage: str,
                                                                     code: int) -> None:  # fmt: skip
    import faiss

    x, _ = clustered(5000, 32)
    ivf = IVFIndex(x, RetrievalConfig(mode="ann", storage=storage))
    assert ivf.bytes_per_item == pytest.approx(code + 8 + 4 * 32 * ivf.nlist / 5000)
    stored = faiss.serialize_index(ivf.index).nbytes / 5000
    assert stored == pytest.approx(ivf.bytes_per_item, rel=0.1)


def test_config_is_checked_and_refuses_unknown_keys() -> None:
    assert RetrievalConfig.from_mapping({"candidates": 100}).candidates == 100
    with pytest.raises(ConfigError, match="candidtes"):
        RetrievalConfig.from_mapping({"candidtes": 100})
    for bad in ({"mode": "fast"}, {"storage": "pq"}, {"candidates": 0}, {"tail_sample": -1}):
        with pytest.raises(ConfigError):
            RetrievalConfig.from_mapping(bad)
    cfg = RetrievalConfig()
    assert not cfg.uses_index(49_999) and cfg.uses_index(50_000)
    assert RetrievalConfig(mode="ann").uses_index(10) and not RetrievalConfig(
        mode="exact").uses_index(10**7)  # fmt: skip
    assert isinstance(build_index(np.zeros((100, 4), np.float32), cfg), ExactIndex)


# -- the re-ranking ------------------------------------------------------------------------------
def test_candidates_covering_the_catalogue_give_the_full_models_log_probabilities() -> None:
    g = torch.Generator().manual_seed(0)
    b, n = 4, 30
    short, long = torch.randn(b, n, generator=g), torch.randn(b, n, generator=g)
    long[1] = float("nan")  # a user without a long-term vector
    long[2, 3] = float("nan")  # an item the snapshot lacks
    excluded = torch.zeros(b, n, dtype=torch.bool)
    excluded[:, :2] = True
    w = torch.tensor([0.3, 0.0, 0.8, 1.0])
    tau = torch.tensor(0.4)
    full = fuse(short, long, w, excluded, tau)
    keep = torch.arange(2, n)
    none = torch.zeros(b, 0)
    part = fuse_candidates(short[:, keep], long[:, keep], none, none,
                           torch.ones(b, n - 2, dtype=torch.bool),
                           torch.zeros(b, 0, dtype=torch.bool), torch.zeros(b), w, tau)  # fmt: skip
    for got, want in zip(part[:3], full[:3], strict=True):
        torch.testing.assert_close(got, want[:, keep], rtol=0, atol=1e-5)


def test_the_tail_sample_estimates_the_normaliser_and_keeps_scores_probabilities() -> None:
    g = torch.Generator().manual_seed(1)
    b, n = 3, 5000
    short, long = torch.randn(b, n, generator=g), torch.randn(b, n, generator=g)
    w, tau = torch.tensor([0.2, 0.5, 0.9]), torch.tensor(0.0)
    full = fuse(short, long, w, torch.zeros(b, n, dtype=torch.bool), tau)
    cand = torch.topk(short + long, 200, dim=1).indices  # a candidate set per user
    rest = torch.ones(b, n, dtype=torch.bool)
    rest.scatter_(1, cand, False)
    sample = torch.arange(0, n, 5)  # 1000 of the 5000 items
    tail_ok = rest[:, sample]
    scale = torch.log((n - 200) / tail_ok.sum(dim=1).float())
    ones = torch.ones(b, 200, dtype=torch.bool)
    est = fuse_candidates(short.gather(1, cand), long.gather(1, cand), short[:, sample],
                          long[:, sample], ones, tail_ok, scale, w, tau)  # fmt: skip
    within = fuse_candidates(short.gather(1, cand), long.gather(1, cand), torch.zeros(b, 0),
                             torch.zeros(b, 0), ones, torch.zeros(b, 0, dtype=torch.bool),
                             torch.zeros(b), w, tau)  # fmt: skip
    exact = full.fused.gather(1, cand)
    # the order of the candidates is the full model's, whatever the normaliser
    assert torch.equal(torch.argsort(est.fused, dim=1), torch.argsort(exact, dim=1))
    assert (est.fused - exact).abs().max() < 0.1  # probabilities within ~10 %
    assert (within.fused.exp().sum(dim=1) - 1).abs().max() < 1e-5  # within the candidates
    assert torch.all(within.fused > exact)  # which overstates them
    for lp in (est, within):
        p = lp.fused.exp()
        assert torch.all(torch.isfinite(lp.fused)) and torch.all((p > 0) & (p <= 1))


# -- the fused scorer: exact below the threshold, retrieval above ---------------------------
REQS = [SeqRequest("a", ["i1", "i2", "i3"], [0, 0, 4], [0.0, 60.0, 90.0], 40),
        SeqRequest("b", ["i4", "i7"], [0, 1], [0.0, 10.0], 2),  # not in the snapshot: folded
        SeqRequest("z", ["nope"], [0], [0.0], 1),  # nothing the encoder knows
        SeqRequest("k", ["i9", "i10", "i9"], [0, 0, 0], [0.0, 5.0, 6.0], 3)]  # fmt: skip


def test_below_the_threshold_every_item_is_scored_exactly_and_nothing_is_built() -> None:
    seq = seq_model()
    long = long_model(seq)
    assert not seq.uses_retrieval and seq.retrieval == RetrievalConfig()
    auto = seq.recommend(REQS, long, 5)
    exact = seq.with_retrieval(mode="exact")
    assert auto == exact.recommend(REQS, replace(long, sequence=exact), 5)
    assert not hasattr(long, "_lsi_retriever")  # no index was built
    lp_auto, _ = seq.log_probs(REQS, long)
    lp_exact, _ = exact.log_probs(REQS, long)
    for a, b in zip(lp_auto, lp_exact, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["fused", "short_only", "long_only"])
def test_retrieval_that_covers_the_catalogue_serves_the_exact_lists(mode: str) -> None:
    seq = seq_model(seed=3)
    long = long_model(seq)
    ann = seq.with_retrieval(mode="ann", candidates=len(ITEMS))
    assert ann.uses_retrieval
    got = ann.recommend(REQS, replace(long, sequence=ann), 8, mode)
    want = seq.recommend(REQS, long, 8, mode)
    assert got[2] is None and want[2] is None
    for g, w in zip(got, want, strict=True):
        if w is None:
            continue
        assert g is not None
        assert (g.source, g.long_weight) == (w.source, pytest.approx(w.long_weight))
        assert [r.item_id for r in g.items] == [r.item_id for r in w.items]
        assert [r.score for r in g.items] == pytest.approx([r.score for r in w.items], abs=1e-5)
        assert [r.long_score for r in g.items] == pytest.approx([r.long_score for r in w.items],
                                                                abs=1e-5)  # fmt: skip
        assert [s.item_id for s in g.short_term] == [s.item_id for s in w.short_term]
        assert [s.item_id for s in g.long_term] == [s.item_id for s in w.long_term]
    lp_ann, _ = ann.log_probs(REQS, long)
    lp_exact, _ = seq.log_probs(REQS, long)
    for a, b in zip(lp_ann[:3], lp_exact[:3], strict=True):
        torch.testing.assert_close(a[[0, 1, 3]], b[[0, 1, 3]], rtol=0, atol=1e-5)


def big_snapshot(n_items: int = 3000, seed: int = 0) -> Snapshot:
    """An untrained scorer over ``n_items`` items with long-term vectors and two users
    (``u0`` with a history of 40 items, ``u1`` with none)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ids = tuple(f"i{j}" for j in range(n_items))
    seq = SequenceModel(ids, scorer_from_config(CONFIG, n_items, 8), CONFIG)
    hist = rng.choice(n_items, 40, replace=False).astype(np.int32)
    return Snapshot("v1", ("u0", "u1"), ids, rng.standard_normal((2, 8)).astype(np.float32),
                         rng.standard_normal((n_items, 8)).astype(np.float32),
                         np.array([0, 40, 40], np.int64), hist, {}, seq)  # fmt: skip


def requests(n_items: int, n: int, seed: int = 0) -> list[SeqRequest]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        m = int(rng.integers(1, 9))
        items = [f"i{j}" for j in rng.integers(0, n_items, m).tolist()]
        out.append(SeqRequest(("u0", "u1", f"new{k}")[k % 3], items, [0] * m,
                              sorted(rng.uniform(0, 1e4, m).tolist()), m))  # fmt: skip
    return out


def test_retrieval_serves_the_exact_top_items_whenever_its_candidates_hold_them() -> None:
    long = big_snapshot()
    seq: SequenceModel = long.sequence
    ann = seq.with_retrieval(mode="ann", candidates=300)
    served = replace(long, sequence=ann)
    reqs = requests(3000, 30)
    got, want = ann.recommend(reqs, served, 10), seq.recommend(reqs, long, 10)
    _, rows, _ = ann.candidate_log_probs(reqs, served)
    covered = 0
    for b, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g is not None and w is not None
        exact_top = [r.item_id for r in w.items]
        if set(exact_top) <= {f"i{j}" for j in rows[b][rows[b] >= 0].tolist()}:
            covered += 1
            assert [r.item_id for r in g.items] == exact_top
        scores = [r.score for r in g.items]
        assert all(0 < s <= 1 for s in scores) and scores == sorted(scores, reverse=True)
    assert covered >= 25  # the candidates usually hold the exact top 10


def test_retrieval_never_offers_recent_or_history_items() -> None:
    long = big_snapshot()
    ann = long.sequence.with_retrieval(mode="ann", candidates=50)
    served = replace(long, sequence=ann)
    history = {f"i{j}" for j in long.history(0).tolist()}
    for req, lists in zip(reqs := requests(3000, 12, seed=4), ann.recommend(reqs, served, 50),
                          strict=True):  # fmt: skip
        assert lists is not None
        offered = {r.item_id for r in lists.items} | {s.item_id for s in lists.short_term}
        offered |= {s.item_id for s in lists.long_term}
        assert not offered & set(req.items)
        if req.user_id == "u0":
            assert not offered & history
            assert len(lists.items) == 50  # the filter runs inside the search: still 50


def test_the_index_is_built_once_per_snapshot_and_reported() -> None:
    long = big_snapshot(500)
    ann = long.sequence.with_retrieval(mode="ann")
    served = replace(long, sequence=ann)
    first = ann.retriever(served)
    ann.recommend(requests(500, 3), served, 5)
    assert ann.retriever(served) is first
    assert ann.with_retrieval(mode="ann", nprobe=4).retriever(served) is not first
    with torch.no_grad():  # weights changed in place (a scorer in training): a fresh index
        ann.scorer.encoder.embed.item.weight.mul_(2.0)
    assert ann.retriever(served) is not first
    mem = first.memory()
    assert mem["short_bytes_per_item"] == pytest.approx(
        4 * 8 + 8 + 4 * 8 * 12 / 500
    )  # 500 / 39 lists
    assert set(mem) == {"short_bytes_per_item", "long_bytes_per_item"}


# -- lsi bench catalogue ---------------------------------------------------------------------
def test_a_synthetic_snapshot_has_the_catalogue_asked_for() -> None:
    long, draw = synthetic_snapshot(1000, seed=2, n_users=50, dim=16)
    assert long.n_items == 1000 and long.sequence.item_ids == long.item_ids
    reqs = draw(5)
    assert all(20 <= len(r.items) <= 50 for r in reqs)
    assert sum(r.user_id in long.user_index for r in draw(200)) > 150  # mostly known users
