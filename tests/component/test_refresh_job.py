"""The refresh job without a broker: train, validate against live, publish, promote or reject;
and the `lsi models` command line. Each test trains real models for seconds (slow); the
duration parser of `lsi refresh --every` is tested in ``tests/unit/cli/test_cli.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from lsi.cli.main import main
from lsi.config import Settings
from lsi.errors import LsiError
from lsi.monitoring.metrics import RefreshMetrics
from lsi.serving.store import SnapshotStore
from models.jobs.refresh import RefreshJob
from models.training.longterm import Log, TrainConfig

pytestmark = pytest.mark.slow

FAST = TrainConfig(dim=16, epochs=15, warm_epochs=3, device="cpu")


def clustered_log(n_users: int = 120, per_user: int = 12, seed: int = 0) -> Log:
    """Two taste clusters over disjoint item sets: learnable, so validation is meaningful."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    t = 0.0
    for u in range(n_users):
        base = 0 if u % 2 == 0 else 40
        for _ in range(per_user):
            users.append(f"u{u}")
            items.append(f"i{base + int(rng.integers(0, 40))}")
            t += float(rng.uniform(1, 10))
            ts.append(t)
    return Log(users, items, np.array(ts), np.ones(len(users), dtype=np.float32))


def job(tmp_path: Path, cfg: TrainConfig = FAST, **settings: object) -> RefreshJob:
    s = Settings.from_env({}, models_dir=tmp_path / "models", refresh_valid_cases=60, **settings)
    return RefreshJob(s, cfg, RefreshMetrics(CollectorRegistry()), announce_to_workers=False)


