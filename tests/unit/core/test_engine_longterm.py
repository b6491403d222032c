"""The batch engine with a live long-term snapshot: one version per batch, on every record."""

from __future__ import annotations

import numpy as np
import pytest

from lsi.core.engine import BASELINE_VERSION, EngineConfig, process_batch
from lsi.core.scoring import ScoringConfig
from lsi.core.state import UserState
from lsi.core.stats import ItemStats, Trending
from lsi.serving.snapshot import Snapshot
from lsi.wire.records import Event

TRENDING = Trending(0.0, (("hot", 3.0),))


def make_model(version: str = "v000003") -> Snapshot:
    """Knows user ``a`` (not ``b``); ``a`` likes ``l2`` best, then ``l1``."""
    return Snapshot(
        version,
        ("a",),
        ("l1", "l2", "x"),
        np.array([[1.0, 0.0]], dtype=np.float32),
        np.array([[2.0, 0.0], [3.0, 0.0], [1.0, 0.0]], dtype=np.float32),
        np.array([0, 0], dtype=np.int64),
        np.zeros(0, dtype=np.int32),
    )


def no_state(user: str) -> UserState | None:
    return None


def events() -> list[Event]:
    return [
        Event("e1", "a", "x", "click", 1.0),
        Event("e2", "b", "y", "click", 2.0),
        Event("e3", "a", "z", "click", 3.0),
    ]


@pytest.mark.parametrize("policy", ["event", "batch", "interval"])
def test_every_recommendation_carries_the_snapshot_version(policy: str) -> None:
    stats: dict[str, ItemStats] = {}
    cfg = EngineConfig(emit_policy=policy, scoring=ScoringConfig(mode="fused"))
    model = make_model()
    result = process_batch(events(), no_state, stats.get, TRENDING, cfg, 100.0, model=model)
    assert result.recommendations
    by_user = {r.user_id: r for r in result.recommendations}
    # the snapshot's version on the lists it took part in, the baseline's on the others
    for r in result.recommendations:
        assert r.model_version == (model.version if r.long_weight > 0 else BASELINE_VERSION)
    assert model.version in {r.model_version for r in result.recommendations}
    # a, known to the snapshot, is fused; b is served by the short-term path
    assert by_user["a"].long_weight == 0.5 and by_user["a"].long_term
    assert [i.item_id for i in by_user["a"].long_term] == ["l2", "l1"]  # x was seen
    assert by_user["b"].long_weight == 0.0 and by_user["b"].long_term == ()


def test_without_a_model_records_carry_the_baseline_version() -> None:
    stats: dict[str, ItemStats] = {}
    result = process_batch(events(), no_state, stats.get, TRENDING, EngineConfig(), 100.0)
    assert [r.model_version for r in result.recommendations] == [BASELINE_VERSION] * 2
    assert all(r.long_weight == 0.0 and r.long_term == () for r in result.recommendations)
    custom = process_batch(
        events(), no_state, stats.get, TRENDING, EngineConfig(model_version="mine"), 100.0
    )
    assert {r.model_version for r in custom.recommendations} == {"mine"}


def test_long_only_lists_are_remembered_for_the_online_hit_rate() -> None:
    store: dict[str, UserState] = {}
    stats: dict[str, ItemStats] = {}
    cfg = EngineConfig(scoring=ScoringConfig(mode="long_only"))
    first = process_batch(
        events()[:1], store.get, stats.get, TRENDING, cfg, 100.0, model=make_model()
    )
    store.update(first.states)
    assert [i.item_id for i in first.recommendations[0].items] == ["l2", "l1"]
    assert store["a"].last_recs == ["l2", "l1"]
    nxt = process_batch(
        [Event("e9", "a", "l2", "click", 5.0)],
        store.get,
        stats.get,
        TRENDING,
        cfg,
        101.0,
        model=make_model("v000004"),
    )
    assert nxt.evaluated == 1 and nxt.hits[1] == 1
    assert nxt.recommendations[0].model_version == "v000004"
