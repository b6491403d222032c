"""One refresh on the GPU (runs where torch sees CUDA; the device check in the closing notes
runs it on a lent machine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lsi.config import Settings
from lsi.serving.store import SnapshotStore
from models.jobs.refresh import RefreshJob
from models.training.longterm import Log, TrainConfig

pytestmark = [
    pytest.mark.slow,
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_one_refresh_trains_on_cuda_and_publishes_a_loadable_snapshot(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    users = [f"u{u}" for u in rng.integers(0, 500, n).tolist()]
    items = [f"i{i}" for i in rng.zipf(1.3, n).clip(1, 2000).tolist()]
    log = Log(users, items, np.sort(rng.uniform(0, 1e6, n)), np.ones(n, dtype=np.float32))
    settings = Settings.from_env({}, models_dir=tmp_path / "models", refresh_device="cuda")
    job = RefreshJob(settings, TrainConfig(dim=32, epochs=5), announce_to_workers=False)
    out = job.run_once("manual", data=(log, {"t": {"0": n}}))
    assert out.outcome == "promoted" and out.device.startswith("cuda")
    store = SnapshotStore(settings.models_dir)
    manifest = store.manifest(out.version or "")
    assert manifest["training"]["device"].startswith("cuda")
    assert manifest["training"]["peak_memory_bytes"] > 0
    model = store.load()
    assert model is not None and model.user_vec.dtype == np.float32
    assert np.isfinite(model.user_vec).all() and np.isfinite(model.item_vec).all()
