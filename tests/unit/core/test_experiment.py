"""Experiments between snapshots, the pure part: the stable salted split, the per-arm counts
and the statistics a promotion is decided on."""

from __future__ import annotations

import math

import pytest

from lsi.core.experiment import (
    BUCKETS,
    Experiment,
    InvalidExperiment,
    arm_of,
    bucket,
    count_arms,
    hit_rate_interval,
    two_proportion_test,
)

USERS = [f"user-{n}" for n in range(20_000)]


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.5, 0.9])
def test_the_candidate_gets_its_fraction_of_users_within_binomial_noise(fraction: float) -> None:
    exp = Experiment("split", "v000002", fraction, 0.0)
    n = sum(arm_of(u, exp) == "candidate" for u in USERS)
    sd = math.sqrt(len(USERS) * fraction * (1 - fraction))
    assert abs(n - fraction * len(USERS)) < 4 * sd, (n, fraction)


def test_the_split_is_stable_and_salted_by_the_name() -> None:
    a = Experiment("a", "v000002", 0.5, 0.0)
    again = Experiment("a", "baseline", 0.5, 123.0)  # same name: same buckets
    b = Experiment("b", "v000002", 0.5, 0.0)
    arms_a = [arm_of(u, a) for u in USERS[:2000]]
    assert arms_a == [arm_of(u, a) for u in USERS[:2000]]
    assert arms_a == [arm_of(u, again) for u in USERS[:2000]]
    arms_b = [arm_of(u, b) for u in USERS[:2000]]
    agree = sum(x == y for x, y in zip(arms_a, arms_b, strict=True)) / 2000
    assert 0.45 < agree < 0.55, "two experiments split users independently"
    # pinned: the hash never changes between versions (users would change arms)
    assert [bucket(u, "pin") for u in ("u1", "u2", "u3")] == [3639, 6492, 1351]
    assert all(0 <= bucket(u, "a") < BUCKETS for u in USERS[:100])


def test_a_bigger_fraction_keeps_every_candidate_user() -> None:
    """Raising the fraction (a new experiment with the same name) only adds users."""
    small, big = Experiment("r", "v000002", 0.1, 0.0), Experiment("r", "v000002", 0.4, 0.0)
    for u in USERS[:3000]:
        if arm_of(u, small) == "candidate":
            assert arm_of(u, big) == "candidate"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "name"),
        ({"name": "a b"}, "name"),
        ({"name": "-x"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"candidate": "latest"}, "candidate"),
        ({"candidate": "v12"}, "candidate"),
        ({"fraction": 0.0}, "fraction"),
        ({"fraction": 1.0}, "fraction"),
        ({"fraction": -0.1}, "fraction"),
        ({"fraction": True}, "fraction"),
        ({"fraction": "0.5"}, "fraction"),
        ({"fraction": math.nan}, "fraction"),
        ({"started_at": math.inf}, "started_at"),
        ({"started_at": -1.0}, "started_at"),
    ],
)
def test_out_of_range_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"name": "e1", "candidate": "v000003", "fraction": 0.1,
                               "started_at": 10.0, **kwargs}  # fmt: skip
    with pytest.raises(InvalidExperiment, match=message):
        Experiment(**args)  # type: ignore[arg-type]


def test_the_stored_form_round_trips_and_a_malformed_one_is_refused() -> None:
    exp = Experiment("e-1.b_2", "baseline", 0.25, 1_700_000_000.5)
    assert Experiment.from_dict(exp.to_dict()) == exp
    for bad in (None, [], {"name": "e"}, {**exp.to_dict(), "fraction": 2}):
        with pytest.raises(InvalidExperiment):
            Experiment.from_dict(bad)


def test_counts_per_arm_take_only_lists_emitted_since_the_start() -> None:
    exp = Experiment("count", "v000002", 0.5, started_at=1000.0)
    cand = next(u for u in USERS if arm_of(u, exp) == "candidate")
    ctrl = next(u for u in USERS if arm_of(u, exp) == "control")
    judged = [
        (cand, 1000.0, 0),  # at the start: counts, a hit at every K
        (cand, 1001.0, 7),  # a hit from @10 on
        (cand, 999.0, 0),  # a list from before the experiment: no arm's
        (ctrl, 1002.0, None),  # judged, no hit
        (ctrl, 1003.0, 19),
        (ctrl, 999.9995, 0),  # stored to the millisecond: 1000.0 then
    ]
    counts = count_arms(judged, exp)
    assert counts["candidate"].judged == 2
    assert counts["candidate"].hits == {1: 1, 5: 1, 10: 2, 20: 2}
    assert counts["control"].judged == 3
    assert counts["control"].hits == {1: 1, 5: 1, 10: 1, 20: 2}
    assert counts["candidate"].hit_rate(10) == 1.0
    later = count_arms(judged, exp, since=1002.5)  # the worker applied it later
    assert (later["candidate"].judged, later["control"].judged) == (0, 1)
    assert math.isnan(later["candidate"].hit_rate())


def test_wilson_interval() -> None:
    p, lo, hi = hit_rate_interval(30, 100)
    assert (
        p == 0.3
        and lo == pytest.approx(0.21887, abs=1e-4)
        and hi == pytest.approx(0.39585, abs=1e-4)
    )
    assert hit_rate_interval(0, 50)[1] == 0.0 and hit_rate_interval(0, 50)[2] > 0
    assert hit_rate_interval(50, 50)[2] == 1.0 and hit_rate_interval(50, 50)[1] < 1
    assert all(math.isnan(x) for x in hit_rate_interval(0, 0))
    # narrower with more evidence
    assert hit_rate_interval(300, 1000)[2] - hit_rate_interval(300, 1000)[1] < hi - lo


def test_two_proportion_z_test() -> None:
    z, p = two_proportion_test(100, 1000, 130, 1000)
    assert z == pytest.approx(2.1027, abs=1e-3) and p == pytest.approx(0.0355, abs=1e-3)
    z, p = two_proportion_test(130, 1000, 100, 1000)
    assert z < 0 and p == pytest.approx(0.0355, abs=1e-3)
    assert two_proportion_test(10, 100, 10, 100) == (0.0, 1.0)
    assert all(math.isnan(x) for x in two_proportion_test(0, 0, 1, 10))
    assert all(math.isnan(x) for x in two_proportion_test(0, 10, 0, 10))
