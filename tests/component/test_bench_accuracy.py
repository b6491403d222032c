"""`lsi bench accuracy` on a synthetic log, for real (slow): every protocol runs every model
and writes the report in the documented shape; a killed bench leaves no pool worker behind."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from lsi.bench.accuracy import DEFAULT_MODELS, SEEDED, AccuracyOptions, run_accuracy_bench
from models.training.sequence import SequenceConfig
from tests.processes import kill_and_watch
from tests.unit.bench.test_bench_accuracy import synthetic_log

pytestmark = pytest.mark.slow

KS = (5, 10, 20)
METRICS = ("hr", "ndcg", "recall")

SMALL_SEQ = SequenceConfig(dim=16, max_len=12, epochs=6, eval_every=2, gate_epochs=5,
                           balanced_init=False, device="cpu")  # fmt: skip
BASELINES = ("mostpop", "recent_pop", "covisit", "biased_mf", "streaming")


@pytest.mark.parametrize("protocol", ["loo", "temporal", "prequential"])
def test_every_model_runs_and_the_report_has_the_documented_shape(
    tmp_path: Path, protocol: str
) -> None:
    log = synthetic_log(tmp_path / "ring.csv")
    out = tmp_path / "results"
    models = BASELINES if protocol == "temporal" else DEFAULT_MODELS
    # loo trains the encoder on every window of the history, under bfloat16 autocast, with a
    # cosine learning rate, averaged weights and balanced input tables (the others on the last
    # window, in float32, at a constant rate, the last step's weights, PyTorch's init)
    loo_seq = replace(SMALL_SEQ, windows="all", precision="bf16", patience=4, lr_schedule="cosine",
                      ema_decay=0.9, balanced_init=True)  # fmt: skip
    seq = loo_seq if protocol == "loo" else SMALL_SEQ
    report = run_accuracy_bench(AccuracyOptions(dataset=str(log), protocol=protocol, seeds=2,
                                                out=out, refresh_every=150, models=models,
                                                sequence=seq),
                                log=lambda _: None)  # fmt: skip
    on_disk = json.loads((out / f"ring-{protocol}.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert (out / f"ring-{protocol}.md").is_file() and (
        out / f"ring-{protocol}.png"
    ).stat().st_size > 0
    assert on_disk["dataset"] == "ring" and on_disk["protocol"] == protocol
    assert on_disk["filter_seen"] is False
    assert set(on_disk["models"]) == set(models)
    for name, m in on_disk["models"].items():
        for k in KS:
            for metric in METRICS:
                assert 0.0 <= m[f"{metric}@{k}"] <= 1.0, (name, metric, k)
        assert 0.0 <= m["mrr"] <= 1.0
        assert set(m["std"]) >= {"hr@10", "ndcg@10", "mrr"}
        assert m["seeds"] == (2 if name in SEEDED else 1)
        if m["seeds"] > 1:  # the mean and std are those of the seeds reported one by one
            nd = [r["ndcg@10"] for r in m["per_seed"]]
            assert len(nd) == 2 and m["ndcg@10"] == pytest.approx(statistics.fmean(nd))
            assert m["std"]["ndcg@10"] == pytest.approx(statistics.pstdev(nd))
        else:
            assert "per_seed" not in m
        assert m["train_s"] >= 0 and m["eval_s"] >= 0
        if protocol != "prequential":
            assert 0.0 < m["coverage@10"] <= 1.0
    if protocol != "prequential":
        # the ring is learnable: sequence-aware scorers beat popularity
        assert on_disk["models"]["covisit"]["hr@10"] > on_disk["models"]["mostpop"]["hr@10"]
        assert on_disk["models"]["streaming"]["hr@10"] > on_disk["models"]["mostpop"]["hr@10"]
    if protocol == "loo":
        models_ = on_disk["models"]
        assert models_["short_only"]["hr@10"] > models_["mostpop"]["hr@10"]
        assert models_["fused"]["list"] == "fused" and models_["long_only"]["list"] == "long"
        # one training per seed serves all three lists; the gate's profile is reported
        assert models_["fused"]["train_s"] == models_["short_only"]["train_s"]
        # every seed's early stopping: calibration NDCG@10 at each evaluated epoch
        training = models_["fused"]["training"]
        assert len(training) == 2 and training[0]["epochs"] == models_["fused"]["epochs"]
        for t in training:
            assert [e for e, _ in t["curve"]][-1] == t["epochs"]
            assert t["best_epoch"] in [e for e, _ in t["curve"]]
            assert all(0.0 <= s <= 1.0 for _, s in t["curve"])
        profile = models_["fused"]["long_weight_profile"]
        assert profile["cases"] > 0 and sum(profile["histogram"]) == profile["cases"]
        assert (out / "ring-loo-gate.png").stat().st_size > 0
        pair = models_["fused"]["vs_short_only_ndcg@10"]
        assert pair["cases"] == models_["fused"]["cases"]
        md = (out / "ring-loo.md").read_text()
        assert "--max-len 12 --dropout 0.2 --windows all --dim 16" in md
        assert "--precision bf16" in md and "--patience 4" in md and "--layers" not in md
        assert "--lr-schedule cosine" in md and "--ema-decay 0.9 --patience 4" in md
        assert "balanced-init" not in md  # the default, as in `lsi refresh`
    if protocol == "prequential":
        # PyTorch's init for the embeddings is not the default: the command says so
        assert "--no-balanced-init" in (out / "ring-prequential.md").read_text()
        # warm refreshes happened during the replay (one per 150 events, none at the start)
        n = on_disk["events"]
        assert len(on_disk["models"]["fused"]["refreshes"]) == (n - 1) // 150
        # paired on the events both judged, though the models judge different sets
        for name in ("mostpop", "covisit", "fused"):
            pair = on_disk["models"][name]["vs_short_only_ndcg@10"]
            assert 0 < pair["cases"] <= on_disk["models"][name]["evaluated"]


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_pool_workers_die_with_the_bench_process(tmp_path: Path) -> None:
    """A killed ``lsi bench … --jobs N`` must not leave its training processes running."""
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent("""
        import multiprocessing as mp, os, sys, time
        from concurrent.futures import ProcessPoolExecutor
        from lsi.bench.accuracy import _pool_worker_init

        if __name__ == "__main__":
            pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"),
                                       initializer=_pool_worker_init, initargs=(os.getpid(),))
            print(pool.submit(os.getpid).result(), flush=True)
            time.sleep(600)
    """)
    )
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as parent:  # fmt: skip
        try:
            assert parent.stdout is not None
            child = int(parent.stdout.readline())
            os.kill(child, 0)  # the pool worker is alive
            assert kill_and_watch(parent, child, 30), "the pool worker outlived the killed bench"
        finally:
            parent.kill()
