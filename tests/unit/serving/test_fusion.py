"""The fused scorer as workers serve it (:mod:`lsi.serving.fusion`), how it is trained
(:mod:`models.training.sequence`), stored in a snapshot and used by the batch engine."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import numpy as np
import pytest
import torch

import lsi
from lsi.core.engine import BASELINE_VERSION, EngineConfig, process_batch
from lsi.core.ranking import expected_rank, ndcg_at_k
from lsi.core.scoring import ScoringConfig
from lsi.core.snapshot_view import SeqLists, SeqRequest
from lsi.core.state import UserState
from lsi.core.stats import ItemStats, Trending
from lsi.serving.fusion import SequenceModel, scorer_from_config
from lsi.serving.snapshot import Snapshot
from lsi.serving.store import SnapshotArrays, SnapshotError, SnapshotStore
from lsi.wire.records import Event, Recommendation
from models.nn.sequence import LongShortScorer, make_encoder
from models.training.longterm import Log, TrainConfig, holdout_last, train_long_term
from models.training.sequence import (
    SequenceConfig,
    TrainedSequence,
    UserSequences,
    _swapped_in,
    balance_inputs,
    lr_factor,
    request,
    train_sequence,
)
from tests.threads import one_thread  # noqa: F401  (an autouse fixture)

REC_SCHEMA = json.loads(
    (Path(lsi.__file__).parent / "wire" / "schemas" / "recommendation.schema.json").read_text()
)
ITEMS = tuple(f"i{j}" for j in range(20))
CONFIG = asdict(SequenceConfig(dim=8, max_len=10, layers=1, heads=2, dropout=0.0, device="cpu"))
TRENDING = Trending(0.0, (("hot", 3.0),))


def seq_model(seed: int = 0, gate: str = "learned", long_dim: int = 8) -> SequenceModel:
    """An untrained fused scorer over ``ITEMS`` (random weights, deterministic per seed)."""
    torch.manual_seed(seed)
    cfg = {**CONFIG, "gate": gate}
    return SequenceModel(ITEMS, scorer_from_config(cfg, len(ITEMS), long_dim), cfg)


# the snapshot's items: another order than the encoder's, lacks i19, has x
LONG_ITEMS = ("x", *reversed(ITEMS[:19]))


def long_model(sequence: SequenceModel | None = None, version: str = "v000007") -> Snapshot:
    """Knows users ``a`` (history i5, i6 and x) and ``k`` (no history); not ``b``."""
    rng = np.random.default_rng(0)
    row = {k: j for j, k in enumerate(LONG_ITEMS)}
    hist = np.array([row["i5"], row["i6"], row["x"]], dtype=np.int32)
    return Snapshot(
        version, ("k", "a"), LONG_ITEMS,
        rng.standard_normal((2, 8)).astype(np.float32),
        rng.standard_normal((len(LONG_ITEMS), 8)).astype(np.float32),
        np.array([0, 0, 3], dtype=np.int64), hist, {}, sequence,
    )  # fmt: skip


def rows_of(names: Sequence[str]) -> set[int]:
    return {ITEMS.index(n) for n in names}


REQ_A = SeqRequest("a", ["i1", "zzz", "i2", "i3"], [0, 1, 2, 3], [100.0, 150.0, 200.0, 5000.0], 40)
REQ_B = SeqRequest("b", ["i7", "i8", "i9", "i10"], [1, 1, 1, 1], [0.0, 4000.0, 4100.0, 4200.0], 4)
REQ_NONE = SeqRequest("a", ["nope", "zzz"], [0, 0], [1.0, 2.0], 2)
#: b skipped everything (type 5): nothing to fold a long-term vector from
REQ_B_SKIPS = SeqRequest("b", REQ_B.items, [5, 5, 5, 5], REQ_B.times, 4)


# -- SequenceModel.inputs ------------------------------------------------------------------


def test_inputs_build_the_window_the_features_and_the_exclusions() -> None:
    model, long = seq_model(), long_model()
    # 15 known items; a 10 000 s pause before i5, 60 s between the others
    times = [60.0 * j + (10_000.0 if j >= 5 else 0.0) for j in range(15)]
    long_req = SeqRequest("a", [f"i{j}" for j in range(15)], [4] * 15, times, 15)
    x = model.inputs([REQ_A, REQ_B, long_req, REQ_NONE], long)
    assert x.items.shape == (4, 10), "the longest window sets T, capped at max_len"
    assert x.scorable.tolist() == [True, True, True, False]
    # a: the unknown item (and its type) dropped, left-padded, gaps from the kept events
    assert x.items[0].tolist() == [0] * 7 + [2, 3, 4]
    assert x.types[0].tolist() == [0] * 7 + [0, 2, 3]
    assert x.gaps[0].tolist() == [0.0] * 7 + [0.0, 100.0, 4800.0]
    assert float(x.since_last_s[0]) == 4800.0
    assert float(x.session_len[0]) == 1.0, "a gap > session_gap_s starts a new session"
    # b: a session of three events after a 4000 s pause
    assert x.gaps[1, -4:].tolist() == [0.0, 4000.0, 100.0, 100.0]
    assert float(x.since_last_s[1]) == 100.0 and float(x.session_len[1]) == 3.0
    # the long window: the last 10 items; its first gap is 0 although 10 060 s preceded it
    assert x.items[2].tolist() == list(range(6, 16))
    assert x.types[2].tolist() == [4] * 10
    assert x.gaps[2].tolist() == [0.0] + [60.0] * 9
    assert float(x.session_len[2]) == 10.0
    assert x.history.tolist() == [40.0, 4.0, 15.0, 2.0]
    # excluded: the window and the snapshot's history of the user (x is not in the catalogue)
    assert set(np.flatnonzero(x.excluded[0].numpy())) == rows_of(["i1", "i2", "i3", "i5", "i6"])
    assert set(np.flatnonzero(x.excluded[1].numpy())) == rows_of(["i7", "i8", "i9", "i10"])
    assert rows_of([f"i{j}" for j in range(5, 15)]) <= set(np.flatnonzero(x.excluded[2].numpy()))
    # the long-term side: a is known; b, whom the snapshot lacks, is folded in from the
    # items of the request; a request with no known item is padding
    assert x.long_known.tolist() == [True, True, True, False]
    a = long.user_index["a"]
    assert torch.equal(x.long_vec[0], torch.from_numpy(long.user_vec[a]))
    want = np.array([long.item_vec[long.item_index[k]] @ long.user_vec[a] for k in ITEMS[:19]])
    np.testing.assert_allclose(x.long_logits[0, :19].numpy(), want, rtol=1e-5)
    assert math.isnan(float(x.long_logits[0, 19])), "the snapshot lacks i19"
    folded = long.fold_in(REQ_B.items)
    assert folded is not None
    np.testing.assert_allclose(x.long_vec[1].numpy(), folded, rtol=1e-6)
    want_b = np.array([long.item_vec[long.item_index[k]] @ folded for k in ITEMS[:19]])
    np.testing.assert_allclose(x.long_logits[1, :19].numpy(), want_b, rtol=1e-5)
    assert (x.items[3] == 0).all() and not x.excluded[3].any()


def test_a_new_user_is_folded_in_from_positive_events_only() -> None:
    """Skips are not interest: a new user with only skipped known items has no long-term
    part (w = 0, short-term list only); one positive event is enough to fold them in."""
    model, long = seq_model(), long_model()
    skips = SeqRequest("new", ["i7", "i8"], [5, 5], [0.0, 10.0], 2)  # 5 = skip
    liked = SeqRequest("new", ["i7", "i8"], [5, 3], [0.0, 10.0], 2)  # i8 liked
    x = model.inputs([skips, liked], long)
    assert x.long_known.tolist() == [False, True]
    assert torch.isnan(x.long_logits[0]).all() and (x.long_vec[0] == 0).all()
    folded = long.fold_in(["i8"])
    assert folded is not None
    np.testing.assert_allclose(x.long_vec[1].numpy(), folded, rtol=1e-6)
    lists = model.recommend([skips, liked], long, 5)
    assert lists[0] is not None and lists[0].long_weight == 0.0 and lists[0].long_term == ()
    assert (
        lists[1] is not None and 0.0 < lists[1].long_weight < 1.0 and len(lists[1].long_term) == 5
    )


def test_inputs_without_a_snapshot_have_no_long_term_side() -> None:
    x = seq_model().inputs([REQ_A], None)
    assert not x.long_known.any() and torch.isnan(x.long_logits).all()
    assert set(np.flatnonzero(x.excluded[0].numpy())) == rows_of(["i1", "i2", "i3"])


def test_a_request_scores_the_same_alone_and_in_a_batch() -> None:
    """Micro-batching pads a short window to the longest one: its scores must not move."""
    model, long = seq_model(), long_model()
    many = SeqRequest("k", [f"i{j}" for j in range(10, 19)], [0] * 9,
                      [float(j) for j in range(9)], 9)  # fmt: skip
    alone, _ = model.log_probs([REQ_A], long)
    batch, _ = model.log_probs([many, REQ_A, REQ_B], long)
    for a, b in zip(alone, batch, strict=True):
        row = b[1:2]
        assert torch.equal(torch.isneginf(a), torch.isneginf(row))
        assert torch.allclose(a[torch.isfinite(a)], row[torch.isfinite(row)], atol=1e-5)


def test_the_catalogue_must_match_the_encoder() -> None:
    cfg = dict(CONFIG)
    with pytest.raises(ValueError, match="19 item ids for 20 rows"):
        SequenceModel(ITEMS[:19], scorer_from_config(cfg, 20, 8), cfg)


# -- SequenceModel.recommend ---------------------------------------------------------------


def check_lists(lists: SeqLists, seen: set[str], k: int) -> None:
    """Probabilities, best first, nothing the user has seen, in every list."""
    assert 0 < len(lists.items) <= k
    for entries in (lists.items, lists.short_term, lists.long_term):
        ids = [e.item_id for e in entries]
        assert not seen & set(ids), seen & set(ids)
        assert len(set(ids)) == len(ids)
        scores = [e.score for e in entries]
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert scores == sorted(scores, reverse=True)
    for it in lists.items:
        assert 0.0 <= it.long_score <= 1.0 and 0.0 <= it.short_score <= 1.0


SEEN_A = {"i1", "i2", "i3", "i5", "i6"}
SEEN_B = {"i7", "i8", "i9", "i10"}


def test_recommend_modes() -> None:
    model, long = seq_model(), long_model()
    reqs = [REQ_A, REQ_B_SKIPS, REQ_NONE]
    lp, _ = model.log_probs(reqs, long)
    by_mode = {m: model.recommend(reqs, long, 5, m) for m in ("fused", "short_only", "long_only")}
    for out in by_mode.values():
        assert len(out) == 3 and out[2] is None, "no known item: the statistics path serves"
        a, b = out[0], out[1]
        assert a is not None and b is not None
        check_lists(a, SEEN_A, 5)
        check_lists(b, SEEN_B, 5)
        # b is unknown to the snapshot and only skipped: the encoder alone, whatever the mode
        assert b.long_weight == 0.0 and b.long_term == () and b.source == "short_term"
        assert [i.item_id for i in b.items] == [i.item_id for i in b.short_term]
        assert all(i.long_score == 0.0 for i in b.items)
        assert len(a.long_term) == 5 and len(a.short_term) == 5
    fused, short, only_long = by_mode["fused"][0], by_mode["short_only"][0], by_mode["long_only"][0]
    assert fused is not None and short is not None and only_long is not None
    assert fused.source == "fused" and 0.0 < fused.long_weight < 1.0
    assert fused.long_weight == pytest.approx(float(lp.long_weight[0]))
    assert short.source == "short_term" and short.long_weight == 0.0
    assert only_long.source == "long_term" and only_long.long_weight == 1.0
    assert [i.item_id for i in short.items] == [i.item_id for i in short.short_term]
    assert [i.item_id for i in only_long.items] == [i.item_id for i in only_long.long_term]
    # the fused list is the top of the fused distribution, with each source's probability
    top = torch.topk(lp.fused[0], 5)
    assert [i.item_id for i in fused.items] == [ITEMS[j] for j in top.indices.tolist()]
    for it in fused.items:
        j = ITEMS.index(it.item_id)
        assert it.score == pytest.approx(float(lp.fused[0, j].exp()))
        assert it.long_score == pytest.approx(float(lp.long[0, j].exp()))
        assert it.short_score == pytest.approx(float(lp.short[0, j].exp()))
    # the same short- and long-term lists in every mode
    assert fused.short_term == short.short_term == only_long.short_term
    assert fused.long_term == short.long_term == only_long.long_term


def test_recommend_with_k_beyond_the_catalogue_offers_every_unseen_item() -> None:
    model, long = seq_model(), long_model()
    a, b = model.recommend([REQ_A, REQ_B], long, 100)
    assert a is not None and b is not None
    assert {i.item_id for i in a.items} == set(ITEMS) - SEEN_A
    assert {i.item_id for i in b.items} == set(ITEMS) - SEEN_B
    assert sum(i.score for i in a.items) == pytest.approx(1.0, abs=1e-4)
    # i19, which the snapshot lacks, is still offered: at the row's lowest long-term score
    assert {i.item_id for i in a.long_term} == set(ITEMS) - SEEN_A
    i19 = next(i for i in a.long_term if i.item_id == "i19")
    assert i19.score == pytest.approx(min(i.score for i in a.long_term))


def test_recommend_edge_cases() -> None:
    model = seq_model()
    assert model.recommend([], long_model(), 5) == []
    with pytest.raises(ValueError, match="mode must be one of"):
        model.recommend([REQ_A], None, 5, mode="both")
    # no snapshot at all: the encoder alone
    (a,) = model.recommend([REQ_A], None, 5, mode="long_only")
    assert a is not None and a.source == "short_term" and a.long_weight == 0.0
    assert a.long_term == ()


# -- persistence ---------------------------------------------------------------------------


def assert_same_scores(m1: SequenceModel, m2: SequenceModel, long: Snapshot | None) -> None:
    reqs = [REQ_A, REQ_B, REQ_NONE]
    (lp1, ok1), (lp2, ok2) = m1.log_probs(reqs, long), m2.log_probs(reqs, long)
    assert ok1.tolist() == ok2.tolist()
    for a, b in zip(lp1, lp2, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("gate", ["learned", "fixed"])
def test_bytes_round_trip(gate: str) -> None:
    model = seq_model(seed=3, gate=gate)
    with torch.no_grad():  # make the head differ from its initialisation
        model.scorer.log_tau.fill_(0.7)
        model.scorer.fixed_logit.fill_(-1.2)
    model.metrics["validation"] = {"fused": {"ndcg@10": 0.5}}
    weights, desc = model.to_bytes()
    assert json.loads(desc)["long_dim"] == 8
    back = SequenceModel.from_bytes(weights, desc)
    assert back.item_ids == model.item_ids and back.config == model.config
    assert back.metrics == model.metrics
    assert back.scorer.gate_kind == gate and not back.scorer.training
    assert_same_scores(model, back, long_model())
    assert_same_scores(model, back, None)


def snapshot_arrays(sequence: SequenceModel | None) -> SnapshotArrays:
    m = long_model()
    rng = np.random.default_rng(1)
    return SnapshotArrays(
        m.user_ids, m.item_ids, m.user_vec, m.item_vec,
        rng.standard_normal((m.n_users + m.n_items, 8)).astype(np.float32),
        m.hist_indptr, m.hist_items, sequence,
    )  # fmt: skip


def test_a_snapshot_carries_its_sequence_model(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    seq = seq_model(seed=5)
    v = store.publish(snapshot_arrays(seq), {})
    assert (tmp_path / v / "sequence.pt").is_file() and (tmp_path / v / "sequence.json").is_file()
    store.promote(v)
    loaded = store.load()
    assert loaded is not None and loaded.version == v
    assert isinstance(loaded.sequence, SequenceModel)
    assert loaded.sequence.item_ids == ITEMS
    assert_same_scores(seq, loaded.sequence, long_model())
    # and the lists it serves with the loaded snapshot are those of the original
    assert seq.recommend([REQ_A], long_model(), 5) == loaded.sequence.recommend([REQ_A], loaded, 5)
    # a snapshot without one has none
    plain = store.publish(snapshot_arrays(None), {})
    assert not (tmp_path / plain / "sequence.pt").exists()
    m = store.load(plain)
    assert m is not None and m.sequence is None


def _garbage(p: Path) -> None:
    p.write_bytes(b"not a torch file")


def _truncated(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:100])


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _no_description(p: Path) -> None:
    (p.parent / "sequence.json").unlink()


def _other_shape(p: Path) -> None:
    other = SequenceModel(ITEMS[:5], scorer_from_config(CONFIG, 5, 8), dict(CONFIG))
    p.write_bytes(other.to_bytes()[0])


def _bad_description(p: Path) -> None:
    (p.parent / "sequence.json").write_text('{"item_ids": []')


@pytest.mark.parametrize(
    "damage", [_garbage, _truncated, _empty, _no_description, _other_shape, _bad_description]
)
def test_a_damaged_sequence_model_makes_the_snapshot_unreadable(
    tmp_path: Path, damage: Any
) -> None:
    store = SnapshotStore(tmp_path)
    v = store.publish(snapshot_arrays(seq_model()), {})
    store.promote(v)
    damage(tmp_path / v / "sequence.pt")
    with pytest.raises(SnapshotError, match=f"snapshot {v} is unreadable"):
        store.load(v)
    with pytest.raises(SnapshotError):
        store.load()


# -- training ------------------------------------------------------------------------------


def ring_log(users: int = 40, items: int = 40, length: int = 14, seed: int = 0) -> Log:
    """Every user walks the ring of items from a random start: i, i+1, i+2, … (mod items),
    one event a minute; the next item is fully determined by the current one."""
    rng = np.random.default_rng(seed)
    us: list[str] = []
    its: list[str] = []
    ts: list[float] = []
    for u in range(users):
        start = int(rng.integers(items))
        for k in range(length):
            us.append(f"u{u:02d}")
            its.append(f"r{(start + k) % items}")
            ts.append(1_000.0 * u + 60.0 * k)
    return Log(us, its, np.array(ts), np.ones(len(us), dtype=np.float32))


@dataclass
class Trained:
    log: Log
    train_rows: np.ndarray[Any, Any]
    cal_rows: np.ndarray[Any, Any]
    long: Snapshot
    res: TrainedSequence
    cfg: SequenceConfig
    reqs: list[SeqRequest]
    targets: list[str]


def cases(
    log: Log, cal_rows: np.ndarray[Any, Any], window: int
) -> tuple[list[SeqRequest], list[str]]:
    """The request of each calibration case (the user's events before it) and its item."""
    seqs = UserSequences.build(log)
    user_of = {u: j for j, u in enumerate(seqs.user_ids)}
    reqs, targets = [], []
    for r in cal_rows.tolist():
        rows = seqs.rows(user_of[log.users[r]])
        before = rows[: int(np.flatnonzero(rows == r)[0])]
        reqs.append(request(log, before, log.users[r], before.shape[0], window))
        targets.append(log.items[r])
    return reqs, targets


@pytest.fixture(scope="module")
def trained() -> Trained:
    log = ring_log()
    train_rows, cal_rows = holdout_last(log, max_cases=1000)
    long = train_long_term(log.take(train_rows), TrainConfig(dim=8, epochs=5, device="cpu"))
    lt = long.model("v000001")
    cfg = SequenceConfig(dim=8, max_len=10, layers=1, heads=2, dropout=0.0, epochs=10,
                         batch_size=8, lr=1e-2, eval_every=2, patience=3, gate_epochs=5,
                         device="cpu")  # fmt: skip
    res = train_sequence(log, cal_rows, lt, cfg, extra_gates=("fixed",))
    reqs, targets = cases(log, cal_rows, cfg.max_len)
    return Trained(log, train_rows, cal_rows, lt, res, cfg, reqs, targets)


def ndcg_at_10(ranked: Sequence[str], target: str) -> float:
    ranked = list(ranked[:10])
    return 1.0 / math.log2(ranked.index(target) + 2.0) if target in ranked else 0.0


def test_train_sequence_learns_a_sequential_pattern(trained: Trained) -> None:
    t = trained
    model = t.res.model
    assert len(t.reqs) == 40 and model.item_ids[: t.long.n_items] == t.long.item_ids
    lists = model.recommend(t.reqs, t.long, 10, mode="short_only")
    short = np.mean([ndcg_at_10([i.item_id for i in ls.items], y) if ls is not None else 0.0
                     for ls, y in zip(lists, t.targets, strict=True)])  # fmt: skip
    # popularity over the training rows, over the same candidates (unseen items)
    counts = Counter(t.log.items[r] for r in t.train_rows.tolist())
    excluded = model.inputs(t.reqs, t.long).excluded.numpy()
    pop = []
    for b, y in enumerate(t.targets):
        cand = [k for j, k in enumerate(model.item_ids) if not excluded[b, j]]
        pop.append(ndcg_at_10(sorted(cand, key=lambda k: (-counts[k], k)), y))
    assert short > 0.6 and short > float(np.mean(pop)) + 0.4, (short, np.mean(pop))
    v = t.res.validation
    assert set(v) == {"fused", "short_only", "long_only", "long_weight", "gate_fit", "gate_choice"}
    # the gate serves only if it ranks the held-out cases at least as well as the encoder
    serves = v["gate_choice"]["serves"]
    assert serves == ("gate" if v["fused"]["ndcg@10"] >= v["short_only"]["ndcg@10"] else
                      "encoder alone")  # fmt: skip
    assert model.config["gate"] == ("off" if serves == "encoder alone" else "learned")
    for mode in ("fused", "short_only", "long_only"):
        assert 0.0 <= v[mode]["ndcg@10"] <= 1.0 and v[mode]["cases"] >= 1
    # the per-user gate starts from the best constant and keeps its best held-out pass
    g = v["gate_fit"]
    assert set(g) == {"constant_passes", "constant_nll", "passes", "nll"}
    assert 0 <= g["passes"] <= t.cfg.gate_epochs and 0 <= g["constant_passes"] <= t.cfg.gate_epochs
    assert 0.0 < g["nll"] <= g["constant_nll"]
    assert 0.0 < v["long_weight"]["p10"] <= v["long_weight"]["mean"] <= v["long_weight"]["p90"] < 1
    assert model.metrics["validation"] == v and model.metrics["best_epoch"] == t.res.best_epoch
    assert t.res.device == "cpu" and len(t.res.losses) == t.res.epochs
    assert t.res.losses[-1] < t.res.losses[0]
    assert not model.scorer.training


def test_train_sequence_keeps_the_best_encoder(trained: Trained) -> None:
    """Early stopping measures short-term NDCG@10 on the calibration cases; the weights
    returned are those of the best evaluation, not the last epoch's."""
    t = trained
    model = t.res.model
    epochs, scores = zip(*t.res.curve, strict=True)
    assert list(epochs) == [2, 4, 6, 8, 10]
    assert t.res.best_epoch == epochs[int(np.argmax(scores))]
    lp, _ = model.log_probs(t.reqs, None)
    rows = torch.tensor([model.item_ids.index(y) for y in t.targets])
    st = lp.short.gather(1, rows[:, None])
    # the one ranking rule (lsi.core.ranking): a candidate tied with the target counts half
    greater = (lp.short > st).sum(1).numpy()
    equal = (lp.short == st).sum(1).numpy() - 1  # the target itself is not counted
    ndcg = ndcg_at_k(expected_rank(greater, equal), 10)
    assert float(ndcg.mean()) == pytest.approx(max(scores), abs=1e-9)


def test_train_sequence_stops_when_calibration_stops_improving(trained: Trained) -> None:
    # a learning rate too small to change a ranking: no evaluation improves on the first
    cfg = SequenceConfig(dim=8, max_len=10, layers=1, heads=2, dropout=0.0, epochs=50,
                         batch_size=64, lr=1e-12, eval_every=1, patience=2, gate_epochs=1,
                         device="cpu")  # fmt: skip
    res = train_sequence(trained.log, trained.cal_rows, trained.long, cfg)
    assert res.epochs == 3 and res.best_epoch == 1 and len(res.curve) == 3
    assert len({s for _, s in res.curve}) == 1


def test_the_fixed_gate_variant_weighs_every_user_the_same(trained: Trained) -> None:
    t = trained
    fixed = t.res.variants["fixed"]
    assert set(t.res.variants) == {"fixed"}
    assert fixed.scorer.gate_kind == "fixed" and fixed.config["gate"] == "fixed"
    assert t.res.model.scorer.gate_kind == "learned"
    modes = {"fused", "short_only", "long_only", "long_weight", "gate_fit"}
    assert set(fixed.metrics["validation"]) == modes
    lp_fixed, _ = fixed.log_probs(t.reqs, t.long)
    lp_learned, _ = t.res.model.log_probs(t.reqs, t.long)
    w = lp_fixed.long_weight
    assert torch.allclose(w, w[0].expand_as(w)) and 0.0 < float(w[0]) < 1.0
    assert float(w[0]) == pytest.approx(float(torch.sigmoid(fixed.scorer.fixed_logit.detach())))
    assert fixed.metrics["validation"]["long_weight"]["p10"] == pytest.approx(float(w[0]))
    # the learned gate differs between users; both share the encoder
    assert float(lp_learned.long_weight.max() - lp_learned.long_weight.min()) > 1e-4
    assert torch.equal(lp_fixed.short, lp_learned.short)
    # and the variant survives its own round trip
    back = SequenceModel.from_bytes(*fixed.to_bytes())
    assert back.scorer.gate_kind == "fixed"
    assert torch.equal(back.log_probs(t.reqs, t.long)[0].fused, lp_fixed.fused)


def test_warm_start_keeps_the_catalogue_and_appends_new_items(trained: Trained) -> None:
    t = trained
    log = t.log
    extra = Log([*log.users, "u00", "u01"], [*log.items, "brand-new", "brand-new"],
                np.concatenate([log.ts, [1e6, 1e6 + 1]]),
                np.ones(len(log) + 2, dtype=np.float32))  # fmt: skip
    cfg = SequenceConfig(dim=8, max_len=10, layers=1, heads=2, dropout=0.0, epochs=50,
                         warm_epochs=1, batch_size=64, eval_every=1, gate_epochs=1,
                         device="cpu")  # fmt: skip
    res = train_sequence(extra, t.cal_rows, t.long, cfg, warm=t.res.model, warm_version="v1")
    old = t.res.model
    assert res.model.item_ids == (*old.item_ids, "brand-new")
    assert res.epochs == 1 and res.warm_from == "v1"
    emb_new = res.model.scorer.encoder.item_embeddings.detach()
    emb_old = old.scorer.encoder.item_embeddings.detach()
    assert emb_new.shape[0] == emb_old.shape[0] + 1
    # one epoch at lr 1e-3 from the warm rows: close to them, not re-initialised
    assert float((emb_new[:-1] - emb_old).abs().max()) < 0.1


def test_warm_start_survives_a_new_long_term_dim(trained: Trained) -> None:
    """A cold long-term refresh with another ``dim`` keeps the warm encoder; only the parts
    that read the long-term vectors start over."""
    t = trained
    lt4 = train_long_term(t.log.take(t.train_rows), TrainConfig(dim=4, epochs=1, device="cpu"))
    cfg = SequenceConfig(dim=8, max_len=10, layers=1, heads=2, dropout=0.0, warm_epochs=1,
                         batch_size=64, gate_epochs=1, device="cpu")  # fmt: skip
    res = train_sequence(t.log, t.cal_rows, lt4.model("v2"), cfg, warm=t.res.model)
    assert res.model.scorer.long_proj.in_features == 4


def test_user_sequences_order_by_time_then_by_log_order() -> None:
    log = Log(["b", "a", "b", "a", "b"], ["x", "y", "z", "w", "v"],
              np.array([5.0, 2.0, 1.0, 2.0, 5.0]), np.ones(5, dtype=np.float32),
              np.array([1, 0, 2, 3, 5], dtype=np.int8))  # fmt: skip
    seqs = UserSequences.build(log)
    assert seqs.user_ids == ("a", "b")
    assert seqs.rows(0).tolist() == [1, 3]
    assert seqs.rows(1).tolist() == [2, 0, 4]  # ts 1, then the two ts-5 rows in log order
    req = request(log, seqs.rows(1), "b", 7, window=2)
    assert req == SeqRequest("b", ["x", "v"], [1, 5], [5.0, 5.0], 7)


def test_log_types_are_optional_and_travel_with_take() -> None:
    base = (["a", "b"], ["x", "y"], np.array([1.0, 2.0]), np.ones(2, dtype=np.float32))
    plain = Log(*base)
    assert plain.types is None and plain.type_codes().tolist() == [0, 0]
    typed = Log(*base, np.array([4, 5], dtype=np.int8))
    assert typed.type_codes().tolist() == [4, 5]
    assert typed.take(np.array([1])).type_codes().tolist() == [5]
    assert plain.take(np.array([1])).types is None
    with pytest.raises(ValueError, match="one code per interaction"):
        Log(*base, np.array([1], dtype=np.int8))


def test_sequence_config_is_checked() -> None:
    with pytest.raises(ValueError, match="attention or gru"):
        SequenceConfig(encoder="lstm")
    with pytest.raises(ValueError, match="learned or fixed"):
        SequenceConfig(gate="mlp")
    with pytest.raises(ValueError, match="multiple of heads"):
        SequenceConfig(dim=10, heads=3)
    with pytest.raises(ValueError, match="positive"):
        SequenceConfig(layers=0)
    with pytest.raises(ValueError, match="device"):
        SequenceConfig(device="tpu")
    with pytest.raises(ValueError, match="last or all"):
        SequenceConfig(windows="every")
    with pytest.raises(ValueError, match="fp32 or bf16"):
        SequenceConfig(precision="fp16")
    with pytest.raises(ValueError, match="constant or cosine"):
        SequenceConfig(lr_schedule="linear")
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="ema_decay"):
            SequenceConfig(ema_decay=bad)


