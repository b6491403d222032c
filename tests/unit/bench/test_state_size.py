"""State size benchmark on synthetic logs (never real data)."""

from __future__ import annotations

import random

import numpy as np
import pytest

import lsi.bench.state_size as state_size
from lsi.bench.state_size import measure_state_bytes, summarize
from lsi.core.state import UserState, _to_json
from lsi.evaluation.datasets import Interactions


def synthetic(users: int = 12, heavy: int = 3, per_heavy: int = 60, seed: int = 0) -> Interactions:
    """``heavy`` users with ``per_heavy`` events, the rest with a few; MovieLens-like ids."""
    rng = random.Random(seed)
    rows: list[tuple[int, int, float, int]] = []
    for u in range(users):
        n = per_heavy if u < heavy else rng.randrange(1, 6)
        t = 1_000_000_000.0 + rng.randrange(10**6)
        for item in rng.sample(range(1, 4000), n):
            t += rng.choice([0, 1, 30, 3600, 86400 * 7])
            rows.append((u, item, t, rng.choice([0, 0, 1, 2])))
    rng.shuffle(rows)  # file order is not time order
    users_, items, ts, types = zip(*rows, strict=True)
    return Interactions(
        name="synthetic",
        users=np.array(users_, dtype=np.int64),
        items=np.array(items, dtype=np.int64),
        ts=np.array(ts, dtype=np.float64),
        types=np.array(types, dtype=np.int8),
        weights=None,
    )


def test_summarize_uses_nearest_ranks() -> None:
    s = summarize(list(range(1, 101)))
    assert (s["count"], s["p50"], s["p90"], s["p99"], s["max"], s["mean"]) == (
        100, 50, 90, 99, 100, 50.5,
    )  # fmt: skip
    assert summarize([7]) == {"count": 1, "p50": 7, "p90": 7, "p99": 7, "max": 7, "mean": 7.0}
    assert summarize([])["count"] == 0


def test_measure_replays_every_event_and_compares_the_formats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = synthetic()
    finals: dict[str, UserState] = {}
    real = state_size.process_batch
    calls: list[int] = []

    def spy(events, load, lookup, trending, cfg, now, sources=None):  # type: ignore[no-untyped-def]
        calls.append(len(events))
        assert sources is not None and len(sources) == len(events)
        assert now == max(e.ts for e in events)
        result = real(events, load, lookup, trending, cfg, now, sources)
        finals.update(result.states)
        return result

    monkeypatch.setattr(state_size, "process_batch", spy)
    out = measure_state_bytes(data, recent_n=50, batch_size=16, timing=False)
    assert sum(calls) == out["events"] == len(data) and max(calls) == 16
    assert out["users"] == 12 == len(finals)
    assert out["binary"]["all"]["count"] == out["json"]["all"]["count"] == 12
    assert out["binary"]["full"]["count"] == out["json"]["full"]["count"] == 3  # 60 >= 50
    heavy = [s for s in finals.values() if s.n_events >= 50]
    assert all(len(s.items) == 50 and len(s.applied) == 1 for s in heavy)
    assert out["binary"]["full"]["max"] == max(len(s.to_bytes()) for s in heavy)
    assert out["json"]["full"]["max"] == max(len(_to_json(s)) for s in heavy)
    assert out["binary"]["all"]["mean"] < out["json"]["all"]["mean"] / 2
    assert 0.5 < out["saved"] < 1.0


def test_measure_options(monkeypatch: pytest.MonkeyPatch) -> None:
    data = synthetic(users=6, heavy=2, per_heavy=30, seed=1)
    plain = measure_state_bytes(data, recent_n=20, limit=40, partitions=0, batch_size=500)
    assert plain["events"] == 40 and plain["partitions"] == 0
    scored = measure_state_bytes(data, recent_n=20, batch_size=8, stats=True)
    assert scored["events"] == len(data) and scored["stats"] is True
    assert set(scored["timing"]) == {
        "binary_encode_us", "binary_decode_us", "json_encode_us", "json_decode_us",
    }  # fmt: skip
    with pytest.raises(ValueError):
        measure_state_bytes(data, batch_size=0)
    monkeypatch.setattr(state_size, "load", lambda name: data if name == "synthetic" else None)
    assert measure_state_bytes("synthetic", recent_n=20, timing=False)["users"] == 6
