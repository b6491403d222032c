"""The business rules in the fused scorer: a request's ``own`` items replace the default
exclusions (the window and the snapshot's history), exactly and through retrieval, and the
engine's category cap and filter over the fused lists. (The rules themselves:
tests/unit/core/test_rules.py.)"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lsi.core.engine import EngineConfig, fused_lists, recommend, recommend_many
from lsi.core.rules import Rules
from lsi.core.scoring import ScoringConfig
from lsi.core.state import StateConfig, UserState
from lsi.core.stats import Trending
from lsi.wire.records import Event
from tests.threads import one_thread  # noqa: F401  (an autouse fixture)
from tests.unit.serving.test_fusion import ITEMS, REQ_A, SEEN_A, long_model, rows_of, seq_model


def test_own_items_replace_the_window_and_the_history_in_the_mask() -> None:
    model, long = seq_model(), long_model()
    x = model.inputs([REQ_A, replace(REQ_A, own=frozenset({"i2", "i6", "x"})),
                      replace(REQ_A, own=frozenset())], long)  # fmt: skip
    assert set(np.flatnonzero(x.excluded[0].numpy())) == rows_of(sorted(SEEN_A))
    assert set(np.flatnonzero(x.excluded[1].numpy())) == rows_of(["i2", "i6"])
    assert not x.excluded[2].any()
    # the window itself, and so the encoder's input, is unchanged
    assert (x.items[0] == x.items[1]).all() and (x.items[0] == x.items[2]).all()


@pytest.mark.parametrize("retrieval", [False, True])
def test_an_own_item_the_rules_let_back_can_be_offered(retrieval: bool) -> None:
    seq = seq_model(seed=1)
    if retrieval:
        seq = seq.with_retrieval(mode="ann", candidates=len(ITEMS))
    long = long_model(seq)
    everything, = seq.recommend([replace(REQ_A, own=frozenset())], long, len(ITEMS))  # fmt: skip
    default, = seq.recommend([REQ_A], long, len(ITEMS))  # fmt: skip
    assert everything is not None and default is not None
    assert {i.item_id for i in default.items} == set(ITEMS) - SEEN_A
    assert {i.item_id for i in everything.items} == set(ITEMS)
    assert sum(i.score for i in everything.items) == pytest.approx(1.0, abs=1e-4)


def state_a() -> UserState:
    st = UserState()
    for n, (item, etype) in enumerate([("i1", "view"), ("i2", "purchase"), ("i3", "view")]):
        st.learn_one(Event(f"e{n}", "a", item, etype, 100.0 * n), StateConfig())
    return st


def cats(item: str) -> tuple[str, ...]:
    return (f"c{int(item[1:]) % 3}",)


def engine(**rules: object) -> EngineConfig:
    return EngineConfig(scoring=ScoringConfig(top_k=6),
                        rules=Rules(**rules))  # type: ignore[arg-type]  # fmt: skip


def test_the_engine_applies_the_rules_to_the_fused_lists() -> None:
    long = long_model(seq_model(seed=2))
    st, trending = state_a(), Trending(0.0, ())

    def items(cfg: EngineConfig, **kw: object) -> list[str]:
        rec = recommend("a", st, lambda _: None, trending, cfg, 1.0, event_ts=None, model=long,
                        **kw)  # type: ignore[arg-type]  # fmt: skip
        assert rec.source == "fused"
        return [i.item_id for i in rec.items]

    full = items(engine())
    assert not {"i1", "i2", "i3", "i5", "i6"} & set(full)
    purchased = items(engine(own_items="purchased"))
    assert "i2" not in purchased and len(purchased) == 6
    capped = items(engine(category_cap=1), categories=cats)
    assert len(capped) == 3 and len({cats(i) for i in capped}) == 3
    # the cap keeps the best item of each category, in the uncapped order
    uncapped = [i.item_id for i in
                recommend("a", st, lambda _: None, trending, replace(engine(), scoring=ScoringConfig(top_k=20)),
                          1.0, event_ts=None, model=long).items]  # fmt: skip
    assert capped == [i for n, i in enumerate(uncapped)
                      if cats(i) not in {cats(j) for j in uncapped[:n]}]  # fmt: skip
    only = items(engine(), categories=cats, category="c1")
    assert only and all(cats(i) == ("c1",) for i in only)
    assert only == [i for i in uncapped if cats(i) == ("c1",)][:6]


def test_lists_computed_ahead_on_a_thread_give_the_same_records() -> None:
    long = long_model(seq_model(seed=2))
    pending = [("a", state_a(), 1.0)]
    cfg = engine(category_cap=2, own_items="purchased")
    ahead = fused_lists(pending, long, cfg, categories=cats)
    args = (pending, lambda _: None, Trending(0.0, ()), cfg, 1.0)
    with_lists = recommend_many(*args, model=long, lists=ahead, categories=cats)
    without = recommend_many(*args, model=long, categories=cats)
    assert with_lists == without