def test_the_cosine_schedule_falls_from_the_peak_to_zero() -> None:
    assert [lr_factor("constant", 10)(t) for t in (0, 5, 10, 99)] == [1.0] * 4
    f = lr_factor("cosine", 100)
    values = [f(t) for t in range(0, 120)]
    assert values[0] == 1.0 and values[50] == pytest.approx(0.5) and values[100] == 0.0
    assert all(a >= b for a, b in itertools.pairwise(values)) and values[119] == 0.0
    assert f(25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    with pytest.raises(ValueError, match="constant or cosine"):
        lr_factor("step", 10)


def test_cosine_training_learns_the_pattern_and_ends_at_a_zero_rate(trained: Trained) -> None:
    """With the rate falling to 0 over the run's epochs the encoder still learns the ring,
    and its last epoch moves the loss less than the same run's at a constant rate."""
    t = trained
    cfg = replace(t.cfg, lr_schedule="cosine", gate_epochs=1, patience=10)
    res = train_sequence(t.log, t.cal_rows, t.long, cfg)
    assert res.epochs == cfg.epochs and max(s for _, s in res.curve) > 0.6, res.curve
    assert res.losses[-1] < res.losses[0]
    # the same run at a constant rate (the fixture) still moves in its last epoch
    assert len(t.res.losses) == len(res.losses)
    assert abs(res.losses[-1] - res.losses[-2]) < abs(t.res.losses[-1] - t.res.losses[-2]) / 2


def test_bf16_training_learns_the_pattern_and_serves_in_float32(trained: Trained) -> None:
    """Under bfloat16 autocast the encoder still learns the ring (short-term NDCG@10 on the
    calibration cases as high as the float32 run's bar) and comes back with float32
    weights, so serving is unchanged."""
    t = trained
    cfg = replace(t.cfg, precision="bf16", gate_epochs=1)
    res = train_sequence(t.log, t.cal_rows, t.long, cfg)
    assert res.losses[-1] < res.losses[0] and max(s for _, s in res.curve) > 0.6, res.curve
    assert {p.dtype for p in res.model.scorer.parameters()} == {torch.float32}
    lp, _ = res.model.log_probs(t.reqs, None)
    assert lp.short.dtype == torch.float32 and not bool(torch.isnan(lp.short).any())


def test_the_averaged_encoder_learns_the_pattern(trained: Trained) -> None:
    """With a moving average of the weights (horizon of about ten steps) early stopping
    measures, and training returns, the average: it learns the ring as the raw weights do,
    and differs from them."""
    t = trained
    cfg = replace(t.cfg, ema_decay=0.9, gate_epochs=1, patience=10)
    res = train_sequence(t.log, t.cal_rows, t.long, cfg)
    assert max(s for _, s in res.curve) > 0.6, res.curve
    lp, _ = res.model.log_probs(t.reqs, None)
    assert not bool(torch.isnan(lp.short).any())
    mine = dict(res.model.scorer.encoder.named_parameters())
    raw = dict(t.res.model.scorer.encoder.named_parameters())
    assert any(not torch.equal(mine[k], raw[k]) for k in raw)


def test_an_average_with_a_long_horizon_stays_near_the_start(trained: Trained) -> None:
    """:math:`\\beta = 1 - 10^{-6}`: after a few hundred steps the average is still the
    initial weights (those of a run whose rate is too small to move them), while the raw
    weights of the same run have moved."""
    t = trained
    base = replace(t.cfg, epochs=2, eval_every=1, gate_epochs=1)
    avg = train_sequence(t.log, t.cal_rows, t.long, replace(base, ema_decay=1 - 1e-6))
    still = train_sequence(t.log, t.cal_rows, t.long, replace(base, lr=1e-12))
    moved = train_sequence(t.log, t.cal_rows, t.long, base)
    a, s, m = (
        {k: p.detach() for k, p in r.model.scorer.encoder.named_parameters()}
        for r in (avg, still, moved)
    )
    for k in s:
        assert torch.allclose(a[k], s[k], atol=1e-3), k
    assert max(float((m[k] - s[k]).abs().max()) for k in s) > 0.05


def test_swapping_the_averaged_weights_in_restores_the_own_ones() -> None:
    p = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.zeros(2))]
    v = [torch.full((3,), 5.0), torch.full((2,), -1.0)]
    with _swapped_in(p, v):
        assert torch.equal(p[0].detach(), v[0]) and torch.equal(p[1].detach(), v[1])
    assert torch.equal(p[0].detach(), torch.ones(3)) and torch.equal(p[1].detach(), torch.zeros(2))
    with _swapped_in(p, None):
        assert torch.equal(p[0].detach(), torch.ones(3))
    assert torch.equal(v[0], torch.full((3,), 5.0))


