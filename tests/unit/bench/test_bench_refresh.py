"""`lsi bench refresh`: the synthetic log, the options it refuses. A real run on a crafted log
(cold and warm refresh, the scaling curve, the report) is in
``tests/component/test_bench_refresh.py`` (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lsi.bench.refresh import (
    RefreshBenchOptions,
    interactions_log,
    run_refresh_bench,
    synthetic_log,
)
from lsi.errors import LsiError
from lsi.evaluation.datasets import Interactions
from lsi.wire.records import TYPE_CODES
from models.training.longterm import Log, TrainConfig

TINY = TrainConfig(dim=8, epochs=2, warm_epochs=1, batch_size=4096)


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
