"""Every benchmark report says what it measured: the commit, whether the checkout had
uncommitted changes, and when; a row kept from an earlier run by ``--merge`` says which run."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from lsi.bench.accuracy import AccuracyOptions, run_accuracy_bench
from lsi.bench.provenance import ROOT, provenance, provenance_line
from tests.unit.bench.test_bench_accuracy import synthetic_log


def test_provenance_is_this_checkouts_commit_and_state() -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=ROOT).returncode != 0
    got = provenance()
    assert got["commit"] == head and got["dirty"] is changed
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", got["date"])


def test_the_line_names_the_commit_the_changes_and_the_date() -> None:
    line = provenance_line({"commit": "0123456789abcdef" * 2, "dirty": True, "date": "D"})
    assert line == "Commit `0123456789ab` (with uncommitted changes), D."
    assert provenance_line({}) == "Commit not recorded."


def test_accuracy_reports_record_the_run_and_merged_rows_keep_theirs(tmp_path: Path) -> None:
    log = synthetic_log(tmp_path / "ring.csv")
    out, quiet = tmp_path / "results", {"log": lambda _: None}
    first = run_accuracy_bench(AccuracyOptions(dataset=str(log), models=("mostpop", "covisit"),
                                               seeds=1, out=out), **quiet)  # fmt: skip
    assert first["commit"] == provenance()["commit"] and first["date"]
    # an earlier report from another commit, as if measured before a change
    path = out / "ring-loo.json"
    earlier = json.loads(path.read_text())
    earlier.update(commit="f" * 40, date="2026-01-01 00:00 UTC", dirty=False)
    path.write_text(json.dumps(earlier))
    merged = run_accuracy_bench(AccuracyOptions(dataset=str(log), models=("covisit",), seeds=1,
                                                out=out, merge=True), **quiet)  # fmt: skip
    kept = merged["models"]["mostpop"]
    assert (kept["commit"], kept["date"]) == ("f" * 40, "2026-01-01 00:00 UTC")
    md = (out / "ring-loo.md").read_text()
    assert md.splitlines()[2].startswith("Commit `")
    assert "mostpop: Commit `ffffffffffff`, 2026-01-01 00:00 UTC." in md
