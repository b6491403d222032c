"""Long-term scoring modes: long_only is the snapshot's ranking, fused mixes, fallbacks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lsi.core.scoring import ScoringConfig, score_user
from lsi.core.state import StateConfig, UserState
from lsi.core.stats import ItemStats, Trending
from lsi.serving.snapshot import Snapshot
from lsi.wire.records import Event

N_ITEMS = 40
ITEMS = tuple(f"i{j:02d}" for j in range(N_ITEMS))


def make_model(seed: int = 0) -> Snapshot:
    """Random vectors (no ties); user ``u`` has i00 and i01 in its training history."""
    rng = np.random.default_rng(seed)
    return Snapshot(
        "v000004",
        ("u", "other"),
        ITEMS,
        rng.standard_normal((2, 8)).astype(np.float32),
        rng.standard_normal((N_ITEMS, 8)).astype(np.float32),
        np.array([0, 2, 2], dtype=np.int64),
        np.array([0, 1], dtype=np.int32),
    )


def state_with(*items: str) -> UserState:
    state = UserState()
    for n, item in enumerate(items):
        state.learn_one(Event(f"e{n}", "u", item, "view", float(n)), StateConfig())
    return state


# the user recently saw i02 and i03; their co-visitation neighbours include items the
# snapshot knows (i04, i05) and items it does not (new-a, new-b)
STATE_ITEMS = ("i02", "i03")
STATS = {
    "i02": ItemStats(1.0, 0.0, {"i04": 3.0, "new-a": 2.0, "i03": 1.0}),
    "i03": ItemStats(1.0, 0.0, {"i05": 1.0, "new-b": 1.0}),
}
TRENDING = Trending(0.0, (("new-c", 5.0), ("i06", 2.0)))


def served_order_expected(model: Snapshot, user: str, seen: set[str], k: int) -> list[str]:
    s = model.scores(user)
    assert s is not None
    for item in seen:
        s[model.item_index[item]] = -np.inf
    order = [j for j in np.argsort(-s, kind="stable").tolist() if np.isfinite(s[j])]
    return [model.item_ids[j] for j in order[:k]]


@pytest.mark.parametrize("top_k", [1, 5, 20, 37, 50])
def test_long_only_equals_the_snapshots_ranking_minus_seen(top_k: int) -> None:
    """Offline accuracy (computed from ``Snapshot.scores``) is the served ranking."""
    model = make_model()
    state = state_with(*STATE_ITEMS)
    cfg = ScoringConfig(mode="long_only", top_k=top_k)
    res = score_user(state, STATS.get, TRENDING, cfg, model, "u")
    expected = served_order_expected(model, "u", set(STATE_ITEMS), top_k)
    assert [i.item_id for i in res.items] == expected
    assert len(res.items) == min(top_k, N_ITEMS - 4)  # 2 history + 2 seen excluded
    assert [i.item_id for i in res.long_term] == expected
    assert res.long_weight == 1.0 and res.source == "long_term"
    assert all(i.score == i.long_score for i in res.items)
    assert "new-a" not in {i.item_id for i in res.items}  # short-term only candidates dropped
    # the same list as the model's own top-K with the recent items excluded
    assert [k for k, _ in model.top("u", top_k, exclude=set(STATE_ITEMS))] == expected


def test_long_only_rescales_best_to_one() -> None:
    model = make_model()
    res = score_user(
        state_with(*STATE_ITEMS),
        STATS.get,
        TRENDING,
        ScoringConfig(mode="long_only", top_k=5, long_candidates=10),
        model,
        "u",
    )
    scores = [i.long_score for i in res.items]
    assert scores[0] == 1.0 and scores == sorted(scores, reverse=True)
    assert all(0.0 <= x <= 1.0 for x in scores)


def test_long_only_without_filter_seen_keeps_recent_items_but_not_history() -> None:
    model = make_model()
    cfg = ScoringConfig(mode="long_only", top_k=N_ITEMS, filter_seen=False)
    res = score_user(state_with(*STATE_ITEMS), STATS.get, TRENDING, cfg, model, "u")
    assert [i.item_id for i in res.items] == served_order_expected(model, "u", set(), N_ITEMS)
    ids = {i.item_id for i in res.items}
    assert {"i02", "i03"} <= ids and not {"i00", "i01"} & ids


@pytest.mark.parametrize("mode", ["fused", "long_only", "short_only"])
def test_unknown_user_gets_the_short_term_path_in_every_mode(mode: str) -> None:
    model = make_model()
    state = state_with(*STATE_ITEMS)
    baseline = score_user(state, STATS.get, TRENDING, ScoringConfig(top_k=10))
    for m, user in ((model, "stranger"), (None, "u")):
        res = score_user(state, STATS.get, TRENDING, ScoringConfig(mode=mode, top_k=10), m, user)
        assert res.long_weight == 0.0 and res.long_term == ()
        assert res.items == baseline.items and res.source == "covisit"
        assert all(i.long_score == 0.0 and i.score == i.short_score for i in res.items)


def test_short_only_ignores_the_model() -> None:
    model = make_model()
    state = state_with(*STATE_ITEMS)
    cfg = ScoringConfig(mode="short_only", top_k=10)
    with_model = score_user(state, STATS.get, TRENDING, cfg, model, "u")
    without = score_user(state, STATS.get, TRENDING, cfg)
    assert with_model == without
    assert with_model.long_weight == 0.0 and with_model.long_term == ()
    assert {i.item_id for i in with_model.items} == {"i04", "i05", "new-a", "new-b", "new-c", "i06"}


def _rescaled(model: Snapshot, seen: set[str], c: int) -> dict[str, float]:
    """The long-term candidates rescaled as the module docstring says: best 1, C-th 0."""
    s = model.scores("u")
    assert s is not None
    for item in seen:
        s[model.item_index[item]] = -np.inf
    finite = np.flatnonzero(np.isfinite(s))
    top = finite[np.argsort(-s[finite])][:c]
    hi, lo = float(s[top[0]]), float(s[top[-1]])
    return {
        k: min(1.0, max(0.0, (float(s[j]) - lo) / (hi - lo)))
        for k, j in model.item_index.items()
        if np.isfinite(s[j])
    }


@pytest.mark.parametrize("w", [0.0, 0.3, 0.5, 0.9])
def test_fused_score_is_the_weighted_mix_per_item(w: float) -> None:
    model = make_model()
    state = state_with(*STATE_ITEMS)
    c = 8
    cfg = ScoringConfig(mode="fused", long_weight=w, top_k=N_ITEMS + 10, long_candidates=c)
    res = score_user(state, STATS.get, TRENDING, cfg, model, "u")
    short = {
        i.item_id: i.score
        for i in score_user(
            state, STATS.get, TRENDING, ScoringConfig(mode="short_only", top_k=100)
        ).items
    }
    long = _rescaled(model, set(STATE_ITEMS), c)
    assert res.long_weight == w and res.source == "fused"
    served = {i.item_id: i for i in res.items}
    # the pool: the C long-term candidates and every short-term candidate
    cands = served_order_expected(model, "u", set(STATE_ITEMS), c)
    assert set(served) == set(cands) | set(short)
    assert [long[k] for k in (cands[0], cands[-1])] == [1.0, 0.0]
    for k, item in served.items():
        assert math.isclose(item.short_score, short.get(k, 0.0), abs_tol=1e-12)
        assert math.isclose(item.long_score, long.get(k, 0.0), abs_tol=1e-6)
        assert math.isclose(item.score, w * item.long_score + (1 - w) * item.short_score)
    scores = [i.score for i in res.items]
    assert scores == sorted(scores, reverse=True)
    assert [i.item_id for i in res.long_term] == cands


def test_fused_items_unknown_to_the_snapshot_get_long_score_zero() -> None:
    model = make_model()
    cfg = ScoringConfig(mode="fused", long_weight=0.5, top_k=100)
    res = score_user(state_with(*STATE_ITEMS), STATS.get, TRENDING, cfg, model, "u")
    served = {i.item_id: i for i in res.items}
    for new in ("new-a", "new-b", "new-c"):
        assert served[new].long_score == 0.0 and served[new].short_score > 0.0
        assert math.isclose(served[new].score, 0.5 * served[new].short_score)
    assert not {"i00", "i01", "i02", "i03"} & set(served)  # history and seen never served


def test_fused_with_full_long_weight_matches_long_only_order() -> None:
    model = make_model()
    state = state_with(*STATE_ITEMS)
    fused = score_user(
        state,
        STATS.get,
        TRENDING,
        ScoringConfig(mode="fused", long_weight=1.0, top_k=10),
        model,
        "u",
    )
    only = score_user(
        state, STATS.get, TRENDING, ScoringConfig(mode="long_only", top_k=10), model, "u"
    )
    assert [i.item_id for i in fused.items] == [i.item_id for i in only.items]
    assert fused.long_weight == only.long_weight == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "long"}, "mode must be one of"),
        ({"long_weight": 1.5}, r"long_weight must be in \[0, 1\]"),
        ({"long_weight": -0.1}, r"long_weight must be in \[0, 1\]"),
        ({"long_candidates": 0}, "long_candidates must be at least 1"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ScoringConfig(**kwargs)  # type: ignore[arg-type]