def test_balancing_draws_the_context_tables_at_the_item_rows_scale() -> None:
    """PyTorch draws the position, event-type and gap tables from N(0, 1), rows √d times
    longer than an item's (std d^-1/2); balancing redraws those three at the item's scale
    and leaves the item rows alone."""
    torch.manual_seed(0)
    enc = make_encoder("attention", num_items=2000, dim=64, max_len=50, layers=1, heads=1,
                       dropout=0.0)  # fmt: skip
    e = enc.embed
    items = e.item.weight.detach().clone()
    assert float(items[1:].std()) == pytest.approx(64**-0.5, rel=0.05)
    for table in (e.pos, e.etype, e.gap):
        assert float(table.weight.detach().std()) == pytest.approx(1.0, rel=0.1)
    balance_inputs(enc)
    for table in (e.pos, e.etype, e.gap):
        assert float(table.weight.detach().std()) == pytest.approx(64**-0.5, rel=0.1)
    assert torch.equal(e.item.weight.detach(), items)


def test_balanced_training_starts_balanced_and_learns_the_pattern(trained: Trained) -> None:
    """A cold start with ``balanced_init`` learns the ring; at a rate too small to move
    the weights the trained encoder's context tables are still at the item rows' scale,
    where the default start leaves them at N(0, 1)."""
    t = trained
    res = train_sequence(t.log, t.cal_rows, t.long,
                         replace(t.cfg, balanced_init=True, gate_epochs=1, patience=10))  # fmt: skip
    assert res.losses[-1] < res.losses[0] and max(s for _, s in res.curve) > 0.6, res.curve
    still = replace(t.cfg, epochs=1, eval_every=1, gate_epochs=1, lr=1e-12, dim=32, heads=2)
    runs = {}
    for balanced, std in ((True, 32**-0.5), (False, 1.0)):
        r = train_sequence(t.log, t.cal_rows, t.long, replace(still, balanced_init=balanced))
        pos = r.model.scorer.encoder.embed.pos.weight.detach()
        assert float(pos.std()) == pytest.approx(std, rel=0.25), balanced
        assert r.model.config["balanced_init"] is balanced
        runs[balanced] = pos
    # a warm start keeps the live encoder's tables, whatever the flag says
    warm = replace(still, balanced_init=True, warm_epochs=1)
    w = train_sequence(t.log, t.cal_rows, t.long, warm, warm=r.model)
    assert torch.allclose(w.model.scorer.encoder.embed.pos.weight.detach(), runs[False])


