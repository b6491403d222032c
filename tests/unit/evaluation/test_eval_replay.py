"""The offline replay runs the live path: process_batch, then the item-stats fold."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest

import lsi.core.engine
import lsi.evaluation.replay as streaming
from lsi.core.engine import BatchResult, EngineConfig
from lsi.core.scoring import score_user
from lsi.core.state import UserState
from lsi.core.stats import Trending, apply_delta, merge_trending, update_trending
from lsi.evaluation.replay import (
    MISS,
    NOT_EVALUATED,
    StreamingModel,
    partition_of,
    prequential,
)
from lsi.wire.records import Event


def ev(n: int, user: str, item: str, ts: float | None = None) -> Event:
    return Event(f"e{n}", user, item, "view", float(n) if ts is None else ts)


def crafted() -> list[Event]:
    """Users a..d walk x -> y -> z; later users follow the co-visitation of earlier ones."""
    out: list[Event] = []
    for u in "abcd":
        for item in "xyz":
            out.append(ev(len(out), u, item))
    out.append(ev(len(out), "e", "w"))
    out.append(ev(len(out), "e", "x"))
    return out


class Spy:
    """Wraps the real process_batch, recording arguments and results."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.results: list[BatchResult] = []
        self.model: StreamingModel | None = None  # if set, note whether it passed its tables

    def __call__(self, events, load, lookup, trending, cfg, now, sources=None, model=None):  # type: ignore[no-untyped-def]
        self.calls.append(dict(events=list(events), load=load, lookup=lookup,
                               trending=trending, cfg=cfg, now=now, sources=sources,
                               long_model=model))  # fmt: skip
        if self.model is not None:
            self.calls[-1]["current_trending"] = trending is self.model.trending
        result = lsi.core.engine.process_batch(events, load, lookup, trending, cfg, now, sources,
                                          model=model)  # fmt: skip
        self.results.append(result)
        return result


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    assert streaming.process_batch is lsi.core.engine.process_batch
    s = Spy()
    monkeypatch.setattr(streaming, "process_batch", s)
    return s


def test_prequential_calls_exactly_process_batch_with_the_models_tables(spy: Spy) -> None:
    events = crafted()
    engine = EngineConfig(emit_policy="event")
    model = spy.model = StreamingModel(engine, partitions=3)
    model.prequential(events, batch_size=4)
    assert len(spy.calls) == 4  # 14 events in batches of 4
    for n, call in enumerate(spy.calls):
        batch = events[4 * n : 4 * n + 4]
        assert call["events"] == batch
        assert call["now"] == max(e.ts for e in batch)
        assert call["cfg"] is engine and call["sources"] is None
        assert call["load"] == model.states.get and call["lookup"] == model.stats.get
        assert call["current_trending"]
    assert spy.calls[0]["trending"] == Trending(0.0, ())
    assert spy.calls[-1]["trending"].items  # the merged lists of the earlier batches


