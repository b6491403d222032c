"""The snapshot store: versions, promotion, rollback, pruning, crash safety, bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytest

import lsi.serving.store as snapshots
from lsi.serving.snapshot import Snapshot
from lsi.serving.store import SnapshotArrays, SnapshotError, SnapshotStore, load_dir


def arrays(seed: int = 0, users: int = 3, items: int = 4, d: int = 2) -> SnapshotArrays:
    rng = np.random.default_rng(seed)
    return SnapshotArrays(
        user_ids=tuple(f"u{j}" for j in range(users)),
        item_ids=tuple(f"i{j}" for j in range(items)),
        user_vec=rng.standard_normal((users, d)).astype(np.float32),
        item_vec=rng.standard_normal((items, d)).astype(np.float32),
        base=rng.standard_normal((users + items, d)).astype(np.float32),
        # u0 took i1 and i3, u1 nothing, u2 took i0
        hist_indptr=np.array([0, 2, 2, 3], dtype=np.int64)[: users + 1],
        hist_items=np.array([1, 3, 0], dtype=np.int32)[: [0, 2, 2, 3][users]],
    )


def visible(root: Path) -> list[str]:
    """The store's entries, without its lock file (always there once anything was written)."""
    return sorted(p.name for p in root.iterdir() if p.name != ".lock")


def test_publish_numbers_versions_and_does_not_promote(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "models")
    assert store.versions() == [] and store.live() is None and store.load() is None
    assert store.publish(arrays(1), {"watermark": 10.0}) == "v000001"
    assert store.publish(arrays(2), {}) == "v000002"
    assert store.versions() == ["v000001", "v000002"]
    assert store.live() is None  # publishing alone serves nothing
    assert store.next_version() == "v000003"
    man = store.manifest("v000001")
    assert man["version"] == "v000001" and man["format"] == snapshots.FORMAT
    assert (man["n_users"], man["n_items"], man["dim"]) == (3, 4, 2)
    assert man["watermark"] == 10.0 and isinstance(man["created_at"], float)
    assert store.uri("v000001") == str((tmp_path / "models" / "v000001").resolve())


def test_versions_sort_numerically_and_ignore_other_entries(tmp_path: Path) -> None:
    for name in ("v000010", "v000009", "v1000000", ".tmp-abc", "notes", "v12"):
        (tmp_path / name).mkdir()
    (tmp_path / "v000011").write_text("a file, not a version")
    store = SnapshotStore(tmp_path)
    assert store.versions() == ["v000009", "v000010", "v1000000"]
    assert store.next_version() == "v1000001"