# -- serving: the batch engine -------------------------------------------------------------


def no_state(user: str) -> UserState | None:
    return None


def serving_events() -> list[Event]:
    return [
        Event("e1", "a", "i1", "click", 1.0),
        Event("e2", "b", "i7", "click", 2.0),
        Event("e3", "c", "zz1", "click", 3.0),
        Event("e4", "a", "i2", "click", 4.0),
        Event("e5", "c", "zz2", "click", 5.0),
        Event("e6", "b", "i8", "view", 6.0),
        Event("e7", "d", "i9", "skip", 7.0),
        Event("e8", "d", "i10", "skip", 8.0),
    ]


STATS = {"zz2": ItemStats(pop=1.0, neighbors={"zz9": 2.0}), "zz1": ItemStats(pop=1.0)}


@pytest.mark.parametrize("policy", ["batch", "event"])
def test_process_batch_serves_the_fused_scorer_of_the_snapshot(policy: str) -> None:
    model = long_model(seq_model(), version="v000009")
    cfg = EngineConfig(emit_policy=policy, scoring=ScoringConfig(mode="fused", top_k=5))
    result = process_batch(serving_events(), no_state, STATS.get, TRENDING, cfg, 100.0,
                           model=model)  # fmt: skip
    last: dict[str, Recommendation] = {}
    for r in result.recommendations:
        assert 0.0 <= r.long_weight <= 1.0
        last[r.user_id] = r
    assert len(result.recommendations) == (8 if policy == "event" else 4)
    a, b, c, d = last["a"], last["b"], last["c"], last["d"]
    # a: known to the snapshot and the encoder: the fused list
    assert a.model_version == "v000009" and a.source == "fused"
    assert 0.0 < a.long_weight < 1.0
    assert len(a.items) == len(a.short_term) == len(a.long_term) == 5
    assert not {i.item_id for i in a.items} & {"i1", "i2", "i5", "i6"}
    # b: arrived after the snapshot, clicked known items: folded in, the fused list
    assert b.model_version == "v000009" and b.source == "fused" and 0.0 < b.long_weight < 1.0
    assert len(b.items) == len(b.short_term) == len(b.long_term) == 5
    assert not {i.item_id for i in b.items} & {"i7", "i8"}
    # d: unknown to the snapshot and only skips: the encoder alone, still this snapshot's
    assert d.model_version == "v000009" and d.source == "short_term" and d.long_weight == 0.0
    assert d.long_term == () and len(d.items) == len(d.short_term) == 5
    assert not {i.item_id for i in d.items} & {"i9", "i10"}
    # c: items the encoder does not know: the statistics path, the baseline's version
    assert c.source == "covisit" and c.model_version == BASELINE_VERSION
    assert [i.item_id for i in c.items] == ["zz9", "hot"] and c.long_weight == 0.0
    # the lists shown are remembered (the online hit rate)
    assert result.states["a"].last_recs == [i.item_id for i in a.items]
    # the same lists as the model gives directly
    direct = model.sequence.recommend(
        [SeqRequest.from_state("a", result.states["a"])], model, 5, "fused"
    )[0]
    assert direct is not None
    assert [i.item_id for i in direct.items] == [i.item_id for i in a.items]
    assert [i.score for i in direct.items] == pytest.approx([i.score for i in a.items], abs=1e-6)


