"""The business rules (:mod:`lsi.core.rules`): which own items come back, the category filter
and the per-category cap, alone and through the engine with the statistics scorer. (The fused
scorer's side: tests/unit/serving/test_fusion_rules.py.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from lsi.config import Settings
from lsi.core.engine import EngineConfig, process_batch, recommend
from lsi.core.rules import MAX_FETCH, Rules, explore, fetch_size, own_items, select
from lsi.core.scoring import ScoringConfig
from lsi.core.state import StateConfig, UserState
from lsi.core.stats import ItemStats, Trending
from lsi.errors import ConfigError
from lsi.wire.records import Event

DAY = 86400.0


def state_of(*events: tuple[str, str, float]) -> UserState:
    state = UserState()
    for n, (item, etype, ts) in enumerate(events):
        state.learn_one(Event(f"e{n}", "u", item, etype, ts), StateConfig())
    return state


# -- own items ------------------------------------------------------------------------------
def test_seen_is_each_scorers_default_and_the_others_name_the_items() -> None:
    st = state_of(("a", "view", 0.0), ("b", "purchase", 10 * DAY), ("c", "cart", 39 * DAY),
                  ("d", "view", 40 * DAY))  # fmt: skip
    assert own_items(st, Rules()) is None
    assert own_items(st, Rules(own_items="purchased")) == {"b"}
    # within 30 days of the user's newest event (day 40): c and d; b is 30 days old: kept
    assert own_items(st, Rules(own_items="recent")) == {"b", "c", "d"}
    assert own_items(st, Rules(own_items="recent", recent_days=2)) == {"c", "d"}
    assert own_items(UserState(), Rules(own_items="recent")) == frozenset()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"own_items": "bought"},
        {"recent_days": 0.0},
        {"recent_days": -1.0},
        {"category_cap": -1},
        {"new_slots": -1},
        {"new_days": 0.0},
    ],
)
def test_bad_rules_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Rules(**kwargs)  # type: ignore[arg-type]


def test_settings_build_the_rules_and_refuse_bad_ones() -> None:
    cfg = Settings(rule_own_items="recent", rule_recent_days=7.0, rule_category_cap=2).engine()
    assert cfg.rules == Rules(own_items="recent", recent_days=7.0, category_cap=2)
    with pytest.raises(ConfigError, match="LSI_RULE_OWN_ITEMS"):
        Settings(rule_own_items="never")
    with pytest.raises(ConfigError, match="LSI_RULE_CATEGORY_CAP"):
        Settings(rule_category_cap=-1)
    with pytest.raises(ConfigError, match="LSI_RULE_NEW_SLOTS"):
        Settings(rule_new_slots=-2)
    assert Settings(rule_new_slots=2, rule_new_days=3.0).engine().rules.new_slots == 2


# -- select ---------------------------------------------------------------------------------
CATS = {"a1": ("a",), "a2": ("a",), "a3": ("a",), "b1": ("b",), "ab": ("a", "b"), "b2": ("b",)}


def cats(item: str) -> tuple[str, ...]:
    return CATS.get(item, ())


def test_the_cap_keeps_the_best_of_each_category_in_rank_order() -> None:
    ranked = ["a1", "a2", "ab", "a3", "x", "b1", "b2"]
    assert select(ranked, str, 10, cats, cap=1) == ["a1", "x", "b1"]
    # an item of two categories counts for both, and is kept only while both have room
    assert select(ranked, str, 10, cats, cap=2) == ["a1", "a2", "x", "b1", "b2"]
    assert select(ranked, str, 3, cats, cap=2) == ["a1", "a2", "x"]
    assert select(ranked, str, 10, cats) == ranked  # no cap: unchanged


def test_the_category_filter_keeps_only_its_items() -> None:
    ranked = ["a1", "b1", "ab", "x", "b2"]
    assert select(ranked, str, 10, cats, category="b") == ["b1", "ab", "b2"]
    assert select(ranked, str, 2, cats, category="b") == ["b1", "ab"]
    assert select(ranked, str, 10, cats, category="b", cap=1) == ["b1"]
    assert select(ranked, str, 10, cats, category="zz") == []


def test_fetch_size_asks_for_more_only_when_something_filters() -> None:
    assert fetch_size(20, Rules(), None, True) == 20
    assert fetch_size(20, Rules(category_cap=2), None, False) == 20  # no categories: no cap
    assert fetch_size(20, Rules(category_cap=2), None, True) == 60
    assert fetch_size(20, Rules(), "a", False) == 100
    assert fetch_size(1000, Rules(), "a", True) == MAX_FETCH


# -- through the engine (statistics scorer) ---------------------------------------------------
#: i00's co-visitation neighbours n00..n39 in rank order; n<j> is in category c<j mod 4>
STATS = {"i00": ItemStats(1.0, 0.0, {f"n{j:02d}": 100.0 - j for j in range(40)})}
TRENDING = Trending(0.0, (("hot", 5.0),))


def item_cats(item: str) -> tuple[str, ...]:
    return (f"c{int(item[1:]) % 4}",) if item.startswith("n") else ()


def cfg(**rules: object) -> EngineConfig:
    return EngineConfig(scoring=ScoringConfig(top_k=6, trending_weight=0.0),
                        rules=Rules(**rules))  # type: ignore[arg-type]  # fmt: skip


def listed(state: UserState, config: EngineConfig, **kw: object) -> list[str]:
    rec = recommend("u", state, STATS.get, TRENDING, config, 1.0, event_ts=None,
                    **kw)  # type: ignore[arg-type]  # fmt: skip
    return [i.item_id for i in rec.items]


def test_the_cap_and_the_category_filter_in_the_engine() -> None:
    st = state_of(("i00", "view", 0.0))
    assert listed(st, cfg()) == [f"n{j:02d}" for j in range(6)]
    # cap 1: one of each of the four categories, then nothing else may come
    assert listed(st, cfg(category_cap=1), categories=item_cats) == ["n00", "n01", "n02", "n03"]
    got = listed(st, cfg(category_cap=2), categories=item_cats)
    assert got == ["n00", "n01", "n02", "n03", "n04", "n05"]
    # a request's category: only its items, still six (found past the first fetch)
    assert listed(st, cfg(), categories=item_cats, category="c3") == [
        f"n{j:02d}" for j in (3, 7, 11, 15, 19, 23)
    ]
    # without categories, a cap changes nothing; a category filter passes nothing
    assert listed(st, cfg(category_cap=1)) == [f"n{j:02d}" for j in range(6)]
    assert listed(st, cfg(), category="c3") == []


def test_a_short_first_fetch_is_asked_again_with_more() -> None:
    # c3 items are every fourth: 6 of them need 24 candidates; the first fetch (max(4k,100)
    # = 100 here) has them, so force a small k whose first fetch is short
    st = state_of(("i00", "view", 0.0))
    many = {"i00": ItemStats(1.0, 0.0, {f"n{j:03d}": 1000.0 - j for j in range(600)})}
    small = replace(cfg(), scoring=ScoringConfig(top_k=30, trending_weight=0.0))

    def rare(item: str) -> tuple[str, ...]:  # one item in 20: 30 of them need 600 candidates
        return ("rare",) if item.startswith("n") and int(item[1:]) % 20 == 0 else ()

    rec = recommend("u", st, many.get, TRENDING, small, 1.0, event_ts=None, categories=rare,
                    category="rare")  # fmt: skip
    assert [i.item_id for i in rec.items] == [f"n{j:03d}" for j in range(0, 600, 20)]
    assert [i.item_id for i in rec.short_term] == [i.item_id for i in rec.items]


def test_purchased_only_lets_viewed_items_come_back() -> None:
    stats = {"i00": ItemStats(1.0, 0.0, {"v1": 3.0, "p1": 2.0, "n1": 1.0}),
             "v1": ItemStats(1.0, 0.0, {"i00": 1.0})}  # fmt: skip
    events = [Event("e1", "u", "v1", "view", 1.0), Event("e2", "u", "p1", "purchase", 2.0),
              Event("e3", "u", "i00", "view", 3.0)]  # fmt: skip
    store: dict[str, UserState] = {}

    def run(config: EngineConfig) -> list[str]:
        out = process_batch(events, store.get, stats.get, TRENDING, config, 10.0)
        return [i.item_id for i in out.recommendations[-1].items]

    assert run(cfg()) == ["n1"]  # every seen item left out
    # only the purchase: i00 (a neighbour of v1) and v1 (of i00) come back, p1 does not
    assert run(cfg(own_items="purchased")) == ["v1", "i00", "n1"]


def test_recent_lets_old_items_come_back() -> None:
    stats = {"i00": ItemStats(1.0, 0.0, {"old": 3.0, "new": 2.0, "n1": 1.0})}
    st = state_of(("old", "view", 0.0), ("new", "view", 99 * DAY), ("i00", "view", 100 * DAY))
    assert [i.item_id for i in recommend("u", st, stats.get, TRENDING, cfg(own_items="recent"),
                                         1.0, event_ts=None).items] == ["old", "n1"]  # fmt: skip


# -- new items (exploration) ------------------------------------------------------------------
def test_explore_places_new_items_at_every_third_place_and_cuts_to_k() -> None:
    ranked = [f"s{j}" for j in range(6)]
    new = ["n0", "n1", "n2", "n3"]

    def place(user: str, slots: int, k: int = 6, ok: Callable[[str], bool] = lambda _: True
              ) -> list[str]:  # fmt: skip
        return explore(ranked, k, user, new, slots, ok, lambda i: i.upper(), str.lower)

    got = place("u", 2)
    assert got[:2] == ["s0", "s1"] and got[3] == "s2" and len(got) == 6
    assert got[2].startswith("N") and got[5].startswith("N") and got[2] != got[5]
    assert [x for x in got if x.startswith("s")] == ["s0", "s1", "s2", "s3"]  # pushed down, cut
    assert place("u", 0) == ranked and place("u", 2, k=2) == ["s0", "s1"]
    # the rotation starts at a place given by the user id: users see different new items
    firsts = {place(f"user{j}", 1)[2] for j in range(40)}
    assert firsts == {"N0", "N1", "N2", "N3"}
    assert place("user7", 1) == place("user7", 1)  # and the same one each time
    # an item not allowed (or already listed) is skipped for the next one
    assert "N1" not in place("u", 4, ok=lambda i: i != "n1")
    assert explore(["n2", "s1"], 3, "u", ["n2"], 1, lambda _: True, str.upper, str.lower) == [
        "n2", "s1"]  # fmt: skip


def test_the_engine_gives_new_items_their_places_with_the_rules() -> None:
    st = state_of(("i00", "view", 0.0), ("old", "purchase", 1.0))
    config = cfg(new_slots=1)
    rec = recommend("u", st, STATS.get, TRENDING, config, 1.0, event_ts=None,
                    new_items=("fresh", "old"))  # fmt: skip
    assert [(i.item_id, i.explore) for i in rec.items][:4] == [
        ("n00", False), ("n01", False), ("fresh", True), ("n02", False)]  # fmt: skip
    assert rec.items[2].score == 0.0 and len(rec.items) == 6
    assert "fresh" in rec.to_json().decode() and '"explore":true' in rec.to_json().decode()
    # the user's own item never comes back as new; a category filter applies to them too
    only_old = recommend("u", st, STATS.get, TRENDING, config, 1.0, event_ts=None,
                         new_items=("old",))  # fmt: skip
    assert all(not i.explore for i in only_old.items)
    filtered = recommend("u", st, STATS.get, TRENDING, config, 1.0, event_ts=None,
                         new_items=("fresh", "n99"), categories=item_cats, category="c3")  # fmt: skip
    assert [i.item_id for i in filtered.items if i.explore] == ["n99"]
    # off: nothing placed
    off = recommend("u", st, STATS.get, TRENDING, cfg(), 1.0, event_ts=None,
                    new_items=("fresh",))  # fmt: skip
    assert not any(i.explore for i in off.items)
