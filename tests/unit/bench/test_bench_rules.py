"""``lsi bench rules`` on a synthetic log: the rule names it takes and refuses, and a run whose
rows say what each rule did (a cap bounds the categories, letting own items back shows them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsi.bench.rules import RulesBenchOptions, parse_rules, run_rules_bench, with_sequence
from lsi.cli.main import main
from lsi.core.rules import Rules
from lsi.errors import LsiError
from tests.unit.bench.test_bench_accuracy import synthetic_log


def test_rule_names() -> None:
    assert parse_rules("seen") == Rules()
    assert parse_rules("purchased") == Rules(own_items="purchased")
    assert parse_rules("recent:7") == Rules(own_items="recent", recent_days=7.0)
    assert parse_rules("purchased+cap:2") == Rules(own_items="purchased", category_cap=2)
    assert parse_rules("new:2+cap:1") == Rules(new_slots=2, category_cap=1)
    for bad in ("cap", "cap:x", "cap:-1", "recent:0", "bought", "seen:3", "", "new:-1"):
        with pytest.raises(LsiError, match="rules are seen, purchased"):
            parse_rules(bad)


def test_a_run_measures_each_rule_against_the_first(tmp_path: Path) -> None:
    log = synthetic_log(tmp_path / "ring.csv", users=60)
    cats = {str(i): (f"c{i % 3}",) for i in range(30)}
    opts = with_sequence(RulesBenchOptions(dataset=str(log), seeds=1, out=tmp_path / "out",
                                           rules=("seen", "cap:1", "purchased", "new:1"),
                                           categories=cats), epochs=2)  # fmt: skip
    report = run_rules_bench(opts, log=lambda _: None)
    rows = report["rules"]
    assert report["cases"] == 60 and report["baseline"] == "seen"
    assert 0.0 < report["repeat_targets"] < 1.0  # the ring walk comes back to items
    assert rows["seen"]["delta_ndcg@10"] == 0.0 and rows["seen"]["own@10"] == 0.0
    assert rows["cap:1"]["categories@10"] <= 3.0 and rows["cap:1"]["own@10"] == 0.0
    assert rows["purchased"]["own@10"] > 0.0  # no purchase in the log: every item may return
    # the log spans hours: every item is new at its end; a list gets one unless every item is
    # the user's own or listed already (30 items, lists of 20)
    assert 0.5 < rows["new:1"]["explore@10"] <= 1.0 and rows["seen"]["explore@10"] == 0.0
    for row in rows.values():
        assert 0.0 <= row["ndcg@10"] <= row["hr@10"] <= 1.0
    saved = json.loads((tmp_path / "out" / "rules-ring-valid.json").read_text())
    assert saved["rules"] == rows and "--epochs 2" in saved["command"]
    assert (tmp_path / "out" / "rules-ring-valid.md").read_text().count("| `") == 4
    assert (tmp_path / "out" / "rules-ring-valid.png").stat().st_size > 0


def test_bench_rules_runs_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = synthetic_log(tmp_path / "ring.csv")
    out = tmp_path / "out"
    catalogue = tmp_path / "items.csv"
    catalogue.write_text("item_id,categories\n" + "".join(f"{i},c{i % 2}\n" for i in range(30)))
    assert main(["bench", "rules", "--dataset", str(log), "--phase", "test", "--seeds", "1",
                 "--rules", "seen,cap:1", "--catalogue", str(catalogue), "--epochs", "1",
                 "--negatives", "8", "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "| `cap:1` |" in printed and "test items" in printed
    report = json.loads((out / "rules-ring-test.json").read_text())
    assert "--negatives 8" in report["command"] and report["sequence"]["negatives"] == 8
    assert f"--catalogue {catalogue}" in report["command"]
    assert report["phase"] == "test" and report["seeds"] == 1 and list(report["rules"]) == [
        "seen", "cap:1"]  # fmt: skip
    assert report["catalogue_items"] == 30 and report["rules"]["cap:1"]["categories@10"] <= 2.0
    assert main(["bench", "rules", "--rules", "cap:0.5"]) == 2
    assert "--rules 'cap:0.5'" in capsys.readouterr().err
    assert main(["bench", "rules", "--dataset", str(log), "--catalogue", str(log)]) == 2
    assert "--catalogue: " in capsys.readouterr().err  # a log is not a catalogue