def test_the_fused_scorer_falls_back_to_trending_for_a_new_user() -> None:
    model = long_model(seq_model())
    stats: dict[str, ItemStats] = {}
    result = process_batch([Event("e1", "n", "unknown", "click", 1.0)], no_state, stats.get,
                           TRENDING, EngineConfig(), 100.0, model=model)  # fmt: skip
    (rec,) = result.recommendations
    assert rec.source == "trending" and [i.item_id for i in rec.items] == ["hot"]
    assert rec.model_version == BASELINE_VERSION


@pytest.mark.parametrize("mode", ["fused", "short_only", "long_only"])
def test_process_batch_in_every_mode(mode: str) -> None:
    model = long_model(seq_model())
    cfg = EngineConfig(scoring=ScoringConfig(mode=mode, top_k=5))
    result = process_batch(serving_events(), no_state, STATS.get, TRENDING, cfg, 100.0,
                           model=model)  # fmt: skip
    a = {r.user_id: r for r in result.recommendations}["a"]
    assert a.model_version == model.version
    if mode == "fused":
        assert 0.0 < a.long_weight < 1.0 and a.source == "fused"
    else:
        assert a.long_weight == (1.0 if mode == "long_only" else 0.0)
    if mode == "long_only":
        assert [i.item_id for i in a.items] == [i.item_id for i in a.long_term]
    if mode == "short_only":
        assert [i.item_id for i in a.items] == [i.item_id for i in a.short_term]


