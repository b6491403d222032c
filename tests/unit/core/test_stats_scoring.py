"""Item statistics (co-visitation, popularity, trending) and the short-term scorer."""

from __future__ import annotations

import math

from lsi.core.scoring import ScoringConfig, score_user
from lsi.core.state import StateConfig, UserState
from lsi.core.stats import (
    ItemStats,
    StatsConfig,
    Trending,
    apply_delta,
    batch_deltas,
    merge_trending,
    update_trending,
)
from lsi.wire.records import Event, ItemDelta

CFG = StatsConfig(
    pop_half_life_s=10.0,
    covis_half_life_s=10.0,
    window=2,
    window_decay=0.5,
    neighbors_max=3,
    trending_n=3,
)


def ev(item: str, ts: float = 0.0, etype: str = "view") -> Event:
    return Event(f"e-{item}-{ts}", "u", item, etype, ts)


def test_batch_deltas_pair_both_directions_with_window_decay() -> None:
    deltas = batch_deltas([(ev("c", 5.0), ["b", "a", "z"])], CFG)
    assert deltas["c"].pop == 1.0 and deltas["c"].co == {"b": 1.0, "a": 0.5}
    assert deltas["b"].co == {"c": 1.0} and deltas["b"].pop == 0.0
    assert deltas["a"].co == {"c": 0.5}
    assert "z" not in deltas  # outside the window
    assert deltas["a"].ts == 5.0


def test_negative_events_add_nothing() -> None:
    assert batch_deltas([(ev("c", 1.0, "skip"), ["b"])], CFG) == {}


def test_apply_delta_decays_then_adds_and_prunes_neighbours() -> None:
    stats = apply_delta(None, ItemDelta(pop=2.0, ts=0.0, co={"a": 4.0, "b": 1.0}), CFG)
    stats = apply_delta(stats, ItemDelta(pop=1.0, ts=10.0, co={"c": 3.0, "d": 0.1}), CFG)
    assert math.isclose(stats.pop, 2.0 * 0.5 + 1.0)
    assert stats.ref_ts == 10.0
    assert stats.neighbors == {"a": 2.0, "c": 3.0, "b": 0.5}  # d pruned (top 3)
    assert ItemStats.from_bytes(stats.to_bytes()) == stats


def test_trending_is_exact_top_n_after_updates() -> None:
    items = {k: ItemStats(pop=p, ref_ts=0.0) for k, p in {"a": 5, "b": 4, "c": 3, "d": 1}.items()}
    t0 = update_trending(None, items, CFG)
    assert [k for k, _ in t0.items] == ["a", "b", "c"]
    # ten seconds later d gets 3 new events: 1*0.5 + 3 = 3.5 beats c (1.5) and b (2.0)
    t1 = update_trending(t0, {"d": ItemStats(pop=3.5, ref_ts=10.0)}, CFG)
    assert [k for k, _ in t1.items] == ["d", "a", "b"]
    assert math.isclose(dict(t1.items)["a"], 2.5)
    assert Trending.from_bytes(t1.to_bytes()) == t1


def test_merge_trending_decays_to_the_newest_list() -> None:
    merged = merge_trending([Trending(0.0, (("a", 8.0),)), Trending(10.0, (("b", 5.0),))], CFG)
    assert merged.items == (("b", 5.0), ("a", 4.0))


def state_with(*items: str) -> UserState:
    state = UserState()
    for i, item in enumerate(items):
        state.learn_one(Event(f"e{i}", "u", item, "view", float(i)), StateConfig())
    return state


def test_scorer_prefers_neighbours_of_the_most_recent_items() -> None:
    stats = {
        "old": ItemStats(1, 0, {"x": 10.0}),
        "new": ItemStats(1, 0, {"y": 10.0, "x": 1.0}),
    }
    trending = Trending(0.0, (("t", 100.0), ("y", 1.0)))
    res = score_user(
        state_with("old", "new"), stats.get, trending, ScoringConfig(top_k=5, anchor_decay=0.5)
    )
    ranked = [i.item_id for i in res.items]
    assert ranked[0] == "y" and "x" in ranked and "t" in ranked
    assert res.source == "covisit" and res.long_weight == 0.0
    assert all(i.long_score == 0.0 and i.short_score == i.score for i in res.items)
    assert "old" not in ranked and "new" not in ranked  # seen items filtered


def test_scorer_cold_start_is_trending() -> None:
    trending = Trending(0.0, (("t1", 4.0), ("t2", 2.0)))
    res = score_user(UserState(), {}.get, trending, ScoringConfig())
    assert [(i.item_id, round(i.score, 3)) for i in res.items] == [("t1", 1.0), ("t2", 0.5)]
    assert res.source == "trending"
    empty = score_user(UserState(), {}.get, Trending(0.0, ()), ScoringConfig())
    assert empty.items == () and empty.source == "empty"


def test_scorer_can_keep_seen_items() -> None:
    stats = {"a": ItemStats(1, 0, {"b": 1.0}), "b": ItemStats(1, 0, {"a": 1.0})}
    res = score_user(
        state_with("a", "b"), stats.get, Trending(0, ()), ScoringConfig(filter_seen=False)
    )
    assert {i.item_id for i in res.items} == {"a", "b"}


def test_scorer_uses_exactly_the_configured_number_of_anchors() -> None:
    stats = {k: ItemStats(1, 0, {f"n-{k}": 1.0}) for k in ("a", "b", "c")}
    res = score_user(
        state_with("a", "b", "c"), stats.get, Trending(0, ()), ScoringConfig(anchors=2)
    )
    assert {i.item_id for i in res.items} == {"n-c", "n-b"}


def test_bundles_round_trip_and_deltas_merge_additively() -> None:
    from lsi.core.stats import merge_into
    from lsi.wire.records import decode_bundle, encode_bundle

    deltas = {"a": ItemDelta(2.0, 5.0, {"b": 1.0}), "b": ItemDelta(0.0, 4.0, {"a": 0.5})}
    assert decode_bundle(encode_bundle(deltas)) == deltas
    acc = ItemDelta(1.0, 6.0, {"b": 1.0, "c": 2.0})
    merge_into(acc, deltas["a"])
    assert acc == ItemDelta(3.0, 6.0, {"b": 2.0, "c": 2.0})


def test_trending_is_left_as_is_when_no_update_can_enter_it() -> None:
    full = update_trending(
        None, {k: ItemStats(pop=p, ref_ts=0.0) for k, p in {"a": 5, "b": 4, "c": 3}.items()}, CFG
    )
    weak = update_trending(full, {"z": ItemStats(pop=1.0, ref_ts=0.0)}, CFG)
    assert weak is full  # nothing to write, nothing to merge again
    strong = update_trending(full, {"z": ItemStats(pop=9.0, ref_ts=0.0)}, CFG)
    assert [k for k, _ in strong.items] == ["z", "a", "b"]
    rescored = update_trending(
        full, {"c": ItemStats(pop=3.5, ref_ts=0.0)}, CFG
    )  # listed: recomputed
    assert rescored is not full and dict(rescored.items)["c"] == 3.5
