"""A request's exclusions in the statistics scorer (``score_user(..., exclude=...)``) and the
engine's ``recommend``: an excluded item is in no list, and the lists keep their length while
enough other candidates exist. (The fused scorer's: tests/unit/serving/test_fusion_exclude.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from lsi.core.engine import EngineConfig, recommend
from lsi.core.scoring import ScoreResult, ScoringConfig, score_user
from lsi.core.state import StateConfig, UserState
from lsi.core.stats import ItemStats, Trending
from lsi.serving.snapshot import Snapshot
from lsi.wire.records import Event

ITEMS = tuple(f"i{j:02d}" for j in range(30))
#: u saw i00 and i01; their neighbours are i02..i07, trending adds t0..t4
STATS = {
    "i00": ItemStats(1.0, 0.0, {"i02": 5.0, "i03": 4.0, "i04": 3.0, "i01": 1.0}),
    "i01": ItemStats(1.0, 0.0, {"i05": 3.0, "i06": 2.0, "i07": 1.0}),
}
TRENDING = Trending(0.0, tuple((f"t{j}", 10.0 - j) for j in range(5)))


def state_of(*items: str) -> UserState:
    state = UserState()
    for n, item in enumerate(items):
        state.learn_one(Event(f"e{n}", "u", item, "view", float(n)), StateConfig())
    return state


def snapshot() -> Snapshot:
    rng = np.random.default_rng(3)
    return Snapshot("v000002", ("u",), ITEMS, rng.standard_normal((1, 6)).astype(np.float32),
                    rng.standard_normal((len(ITEMS), 6)).astype(np.float32),
                    np.array([0, 0], dtype=np.int64), np.zeros(0, dtype=np.int32))  # fmt: skip


def ids(res: ScoreResult) -> tuple[list[str], list[str], list[str]]:
    return ([i.item_id for i in res.items], [i.item_id for i in res.short_term],
            [i.item_id for i in res.long_term])  # fmt: skip


def test_excluded_items_leave_the_covisitation_list_and_the_next_ones_move_up() -> None:
    state, cfg = state_of("i00", "i01"), ScoringConfig(top_k=4)
    full = score_user(state, STATS.get, TRENDING, cfg)
    assert full.source == "covisit"
    top = [i.item_id for i in full.items]
    assert len(top) == 4
    wider = score_user(state, STATS.get, TRENDING, ScoringConfig(top_k=6))
    cut = score_user(state, STATS.get, TRENDING, cfg, exclude={top[0], top[2]})
    # the same order without the excluded two, still four long
    assert [i.item_id for i in cut.items] == [
        i.item_id for i in wider.items if i.item_id not in {top[0], top[2]}
    ][:4]
    assert {top[0], top[2]}.isdisjoint({i.item_id for i in cut.short_term})


def test_exclusions_apply_to_the_cold_start_list_too() -> None:
    res = score_user(UserState(), STATS.get, TRENDING, ScoringConfig(top_k=3), exclude={"t0"})
    assert res.source == "trending" and ids(res)[0] == ["t1", "t2", "t3"]


def test_exclusions_hold_even_without_filter_seen() -> None:
    cfg = ScoringConfig(top_k=3, filter_seen=False)
    res = score_user(state_of("i00"), STATS.get, TRENDING, cfg, exclude={"i02"})
    assert "i02" not in ids(res)[0] and len(res.items) == 3


@pytest.mark.parametrize("mode", ["fused", "long_only"])
def test_with_a_snapshot_no_list_holds_an_excluded_item(mode: str) -> None:
    model, state = snapshot(), state_of("i00", "i01")
    cfg = ScoringConfig(top_k=5, mode=mode)
    full = score_user(state, STATS.get, TRENDING, cfg, model, "u")
    banned = {i.item_id for i in full.items[:3]} | {i.item_id for i in full.long_term[:2]}
    cut = score_user(state, STATS.get, TRENDING, cfg, model, "u", exclude=banned)
    for listed in ids(cut):
        assert banned.isdisjoint(listed)
    assert len(cut.items) == len(cut.long_term) == 5
    if mode == "long_only":  # the snapshot's own order without the excluded items
        assert ids(cut)[0] == [k for k, _ in model.top("u", 5, exclude=banned | {"i00", "i01"})]


def test_recommend_takes_the_exclusions_and_n_is_the_configured_length() -> None:
    state = state_of("i00", "i01")
    cfg = EngineConfig(scoring=ScoringConfig(top_k=7))
    before = state.to_bytes()
    rec = recommend("u", state, STATS.get, TRENDING, cfg, 1.0, event_ts=None,
                    trigger="request", exclude=frozenset({"i02", "i05", "t0"}))  # fmt: skip
    listed = [i.item_id for i in rec.items]
    assert len(listed) == 7 and {"i02", "i05", "t0"}.isdisjoint(listed)
    assert state.to_bytes() == before  # a request changes no state