@pytest.mark.parametrize("mode", ["fused", "short_only", "long_only"])
def test_records_of_the_fused_scorer_follow_the_schema(mode: str) -> None:
    model = long_model(seq_model())
    cfg = EngineConfig(scoring=ScoringConfig(mode=mode, top_k=5))
    result = process_batch(serving_events(), no_state, STATS.get, TRENDING, cfg, 100.0,
                           model=model)  # fmt: skip
    sources = set()
    for r in result.recommendations:
        jsonschema.validate(json.loads(r.to_json()), REC_SCHEMA)
        sources.add(r.source)
    assert "short_term" in sources  # d: nothing to fold in, served by the encoder alone


def test_scorer_from_config_builds_the_shape_described() -> None:
    s = scorer_from_config({**CONFIG, "encoder": "gru", "gate": "fixed", "gate_hidden": 4}, 7, 3)
    assert isinstance(s, LongShortScorer) and s.gate_kind == "fixed"
    assert s.encoder.item_embeddings.shape == (7, 8) and s.long_proj.in_features == 3
    # configurations written before the gate kind existed mean "learned"
    old = {k: v for k, v in CONFIG.items() if k != "gate"}
    assert scorer_from_config(old, 7, 3).gate_kind == "learned"


def test_length_batches_cover_every_row_once_with_similar_lengths() -> None:
    from models.training.sequence import _length_batches

    rng = np.random.default_rng(3)
    lengths = rng.integers(2, 201, size=1000)
    batches = _length_batches(lengths, 128, np.random.default_rng(0))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000)), "every row in exactly one batch"
    assert [b.size for b in batches].count(128) == 7 and len(batches) == 8
    # each batch holds one stretch of the length order: the batches' length ranges only
    # touch at ties, so a batch is padded to its own longest row, not the epoch's
    spans = sorted((int(lengths[b].min()), int(lengths[b].max())) for b in batches)
    assert all(hi <= nxt_lo for (_, hi), (nxt_lo, _) in itertools.pairwise(spans))
    assert sum(int(lengths[b].max()) * b.size for b in batches) < 0.6 * 200 * 1000
    # the order of the batches (and ties within a length) changes with the generator
    again = _length_batches(lengths, 128, np.random.default_rng(1))
    assert [b.tolist() for b in again] != [b.tolist() for b in batches]


