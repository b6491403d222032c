"""A request's exclusions in the fused scorer (``SequenceModel.recommend(..., exclude=...)``),
exact and through retrieval, and through the engine: an excluded item is in no list, masked
like a seen item, and the lists still hold ``k`` items while enough others remain."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lsi.core.engine import EngineConfig, recommend
from lsi.core.scoring import ScoringConfig
from lsi.core.snapshot_view import SeqLists
from lsi.core.state import StateConfig, UserState
from lsi.core.stats import Trending
from lsi.serving.fusion import SequenceModel
from lsi.serving.snapshot import Snapshot
from lsi.wire.records import Event
from tests.threads import one_thread  # noqa: F401  (an autouse fixture)
from tests.unit.serving.test_fusion import (
    ITEMS,
    REQ_A,
    REQ_B,
    SEEN_A,
    SEEN_B,
    long_model,
    seq_model,
)


def listed(lists: SeqLists | None) -> list[list[str]]:
    assert lists is not None
    return [[e.item_id for e in entries]
            for entries in (lists.items, lists.short_term, lists.long_term)]  # fmt: skip


@pytest.mark.parametrize("mode", ["fused", "short_only", "long_only"])
def test_no_list_holds_an_excluded_item_and_the_rest_keep_their_order(mode: str) -> None:
    model, long = seq_model(), long_model()
    k = 5
    full_a, full_b = model.recommend([REQ_A, REQ_B], long, k + 4, mode)
    assert full_a is not None and full_b is not None
    # a's best two and its long-term best, b's best, and an item the encoder does not know
    banned = {full_a.items[0].item_id, full_a.items[1].item_id, full_a.long_term[0].item_id,
              full_b.items[0].item_id, "not-in-the-catalogue"}  # fmt: skip
    got = model.recommend([REQ_A, REQ_B], long, k, mode, exclude=banned)
    for out, full in zip(got, (full_a, full_b), strict=True):
        assert out is not None
        for names, before in zip(listed(out), listed(full), strict=True):
            assert banned.isdisjoint(names)
            # masking renormalises each distribution but keeps the order of the others
            assert names == [x for x in before if x not in banned][: len(names)]
        assert len(out.items) == len(out.short_term) == k
    assert listed(got[0])[2] and len(listed(got[0])[2]) == k


def test_every_item_not_seen_nor_excluded_is_still_offered_and_shares_the_mass() -> None:
    model, long = seq_model(), long_model()
    banned = {"i0", "i4", "i11"}
    a, b = model.recommend([REQ_A, REQ_B], long, 100, exclude=banned)
    assert a is not None and b is not None
    assert {i.item_id for i in a.items} == set(ITEMS) - SEEN_A - banned
    assert {i.item_id for i in b.items} == set(ITEMS) - SEEN_B - banned
    assert sum(i.score for i in a.items) == pytest.approx(1.0, abs=1e-4)


def test_the_exclusions_are_masked_in_the_models_inputs() -> None:
    model, long = seq_model(), long_model()
    x = model.inputs([REQ_A], long, exclude={"i0", "i19", "nope"})
    masked = set(x.excluded[0].nonzero().flatten().tolist())
    assert {ITEMS.index("i0"), ITEMS.index("i19")} <= masked
    assert model.exclusion_rows({"i19", "nope", "i0"}).tolist() == [0, 19]


def test_retrieval_masks_the_exclusions_too() -> None:
    seq = seq_model(seed=3)
    long = long_model(seq)
    ann = seq.with_retrieval(mode="ann", candidates=len(ITEMS))
    banned = {"i0", "i4", "i11", "i12"}
    got = ann.recommend([REQ_A, REQ_B], replace(long, sequence=ann), 6, exclude=banned)
    want = seq.recommend([REQ_A, REQ_B], long, 6, exclude=banned)
    for g, w in zip(got, want, strict=True):
        assert listed(g) == listed(w)
        assert all(banned.isdisjoint(names) for names in listed(g))
        assert g is not None and len(g.items) == 6


def served(model: SequenceModel, user: str, items: list[str]) -> UserState:
    state = UserState()
    for n, item in enumerate(items):
        state.learn_one(Event(f"e{n}", user, item, "click", float(n)), StateConfig())
    return state


def test_the_engine_passes_a_requests_exclusions_to_the_fused_scorer() -> None:
    snapshot: Snapshot = long_model(seq_model(), version="v000011")
    cfg = EngineConfig(scoring=ScoringConfig(top_k=6))
    state = served(snapshot.sequence, "a", ["i1", "i2"])
    trending = Trending(0.0, (("hot", 1.0),))
    full = recommend("a", state, {}.get, trending, cfg, 1.0, event_ts=None, model=snapshot)
    assert full.source == "fused" and full.model_version == "v000011"
    banned = frozenset(i.item_id for i in full.items[::2])
    rec = recommend("a", state, {}.get, trending, cfg, 1.0, event_ts=None, model=snapshot,
                    exclude=banned)  # fmt: skip
    assert rec.source == "fused" and len(rec.items) == 6
    for entries in (rec.items, rec.short_term, rec.long_term):
        assert banned.isdisjoint(e.item_id for e in entries)
    assert [i.item_id for i in rec.items][:3] == [i.item_id for i in full.items[1::2]]