@pytest.mark.parametrize("policy", ["event", "batch", "interval"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_prequential_counts_are_the_batch_results_counts(
    spy: Spy, policy: str, batch_size: int
) -> None:
    res = prequential(crafted(), batch_size, EngineConfig(emit_policy=policy))
    assert res.evaluated == sum(r.evaluated for r in spy.results)
    for k in (1, 5, 10, 20):
        assert res.hits[k] == sum(r.hits[k] for r in spy.results)
    judged = res.ranks[res.ranks != NOT_EVALUATED]
    assert judged.size == res.evaluated
    assert int(((judged >= 0) & (judged < 10)).sum()) == res.hits[10]
    assert res.n_events == len(crafted()) and res.batches == len(spy.calls)


def test_prequential_ranks_on_a_crafted_sequence() -> None:
    res = prequential(crafted(), 1)
    r = res.ranks.tolist()
    # a is first: its lists are empty (no statistics yet, then only its own x, filtered)
    assert r[:3] == [NOT_EVALUATED] * 3
    # b, c, d after x: a's x -> y makes y the top co-visit; after y, z is the top
    assert r[3:12] == [NOT_EVALUATED, 0, 0] * 3
    # e starts cold: w is new, its list is trending x, y, z (tied, ties by id: z, y, x)
    assert r[12:] == [NOT_EVALUATED, 2]
    assert res.hits == {1: 6, 5: 7, 10: 7, 20: 7} and res.evaluated == 7
    assert MISS not in r
    assert res.hit_rate(1) == pytest.approx(6 / 7) and res.hit_rate(5) == 1.0
    assert res.ndcg(5) == pytest.approx((6 + 1 / np.log2(4)) / 7)


def test_misses_are_ranked_minus_one() -> None:
    events = [*crafted()[:6], ev(6, "c", "x"), ev(7, "c", "q")]  # c is shown y, z; takes q
    res = prequential(events, 1)
    assert res.ranks[-1] == MISS and res.hit_rate(20) == pytest.approx(2 / 3)


def test_duplicates_are_not_evaluated_and_match_process_batch(spy: Spy) -> None:
    events = crafted()
    events.insert(5, events[4])  # b's y again, same event id, inside the same batch
    res = prequential(events, 3)
    assert res.duplicates == 1 == sum(sum(r.duplicates.values()) for r in spy.results)
    assert res.ranks[5] == NOT_EVALUATED
    assert res.evaluated == sum(r.evaluated for r in spy.results)


def test_the_fold_is_apply_delta_and_update_trending_per_partition(spy: Spy) -> None:
    model = StreamingModel(EngineConfig(emit_policy="event"), partitions=2)
    events = crafted()
    model.learn(events[:6], batch_size=2)
    before = copy.deepcopy(model.stats)
    parts_before = dict(model.trending_by_partition)
    model.step(events[6:9])
    deltas = spy.results[-1].deltas
    cfg = model.engine.stats
    assert deltas
    updated: dict[int, dict[str, Any]] = {}
    for item, delta in deltas.items():
        want = apply_delta(before.get(item), delta, cfg)
        assert model.stats[item] == want
        updated.setdefault(partition_of(item.encode(), 2), {})[item] = want
    for p, items in updated.items():
        assert model.trending_by_partition[p] == update_trending(parts_before.get(p), items, cfg)
    lists = [model.trending_by_partition[p] for p in sorted(model.trending_by_partition)]
    assert model.trending == merge_trending(lists, cfg)
    untouched = set(before) - set(deltas)
    assert all(model.stats[i] is before.get(i) or model.stats[i] == before[i] for i in untouched)


def test_partition_of_is_the_workers_partitioner() -> None:
    from streams.context import partition_of as live

    for key in ("x", "item-42", "3416", ""):
        for n in (1, 3, 8):
            assert partition_of(key.encode(), n) == live(key.encode(), n)


def test_score_all_is_score_user_over_the_catalogue_and_changes_nothing() -> None:
    model = StreamingModel()
    model.learn(crafted()[:12])
    model.learn_sequence("new", ["x"], [100.0])
    index = {i: n for n, i in enumerate("wxyz")}
    snapshot = copy.deepcopy(model.states["new"])
    scores = model.score_all("new", 5, index)
    assert scores.shape == (5,) and scores.dtype == np.float32
    res = score_user(model.states["new"], model.stats.get, model.trending, model.engine.scoring)
    for rec in res.items:
        assert scores[index[rec.item_id]] == pytest.approx(rec.score)
    assert scores[index["y"]] > scores[index["z"]] > 0  # x -> y directly, z one step further
    assert scores[index["x"]] == 0.0 and scores[4] == 0.0  # seen; not an item
    assert model.states["new"] == snapshot
    cold = model.score_all("nobody", 5, index)
    assert cold[index["w"]] == 0.0 and cold[index["x"]] > 0  # trending only; w never learned


def test_learn_sequence_goes_through_process_batch(spy: Spy) -> None:
    model = StreamingModel()
    assert model.learn_sequence("u", ["a", "b", "c"], [1.0, 2.0, 3.0], batch_size=2) == 3
    assert len(spy.calls) == 2 and all(c["cfg"].emit_policy == "request" for c in spy.calls)
    assert model.states["u"].items == ["a", "b", "c"]
    assert model.states["u"].last_recs == []  # learning emits nothing
    assert model.learn_sequence("u", ["d"], [4.0]) == 1  # fresh ids: not duplicates
    with pytest.raises(ValueError, match="differ in length"):
        model.learn_sequence("u", ["a"], [])


def test_wire_round_trip_replays_like_the_workers() -> None:
    plain = prequential(crafted(), 2)
    wired = prequential(crafted(), 2, wire=True)
    assert np.array_equal(plain.ranks, wired.ranks)


def test_inconsistent_ranks_are_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def lying(*args: Any, **kw: Any) -> BatchResult:
        result = lsi.core.engine.process_batch(*args, **kw)
        result.evaluated += 1
        return result

    monkeypatch.setattr(streaming, "process_batch", lying)
    with pytest.raises(RuntimeError, match="disagree"):
        prequential(crafted(), 1)


def test_user_state_type_is_untouched() -> None:
    model = StreamingModel()
    model.learn(crafted())
    assert all(type(s) is UserState for s in model.states.values())


def test_resume_from_a_pickled_model_replays_identically() -> None:
    events = crafted()
    whole = StreamingModel().prequential(events, 2)
    first = StreamingModel()
    head = first.prequential(events[:6], 2)
    resumed = pickle.loads(pickle.dumps(first)).prequential(events[6:], 2)
    assert np.array_equal(np.concatenate([head.ranks, resumed.ranks]), whole.ranks)
