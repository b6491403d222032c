"""Training the long-term model: shapes, warm start, graph edges, holdout, validation, the
loss against a plain autograd loop. Learning to rank for real is in
``tests/component/test_train.py`` (slow)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from lsi.evaluation.measures import DEFAULT_KS
from lsi.serving.snapshot import Snapshot
from models.training.longterm import (
    Log,
    TrainConfig,
    WarmStart,
    holdout_last,
    train_long_term,
    validate,
)

SMALL = TrainConfig(dim=16, layers=2, epochs=30, warm_epochs=0, batch_size=64, device="cpu")


def make_log(rows: list[tuple[str, str, float, float]]) -> Log:
    users, items, ts, strength = zip(*rows, strict=True)
    return Log(
        list(users),
        list(items),
        np.array(ts, dtype=np.float64),
        np.array(strength, dtype=np.float32),
    )


def two_clusters(seed: int = 0, users: int = 12, items: int = 10, per_user: int = 5) -> Log:
    """Users ``a*`` take items ``A*`` only, users ``b*`` items ``B*`` only."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, float, float]] = []
    t = 0.0
    for c in ("a", "b"):
        for u in range(users):
            for i in rng.choice(items, size=per_user, replace=False).tolist():
                t += 1.0
                rows.append((f"{c}{u}", f"{c.upper()}{i}", t, 1.0))
    return make_log(rows)


def test_output_shapes_and_history() -> None:
    log = two_clusters(users=4, items=6, per_user=3)
    trained = train_long_term(log, TrainConfig(dim=8, epochs=2, device="cpu"))
    n_u, n_i = len(trained.user_ids), len(trained.item_ids)
    assert trained.user_vec.shape == (n_u, 8) and trained.item_vec.shape == (n_i, 8)
    assert trained.base.shape == (n_u + n_i, 8)
    assert trained.user_vec.dtype == trained.item_vec.dtype == trained.base.dtype == np.float32
    model = trained.model("v1", {"note": "x"})
    assert model.manifest == {"note": "x"}
    for r in range(len(log)):
        u = model.user_index[log.users[r]]
        assert model.item_index[log.items[r]] in model.history(u).tolist()
    assert trained.n_edges == len(log) == int(trained.hist_indptr[-1])
    assert trained.config["dim"] == 8


def test_skips_add_no_edges_and_repeats_add_one() -> None:
    log = make_log(
        [
            ("u", "x", 1.0, 1.0),
            ("u", "x", 2.0, 2.0),  # a repeat: same edge, more weight
            ("u", "y", 3.0, 1.0),
            ("u", "skipped", 4.0, 0.0),
            ("v", "y", 5.0, 1.0),
            ("v", "x", 6.0, -1.0),
            ("w", "disliked", 7.0, -0.5),  # only a negative row: not a node at all
        ]
    )
    trained = train_long_term(log, TrainConfig(dim=4, epochs=1, device="cpu"))
    assert trained.n_edges == 3  # (u,x) (u,y) (v,y)
    model = trained.model("v1")
    hist = {
        u: sorted(model.item_ids[j] for j in model.history(r)) for u, r in model.user_index.items()
    }
    assert hist == {"u": ["x", "y"], "v": ["y"]}
    assert not model.knows("w") and "disliked" not in model.item_index  # short-term path
    s = model.scores("u")
    assert s is not None and "skipped" not in model.item_index  # only a zero-strength row
    s = model.scores("v")
    assert s is not None and np.isfinite(s[model.item_index["x"]])  # the skip is no history


def test_no_positive_interactions_is_an_error() -> None:
    with pytest.raises(ValueError, match="no positive interactions"):
        train_long_term(make_log([("u", "x", 1.0, 0.0)]), SMALL)


