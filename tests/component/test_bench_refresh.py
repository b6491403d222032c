"""`lsi bench refresh` on a crafted log, for real (slow: it trains): cold and warm refresh, the
scaling curve, the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lsi.bench.refresh import RefreshBenchOptions, run_refresh_bench
from models.training.longterm import Log
from tests.unit.bench.test_bench_refresh import TINY

pytestmark = pytest.mark.slow

OLD_USERS, OLD_ITEMS, OLD_ROWS = 60, 50, 2400
NEW_USERS, NEW_ITEMS = 5, 4


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
