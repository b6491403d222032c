"""`lsi bench accuracy` on a synthetic log: every protocol runs every model and writes the
report in the documented shape."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from lsi.bench.accuracy import MODELS, SEEDED, AccuracyOptions, run_accuracy_bench
from lsi.errors import LsiError

KS = (5, 10, 20)
METRICS = ("hr", "ndcg", "recall")


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


@pytest.mark.parametrize("protocol", ["loo", "temporal", "prequential"])
def test_every_model_runs_and_the_report_has_the_documented_shape(
    tmp_path: Path, protocol: str
) -> None:
    log = synthetic_log(tmp_path / "ring.csv")
    out = tmp_path / "results"
    report = run_accuracy_bench(AccuracyOptions(dataset=str(log), protocol=protocol, seeds=2,
                                                out=out, refresh_every=400),
                                log=lambda _: None)  # fmt: skip
    on_disk = json.loads((out / f"ring-{protocol}.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert (out / f"ring-{protocol}.md").is_file() and (
        out / f"ring-{protocol}.png"
    ).stat().st_size > 0
    assert on_disk["dataset"] == "ring" and on_disk["protocol"] == protocol
    assert on_disk["filter_seen"] is False
    assert set(on_disk["models"]) == set(MODELS)
    for name, m in on_disk["models"].items():
        for k in KS:
            for metric in METRICS:
                assert 0.0 <= m[f"{metric}@{k}"] <= 1.0, (name, metric, k)
        assert 0.0 <= m["mrr"] <= 1.0
        assert set(m["std"]) >= {"hr@10", "ndcg@10", "mrr"}
        assert m["seeds"] == (2 if name in SEEDED else 1)
        assert m["train_s"] >= 0 and m["eval_s"] >= 0
        if protocol != "prequential":
            assert 0.0 < m["coverage@10"] <= 1.0
    if protocol != "prequential":
        # the ring is learnable: sequence-aware scorers beat popularity
        assert on_disk["models"]["covisit"]["hr@10"] > on_disk["models"]["mostpop"]["hr@10"]
        assert on_disk["models"]["streaming"]["hr@10"] > on_disk["models"]["mostpop"]["hr@10"]
        # the long-term model ranks by the snapshot alone, the user's own items excluded
        assert on_disk["models"]["long_only"]["history_excluded"] is True
        if protocol == "loo":
            lo, mp = on_disk["models"]["long_only"], on_disk["models"]["mostpop"]
            assert lo["hr@10"] > mp["hr@10"]
    else:
        # warm refreshes happened during the replay (one per 400 events but the last chunk)
        n = on_disk["events"]
        assert len(on_disk["models"]["long_only"]["refresh_s"]) == (n - 1) // 400
        # paired on the events both judged, though the models judge slightly different sets
        for name in ("mostpop", "covisit", "streaming"):
            pair = on_disk["models"][name]["vs_long_only_ndcg@10"]
            assert 0 < pair["cases"] <= on_disk["models"][name]["evaluated"]


def test_unknown_models_and_protocols_are_refused() -> None:
    with pytest.raises(LsiError, match="unknown model"):
        AccuracyOptions(models=("sasrec",))
    with pytest.raises(LsiError, match="not built yet"):
        AccuracyOptions(models=("mostpop", "fused"))
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
    with pytest.raises(LsiError, match="other options"):
        run_accuracy_bench(AccuracyOptions(dataset=str(log), models=("covisit",), seeds=1, out=out,
                                           merge=True, filter_seen=True), **quiet)  # fmt: skip
