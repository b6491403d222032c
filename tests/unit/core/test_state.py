"""Per-user short-term state: bounds, sessions, decay, de-duplication, online hits, bytes."""

from __future__ import annotations

import contextlib
import random
import zlib

import pytest

from lsi.core.state import _CRC, _FIXED, _TAG, StateConfig, UserState, _put_uints, _to_json
from lsi.wire.records import EVENT_TYPES, TYPE_CODES, Event

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
    # the sequence encoder reads the last 200 events: ~7 bytes each, plus the rest
    assert len(raw) < 2048, len(raw)
    assert len(raw) * 2 < len(_to_json(state))


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


# -- the binary format: exact round trips, the JSON it replaces, damage ---------------------
ID_POOL = [
    "0", "7", "42", "3952", "100000", "007", "-1", "+5", "1_000", " 12", "", "٣", "²",
    str(2**63 - 1), str(2**63), str(10**30), "12345678901234567890123", "i12", "café", "日本",
    "🎬 film", "a,b", "a\"b", "x" * 40,
]  # fmt: skip


def random_state(rng: random.Random, *, nul: bool = False) -> UserState:
    """A state with the shapes the format must survive (not necessarily reachable)."""
    kind = rng.random()
    if kind < 0.3:
        pool = [str(rng.randrange(1, 4000)) for _ in range(300)]  # MovieLens-like
    elif kind < 0.4:
        pool = [str(rng.randrange(10**5, 10**7)) for _ in range(300)]
    else:
        pool = ID_POOL + [f"{rng.choice(ID_POOL)}{k}" for k in range(50)]
    if nul:
        pool = [*pool, "a\x00b", "\x00"]
    n = rng.choice([0, 1, 2, 3, 17, 200, 255, 256, 257, rng.randrange(300)])
    repeats = rng.random() < 0.5
    items = [rng.choice(pool) for _ in range(n)] if repeats else rng.sample(pool, min(n, len(pool)))
    n = len(items)
    last_ts = rng.choice([0.0, 1.5, 100.15, 1_700_000_000.0, rng.uniform(0, 2e9)])
    if rng.random() < 0.3:
        last_ts = round(last_ts, 3)  # millisecond clocks: decimal ties of the 0.1 s rounding
    steps = [rng.choice([0.0, 0.05, 0.15, 1.0, rng.uniform(0, 1e5), rng.expovariate(1e-4)])
             for _ in range(n)]  # fmt: skip
    times, t = [], last_ts
    for step in reversed(steps):
        times.append(t)
        t -= step
    times.reverse()
    if n and rng.random() < 0.3:  # out of order, some even after last_ts
        for _ in range(rng.randrange(1, 5)):
            times[rng.randrange(n)] = last_ts + rng.uniform(-1e6, 1e3)
    if rng.random() < 0.4:
        types = [rng.randrange(len(EVENT_TYPES))] * n
    else:
        types = [rng.randrange(len(EVENT_TYPES)) for _ in range(n)]
    counts = [rng.choice([0.0, 1.0, rng.uniform(0, 300), rng.uniform(0, 1e-3)])
              for _ in EVENT_TYPES]  # fmt: skip
    if rng.random() < 0.05:
        counts[0] = 1e300  # past the integer path
    recs_pool = items + pool if items else pool
    recs = [rng.choice(recs_pool) for _ in range(rng.choice([0, 1, 5, 20]))]
    if rng.random() < 0.5:
        recs = list(dict.fromkeys(recs))
    applied: dict[str, list[int]] = {}
    for p in rng.sample(range(64), rng.choice([0, 1, 1, 3])):
        base = rng.choice([0, 37, 12_000_000, 10**12, 2**62])
        offsets = sorted(base + rng.randrange(10**6) for _ in range(rng.randrange(17)))
        if offsets and rng.random() < 0.1:
            rng.shuffle(offsets)
        applied[str(p)] = offsets
    return UserState(
        items=items,
        times=times,
        types=types,
        seen=[rng.randrange(2**32) for _ in range(rng.randrange(33))],
        session_start=rng.choice([0.0, last_ts, last_ts - rng.uniform(0, 1800)]),
        session_len=rng.randrange(300),
        last_ts=last_ts,
        n_events=rng.choice([n, n + rng.randrange(10**6)]),
        type_counts=counts,
        last_recs=recs,
        last_emit=rng.choice([0.0, last_ts + rng.uniform(0, 10), 1_700_000_000.12345]),
        applied=applied,
    )


@pytest.mark.parametrize("seed", range(400))
def test_binary_round_trip_is_exact_and_matches_the_json_rules(seed: int) -> None:
    state = random_state(random.Random(seed))
    raw = state.to_bytes()
    assert raw[0] == _TAG
    back = UserState.from_bytes(raw)
    # what the JSON format kept, read back the same: 0.1 s times, 4- and 3-decimal rounding
    assert back == UserState.from_bytes(_to_json(state))
    assert [repr(t) for t in back.times] == [
        repr(t) for t in UserState.from_bytes(_to_json(state)).times
    ]
    assert back.items == state.items and back.last_recs == state.last_recs
    assert back.types == state.types and back.seen == state.seen
    assert back.applied == state.applied
    # a restore from the changelog gives byte-identical state
    assert back.to_bytes() == raw
    assert UserState.from_bytes(bytearray(raw)) == back


@pytest.mark.parametrize("seed", range(40))
def test_ids_with_nul_and_lone_surrogates_round_trip(seed: int) -> None:
    state = random_state(random.Random(seed), nul=True)
    state.items = [*state.items, "\ud800", "x\udfff"]
    state.times = [*state.times, state.last_ts, state.last_ts]
    state.types = [*state.types, 0, 1]
    raw = state.to_bytes()
    back = UserState.from_bytes(raw)
    assert back.items == state.items and back.to_bytes() == raw


