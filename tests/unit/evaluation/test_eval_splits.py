"""Leave-one-out and temporal splits on tiny synthetic logs (never real data)."""

from __future__ import annotations

import numpy as np
import pytest

from lsi.errors import DatasetError
from lsi.evaluation.datasets import Interactions
from lsi.evaluation.measures import rank_of_target
from lsi.evaluation.splits import IdMap, Ragged, loo_split, temporal_split


def log(rows: list[tuple[int, int, float]]) -> Interactions:
    """An :class:`Interactions` from ``(user, item, ts)`` rows in file order."""
    users, items, ts = zip(*rows, strict=True) if rows else ((), (), ())
    return Interactions(
        name="synthetic",
        users=np.array(users, dtype=np.int64),
        items=np.array(items, dtype=np.int64),
        ts=np.array(ts, dtype=np.float64),
        types=np.zeros(len(rows), dtype=np.int8),
        weights=None,
    )


# user 7: 4 events, file order != time order; user 3: 2 events (too short);
# user 5: 3 events, the last two tied in time (file order decides)
ROWS = [
    (7, 100, 40.0),
    (7, 101, 10.0),
    (3, 200, 5.0),
    (7, 102, 30.0),
    (5, 101, 20.0),
    (7, 103, 20.0),
    (5, 104, 50.0),
    (3, 101, 60.0),
    (5, 105, 50.0),
]


def test_id_map_is_first_appearance_and_round_trips() -> None:
    m = IdMap.build([30, 10, 30, 20, 10])
    assert m.raw.tolist() == [30, 10, 20] and len(m) == 3
    assert m.encode([20, 30, 10]).tolist() == [2, 0, 1]
    assert m.decode(m.encode([10, 20])).tolist() == [10, 20]
    assert m.encode([10, 99], missing=-1).tolist() == [1, -1]
    with pytest.raises(KeyError, match="99"):
        m.encode([99])
    with pytest.raises(ValueError, match="distinct"):
        IdMap(np.array([1, 1], dtype=np.int64))
    assert IdMap.build([]).encode([4], missing=-1).tolist() == [-1]


def test_ragged_rows_uniques_and_slices() -> None:
    r = Ragged.from_groups(np.array([1, 0, 1, 1]), np.array([9, 8, 7, 9]), 3)
    assert [row.tolist() for row in r] == [[8], [9, 7, 9], []]
    assert [row.tolist() for row in r.unique_per_row()] == [[8], [7, 9], []]
    assert [row.tolist() for row in r[1:]] == [[9, 7, 9], []]
    assert r.lengths().tolist() == [1, 3, 0] and r[-1].shape == (0,)


def test_loo_targets_are_the_last_two_events_in_time_order() -> None:
    s = loo_split(log(ROWS))
    raw_user = s.users.decode
    raw_item = s.items.decode
    # users in order of first appearance in time: 3 (t=5), 7 (t=10), 5 (t=20)
    assert s.users.raw.tolist() == [3, 7, 5]
    assert raw_user(s.test.users).tolist() == [7, 5]
    assert raw_item(s.test.targets).tolist() == [100, 105]  # user 5: tie → later file row
    assert raw_item(s.valid.targets).tolist() == [102, 104]
    assert s.n_short_users == 1 and s.test.cold_users.shape == (0,)


def test_loo_train_holds_everything_else_in_time_order() -> None:
    data = log(ROWS)
    s = loo_split(data)
    assert np.all(np.diff(s.train_ts) >= 0)
    held_out = set(s.test.rows.tolist()) | set(s.valid.rows.tolist())
    assert held_out.isdisjoint(s.train_rows.tolist())
    assert sorted([*s.train_rows.tolist(), *held_out]) == list(range(len(data)))
    # the short user keeps both events in training and is no case
    short = s.users.encode([3])[0]
    assert np.count_nonzero(s.train_users == short) == 2
    assert short not in s.test.users and short not in s.valid.users
    np.testing.assert_array_equal(data.items[s.train_rows], s.items.decode(s.train_items))