def test_warm_start_keeps_known_rows_and_appends_new_ids() -> None:
    first = train_long_term(
        two_clusters(users=4, items=6, per_user=3), TrainConfig(dim=8, epochs=3, device="cpu")
    )
    warm = WarmStart(first.user_ids, first.item_ids, first.base, version="v000001")
    wu, wi = len(first.user_ids), len(first.item_ids)
    # new data: a known user with a new item, a new user with a known item, and known pairs
    log = make_log(
        [
            ("new-user", first.item_ids[0], 100.0, 1.0),
            (first.user_ids[1], "new-item", 101.0, 1.0),
            (first.user_ids[0], first.item_ids[2], 102.0, 1.0),
            ("new-user-2", "new-item-2", 103.0, 1.0),
        ]
    )
    cfg = TrainConfig(dim=8, epochs=5, warm_epochs=0, device="cpu")
    trained = train_long_term(log, cfg, warm=warm)
    assert trained.epochs == 0 and trained.losses == []  # warm_epochs, not epochs
    assert trained.warm_from == "v000001"
    assert trained.user_ids[:wu] == first.user_ids
    assert trained.user_ids[wu:] == ("new-user", "new-user-2")
    assert trained.item_ids[:wi] == first.item_ids
    assert trained.item_ids[wi:] == ("new-item", "new-item-2")
    assert (trained.new_users, trained.new_items) == (2, 2)
    n_u = len(trained.user_ids)
    # known users and items keep exactly their layer-0 rows, at the same positions
    np.testing.assert_array_equal(trained.base[:wu], first.base[:wu])
    np.testing.assert_array_equal(trained.base[n_u : n_u + wi], first.base[wu:])
    # new ids got fresh, non-zero rows
    assert np.abs(trained.base[wu:n_u]).sum() > 0
    assert np.abs(trained.base[n_u + wi :]).sum() > 0
    # users absent from the new log are still served (their row was kept)
    model = trained.model("v000002")
    assert all(model.knows(u) for u in first.user_ids)


def test_warm_start_with_epochs_still_grows_the_catalogue() -> None:
    first = train_long_term(
        two_clusters(users=3, items=4, per_user=2), TrainConfig(dim=8, epochs=2, device="cpu")
    )
    warm = WarmStart(first.user_ids, first.item_ids, first.base)
    log = make_log([("z", "Z", 1.0, 1.0), (first.user_ids[0], "Z", 2.0, 1.0)])
    trained = train_long_term(log, TrainConfig(dim=8, warm_epochs=2, device="cpu"), warm=warm)
    assert trained.epochs == 2 and len(trained.losses) == 2
    assert trained.user_ids == (*first.user_ids, "z")
    assert trained.item_ids == (*first.item_ids, "Z")
    assert not np.array_equal(trained.base[0], first.base[0])  # trained further


def test_warm_start_dim_mismatch_is_an_error() -> None:
    warm = WarmStart(("u",), ("x",), np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="warm start has dim 4, config has 16"):
        train_long_term(make_log([("u", "x", 1.0, 1.0)]), SMALL, warm=warm)


def test_seeded_training_is_deterministic() -> None:
    log = two_clusters(users=4, items=6, per_user=3)
    cfg = TrainConfig(dim=8, epochs=3, batch_size=4, device="cpu")
    a, b = train_long_term(log, cfg), train_long_term(log, cfg)
    np.testing.assert_array_equal(a.user_vec, b.user_vec)
    assert a.losses == b.losses


def test_progress_is_called_after_every_epoch() -> None:
    calls: list[tuple[int, int, float]] = []
    train_long_term(
        two_clusters(users=2, items=3, per_user=2),
        TrainConfig(dim=4, epochs=3, device="cpu"),
        progress=lambda e, n, loss: calls.append((e, n, loss)),
    )
    assert [(e, n) for e, n, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    assert all(loss > 0 for _, _, loss in calls)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dim": 0},
        {"epochs": 0},
        {"layers": -1},
        {"warm_epochs": -1},
        {"lr": 0.0},
        {"device": "tpu"},
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)  # type: ignore[arg-type]


