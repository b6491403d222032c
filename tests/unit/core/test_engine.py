"""The batch engine the interest agent runs: policies, de-duplication, learning, deltas."""

from __future__ import annotations

import pytest

from lsi.core.engine import EngineConfig, process_batch
from lsi.core.state import UserState
from lsi.core.stats import ItemStats, StatsConfig, Trending, apply_delta
from lsi.wire.records import Event

TRENDING = Trending(0.0, (("hot", 3.0),))


def ev(i: int, user: str, item: str, ts: float) -> Event:
    return Event(f"e{i}", user, item, "click", ts)


def run(events: list[Event], store: dict[str, UserState], cfg: EngineConfig, now: float = 100.0):  # type: ignore[no-untyped-def]
    stats: dict[str, ItemStats] = {}
    result = process_batch(events, store.get, stats.get, TRENDING, cfg, now)
    store.update(result.states)
    return result


def test_batch_policy_emits_once_per_user_after_all_their_events() -> None:
    store: dict[str, UserState] = {}
    result = run(
        [ev(1, "a", "x", 1), ev(2, "b", "y", 2), ev(3, "a", "z", 3)], store, EngineConfig()
    )
    assert [r.user_id for r in result.recommendations] == ["a", "b"]
    rec_a = result.recommendations[0]
    assert rec_a.event_ts == 3 and rec_a.history_size == 2 and rec_a.emitted_at == 100.0
    assert store["a"].items == ["x", "z"]
    assert store["a"].last_recs == [i.item_id for i in rec_a.items] == ["hot"]
    assert result.accepted["click"] == 3


def test_event_policy_emits_per_event_and_request_policy_never() -> None:
    events = [ev(1, "a", "x", 1), ev(2, "a", "y", 2)]
    assert len(run(events, {}, EngineConfig(emit_policy="event")).recommendations) == 2
    assert run(events, {}, EngineConfig(emit_policy="request")).recommendations == []


def test_interval_policy_skips_users_served_recently() -> None:
    store: dict[str, UserState] = {}
    cfg = EngineConfig(emit_policy="interval", emit_interval_s=10.0)
    assert len(run([ev(1, "a", "x", 1)], store, cfg, now=100.0).recommendations) == 1
    assert run([ev(2, "a", "y", 2)], store, cfg, now=105.0).recommendations == []
    assert len(run([ev(3, "a", "z", 3)], store, cfg, now=111.0).recommendations) == 1


def test_redelivered_batch_is_idempotent() -> None:
    """What a crash between output and state write looks like: the same batch again."""
    store: dict[str, UserState] = {}
    events = [ev(1, "a", "x", 1), ev(2, "a", "y", 2)]
    run(events, store, EngineConfig())
    again = run(events, store, EngineConfig())
    assert again.duplicates["click"] == 2 and not again.accepted
    assert store["a"].n_events == 2 and again.deltas == {}


def test_online_hits_count_items_from_the_previous_list() -> None:
    store: dict[str, UserState] = {}
    run([ev(1, "a", "x", 1)], store, EngineConfig())  # shown ["hot"]
    result = run([ev(2, "a", "hot", 2)], store, EngineConfig())
    assert result.evaluated == 1 and result.hits[1] == 1 and result.hits[20] == 1


def test_deltas_use_the_state_before_each_event() -> None:
    store: dict[str, UserState] = {}
    result = run(
        [ev(1, "a", "x", 1), ev(2, "a", "y", 2), ev(3, "b", "y", 3)], store, EngineConfig()
    )
    assert result.deltas["y"].co == {"x": 1.0} and result.deltas["y"].pop == 2.0
    assert result.deltas["x"].co == {"y": 1.0}


def test_learned_statistics_change_the_next_lists() -> None:
    """Co-visitation learned from one user's stream is what the next user is offered."""
    cfg = EngineConfig()
    store: dict[str, UserState] = {}
    stats: dict[str, ItemStats] = {}
    first = process_batch(
        [ev(1, "a", "x", 1), ev(2, "a", "y", 2)], store.get, stats.get, TRENDING, cfg, 10.0
    )
    store.update(first.states)
    for item, delta in first.deltas.items():
        stats[item] = apply_delta(stats.get(item), delta, StatsConfig())
    second = process_batch([ev(3, "b", "x", 3)], store.get, stats.get, TRENDING, cfg, 11.0)
    assert second.recommendations[0].items[0].item_id == "y"
    assert second.recommendations[0].source == "covisit"


def test_unknown_policy_is_rejected() -> None:
    with pytest.raises(ValueError, match="emit_policy"):
        EngineConfig(emit_policy="sometimes")


def test_sources_make_redelivery_exact_beyond_the_id_window() -> None:
    store: dict[str, UserState] = {}
    events = [ev(i, "a", f"x{i}", float(i)) for i in range(80)]
    sources = [(0, i) for i in range(80)]
    first = process_batch(events, store.get, {}.get, TRENDING, EngineConfig(), 100.0, sources)
    store.update(first.states)
    again = process_batch(events, store.get, {}.get, TRENDING, EngineConfig(), 101.0, sources)
    assert again.redelivered == 80 and not again.accepted
    # the state is handed back unchanged, to be written again: the changelog catches up
    assert again.states == {"a": store["a"]} and again.states["a"].n_events == 80
    assert store["a"].n_events == 80
