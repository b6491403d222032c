"""The store keeps the running experiment in ``LIVE``: start, stop, validation, what promote,
rollback and pruning do to it, and pointer files written before experiments existed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsi.core.experiment import Experiment, InvalidExperiment
from lsi.serving.store import SnapshotError, SnapshotStore
from tests.unit.serving.test_snapshots import arrays


def store_with(tmp_path: Path, n: int = 2) -> SnapshotStore:
    store = SnapshotStore(tmp_path / "models")
    for seed in range(n):
        store.publish(arrays(seed), {})
    store.promote("v000001")
    return store


def pointer(store: SnapshotStore) -> dict[str, object]:
    data: dict[str, object] = json.loads((store.root / "LIVE").read_text())
    return data


def test_start_and_stop_an_experiment(tmp_path: Path) -> None:
    store = store_with(tmp_path)
    assert store.experiment() is None
    exp = store.start_experiment("v000002", 0.1, "try-v2", now=1000.0)
    assert exp == Experiment("try-v2", "v000002", 0.1, 1000.0)
    assert store.experiment() == exp and store.live() == "v000001"
    assert pointer(store) == {"version": "v000001", "previous": [], "experiment": {
        "name": "try-v2", "candidate": "v000002", "fraction": 0.1, "started_at": 1000.0}}  # fmt: skip
    with pytest.raises(SnapshotError, match="try-v2 is running; stop it first"):
        store.start_experiment("baseline", 0.5)
    assert store.stop_experiment() == exp
    assert store.experiment() is None and pointer(store) == {"version": "v000001", "previous": []}
    assert store.stop_experiment() is None
    named = store.start_experiment("baseline", 0.5, now=1_700_000_000.0)
    assert named.name == "baseline-20231114T221320" and named.candidate == "baseline"


def test_a_candidate_must_exist_load_and_differ_from_the_live_scorer(tmp_path: Path) -> None:
    store = store_with(tmp_path)
    with pytest.raises(SnapshotError, match="v000001 is what the workers serve already"):
        store.start_experiment("v000001", 0.1)
    with pytest.raises(SnapshotError, match="no snapshot v000009"):
        store.start_experiment("v000009", 0.1)
    (store.root / "v000002" / "arrays.npz").write_bytes(b"damaged")
    with pytest.raises(SnapshotError, match="v000002 is unreadable"):
        store.start_experiment("v000002", 0.1)
    with pytest.raises(InvalidExperiment, match="fraction"):
        store.start_experiment("baseline", 1.5)
    with pytest.raises(InvalidExperiment, match="name"):
        store.start_experiment("baseline", 0.5, name="has space")
    assert store.experiment() is None
    empty = SnapshotStore(tmp_path / "empty")
    empty.publish(arrays(1), {})
    with pytest.raises(SnapshotError, match="baseline is what the workers serve already"):
        empty.start_experiment("baseline", 0.5)  # no live version: baseline serves everyone
    # a first snapshot against the statistics scorer, before anything is live
    assert empty.start_experiment("v000001", 0.2).candidate == "v000001"
    assert empty.live() is None and empty.experiment() is not None


def test_promoting_the_candidate_ends_the_experiment_another_version_keeps_it(
    tmp_path: Path,
) -> None:
    store = store_with(tmp_path, n=3)
    exp = store.start_experiment("v000002", 0.3, "e")
    assert store.promote("v000003") is None
    assert store.live() == "v000003" and store.experiment() == exp
    assert store.rollback() == "v000001" and store.experiment() == exp
    assert store.promote("v000002") == exp
    assert store.live() == "v000002" and store.experiment() is None
    # rolling back to a candidate ends it too
    store.start_experiment("v000001", 0.3, "back")
    assert store.rollback() == "v000001" and store.experiment() is None


def test_the_candidate_is_never_pruned_while_it_runs(tmp_path: Path) -> None:
    store = store_with(tmp_path, n=2)
    store.start_experiment("v000002", 0.5, "old-candidate")
    store.keep = 1
    for seed in range(3):
        store.publish(arrays(10 + seed), {})
    assert store.versions() == ["v000001", "v000002", "v000005"]
    store.stop_experiment()
    store.prune()
    assert "v000002" not in store.versions()


def test_a_pointer_without_an_experiment_is_read_as_before(tmp_path: Path) -> None:
    store = store_with(tmp_path)
    (store.root / "LIVE").write_text(json.dumps({"version": "v000001", "previous": []}))
    assert store.live() == "v000001" and store.experiment() is None
    store.promote("v000002")
    assert pointer(store) == {"version": "v000002", "previous": ["v000001"]}


@pytest.mark.parametrize(
    "bad",
    [
        "not an object",
        {"name": "e", "candidate": "v000002", "fraction": 3, "started_at": 1.0},
        {"name": "e"},
    ],
)
def test_a_malformed_experiment_hides_neither_live_nor_the_way_out(
    tmp_path: Path, bad: object
) -> None:
    store = store_with(tmp_path)
    (store.root / "LIVE").write_text(json.dumps(
        {"version": "v000001", "previous": [], "experiment": bad}))  # fmt: skip
    assert store.live() == "v000001" and store.load() is not None
    with pytest.raises(SnapshotError, match=r"malformed experiment.*lsi models experiment stop"):
        store.experiment()
    with pytest.raises(SnapshotError, match="is running; stop it first"):
        store.start_experiment("v000002", 0.1)
    assert store.stop_experiment() is None
    assert store.experiment() is None and store.live() == "v000001"
