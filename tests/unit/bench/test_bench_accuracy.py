"""`lsi bench accuracy` on a synthetic log: the options it refuses, the validation phase, the
merge of reports. Every protocol running every model, and the bench's pool workers dying with
it, are in ``tests/component/test_bench_accuracy.py`` (slow)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from lsi.bench.accuracy import AccuracyOptions, run_accuracy_bench
from lsi.errors import LsiError


def synthetic_log(path: Path, users: int = 40, items: int = 30, seed: int = 1) -> Path:
    """Users walk a ring of items (next item = current + 1 mostly): sequential structure."""
    rng = random.Random(seed)
    rows = ["user_id,item_id,timestamp"]
    t = 1_000_000
    for u in range(users):
        item = rng.randrange(items)
        for _ in range(rng.randrange(6, 14)):
            t += rng.randrange(1, 50)
            rows.append(f"{u},{item},{t}")
            item = (item + (1 if rng.random() < 0.8 else rng.randrange(items))) % items
    path.write_text("\n".join(rows) + "\n")
    return path


def test_unknown_models_and_protocols_are_refused() -> None:
    with pytest.raises(LsiError, match="unknown model"):
        AccuracyOptions(models=("sasrec",))
    with pytest.raises(LsiError, match="loo only"):
        AccuracyOptions(protocol="prequential", models=("fused", "fused_gru"))
    with pytest.raises(LsiError, match="loo and prequential"):
        AccuracyOptions(protocol="temporal", models=("fused",))
    with pytest.raises(LsiError, match="unknown protocol"):
        AccuracyOptions(protocol="kfold")


def test_the_validation_phase_is_reported_apart_and_never_sees_the_test_items(
    tmp_path: Path,
) -> None:
    log = synthetic_log(tmp_path / "ring.csv")
    out = tmp_path / "results"
    opts = AccuracyOptions(dataset=str(log), protocol="loo", models=("mostpop",), seeds=1, out=out)
    test = run_accuracy_bench(opts, log=lambda _: None)
    valid = run_accuracy_bench(AccuracyOptions(dataset=str(log), protocol="loo", models=("mostpop",),
                                               seeds=1, out=out, phase="valid"), log=lambda _: None)  # fmt: skip
    assert (out / "ring-loo.json").is_file() and (out / "ring-loo-valid.json").is_file()
    assert test["phase"] == "test" and valid["phase"] == "valid"
    assert valid["models"]["mostpop"]["cases"] == test["models"]["mostpop"]["cases"]
    with pytest.raises(LsiError, match="no validation phase"):
        AccuracyOptions(protocol="prequential", phase="valid")


def test_merge_keeps_the_rows_of_models_not_rerun_and_marks_them(tmp_path: Path) -> None:
    log = synthetic_log(tmp_path / "ring.csv")
    out = tmp_path / "results"
    quiet = {"log": lambda _: None}
    run_accuracy_bench(AccuracyOptions(dataset=str(log), models=("mostpop", "covisit"), seeds=1,
                                       out=out), **quiet)  # fmt: skip
    report = run_accuracy_bench(AccuracyOptions(dataset=str(log), models=("covisit",), seeds=1,
                                                out=out, merge=True), **quiet)  # fmt: skip
    assert set(report["models"]) == {"mostpop", "covisit"}
    assert report["models"]["mostpop"]["earlier_run"] is True
    assert "earlier_run" not in report["models"]["covisit"]
    assert "¹ from an earlier run" in (out / "ring-loo.md").read_text()
    # the reproduce line is this run's: the kept rows are not re-run by it
    assert "--models covisit " in report["command"] and report["command"].endswith(
        f"--merge --out {out}"
    )
    with pytest.raises(LsiError, match="other options"):
        run_accuracy_bench(AccuracyOptions(dataset=str(log), models=("covisit",), seeds=1, out=out,
                                           merge=True, filter_seen=True), **quiet)  # fmt: skip


def test_each_row_says_what_it_did_with_seen_items_and_each_anchor_its_test_set() -> None:
    from lsi.bench.accuracy import ANCHORS, _rows, seen_items

    assert seen_items("fused", filter_seen=False) == "removed"  # as served, always
    assert seen_items("mostpop", filter_seen=False) == "kept"
    assert seen_items("mostpop", filter_seen=True) == "removed"
    assert seen_items("streaming", filter_seen=False) == "recent ones scored 0"
    row = {"seeds": 1, "hr@10": 0.1, "ndcg@10": 0.05, "train_s": 1.0, "eval_s": 1.0}
    report = {"filter_seen": False, "models": {"fused": row, "mostpop": row},
              "anchors": ANCHORS["ml-1m"]}  # fmt: skip
    lines = list(_rows(report))
    assert lines[2].startswith("| `fused` | removed |")
    assert lines[3].startswith("| `mostpop` | kept |")
    assert "| gSASRec (published, same test set) | removed |" in "\n".join(lines)
    assert "| HSTU-large (published, other test set: indicative only) |" in "\n".join(lines)
    # only gSASRec is on our ML-1M test set; the generative-recommenders rows are not
    same = {n for n, a in ANCHORS["ml-1m"].items() if a["same_test_set"]}
    assert same == {"gSASRec"}
    assert all("source" in a for anchors in ANCHORS.values() for a in anchors.values())