def test_log_lengths_must_agree() -> None:
    with pytest.raises(ValueError, match="same length"):
        Log(["u"], ["x", "y"], np.zeros(1), np.ones(1, dtype=np.float32))


# -- holdout and validation ------------------------------------------------------------
def test_holdout_last_takes_each_eligible_users_newest_positive_row() -> None:
    rows = [
        ("a", "a1", 1.0, 1.0),
        ("a", "a2", 5.0, 1.0),  # a's newest positive
        ("a", "a3", 3.0, 1.0),
        ("a", "a4", 9.0, 0.0),  # newer, but a skip: not a case
        ("b", "b1", 1.0, 1.0),
        ("b", "b2", 2.0, 1.0),  # b has only 2 positives: not eligible
        ("b", "b3", 8.0, -1.0),
        ("c", "c1", 7.0, 1.0),
        ("c", "c2", 6.0, 1.0),
        ("c", "c3", 8.0, 1.0),  # c's newest
        ("c", "c4", 2.0, 1.0),
    ]
    log = make_log(rows)
    train, valid = holdout_last(log)
    assert valid.tolist() == [1, 9]
    assert sorted([*train.tolist(), *valid.tolist()]) == list(range(len(log)))
    assert train.dtype == valid.dtype == np.int64
    sub = log.take(valid)
    assert list(sub.users) == ["a", "c"] and list(sub.items) == ["a2", "c3"]


def test_holdout_last_caps_the_cases_at_random() -> None:
    rows = [(f"u{u}", f"i{n}", float(n), 1.0) for u in range(20) for n in range(3)]
    log = make_log(rows)
    _, valid = holdout_last(log, max_cases=5, seed=1)
    assert len(valid) == 5 and len({log.users[r] for r in valid.tolist()}) == 5
    assert all(log.items[r] == "i2" for r in valid.tolist())  # each the user's newest
    assert valid.tolist() == sorted(valid.tolist())
    assert holdout_last(log, max_cases=5, seed=1)[1].tolist() == valid.tolist()
    assert holdout_last(log, max_cases=5, seed=2)[1].tolist() != valid.tolist()
    _, none = holdout_last(make_log([("u", "x", 1.0, 1.0)]))
    assert none.size == 0


def crafted_model() -> Snapshot:
    """u: best item 'top', then 'mid', 'low'; 'old' is u's history."""
    item_vec = np.array([[9.0], [5.0], [1.0], [100.0]], dtype=np.float32)
    return Snapshot(
        "v1",
        ("u",),
        ("top", "mid", "low", "old"),
        np.ones((1, 1), dtype=np.float32),
        item_vec,
        np.array([0, 1], dtype=np.int64),
        np.array([3], dtype=np.int32),
    )


def test_validate_gives_perfect_scores_when_the_target_is_top() -> None:
    log = make_log([("u", "top", 1.0, 1.0)])
    out = validate(crafted_model(), log, np.array([0], dtype=np.int64))
    assert out["cases"] == 1.0
    for k in DEFAULT_KS:
        assert out[f"ndcg@{k}"] == 1.0 and out[f"hr@{k}"] == 1.0


def test_validate_discounts_lower_ranks_and_counts_unknowns_as_misses() -> None:
    log = make_log(
        [
            ("u", "mid", 1.0, 1.0),  # rank 1 (history 'old' excluded): 1/log2(3)
            ("u", "old", 1.0, 1.0),  # history: a miss
            ("stranger", "top", 1.0, 1.0),  # unknown user: a miss
            ("u", "unknown-item", 1.0, 1.0),  # unknown item: a miss
        ]
    )
    out = validate(crafted_model(), log, np.arange(4, dtype=np.int64))
    assert out["cases"] == 4.0
    assert out["hr@5"] == pytest.approx(0.25)
    assert out["ndcg@5"] == pytest.approx(0.25 / np.log2(3))
    empty = validate(crafted_model(), log, np.zeros(0, dtype=np.int64))
    assert empty["cases"] == 0.0 and empty["ndcg@10"] == 0.0


