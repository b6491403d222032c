"""`lsi bench catalogue` from the command line, for real (slow): the serving cost of exact
and candidate scoring on synthetic catalogues (the ML-1M section, which trains for minutes,
replaced), the report and its merge with an earlier run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lsi.bench.catalogue import CatalogueBenchOptions
from lsi.cli.main import main
from lsi.errors import LsiError
from tests.threads import one_thread  # noqa: F401  (an autouse fixture)

pytestmark = pytest.mark.slow


def test_bench_catalogue_runs_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import lsi.bench.catalogue as bench

    seen: dict[str, Any] = {}

    def ml1m(opts: CatalogueBenchOptions, log: Any) -> dict[str, Any]:
        seen["opts"] = opts  # the real section trains on ML-1M: minutes
        return {"dataset": "ml-1m", "phase": opts.phase, "items": 3416, "nlist": 234,
                "cases": 6040, "exact": {"ndcg@10": 0.16, "hr@10": 0.3},
                "with_retrieval": {"ndcg@10": 0.159, "hr@10": 0.3},
                "ndcg@10_relative_loss": 0.00625, "recall@100_short": 0.99,
                "recall@100_long": 0.98,
                "top10_probability_relative_error": {"median": 0.01, "p90": 0.02}}  # fmt: skip

    monkeypatch.setattr(bench, "ml1m_accuracy", ml1m)
    out = tmp_path / "cat"
    flags = ["--sizes", "2000,600", "--batch", "4", "--batches", "2", "--candidates", "40",
             "--nprobe", "8", "--storage", "sq8", "--seed", "1", "--ml1m", "--ml1m-budget",
             "5", "--phase", "valid", "--out", str(out)]  # fmt: skip
    assert main(["bench", "catalogue", "--quick", *flags]) == 0
    printed = capsys.readouterr().out
    assert "# Serving cost per event" in printed and f"report: {out}/catalogue.json" in printed
    report = json.loads((out / "catalogue.json").read_text())
    assert [p["items"] for p in report["sizes"]] == [600, 2000]
    assert report["retrieval"]["candidates"] == 40 and report["retrieval"]["storage"] == "sq8"
    assert report["batch"] == 4 and report["sizes"][0]["retrieval_batches"] == 2
    assert seen["opts"].phase == "valid" and seen["opts"].ml1m_budget_s == 5.0
    for p in report["sizes"]:
        assert p["exact_s_per_event"] > 0 and p["retrieval_s_per_event"] > 0
        assert p["memory"]["short_bytes_per_item"] > 64  # sq8 code + id + centroids
        assert 0 <= p["recall@100_short"] <= 1
    assert report["ml1m"]["ndcg@10_relative_loss"] == 0.00625
    assert report["command"] == "lsi bench catalogue " + " ".join(flags)
    assert {"commit", "load_average", "machine"} <= report.keys()
    assert (out / "catalogue.png").stat().st_size > 0
    assert "NDCG@10 lost to retrieval: 0.62 %" in (out / "catalogue.md").read_text()

    # --quick alone: two small catalogues
    assert main(["bench", "catalogue", "--quick", "--out", str(tmp_path / "q")]) == 0
    quick = json.loads((tmp_path / "q" / "catalogue.json").read_text())
    assert [p["items"] for p in quick["sizes"]] == [1000, 5000]
    assert quick["ml1m"] is None  # nothing measured it in that folder
    # without --ml1m the cost curve is measured again and the ML-1M section kept, marked
    assert main(["bench", "catalogue", "--quick", "--sizes", "600", "--out", str(out)]) == 0
    again = json.loads((out / "catalogue.json").read_text())
    assert again["ml1m"]["earlier_run"] and again["ml1m"]["command"] == report["command"]
    assert "comes from an earlier run" in (out / "catalogue.md").read_text()
    with pytest.raises(LsiError):
        CatalogueBenchOptions(sizes=(10,))
