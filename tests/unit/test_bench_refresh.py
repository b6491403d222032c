"""`lsi bench refresh` on a crafted log: cold and warm refresh, the scaling curve, the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lsi.bench.refresh import (
    RefreshBenchOptions,
    interactions_log,
    run_refresh_bench,
    synthetic_log,
)
from lsi.datasets import Interactions
from lsi.errors import LsiError
from lsi.records import TYPE_CODES
from models.train import Log, TrainConfig

OLD_USERS, OLD_ITEMS, OLD_ROWS = 60, 50, 2400
NEW_USERS, NEW_ITEMS = 5, 4
TINY = TrainConfig(dim=8, epochs=2, warm_epochs=1, batch_size=4096)


def crafted_log() -> tuple[Log, float]:
    """2,400 old rows (60 users × 50 items), then 30 newest rows: 5 new users with two rows
    each on 4 new items (too few rows to be held out, so all of them are trained on) and 20
    rows of old users on old items. Returned shuffled, with the share of the newest rows."""
    rng = np.random.default_rng(3)
    users = [f"u{k}" for k in rng.integers(0, OLD_USERS, OLD_ROWS)]
    items = [f"i{k}" for k in rng.integers(0, OLD_ITEMS, OLD_ROWS)]
    for n in range(NEW_USERS):
        users += [f"new-u{n}"] * 2
        items += [f"new-i{n % NEW_ITEMS}", f"new-i{(n + 1) % NEW_ITEMS}"]
    users += [f"u{k}" for k in rng.integers(0, OLD_USERS, 20)]
    items += [f"i{k}" for k in rng.integers(0, OLD_ITEMS, 20)]
    n = len(users)
    ts = np.concatenate([np.sort(rng.uniform(0, 1e7, OLD_ROWS)), 1e7 + np.arange(n - OLD_ROWS)])
    shuffle = rng.permutation(n).astype(np.int64)
    log = Log(users, items, ts.astype(np.float64), np.ones(n, dtype=np.float32))
    return log.take(shuffle), (n - OLD_ROWS) / n


def test_cold_warm_and_scaling_report(tmp_path: Path) -> None:
    data, new_fraction = crafted_log()
    opts = RefreshBenchOptions(dataset="crafted", out=tmp_path, device="cpu", cfg=TINY,
                               scaling_edges=(4000, 2000, 8000), new_fraction=new_fraction,
                               valid_cases=40, data=data)  # fmt: skip
    report = run_refresh_bench(opts, log=lambda _: None)

    on_disk = json.loads((tmp_path / "refresh-crafted.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert on_disk["machine"]["device"] == "cpu" and on_disk["machine"]["torch_threads"] >= 1
    cold, warm = on_disk["cold"], on_disk["warm"]
    assert on_disk["new_interactions"] == 30 and on_disk["interactions"] == OLD_ROWS + 30
    assert (cold["users"], cold["items"]) == (OLD_USERS, OLD_ITEMS)
    assert (cold["epochs"], warm["epochs"]) == (2, 1)
    assert (cold["new_users"], cold["new_items"]) == (0, 0)
    assert (warm["new_users"], warm["new_items"]) == (NEW_USERS, NEW_ITEMS)
    assert warm["users"] == OLD_USERS + NEW_USERS and warm["items"] == OLD_ITEMS + NEW_ITEMS
    assert warm["edges"] > cold["edges"] > 0
    for phase in (cold, warm):
        assert phase["seconds"] > 0 and phase["peak_memory_bytes"] > 0
        start = phase["memory_at_start_bytes"]  # None where the peak cannot be reset
        assert start is None or 0 < start <= phase["peak_memory_bytes"]
        assert phase["final_loss"] > 0
        assert phase["validation"]["cases"] == 40
        assert 0.0 <= phase["validation"]["hr@10"] <= 1.0
    live = warm["live_validation"]  # only with >= 30 users whose newest event is new
    assert live is None or (30 <= live["cases"] <= 40 and 0.0 <= live["ndcg@10"] <= 1.0)

    s = on_disk["scaling"]
    assert [p["edges"] for p in s["points"]] == [2000, 4000, 8000]  # sorted, exact
    assert [p["steps_per_epoch"] for p in s["points"]] == [1, 1, 2]  # batch 4096
    for p in s["points"]:
        assert p["seconds"] > 0 and p["setup_seconds"] > 0 and p["seconds_per_epoch"] >= 0
    fit = s["fit_total_seconds"]
    assert fit["edge_ratio"] == 4.0 and fit["r2"] <= 1.0 and fit["time_ratio"] > 0

    md = (tmp_path / "refresh-crafted.md").read_text()
    assert "| warm |" in md and "Fit of total seconds" in md
    assert "Reproduce: `lsi bench refresh --dataset crafted" in md and "--epochs 2" in md
    assert (tmp_path / "refresh-crafted-scaling.png").stat().st_size > 0


def test_synthetic_log_has_exactly_the_distinct_edges_asked_for_and_is_seeded() -> None:
    a, b = synthetic_log(3000, seed=7), synthetic_log(3000, seed=7)
    assert len(a) == 3000 and len(set(zip(a.users, a.items, strict=True))) == 3000
    assert list(a.users) == list(b.users) and np.array_equal(a.ts, b.ts)
    assert bool(np.all(np.diff(a.ts) >= 0))
    assert len(set(a.users)) <= 4 * 55 and len(set(a.items)) <= 55  # 4·sqrt(E), sqrt(E)
    counts = np.unique(np.asarray(a.items), return_counts=True)[1]
    assert counts.max() > 3 * np.median(counts)  # a popularity head, not uniform


def test_interactions_log_orders_by_time_and_weighs_by_type() -> None:
    types = np.array([TYPE_CODES[t] for t in ("purchase", "skip", "rate")], dtype=np.int8)
    data = Interactions("t", np.array([1, 2, 3]), np.array([10, 20, 30]),
                        np.array([3.0, 1.0, 2.0]), types,
                        np.array([2.0, 2.0, 4.0], dtype=np.float32))  # fmt: skip
    log = interactions_log(data)
    assert list(log.users) == ["2", "3", "1"] and list(log.items) == ["20", "30", "10"]
    assert log.strength.tolist() == [-2.0, 4.0, 10.0]  # skip −1·2, rate 1·4, purchase 5·2
    assert log.ts.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "bad",
    [
        {"new_fraction": 0.0},
        {"new_fraction": 1.0},
        {"device": "tpu"},
        {"scaling_edges": (0,)},
        {"valid_cases": 0},
    ],
)
def test_options_refuse_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(LsiError):
        RefreshBenchOptions(**bad)  # type: ignore[arg-type]


def test_a_log_too_small_to_split_is_refused(tmp_path: Path) -> None:
    log = Log(["a", "b"], ["x", "y"], np.array([1.0, 2.0]), np.ones(2, dtype=np.float32))
    opts = RefreshBenchOptions(dataset="tiny", out=tmp_path, data=log, cfg=TINY, device="cpu")
    with pytest.raises(LsiError, match="cannot be split"):
        run_refresh_bench(opts, log=lambda _: None)