def _reference_training(log: Log, cfg: TrainConfig) -> tuple[list[float], npt.NDArray[np.float32]]:
    """The plain BPR loop (ids in first-seen order, ``LGConv`` propagation, autograd through
    the gathers, L2 on the gathered rows): what ``train_long_term`` must equal."""
    import math

    import torch

    from models.nn.lightgcn import WeightedLightGCN, bpr_loss, edge_weights

    users = {k: None for k in log.users}
    items = {k: None for k in log.items}
    uid, iid = {k: n for n, k in enumerate(users)}, {k: n for n, k in enumerate(items)}
    n_u, n_i = len(uid), len(iid)
    pair = np.array([uid[u] * n_i + iid[i] for u, i in zip(log.users, log.items, strict=True)])
    w_all = edge_weights(torch.from_numpy(log.strength.astype(np.float64)),
                         torch.from_numpy(log.ts), float(log.ts.max()),
                         cfg.half_life_days * 86400.0).numpy()  # fmt: skip
    uniq, inv = np.unique(pair, return_inverse=True)
    w = torch.from_numpy(np.bincount(inv, weights=w_all).astype(np.float32))
    eu, ei = torch.from_numpy(uniq // n_i), torch.from_numpy(uniq % n_i)
    edge_index = WeightedLightGCN.bipartite_edges(eu, ei, n_u)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = WeightedLightGCN(n_u, n_i, cfg.dim, cfg.layers)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    n = uniq.shape[0]
    batch = max(cfg.batch_size, math.ceil(n / cfg.max_steps_per_epoch))
    losses = []
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen)
        neg_all = torch.randint(0, n_i, (n,), generator=gen)
        total = 0.0
        for s in range(math.ceil(n / batch)):
            idx = perm[s * batch : (s + 1) * batch]
            u, i, j = eu[idx], ei[idx], neg_all[idx]
            emb = model.get_embedding(edge_index, torch.cat([w, w]))
            xu, xi, xj = emb[u], emb[n_u + i], emb[n_u + j]
            w0 = model.embedding.weight
            reg = w0[u].pow(2).sum() + w0[n_u + i].pow(2).sum() + w0[n_u + j].pow(2).sum()
            loss = bpr_loss((xu * xi).sum(1), (xu * xj).sum(1)) + cfg.l2 * reg / (2 * len(idx))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / n)
    with torch.no_grad():
        return losses, model.get_embedding(edge_index, torch.cat([w, w])).numpy()


def test_training_equals_the_plain_autograd_loop() -> None:
    """Node renumbering, the embedding-bag product, the chunked loss and the counted L2 change
    nothing but float summation order: same losses and vectors after two epochs."""
    rng = np.random.default_rng(3)
    n = 3000  # distinct users/items with skewed degrees, several steps per epoch
    rows = [(f"u{int(rng.zipf(1.5)) % 150}", f"i{int(rng.zipf(1.3)) % 90}", float(t),
             float(rng.choice([1.0, 2.0, 5.0]))) for t in range(n)]  # fmt: skip
    log = make_log(rows)
    cfg = TrainConfig(dim=8, layers=2, epochs=2, batch_size=256, max_steps_per_epoch=24,
                      l2=1e-2, seed=4, device="cpu")  # fmt: skip
    got = train_long_term(log, cfg)
    losses, emb = _reference_training(log, cfg)
    assert got.user_ids == tuple(dict.fromkeys(log.users))
    np.testing.assert_allclose(got.losses, losses, rtol=1e-5)
    n_u = len(got.user_ids)
    np.testing.assert_allclose(got.user_vec, emb[:n_u], atol=2e-5)
    np.testing.assert_allclose(got.item_vec, emb[n_u:], atol=2e-5)