def test_all_windows_make_every_event_a_target_once_with_serving_gaps() -> None:
    from models.training.sequence import _windows

    # user a: 12 events (times 0, 10, …, 110; the 8th, x7, is a skip), cut before the last
    # two; user b: one event (no target, no window)
    n = 12
    log = Log(["a"] * n + ["b"], [f"x{j}" for j in range(n)] + ["y"],
              np.array([10.0 * j for j in range(n)] + [0.0]), np.ones(n + 1, dtype=np.float32),
              np.array([1] * 7 + [5] + [1] * 4 + [1], dtype=np.int8))  # fmt: skip
    log.strength[7] = 0.0  # a skip: an input, never a target
    seqs = UserSequences.build(log)
    row = {k: j + 1 for j, k in enumerate(log.items)}
    cut = {0: 10}
    items, types, gaps, pos = _windows(log, seqs, cut, row, 4)
    assert items.tolist() == [[row["x6"], row["x7"], row["x8"], row["x9"]]]
    items, types, gaps, pos = _windows(log, seqs, cut, row, 4, every=True)
    # windows of 4 ending at x9, x6, x3, sharing one event: x6…x9, x3…x6, x0…x3
    assert [[log.items[r - 1] if r else "-" for r in w] for w in items.tolist()] == [
        ["x6", "x7", "x8", "x9"],
        ["x3", "x4", "x5", "x6"],
        ["x0", "x1", "x2", "x3"],
    ]
    targets = [log.items[r - 1] for w, p in zip(items, pos, strict=True)
               for r, ok in zip(w[1:], p[1:], strict=True) if ok]  # fmt: skip
    assert sorted(targets) == sorted(f"x{j}" for j in range(1, 10) if j != 7)
    assert types[0].tolist() == [1, 5, 1, 1]
    assert gaps.tolist() == [[0.0, 10.0, 10.0, 10.0]] * 3  # measured within each window
    # a short remainder is left-padded; one event alone is not a window
    items, _, gaps, _ = _windows(log, seqs, {0: 5}, row, 4, every=True)
    assert items.tolist() == [[row["x1"], row["x2"], row["x3"], row["x4"]],
                              [0, 0, row["x0"], row["x1"]]]  # fmt: skip
    assert gaps[1].tolist() == [0.0, 0.0, 0.0, 10.0]


