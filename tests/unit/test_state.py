"""Per-user short-term state: bounds, sessions, decay, de-duplication, online hits, bytes."""

from __future__ import annotations

from lsi.records import TYPE_CODES, Event
from lsi.state import StateConfig, UserState

CFG = StateConfig(recent_n=5, seen_ids=4, session_gap_s=100.0, type_half_life_s=10.0)


def ev(i: int, item: str, ts: float, etype: str = "view", user: str = "u") -> Event:
    return Event(f"e{i}", user, item, etype, ts)


def test_ring_buffers_are_bounded_and_keep_the_newest() -> None:
    state = UserState()
    for i in range(12):
        state.learn_one(ev(i, f"i{i}", float(i)), CFG)
    assert state.items == ["i7", "i8", "i9", "i10", "i11"]
    assert state.times == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert len(state.seen) == 4
    assert state.n_events == 12


def test_sessions_split_on_gaps() -> None:
    state = UserState()
    state.learn_one(ev(1, "a", 0.0), CFG)
    state.learn_one(ev(2, "b", 50.0), CFG)
    assert (state.session_start, state.session_len) == (0.0, 2)
    state.learn_one(ev(3, "c", 200.0), CFG)
    assert (state.session_start, state.session_len) == (200.0, 1)


def test_type_counts_decay_with_event_time() -> None:
    state = UserState()
    state.learn_one(ev(1, "a", 0.0, "cart"), CFG)
    state.learn_one(ev(2, "b", 10.0, "view"), CFG)  # one half-life later
    assert abs(state.type_counts[TYPE_CODES["cart"]] - 0.5) < 1e-9
    assert state.type_counts[TYPE_CODES["view"]] == 1.0


def test_duplicate_event_ids_are_not_applied() -> None:
    state = UserState()
    first = state.learn_one(ev(1, "a", 0.0), CFG)
    again = state.learn_one(ev(1, "a", 0.0), CFG)
    assert not first.duplicate and again.duplicate
    assert state.n_events == 1 and state.items == ["a"]


def test_online_hit_is_judged_against_the_last_list_before_learning() -> None:
    state = UserState()
    assert state.learn_one(ev(1, "a", 0.0), CFG).evaluated is False
    state.remember_recs(["x", "b", "y"], 1.0, CFG)
    hit = state.learn_one(ev(2, "b", 2.0), CFG)
    miss = state.learn_one(ev(3, "z", 3.0), CFG)
    assert (hit.evaluated, hit.hit_rank) == (True, 1)
    assert (miss.evaluated, miss.hit_rank) == (True, None)


def test_recent_distinct_is_newest_first_without_repeats() -> None:
    state = UserState()
    for i, item in enumerate(["a", "b", "a", "c", "b"]):
        state.learn_one(ev(i, item, float(i)), CFG)
    assert [i for i, _ in state.recent_distinct(10)] == ["b", "c", "a"]
    assert [i for i, _ in state.recent_distinct(2)] == ["b", "c"]


def test_bytes_round_trip_and_size_budget() -> None:
    cfg = StateConfig()  # production bounds
    state = UserState()
    for i in range(200):
        # six-digit ids, hour-apart events, offsets in the tens of millions: a heavy user
        state.learn_one(ev(i, f"{100000 + i}", 1_700_000_000.123 + 3600.7 * i, "click"), cfg,
                        source=(3, 12_000_000 + 37 * i))  # fmt: skip
    state.remember_recs([str(200000 + k) for k in range(20)], 1_700_000_500.5, cfg)
    raw = state.to_bytes()
    back = UserState.from_bytes(raw)
    assert back == UserState.from_bytes(back.to_bytes())
    assert (
        back.items == state.items and back.seen == state.seen and back.last_recs == state.last_recs
    )
    assert back.n_events == 200 and back.applied == state.applied
    assert all(abs(a - b) <= 0.05 for a, b in zip(back.times, state.times, strict=True))
    # the sequence encoder reads the last 200 events: ~24 bytes each, plus the rest
    assert len(raw) < 6144, len(raw)


def test_redelivered_source_offsets_are_skipped_exactly() -> None:
    """However many events a crash re-delivers, none is applied twice."""
    state = UserState()
    for i in range(100):  # far more than the event-id window
        assert not state.learn_one(ev(i, f"i{i}", float(i)), CFG, source=(3, 1000 + i)).redelivered
    replayed = [
        state.learn_one(ev(i, f"i{i}", float(i)), CFG, source=(3, 1000 + i)) for i in range(100)
    ]
    assert all(o.redelivered for o in replayed)
    assert state.n_events == 100
    assert not state.learn_one(ev(100, "new", 100.0), CFG, source=(3, 1100)).redelivered
    assert not state.learn_one(
        ev(101, "other", 101.0), CFG, source=(5, 7)
    ).redelivered  # other partition
    back = UserState.from_bytes(state.to_bytes()).applied
    assert back["3"][-1] == 1100 and len(back["3"]) == CFG.applied_n and back["5"] == [7]


def test_a_gap_below_the_newest_offset_is_applied_once() -> None:
    """A send retried after a later one landed arrives late: learned, and only once."""
    state = UserState()
    state.learn_one(ev(1, "a", 1.0), CFG, source=(0, 10))
    state.learn_one(ev(3, "c", 3.0), CFG, source=(0, 30))
    late = state.learn_one(ev(2, "b", 2.0), CFG, source=(0, 20))
    assert not late.redelivered and state.items == ["a", "c", "b"]
    again = [
        state.learn_one(ev(i, x, float(i)), CFG, source=(0, o))
        for i, x, o in ((1, "a", 10), (2, "b", 20), (3, "c", 30))
    ]
    assert all(o.redelivered for o in again) and state.n_events == 3