def test_loo_histories_and_seen_items() -> None:
    s = loo_split(log(ROWS))
    u7 = int(s.users.encode([7])[0])
    assert s.items.decode(s.valid.history[u7]).tolist() == [101, 103]
    assert s.items.decode(s.test.history[u7]).tolist() == [101, 103, 102]
    assert s.test.seen[u7].tolist() == sorted(s.test.history[u7].tolist())
    for phase in (s.valid, s.test):
        for hist, target in zip(phase.history_of_cases(), phase.targets, strict=True):
            assert target not in hist  # no repeats in this log: the held-out item is unseen


def test_loo_ties_keep_file_order() -> None:
    s = loo_split(log([(1, 10, 0.0), (1, 11, 0.0), (1, 12, 0.0), (1, 13, 0.0)]))
    assert s.items.decode(s.test.targets).tolist() == [13]
    assert s.items.decode(s.valid.targets).tolist() == [12]
    assert s.items.decode(s.train_items).tolist() == [10, 11]


def test_seen_filter_keeps_a_repeated_target() -> None:
    s = loo_split(log([(1, 10, 1.0), (1, 11, 2.0), (1, 12, 3.0), (1, 10, 4.0)]))
    scores = np.array([[0.0, 3.0, 2.0]], dtype=np.float32)  # dense items 10, 11, 12
    assert s.items.decode(s.test.targets).tolist() == [10]
    assert rank_of_target(scores, s.test.targets).tolist() == [2.0]
    assert rank_of_target(scores, s.test.targets, s.test.seen_of_cases()).tolist() == [0.0]


def timed_log() -> Interactions:
    rows = [(u, 100 + (u * 7 + t) % 13, float(t)) for t in range(20) for u in range(1, 4)]
    rows += [(9, 500, 19.0), (8, 501, 17.0)]  # new users at test time: cold start
    return log(rows)


def test_temporal_split_never_trains_on_the_future() -> None:
    s = temporal_split(timed_log(), valid_frac=0.2, test_frac=0.2)
    assert s.train_ts.max() < s.t_valid <= s.valid.ts.min()
    assert s.valid.ts.max() < s.t_test <= s.test.ts.min()
    assert s.train_ts.max() <= s.test.ts.min()
    assert np.all(np.diff(s.train_ts) >= 0) and np.all(np.diff(s.test.ts) >= 0)


def test_temporal_ties_at_the_cutoff_go_to_the_later_split() -> None:
    data = log([(1, 1, 0.0), (1, 2, 1.0), (1, 3, 1.0), (1, 4, 1.0), (1, 5, 2.0)])
    s = temporal_split(data, valid_frac=0.0, test_frac=0.4)  # position 3 → t = 1.0
    assert s.t_test == 1.0 and s.train_ts.tolist() == [0.0]
    assert s.items.decode(s.test.targets).tolist() == [2, 3, 4, 5]
    assert len(s.valid) == 0


def test_temporal_cold_start_cases_are_counted_apart() -> None:
    s = temporal_split(timed_log(), valid_frac=0.2, test_frac=0.2)
    assert sorted(s.users.decode(s.test.cold_users).tolist()) == [8, 9]
    assert set(s.users.decode(s.test.users).tolist()) <= {1, 2, 3}
    for u in s.test.users:
        assert s.test.history.lengths()[u] > 0
    # the test history is everything before the test cut-off, in time order
    u1 = int(s.users.encode([1])[0])
    assert s.test.history[u1].shape[0] == np.count_nonzero(
        (timed_log().users == 1) & (timed_log().ts < s.t_test)
    )


def test_temporal_refuses_bad_fractions_and_empty_training() -> None:
    with pytest.raises(ValueError, match="valid_frac"):
        temporal_split(timed_log(), valid_frac=0.5, test_frac=0.5)
    with pytest.raises(DatasetError, match="no interaction before"):
        temporal_split(log([(1, 1, 5.0), (2, 2, 5.0)]))
    with pytest.raises(DatasetError, match="empty"):
        temporal_split(log([]))
