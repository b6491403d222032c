"""The refresh job's sections of the settings (``LSI_SEQUENCE_*``, ``LSI_REFRESH_HALF_LIFE_DAYS``)
are the training loops' own configuration: the same defaults, and every one reaches the loop."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lsi.config import Settings
from models.jobs.refresh import RefreshJob
from models.training.longterm import TrainConfig
from models.training.sequence import SequenceConfig

#: setting → SequenceConfig field, where the names differ
RENAMED = {"sequence_budget_s": "max_train_s"}


def sequence_settings() -> list[tuple[str, str]]:
    return [(f.name, RENAMED.get(f.name, f.name.removeprefix("sequence_")))
            for f in dataclasses.fields(Settings) if f.metadata["section"] == "sequence"]  # fmt: skip


def test_the_sequence_section_has_the_encoders_defaults() -> None:
    settings, cfg = Settings(), SequenceConfig()
    differ = [(s, getattr(settings, s), getattr(cfg, c)) for s, c in sequence_settings()
              if getattr(settings, s) != getattr(cfg, c)]  # fmt: skip
    # a deployment bounds each refresh's encoder training; the loop itself has no budget
    assert differ == [("sequence_budget_s", 900.0, None)]
    assert Settings().refresh_half_life_days == TrainConfig().half_life_days
    assert Settings().session_gap_s == SequenceConfig().session_gap_s


def test_every_sequence_setting_reaches_the_training_loop(tmp_path: Path) -> None:
    changed = {"sequence_encoder": "gru", "sequence_max_len": 50, "sequence_windows": "all",
               "sequence_precision": "bf16", "sequence_epochs": 7, "sequence_budget_s": 12.0,
               "sequence_negatives": 64, "sequence_lr_schedule": "cosine",
               "sequence_ema_decay": 0.9, "sequence_balanced_init": False, "sequence_dim": 32,
               "sequence_layers": 1, "sequence_heads": 4}  # fmt: skip
    assert set(changed) == {s for s, _ in sequence_settings()}, "a new setting needs a value here"
    settings = Settings(
        models_dir=tmp_path / "m", refresh_device="cpu", refresh_half_life_days=30.0, **changed
    )  # type: ignore[arg-type]
    job = RefreshJob(settings, announce_to_workers=False)
    cfg = job._seq_cfg()
    for s, c in sequence_settings():
        assert getattr(cfg, c) == changed[s], s
    assert job.cfg.half_life_days == 30.0 and job.cfg.device == "cpu" == cfg.device
