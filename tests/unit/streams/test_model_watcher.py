"""The worker's model watcher: load the live snapshot at start, swap on announcements, keep the
old one when a new one cannot be loaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from lsi.config import Settings
from lsi.monitoring.metrics import WorkerMetrics
from lsi.serving.store import SnapshotArrays, SnapshotStore
from streams.models import ModelWatcher


def publish(store: SnapshotStore, seed: int) -> str:
    rng = np.random.default_rng(seed)
    arrays = SnapshotArrays(("u1", "u2"), ("a", "b", "c"),
                            rng.standard_normal((2, 4)).astype(np.float32),
                            rng.standard_normal((3, 4)).astype(np.float32),
                            rng.standard_normal((5, 4)).astype(np.float32),
                            np.array([0, 1, 1], np.int64), np.array([2], np.int32))  # fmt: skip
    return store.publish(arrays, {"created_at": 1000.0 + seed})


def watcher(tmp_path: Path) -> tuple[ModelWatcher, SnapshotStore, CollectorRegistry]:
    registry = CollectorRegistry()
    settings = Settings.from_env({}, models_dir=tmp_path / "models")
    return (
        ModelWatcher(settings, WorkerMetrics(registry)),
        SnapshotStore(tmp_path / "models"),
        registry,
    )


def announcement(store: SnapshotStore, version: str) -> bytes:
    return json.dumps({"version": version, "uri": store.uri(version)}).encode()


async def test_start_loads_live_and_announcements_swap_to_live(tmp_path: Path) -> None:
    w, store, reg = watcher(tmp_path)
    w.load_initial()
    assert w.current is None
    assert reg.get_sample_value("lsi_model_version_info", {"version": "none"}) == 1.0
    v1 = publish(store, 1)
    store.promote(v1)
    w.load_initial()
    assert w.current is not None and w.current.version == v1
    assert reg.get_sample_value("lsi_model_created_timestamp_seconds") == 1001.0
    v2 = publish(store, 2)
    await w.apply(announcement(store, v2))  # announced but not live: LIVE is the truth
    assert w.current.version == v1
    store.promote(v2)
    await w.apply(announcement(store, v2))
    assert w.current.version == v2
    assert reg.get_sample_value("lsi_model_version_info", {"version": v2}) == 1.0
    assert reg.get_sample_value("lsi_model_version_info", {"version": v1}) is None
    assert reg.get_sample_value("lsi_model_swaps_total") == 1.0
    before = w.current
    await w.apply(b"{not json")  # any record is a wake-up; LIVE has not changed
    assert w.current is before and reg.get_sample_value("lsi_model_swaps_total") == 1.0
    store.rollback()  # e.g. `lsi models rollback --no-announce`: the periodic re-read finds it
    await w.refresh()
    assert w.current.version == v1 and reg.get_sample_value("lsi_model_swaps_total") == 2.0


async def test_an_unloadable_live_version_is_counted_once_and_the_old_model_stays(
    tmp_path: Path,
) -> None:
    w, store, reg = watcher(tmp_path)
    v1 = publish(store, 1)
    store.promote(v1)
    w.load_initial()
    v2 = publish(store, 2)
    store.promote(v2)
    (tmp_path / "models" / v2 / "arrays.npz").write_bytes(b"PK\x03\x04 truncated")
    await w.apply(announcement(store, v2))
    await w.refresh()  # the next poll does not count the same failure again
    assert w.current is not None and w.current.version == v1
    assert reg.get_sample_value("lsi_model_load_failures_total") == 1.0
    assert reg.get_sample_value("lsi_model_swaps_total") == 0.0


def test_a_damaged_live_snapshot_at_start_is_counted_not_fatal(tmp_path: Path) -> None:
    w, store, reg = watcher(tmp_path)
    store.promote(publish(store, 1))
    (tmp_path / "models" / "LIVE").write_text("{")
    w.load_initial()
    assert w.current is None
    assert reg.get_sample_value("lsi_model_load_failures_total") == 1.0


def test_a_worker_process_moves_each_loaded_snapshot_out_of_the_collectors_reach(
    tmp_path: Path,
) -> None:
    """``freeze_heap`` (a worker process): the swapped-in snapshot is frozen, so the oldest
    generation's collections no longer walk it; an app built inside another program (the
    default) leaves that program's heap alone."""
    import gc

    store = SnapshotStore(tmp_path / "models")
    store.promote(publish(store, 1))
    settings = Settings.from_env({}, models_dir=tmp_path / "models")
    gc.unfreeze()
    try:
        plain = ModelWatcher(settings, WorkerMetrics(CollectorRegistry()))
        plain.load_initial()
        assert plain.current is not None and gc.get_freeze_count() == 0
        worker = ModelWatcher(settings, WorkerMetrics(CollectorRegistry()), freeze_heap=True)
        worker.load_initial()
        assert worker.current is not None
        # the snapshot's objects are now in the permanent generation, not a collected one
        assert gc.get_freeze_count() > 0
        assert not any(o is worker.current for o in gc.get_objects())
    finally:
        gc.unfreeze()