def same_list(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The same log-probabilities to float rounding (the fused side renormalises), the same
    items offered (``-inf`` where excluded)."""
    return torch.equal(torch.isinf(a), torch.isinf(b)) and torch.allclose(
        a.nan_to_num(neginf=0.0), b.nan_to_num(neginf=0.0), atol=1e-5
    )


def test_the_gate_off_serves_the_encoders_list_exactly() -> None:
    model, long = seq_model(), long_model()
    off = seq_model()
    off.scorer.gate_kind = "off"
    got, base = off.log_probs([REQ_A, REQ_B], long)[0], model.log_probs([REQ_A, REQ_B], long)[0]
    assert same_list(got.fused, got.short) and torch.equal(got.short, base.short)
    assert float(got.long_weight.abs().max()) == 0.0


def test_training_serves_the_encoder_alone_when_the_gate_ranks_held_out_cases_lower(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fused list must never be worse than its own encoder on the held-out calibration
    cases' NDCG@10: then the snapshot serves the encoder alone and says so."""
    import models.training.gate as gate_module
    import models.training.sequence as ts

    t = trained
    fit = ts.fit_gate
    monkeypatch.setattr(gate_module, "MIN_DECIDING_CASES", 1)  # the fixture holds out a few

    def worse_gate(*args: Any, **kwargs: Any) -> dict[str, Any]:
        out = fit(*args, **kwargs)
        out["fused"]["ndcg@10"] = out["short_only"]["ndcg@10"] - 0.01
        return out

    monkeypatch.setattr(ts, "fit_gate", worse_gate)
    r = train_sequence(t.log, t.cal_rows, t.long, replace(t.cfg, epochs=2, eval_every=2))
    choice = r.validation["gate_choice"]
    assert choice["serves"] == "encoder alone" and r.model.config["gate"] == "off"
    lp, _ = r.model.log_probs(t.reqs[:8], t.long)
    assert same_list(lp.fused, lp.short) and float(lp.long_weight.abs().max()) == 0.0
    # and the snapshot says so: a scorer rebuilt from its configuration has no gate either
    assert scorer_from_config(r.model.config, len(r.model.item_ids), 8).gate_kind == "off"


def test_the_gate_serves_when_it_ranks_held_out_cases_at_least_as_well() -> None:
    from models.training.gate import choose_gate

    tie = {"fused": {"ndcg@10": 0.2}, "short_only": {"ndcg@10": 0.2}}
    assert choose_gate(tie) == {**choose_gate(tie), "serves": "gate"}  # type: ignore[dict-item]
    assert choose_gate({"fused": {"ndcg@10": 0.1}, "short_only": {"ndcg@10": 0.2}})["serves"] == (  # type: ignore[index]
        "encoder alone"
    )
    assert choose_gate({}) is None
    # too few held-out cases to tell: the gate serves as fitted, and the choice says why
    few = {"fused": {"ndcg@10": 0.1, "cases": 5.0}, "short_only": {"ndcg@10": 0.2, "cases": 5.0}}
    assert choose_gate(few)["serves"] == "gate" and "5 held-out cases" in choose_gate(few)["why"]  # type: ignore[index]
    many = {"fused": {"ndcg@10": 0.1, "cases": 50.0}, "short_only": {"ndcg@10": 0.2}}
    assert choose_gate(many)["serves"] == "encoder alone"  # type: ignore[index]