def test_edge_states_round_trip() -> None:
    empty = UserState()
    assert UserState.from_bytes(empty.to_bytes()) == empty == UserState.from_bytes(_to_json(empty))
    assert len(empty.to_bytes()) < 50
    odd = UserState(
        items=["1", "2"],
        times=[float("inf"), 3.0],  # not finite: the doubles fallback
        types=[-3, 300],  # codes outside a byte
        seen=[-1, 2**40],  # not CRC-32 values
        session_len=-2,
        n_events=-5,
        type_counts=[-0.0, -1.5, 1e300, 2.0],  # short: read back padded, as from JSON
        last_ts=5.0,
        applied={"": [], "p": [9, 3, 3]},
    )
    back = UserState.from_bytes(odd.to_bytes())
    assert back.times == [float("inf"), 3.0] and back.types == [-3, 300]
    assert back.seen == [-1, 2**40] and (back.session_len, back.n_events) == (-2, -5)
    assert back.type_counts == [0.0, -1.5, 1e300, 2.0, 0.0, 0.0, 0.0]
    assert str(back.type_counts[0]) == "-0.0" and back.applied == odd.applied
    assert back.to_bytes() == UserState.from_bytes(back.to_bytes()).to_bytes()
    bytes_ = UserState(items=["x", "y"], times=[1.0, 2.0], types=[20, 3], type_counts=[-1.5, 2.0])
    again = UserState.from_bytes(bytes_.to_bytes())
    assert again.types == [20, 3] and again.type_counts[:2] == [-1.5, 2.0]
    assert again == UserState.from_bytes(_to_json(bytes_))


def test_decimal_ties_of_the_time_rounding_follow_round() -> None:
    """``round(x, 1)`` rounds the exact binary value: the fast path must agree on ties."""
    last_ts = 1_700_000_000.15
    times = [last_ts - d for d in (0.05, 0.15, 0.25, 0.35, 1.05, 2.45, 0.0)]
    times += [100.05, 100.15, 0.05]
    state = UserState(items=[str(i) for i in range(len(times))], times=times,
                      types=[0] * len(times), last_ts=last_ts)  # fmt: skip
    assert UserState.from_bytes(state.to_bytes()) == UserState.from_bytes(_to_json(state))
    small = UserState(items=["a", "b"], times=[0.05, 0.1], types=[0, 0], last_ts=0.15)
    assert (
        UserState.from_bytes(small.to_bytes()).times == UserState.from_bytes(_to_json(small)).times
    )


def test_old_json_values_are_read_and_rewritten_in_the_binary_format() -> None:
    state = random_state(random.Random(7))
    old = _to_json(state)
    assert old[:1] == b"{"
    back = UserState.from_bytes(old)
    assert back.to_bytes()[0] == _TAG
    assert UserState.from_bytes(back.to_bytes()) == back
    # the reader still tolerates a value without "a" (older still)
    legacy = old.replace(b',"a":{}', b"") if not state.applied else old
    UserState.from_bytes(legacy)


@pytest.mark.parametrize("seed", range(6))
def test_truncated_or_corrupt_bytes_raise_value_error(seed: int) -> None:
    rng = random.Random(seed)
    raw = random_state(rng).to_bytes()
    for end in range(len(raw)):
        with pytest.raises(ValueError):
            UserState.from_bytes(raw[:end])
    with pytest.raises(ValueError):
        UserState.from_bytes(raw + b"\x00")
    for _ in range(200):
        bad = bytearray(raw)
        k = rng.randrange(1, len(bad))
        bad[k] ^= 1 << rng.randrange(8)
        with pytest.raises(ValueError):
            UserState.from_bytes(bytes(bad))
    for junk in (b"", b"{", b"[1,2]", b'{"i": 3}', b"\x01", b"\x02abc", b"\xff" * 40):
        with pytest.raises(ValueError):
            UserState.from_bytes(junk)


def _sealed(body: bytes) -> bytes:
    return body + _CRC.pack(zlib.crc32(body))


@pytest.mark.parametrize("seed", range(6))
def test_damage_behind_a_valid_checksum_never_escapes_as_another_error(seed: int) -> None:
    """Bytes that pass the checksum but lie (a bug, an attacker) still only give a state or
    ValueError, quickly and in bounded memory."""
    rng = random.Random(100 + seed)
    body = random_state(rng).to_bytes()[:-4]
    for _ in range(300):
        bad = bytearray(body)
        for _ in range(rng.randrange(1, 4)):
            bad[rng.randrange(1, len(bad))] = rng.randrange(256)
        with contextlib.suppress(ValueError):
            assert isinstance(UserState.from_bytes(_sealed(bytes(bad))), UserState)
    fixed = _FIXED.pack(_TAG, 1.0, 0.0, 0.0)
    for head in (
        [0, 0, 0, 0, 0, 0, (1 << 60) << 2, 0, 0, 0, 0],  # a constant run of 2**60 codes
        [0, 0, (1 << 40) << 1, 0, 0, 0, 0, 0, 0, 0, 0],  # more items than the table holds
        [0, 0, 0, 0, 0, (1 << 50) << 2, 0, 0, 0, 0, 0],  # 2**50 times, no bytes for them
        [0, 0, 0, 0, 0, 0, 0, 0, (1 << 50) << 1, 0, 0],  # 2**50 seen ids
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 << 50],  # 2**50 partitions
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # a field short
    ):
        out = bytearray(fixed)
        _put_uints(out, head)
        with pytest.raises(ValueError):
            UserState.from_bytes(_sealed(bytes(out)))
