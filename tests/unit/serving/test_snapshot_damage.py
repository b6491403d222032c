"""Damaged snapshots are SnapshotErrors that say what to do; a failed LIVE write leaves no debris."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lsi.serving.store import SnapshotArrays, SnapshotError, SnapshotStore


def arrays(indptr: list[int] | None = None) -> SnapshotArrays:
    return SnapshotArrays(
        ("u0", "u1"),
        ("i0", "i1"),
        np.ones((2, 2), np.float32),
        np.ones((2, 2), np.float32),
        np.ones((4, 2), np.float32),
        np.array(indptr or [0, 1, 1], np.int64),
        np.array([0], np.int32),
    )


def live(tmp_path: Path) -> SnapshotStore:
    store = SnapshotStore(tmp_path)
    store.promote(store.publish(arrays(), {}))
    return store


def test_truncated_arrays_file_is_a_snapshot_error(tmp_path: Path) -> None:
    store = live(tmp_path)
    p = tmp_path / "v000001" / "arrays.npz"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(SnapshotError):
        store.load()


def test_ids_without_users_is_a_snapshot_error(tmp_path: Path) -> None:
    store = live(tmp_path)
    (tmp_path / "v000001" / "ids.json").write_text(json.dumps({"items": []}))
    with pytest.raises(SnapshotError):
        store.load()


def test_manifest_that_is_not_an_object_is_a_snapshot_error(tmp_path: Path) -> None:
    store = live(tmp_path)
    (tmp_path / "v000001" / "manifest.json").write_text("[1, 2]")
    with pytest.raises(SnapshotError):
        store.load()


def test_unreadable_manifest_message_says_what_to_do(tmp_path: Path) -> None:
    store = live(tmp_path)
    (tmp_path / "v000001" / "manifest.json").write_text("{truncated")
    with pytest.raises(SnapshotError, match="lsi models"):
        store.load()


def test_promote_refuses_a_version_whose_model_cannot_be_built(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    v = store.publish(arrays(indptr=[0, 1]), {})  # history index [U] instead of [U+1]
    with pytest.raises(SnapshotError):
        store.promote(v)
    assert store.live() is None
