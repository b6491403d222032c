"""The online hit-rate monitor the refresh job feeds: hits, bounded users, ADWIN drift."""

from __future__ import annotations

import numpy as np

from lsi.core.drift import HitRateMonitor


def test_hit_miss_and_unknown_user() -> None:
    mon = HitRateMonitor(k=2)
    assert mon.interaction("u", "a") is None  # no list shown yet: not a trial
    assert mon.trials == 0 and mon.hit_rate == 0.0
    mon.recommendation("u", ["a", "b", "c"])
    assert mon.interaction("u", "a") is True
    assert mon.interaction("u", "b") is True
    assert mon.interaction("u", "c") is False  # rank 3 is beyond k=2
    assert mon.interaction("u", "zzz") is False
    assert (mon.trials, mon.hits) == (4, 2)
    assert mon.hit_rate == 0.5


def test_a_new_list_replaces_the_old_one() -> None:
    mon = HitRateMonitor(k=10)
    mon.recommendation("u", ["a"])
    mon.recommendation("u", ["b"])
    assert mon.interaction("u", "a") is False
    assert mon.interaction("u", "b") is True


def test_users_are_bounded_least_recently_updated_first() -> None:
    mon = HitRateMonitor(max_users=2)
    mon.recommendation("a", ["x"])
    mon.recommendation("b", ["x"])
    mon.recommendation("a", ["x"])  # refreshes a: b is now the oldest
    mon.recommendation("c", ["x"])
    assert mon.interaction("b", "x") is None
    assert mon.interaction("a", "x") is True
    assert mon.interaction("c", "x") is True
    assert len(mon._lists) == 2


def _feed(mon: HitRateMonitor, rates: list[tuple[float, int]], seed: int) -> list[int]:
    """Feed Bernoulli trials with hit probability ``p`` for ``n`` steps per phase; returns
    the trial numbers at which ``drifted`` first became true (empty if never)."""
    rng = np.random.default_rng(seed)
    mon.recommendation("u", ["hit"])
    first: list[int] = []
    t = 0
    for p, n in rates:
        for _ in range(n):
            t += 1
            mon.interaction("u", "hit" if rng.random() < p else "miss")
            if mon.drifted and not first:
                first.append(t)
    return first


def test_drift_is_detected_after_a_sharp_drop() -> None:
    mon = HitRateMonitor(k=10, min_trials=500)
    first = _feed(mon, [(0.6, 2000), (0.15, 1000)], seed=7)
    assert mon.drifted
    assert first and 2000 < first[0] <= 2400  # soon after the drop, not before it
    assert mon.hit_rate < 0.4  # the window forgot the old regime


def test_no_drift_on_a_stationary_stream_of_the_same_length() -> None:
    mon = HitRateMonitor(k=10, min_trials=500)
    assert _feed(mon, [(0.6, 3000)], seed=7) == []
    assert not mon.drifted
    assert abs(mon.hit_rate - 0.6) < 0.05
    assert mon.trials == 3000


def test_no_alarm_before_min_trials() -> None:
    mon = HitRateMonitor(k=10, min_trials=10_000)
    _feed(mon, [(0.6, 2000), (0.15, 1000)], seed=7)
    assert not mon.drifted


def test_reset_starts_a_new_window() -> None:
    mon = HitRateMonitor(k=10, min_trials=500)
    _feed(mon, [(0.6, 2000), (0.15, 1000)], seed=7)
    assert mon.drifted and mon.trials == 3000
    mon.reset()
    assert (mon.trials, mon.hits, mon.drifted, mon.hit_rate) == (0, 0, False, 0.0)
    # the lists shown before the refresh still judge the next interactions
    assert mon.interaction("u", "hit") is True
    assert (mon.trials, mon.hits, mon.hit_rate) == (1, 1, 1.0)


def test_a_list_built_from_the_event_itself_does_not_judge_it() -> None:
    """The refresh job reads two topics; a list emitted after an event may be read first."""
    m = HitRateMonitor(k=5)
    m.recommendation("u", ["a", "b"], event_ts=100.0)  # built from events up to t=100
    assert m.interaction("u", "z", ts=100.0) is None  # that event: not judged
    assert m.interaction("u", "z", ts=90.0) is None  # an older one, read late: not judged
    assert m.interaction("u", "a", ts=101.0) is True
    assert m.trials == 1


def test_an_interaction_read_after_the_list_built_from_it_is_judged_by_the_list_before() -> None:
    """A worker sends a batch's log records and the lists built from them together: the
    job may read the new list first. The interaction is judged against the list the user
    saw before it (event time), not skipped and not judged against its own list."""
    mon = HitRateMonitor(k=10)
    mon.recommendation("u", ["a"], event_ts=10.0)
    mon.recommendation("u", ["b"], event_ts=20.0)  # built from the events up to t=20
    assert mon.interaction("u", "a", ts=20.0) is True  # judged by the list of t=10
    assert mon.interaction("u", "b", ts=15.0) is False
    assert mon.interaction("u", "b", ts=21.0) is True  # a later event: the newest list
    assert mon.interaction("u", "a", ts=5.0) is None  # older than both lists: no trial
    assert (mon.trials, mon.hits) == (3, 2)