def sample(metrics: RefreshMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


def test_a_first_refresh_is_promoted_with_a_complete_manifest(tmp_path: Path) -> None:
    j = job(tmp_path)
    log = clustered_log()
    out = j.run_once("manual", data=(log, {"lsi.interactions": {"0": len(log)}}))
    assert out.outcome == "promoted" and out.version == "v000001" and out.live_before is None
    store = SnapshotStore(tmp_path / "models")
    assert store.live() == "v000001"
    m = store.manifest("v000001")
    assert m["data_watermark"] == {"lsi.interactions": {"0": len(log)}}
    assert m["events"] == len(log) and m["edges"] == out.edges > 0
    assert m["validation"]["cases"] == 60 and 0.0 < m["validation"]["ndcg@10"] <= 1.0
    assert m["training"]["device"] == "cpu" and m["training"]["epochs"] == FAST.epochs
    assert m["promotion"] == {"promoted": True, "margin": 0.05, "compared_with_live": False,
                              "finite": True}  # fmt: skip
    assert m["data_max_ts"] <= float(log.ts.max())
    # clusters are disjoint: the model should find the held-out item's cluster
    assert m["validation"]["hr@10"] > 10 / 40 * 0.8
    metrics = j.metrics
    assert sample(metrics, "lsi_refresh_runs_total", trigger="manual", outcome="promoted") == 1
    assert sample(metrics, "lsi_refresh_last_success_timestamp_seconds") > 0
    assert sample(metrics, "lsi_snapshot_created_timestamp_seconds") == m["created_at"]
    assert sample(metrics, "lsi_snapshot_age_seconds") >= 0
    assert sample(metrics, "lsi_refresh_graph_edges") == out.edges


def test_a_candidate_worse_than_live_by_more_than_the_margin_is_kept_but_not_promoted(
    tmp_path: Path,
) -> None:
    log = clustered_log()
    mark = {"t": {"0": len(log)}}
    assert job(tmp_path).run_once("manual", data=(log, mark)).outcome == "promoted"
    # new interactions arrive (the comparison uses only data newer than the live snapshot) …
    later = clustered_log(seed=1)
    more = Log([*log.users, *later.users], [*log.items, *later.items],
               np.concatenate([log.ts, later.ts + log.ts.max()]),
               np.ones(len(log) + len(later), dtype=np.float32))  # fmt: skip
    # … and a candidate that barely trains (tiny learning rate, one epoch, cold: new dim)
    weak = job(tmp_path, TrainConfig(dim=8, epochs=1, lr=1e-5, device="cpu"), promote_margin=0.0)
    out = weak.run_once("schedule", data=(more, mark))
    assert out.outcome == "rejected" and out.version == "v000002"
    assert out.live_validation is not None
    assert out.validation["ndcg@10"] < out.live_validation["ndcg@10"]
    store = SnapshotStore(tmp_path / "models")
    assert store.live() == "v000001", "the live version is untouched"
    assert store.manifest("v000002")["promotion"]["promoted"] is False
    assert sample(weak.metrics, "lsi_refresh_rejected_total") == 1
    assert (
        sample(weak.metrics, "lsi_refresh_runs_total", trigger="schedule", outcome="rejected") == 1
    )


def test_a_warm_refresh_starts_from_live_and_learns_new_users_and_items(tmp_path: Path) -> None:
    log = clustered_log()
    j = job(tmp_path)
    j.run_once("manual", data=(log, {}))
    more = Log([*log.users, "new-user", "new-user", "new-user"],
               [*log.items, "i1", "brand-new-item", "i2"],
               np.concatenate([log.ts, log.ts[-1] + np.array([1.0, 2.0, 3.0])]),
               np.ones(len(log) + 3, dtype=np.float32))  # fmt: skip
    out = j.run_once("events", data=(more, {}))
    assert out.warm_from == "v000001"
    m = SnapshotStore(tmp_path / "models").manifest(out.version or "")
    assert m["warm_from"] == "v000001" and m["training"]["epochs"] == FAST.warm_epochs
    assert m["new_users"] == 1 and m["new_items"] == 1


def test_an_empty_log_publishes_nothing_and_a_failure_is_counted(tmp_path: Path) -> None:
    j = job(tmp_path)
    empty = Log([], [], np.zeros(0), np.zeros(0, dtype=np.float32))
    out = j.run_once("start", data=(empty, {}))
    assert out.outcome == "empty" and out.version is None
    assert "empty" in out.summary()
    assert SnapshotStore(tmp_path / "models").versions() == []
    skips_only = Log(["u"], ["i"], np.array([1.0]), np.array([-1.0], dtype=np.float32))
    assert j.run_once("start", data=(skips_only, {})).outcome == "empty"
    log = clustered_log()
    j.run_once("manual", data=(log, {}))
    (tmp_path / "models" / "LIVE").write_text("{garbage")  # the store is damaged
    with pytest.raises(LsiError, match="LIVE is unreadable"):
        j.run_once("drift", data=(log, {}))
    assert sample(j.metrics, "lsi_refresh_failures_total") == 1
    assert sample(j.metrics, "lsi_refresh_runs_total", trigger="drift", outcome="failed") == 1


def test_models_list_promote_rollback_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in [v for v in __import__("os").environ if v.startswith("LSI_")]:
        monkeypatch.delenv(var)
    models = tmp_path / "models"
    args = ["--models-dir", str(models)]
    assert main(["models", "list", *args]) == 0
    assert "no snapshots" in capsys.readouterr().out
    log = clustered_log()
    j = job(tmp_path, promote_margin=1.0)  # promote whatever validates
    j.run_once("manual", data=(log, {}))
    j.run_once("manual", data=(log, {}))
    assert main(["models", "list", *args]) == 0
    listing = capsys.readouterr().out
    assert "v000001" in listing and "v000002" in listing
    live_line = next(line for line in listing.splitlines() if line.startswith("v000002"))
    assert live_line.split()[1] == "*" and " passed " in live_line
    assert main(["models", "rollback", "--no-announce", *args]) == 0
    assert "v000001 is live" in capsys.readouterr().out
    assert main(["models", "promote", "v000002", "--no-announce", *args]) == 0
    assert SnapshotStore(models).live() == "v000002"
    assert main(["models", "promote", "v000099", "--no-announce", *args]) == 2
    err = capsys.readouterr().err
    assert "no snapshot v000099" in err and "lsi models list" in err and "Traceback" not in err
    assert main(["models", "promote", "--no-announce", *args]) == 2


def test_the_encoder_shape_comes_from_the_settings(tmp_path: Path) -> None:
    """LSI_SEQUENCE_DIM / _LAYERS / _HEADS shape the encoder the refresh trains (and
    _LR_SCHEDULE / _EMA_DECAY how it trains, with the balanced tables by default); a width other than the long-term model's still trains (item
    rows then start at random)."""
    j = job(tmp_path, sequence_dim=24, sequence_layers=1, sequence_heads=3, sequence_max_len=8,
            sequence_epochs=2, sequence_lr_schedule="cosine",
            sequence_ema_decay=0.5)  # fmt: skip
    log = clustered_log(n_users=40)
    out = j.run_once("manual", data=(log, {"lsi.interactions": {"0": len(log)}}))
    seq = SnapshotStore(tmp_path / "models").manifest(out.version)["sequence"]
    assert (seq["dim"], seq["layers"], seq["heads"], seq["max_len"]) == (24, 1, 3, 8)
    assert seq["lr_schedule"] == "cosine" and seq["ema_decay"] == 0.5
    assert seq["balanced_init"] is True  # the refresh's default
    assert seq["epochs"] <= 2 and 0.0 <= seq["validation"]["fused"]["ndcg@10"] <= 1.0


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_a_log_too_small_for_the_encoder_publishes_the_long_term_model_and_says_why(
    tmp_path: Path, n: int
) -> None:
    """A fresh deployment whose first few events arrive before the first refresh: no held-out
    interaction has history to calibrate the gate on (it was a ``torch.cat`` traceback)."""
    j = job(tmp_path)
    users, items = [f"u{k % 2}" for k in range(n)], [f"i{k % 3}" for k in range(n)]
    tiny = Log(users, items, np.arange(n, dtype=float), np.ones(n, dtype=np.float32))
    out = j.run_once("start", data=(tiny, {}))
    assert out.outcome == "promoted" and out.sequence is None
    assert "encoder: not trained yet: no held-out interaction" in out.summary()
    store = SnapshotStore(tmp_path / "models")
    manifest, arrays = store.load_arrays(out.version or "")
    assert arrays.model(out.version or "", manifest).sequence is None
