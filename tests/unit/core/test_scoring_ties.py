"""Ties in the long-term list: the served order is the snapshot's own (Snapshot.top)."""

from __future__ import annotations

import numpy as np

from lsi.core.scoring import ScoringConfig, score_user
from lsi.core.state import UserState
from lsi.core.stats import Trending
from lsi.serving.snapshot import Snapshot


def test_long_only_ties_follow_the_snapshot_order() -> None:
    m = Snapshot(
        "v1",
        ("u",),
        ("a", "b", "c"),
        np.ones((1, 2), np.float32),
        np.array([[1, 1], [1, 1], [0, 1]], np.float32),
        np.array([0, 0], np.int64),
        np.zeros(0, np.int32),
    )
    res = score_user(
        UserState(), {}.get, Trending(0.0, ()), ScoringConfig(mode="long_only", top_k=3), m, "u"
    )
    assert [i.item_id for i in res.items] == [k for k, _ in m.top("u", 3)]
