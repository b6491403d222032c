"""The flags of ``lsi bench refresh``, passed from the command line to a real run on a
synthetic log (slow: it trains). The other commands' flags, and the check that every flag of
every command has a test (this one listed there too), are in ``tests/unit/cli/test_cli_flags.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsi.cli.main import main
from tests.unit.bench.test_bench_accuracy import synthetic_log

pytestmark = pytest.mark.slow


def test_bench_refresh_runs_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = str(synthetic_log(tmp_path / "ring.csv", users=60))
    out = tmp_path / "refresh"
    flags = ["--dataset", log, "--out", str(out), "--device", "cpu", "--new-fraction", "0.2",
             "--valid-cases", "15", "--scaling-edges", "3000,1500", "--scaling-epochs", "2",
             "--epochs", "2", "--warm-epochs", "1", "--dim", "8", "--seed", "3"]  # fmt: skip
    assert main(["bench", "refresh", *flags]) == 0
    assert f"report: {out / 'refresh-ring'}.json" in capsys.readouterr().out
    report = json.loads((out / "refresh-ring.json").read_text())
    assert (report["config"]["epochs"], report["config"]["warm_epochs"]) == (2, 1)
    assert report["config"]["dim"] == 8 and report["machine"]["device"] == "cpu"
    assert (report["cold"]["epochs"], report["warm"]["epochs"]) == (2, 1)
    assert report["new_interactions"] == round(0.2 * report["interactions"])
    assert report["cold"]["validation"]["cases"] == 15
    assert [p["edges"] for p in report["scaling"]["points"]] == [1500, 3000]
    assert all(p["epochs"] == 2 for p in report["scaling"]["points"])
    assert report["reproduce"] == "lsi bench refresh " + " ".join(flags)  # every flag, in order

    assert main(["bench", "refresh", "--scaling-edges", "1e6"]) == 2
    assert "--scaling-edges takes comma-separated integers" in capsys.readouterr().err
