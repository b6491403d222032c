"""The fault suite, short version (`lsi bench faults` as CI runs it).

A few thousand synthetic events, 2 SIGKILLs (one same-dir, one empty-dir restart), a broker
restart and a 1 → 2 → 1 rebalance, with the whole bad-input corpus interleaved; on a broker
of the suite's own (it restarts it). Ground truth is read back from the topics.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lsi.bench.faults import FaultBenchOptions, run_fault_bench

pytestmark = pytest.mark.timeout(600)

SHORT = FaultBenchOptions(
    events=3000,
    kills=2,
    rate=30.0,
    seed=0,
    restore_users=100,
    wait_s=90.0,
)  # = lsi bench faults --events 3000 --kills 2 --rate 30 --wait 90 --restore-users 100


def test_short_fault_suite_loses_nothing_applies_nothing_twice_and_dead_letters_every_case(
    tmp_path: Path,
) -> None:
    opts = dataclasses.replace(SHORT, out=tmp_path, work_dir=tmp_path / "work")
    report = run_fault_bench(opts)
    assert json.loads((tmp_path / "faults.json").read_text())["events"] == report["events"]
    assert (tmp_path / "faults.md").read_text().startswith("# Fault suite")
    where = f"see {tmp_path / 'faults.md'} and the worker logs in {tmp_path / 'work' / 'logs'}"

    inv = report["invariants"]
    assert report["events"]["good_in_topic"] >= SHORT.events, where
    assert inv["lost_events"] == 0, f"lost: {inv['examples']}; {where}"
    assert inv["double_applied_users"] == 0, f"applied twice: {inv['examples']}; {where}"
    assert inv["users_without_record"] == 0, where
    assert inv["unexpected_dead_letters"] == 0, inv["unexpected_dead_letter_reasons"]
    assert report["restore"]["mismatched"] == 0, report["restore"]
    assert report["restore"]["http_mismatched"] == 0, report["restore"]
    assert not report["crashes"]["unexpected_exits"], report["crashes"]
    assert report["crashes"]["tracebacks"] == 0, report["crashes"]["traceback_lines"]
    assert report["http"]["500"] == 0, report["http_500_examples"]
    assert report["http"]["200"] > 0 and report["http"]["400"] > 0, report["http"]
    failed = {c["name"]: c["problems"] for c in report["corpus"]["cases"] if not c["ok"]}
    assert not failed, failed
    assert len(report["kills"]) == 2
    assert {k["restart"] for k in report["kills"]} == {"same-dir", "empty-dir"}
    for step in [*report["kills"], report["broker_restart"], report["rebalance"]]:
        assert step["seconds_to_all_partitions"] is not None, step
    assert not report["timeouts"], report["timeouts"]
    assert report["passed"], report["failures"]
