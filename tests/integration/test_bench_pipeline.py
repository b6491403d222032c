"""``lsi bench pipeline --quick`` on the session's broker: every anchor, lsi with and without
the fused model, two workers, both latencies; a report with every ratio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsi.bench.pipeline import QUICK, PipelineBenchOptions, run_pipeline_bench
from tests.integration.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TARGETS = ("lsi_vs_faust", "lsi_model_vs_faust", "two_workers_vs_one", "latency_p50",
           "latency_p99")  # fmt: skip


def test_quick_pipeline_bench_measures_every_anchor_and_writes_each_ratio(
    kafka: str, tmp_path: Path
) -> None:
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir()
    (catalogue / "report.md").write_text("# Serving time by catalogue size\n\nsee here\n")
    opts = PipelineBenchOptions(**{**QUICK, "events": 2000, "live_events": 400},
                                dataset="ml-100k", out=tmp_path / "out", brokers=kafka,
                                web_port=free_port(), wait_s=150.0,
                                catalogue=catalogue)  # fmt: skip
    report = run_pipeline_bench(opts)

    assert report["failed"] == []
    drains = report["drains"]
    assert list(drains) == ["aiokafka", "faust", "faust_table", "lsi_x2", "lsi", "lsi_model"]
    for name, d in drains.items():
        assert d["ok"] and d["events_per_second_from_start"] > 0, name
        assert d["load_average"] and len(d["load_average"]) == 3
    assert drains["lsi_x2"]["processes"] == 2
    hop, lsi = report["latency"]["hop"], report["latency"]["lsi"]
    assert hop["records"] == hop["sent"] == 400, "every hop record arrived"
    assert lsi["records"] > 0 and lsi["p50_seconds"] is not None
    assert 0 <= hop["p50_seconds"] <= hop["p99_seconds"] < 5
    assert report["model"]["version"] and "fused model" in lsi["label"]
    # Faust's own hop at the same rate: a bare agent relaying lsi-sized micro-batches
    relay = report["latency"]["faust_hop"]
    assert relay["records"] > 0 and 0 <= relay["p50_seconds"] <= relay["p99_seconds"] < 30

    ratios = {r["key"]: r for r in report["ratios"]}
    for key in TARGETS:
        assert ratios[key]["target"] is not None and ratios[key]["passed"] is not None, key
    assert ratios["lsi_vs_faust"]["value"] is not None
    assert ratios["latency_p99"]["value"] is not None

    out = tmp_path / "out"
    saved = json.loads((out / "report.json").read_text())
    assert saved["commit"] is None or len(saved["commit"]) == 40
    assert saved["load_average"]["start"] and saved["steps"]
    md = (out / "report.md").read_text()
    for r in report["ratios"]:
        assert r["label"] in md
    assert "## Serving time by catalogue size" in md and "see here" in md
    assert (out / "report.png").stat().st_size > 10_000