def test_promote_then_load_returns_equal_arrays(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    a = arrays(3)
    v = store.publish(a, {"metrics": {"ndcg@10": 0.25}})
    store.promote(v)
    assert store.live() == v
    m = store.load()
    assert isinstance(m, Snapshot)
    assert m.version == v and m.user_ids == a.user_ids and m.item_ids == a.item_ids
    np.testing.assert_array_equal(m.user_vec, a.user_vec)
    np.testing.assert_array_equal(m.item_vec, a.item_vec)
    np.testing.assert_array_equal(m.hist_indptr, a.hist_indptr)
    np.testing.assert_array_equal(m.hist_items, a.hist_items)
    assert m.user_vec.dtype == np.float32 and m.hist_items.dtype == np.int32
    assert m.manifest["metrics"] == {"ndcg@10": 0.25}
    _, loaded = store.load_arrays(v)
    np.testing.assert_array_equal(loaded.base, a.base)
    # the history travels: u0's training items are excluded from its scores
    s = m.scores("u0")
    assert s is not None and np.isneginf(s[[1, 3]]).all() and np.isfinite(s[[0, 2]]).all()


def test_load_of_an_explicit_version_ignores_live(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    v1, v2 = store.publish(arrays(1), {}), store.publish(arrays(2), {})
    store.promote(v2)
    m = store.load(v1)
    assert m is not None and m.version == v1
    np.testing.assert_array_equal(m.user_vec, arrays(1).user_vec)


def test_promote_is_idempotent_and_rollback_returns_to_previous(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    v1, v2, v3 = (store.publish(arrays(s), {}) for s in (1, 2, 3))
    store.promote(v1)
    store.promote(v2)
    store.promote(v2)  # no-op: v2 must not become its own rollback target
    store.promote(v3)
    assert store.live() == v3
    assert store.rollback() == v2 and store.live() == v2
    m = store.load()
    assert m is not None and m.version == v2
    np.testing.assert_array_equal(m.item_vec, arrays(2).item_vec)
    assert store.rollback() == v1 and store.live() == v1
    with pytest.raises(SnapshotError, match="nothing to roll back"):
        store.rollback()
    assert store.live() == v1


def test_rollback_without_history_raises(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    with pytest.raises(SnapshotError, match="nothing to roll back"):
        store.rollback()  # empty store
    store.promote(store.publish(arrays(), {}))
    with pytest.raises(SnapshotError, match="nothing to roll back"):
        store.rollback()  # one promotion: no earlier live version


def test_promote_of_a_missing_version_fails_and_keeps_live(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    v1 = store.publish(arrays(), {})
    store.promote(v1)
    with pytest.raises(SnapshotError, match="no snapshot v000042") as err:
        store.promote("v000042")
    assert "lsi models list" in str(err.value)
    assert store.live() == v1


def test_promote_refuses_an_unloadable_version(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    v1, v2 = store.publish(arrays(1), {}), store.publish(arrays(2), {})
    store.promote(v1)
    (tmp_path / v2 / "arrays.npz").write_bytes(b"not an npz")
    with pytest.raises(SnapshotError, match=f"snapshot {v2} is unreadable"):
        store.promote(v2)
    assert store.live() == v1


def test_prune_keeps_newest_plus_live_and_rollback_target(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=2)
    vs = [store.publish(arrays(1), {})]
    store.promote(vs[0])  # live v1
    vs += [store.publish(arrays(s), {}) for s in range(2, 7)]  # publishing prunes too
    assert store.versions() == [vs[0], vs[4], vs[5]], "newest 2 plus the live one"
    store.promote(vs[4])  # live v5, rollback target v1
    assert store.versions() == [vs[0], vs[4], vs[5]]
    assert store.prune() == []
    v7 = store.publish(arrays(7), {})
    store.promote(v7)  # live v7, rollback target v5: v1 is neither and not newest → gone
    assert store.versions() == [vs[4], vs[5], v7]
    assert store.rollback() == vs[4]
    assert store.live() == vs[4]


def test_prune_returns_deleted_names(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=1)
    v1 = store.publish(arrays(1), {})
    store.promote(v1)
    v2 = store.publish(arrays(2), {})
    assert store.versions() == [v1, v2]
    (tmp_path / "v000003").mkdir()  # a version that appeared without publish (a copy by hand)
    assert store.prune() == [v2]  # v1 is live, v000003 the newest
    assert store.versions() == [v1, "v000003"]
    assert store.prune() == []


def test_keep_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep must be at least 1"):
        SnapshotStore(tmp_path, keep=0)


def test_rollback_skips_targets_that_were_deleted(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=5)
    v1, v2, v3 = (store.publish(arrays(s), {}) for s in (1, 2, 3))
    for v in (v1, v2, v3):
        store.promote(v)
    shutil.rmtree(tmp_path / v2)  # an operator deleted it by hand
    assert store.rollback() == v1


# -- crashes ---------------------------------------------------------------------------
def _live_store(tmp_path: Path) -> SnapshotStore:
    store = SnapshotStore(tmp_path)
    store.promote(store.publish(arrays(1), {}))
    return store


def _assert_live_intact(store: SnapshotStore) -> None:
    assert store.versions() == ["v000001"] and store.live() == "v000001"
    m = store.load()
    assert m is not None and m.version == "v000001"
    np.testing.assert_array_equal(m.user_vec, arrays(1).user_vec)


def test_crash_while_writing_arrays_leaves_live_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _live_store(tmp_path)

    def savez_then_die(f: BinaryIO, **kw: Any) -> None:
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "savez", savez_then_die)
    with pytest.raises(SnapshotError, match="No space left"):
        store.publish(arrays(2), {})
    _assert_live_intact(store)
    assert visible(tmp_path) == ["LIVE", "v000001"]  # the half-written dir was removed
    monkeypatch.undo()
    assert store.publish(arrays(2), {}) == "v000002"


def test_crash_while_writing_manifest_leaves_live_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _live_store(tmp_path)
    real = snapshots._write_file

    def write_then_die(path: Path, data: bytes) -> None:
        if path.name == "manifest.json":
            path.write_bytes(data[: len(data) // 2])
            raise OSError("I/O error")
        real(path, data)

    monkeypatch.setattr(snapshots, "_write_file", write_then_die)
    with pytest.raises(SnapshotError, match="I/O error"):
        store.publish(arrays(2), {})
    _assert_live_intact(store)
    assert visible(tmp_path) == ["LIVE", "v000001"]
    assert [r["version"] for r in store.describe()] == ["v000001"]


def test_killed_publish_leftovers_are_invisible_and_cleaned_next_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process killed mid-publish gets no ``except``: its ``.tmp-*`` dir stays behind."""
    store = _live_store(tmp_path)

    def savez_then_die(f: BinaryIO, **kw: Any) -> None:
        f.write(b"PK\x03\x04 half")
        raise KeyboardInterrupt  # stands in for the kill

    with monkeypatch.context() as m:
        m.setattr(np, "savez", savez_then_die)
        m.setattr(shutil, "rmtree", lambda *a, **k: None)  # no cleanup either
        with pytest.raises(KeyboardInterrupt):
            store.publish(arrays(2), {})
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1 and (leftovers[0] / "ids.json").exists()
    _assert_live_intact(store)
    assert [r["version"] for r in store.describe()] == ["v000001"]

    v2 = store.publish(arrays(2), {})
    assert v2 == "v000002"
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())
    m2 = store.load(v2)
    assert m2 is not None
    np.testing.assert_array_equal(m2.user_vec, arrays(2).user_vec)
    assert store.live() == "v000001"


def test_crash_while_replacing_live_keeps_the_old_pointer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _live_store(tmp_path)
    v2 = store.publish(arrays(2), {})
    real = snapshots._write_file

    def write_then_die(path: Path, data: bytes) -> None:
        if path.name.startswith(".LIVE"):
            path.write_bytes(data[:5])
            raise OSError("I/O error")
        real(path, data)

    monkeypatch.setattr(snapshots, "_write_file", write_then_die)
    with pytest.raises(SnapshotError):
        store.promote(v2)
    assert store.live() == "v000001"
    m = store.load()
    assert m is not None and m.version == "v000001"
    monkeypatch.undo()
    store.publish(arrays(3), {})  # no pointer debris left behind, only the store's lock
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".lock"]


# -- unreadable files ------------------------------------------------------------------
@pytest.mark.parametrize("content", ["{not json", "[]", '{"previous": []}', "null"])
def test_unreadable_live_pointer_says_what_to_do(tmp_path: Path, content: str) -> None:
    store = _live_store(tmp_path)
    (tmp_path / "LIVE").write_text(content)
    for call in (store.live, store.load, store.rollback):
        with pytest.raises(SnapshotError, match="LIVE is unreadable") as err:
            call()
        assert "lsi models promote VERSION" in str(err.value)
    # the remedy it names works: remove the pointer, then promote a version
    (tmp_path / "LIVE").unlink()
    store.promote("v000001")
    assert store.live() == "v000001"


def test_unreadable_manifest_is_a_snapshot_error(tmp_path: Path) -> None:
    store = _live_store(tmp_path)
    (tmp_path / "v000001" / "manifest.json").write_text("{truncated")
    with pytest.raises(SnapshotError, match="v000001 has an unreadable manifest"):
        store.load()
    with pytest.raises(SnapshotError, match="v000001 has an unreadable manifest"):
        store.manifest("v000001")


def test_live_version_deleted_by_hand_says_where_to_look(tmp_path: Path) -> None:
    store = _live_store(tmp_path)
    shutil.rmtree(tmp_path / "v000001")
    with pytest.raises(SnapshotError, match="no snapshot v000001") as err:
        store.load()
    assert "lsi models list" in str(err.value)


def test_load_dir_rejects_other_formats_and_mismatched_arrays(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    v = store.publish(arrays(), {})
    man = store.manifest(v)
    with pytest.raises(SnapshotError, match="format 99"):
        load_dir(tmp_path / v, {**man, "format": 99})
    with pytest.raises(SnapshotError, match="do not match"):
        load_dir(tmp_path / v, {**man, "n_users": 7})
    (tmp_path / v / "ids.json").write_text(json.dumps({"users": ["u0"], "items": ["i0"]}))
    with pytest.raises(SnapshotError, match="do not match"):
        load_dir(tmp_path / v, man)


def test_arrays_are_stored_without_pickles(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    v = store.publish(arrays(), {})
    with np.load(tmp_path / v / "arrays.npz", allow_pickle=False) as z:
        assert sorted(z.files) == sorted(snapshots.ARRAYS)


# -- describe --------------------------------------------------------------------------
def test_describe_rows(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    v1 = store.publish(arrays(1), {"metrics": {"ndcg@10": 0.1}})
    v2 = store.publish(arrays(2, users=2, d=3), {"watermark": 5.0})
    store.promote(v2)
    rows = list(store.describe())
    assert [(r["version"], r["live"]) for r in rows] == [(v1, False), (v2, True)]
    assert rows[0]["metrics"] == {"ndcg@10": 0.1} and rows[0]["n_users"] == 3
    assert (rows[1]["n_users"], rows[1]["n_items"], rows[1]["dim"]) == (2, 4, 3)
    assert rows[1]["watermark"] == 5.0

    (tmp_path / v1 / "manifest.json").write_text("garbage")
    rows = list(store.describe())
    assert rows[0]["version"] == v1 and rows[0]["live"] is False
    assert "unreadable manifest" in rows[0]["error"]
    assert rows[1]["version"] == v2 and "error" not in rows[1]
    assert list(SnapshotStore(tmp_path / "nowhere").describe()) == []
