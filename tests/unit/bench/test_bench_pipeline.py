"""``lsi bench pipeline``'s arithmetic and report, without a broker (the run itself:
``tests/integration/test_bench_pipeline.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lsi.bench.pipeline import (
    QUICK,
    PipelineBenchOptions,
    _catalogue,
    _command,
    group_assigned,
)
from lsi.bench.pipeline_report import (
    DRAINS,
    Drain,
    Latency,
    Ratio,
    cdf,
    crossing,
    markdown,
    plot,
    quantiles,
    ratios,
)

LOAD = (0.3, 0.5, 0.9)


def drain(name: str, rate: float, startup: float = 2.0, processes: int = 1) -> Drain:
    """A drain of 200k events at ``rate`` from its assignment, ``startup`` s after start."""
    started = 1000.0
    return Drain(name, 200_000, processes, started, started + startup,
                 started + startup + 200_000 / rate, LOAD)  # fmt: skip


def latency(name: str, ms: list[float], rate: float = 1000.0) -> Latency:
    return Latency(name, name, rate, 1000, [m / 1000 for m in ms], LOAD, "arrival − ts")


def test_quantiles_interpolate_between_ranks_and_are_none_without_samples() -> None:
    assert quantiles([]) == {"p50": None, "p99": None}
    assert quantiles([5.0]) == {"p50": 5.0, "p99": 5.0}
    got = quantiles(range(1, 101))  # 1 … 100
    assert got["p50"] == pytest.approx(50.5) and got["p99"] == pytest.approx(99.01)
    assert cdf([]) == [] and cdf([3.0, 1.0, 2.0], points=2) == [1.0, 2.0, 3.0]


def test_crossing_interpolates_when_a_count_reaches_its_target() -> None:
    tl = [(0.0, 0.0), (1.0, 0.0), (2.0, 100.0), (3.0, 300.0)]
    assert crossing(tl, 200) == pytest.approx(2.5)
    assert crossing(tl, 100) == 2.0
    assert crossing(tl, 301) is None
    assert crossing([(4.0, 50.0)], 10) == 4.0


def test_a_drain_counts_from_its_assignment_and_from_its_start() -> None:
    d = Drain("lsi", 1000, 1, started=10.0, assigned=12.0, done=14.0, load_average=LOAD)
    assert d.rate() == 500.0 and d.rate("started") == 250.0
    row = d.to_dict()
    assert (row["events_per_second"], row["events_per_second_from_start"]) == (500.0, 250.0)
    assert (row["assigned_after_s"], row["done_after_s"], row["ok"]) == (2.0, 4.0, True)
    assert row["label"] == DRAINS["lsi"]
    never = Drain("lsi_x2", 1000, 2, 10.0, None, 14.0, LOAD, "group never seen")
    assert never.rate() is None and never.rate("started") == 250.0 and never.ok
    unfinished = Drain("faust", 1000, 1, 10.0, 11.0, None, LOAD, "deadline")
    assert not unfinished.ok and unfinished.rate() is None and unfinished.rate("started") is None


def test_a_ratio_passes_on_the_side_its_target_names() -> None:
    assert Ratio("a", "a", 0.8, "x", 0.75, ">=").passed is True
    assert Ratio("a", "a", 0.7, "x", 0.75, ">=").passed is False
    assert Ratio("b", "b", 100.0, "ms", 100.0, "<=").passed is True
    assert Ratio("b", "b", 101.0, "ms", 100.0, "<=").passed is False
    assert Ratio("c", "c", None, "x", 1.6).passed is False, "nothing measured is a miss"
    assert Ratio("d", "d", 3.0, "x").passed is None, "context, no target"
    assert Ratio("a", "a", 0.8, "x", 0.75).to_dict()["passed"] is True


def measured() -> tuple[dict[str, Drain], dict[str, Latency]]:
    drains = {
        "aiokafka": drain("aiokafka", 180_000),
        "faust": drain("faust", 12_000),
        "faust_table": drain("faust_table", 3_000),
        "lsi_x2": drain("lsi_x2", 17_000, processes=2),
        "lsi": drain("lsi", 10_000),
        "lsi_model": drain("lsi_model", 5_000, startup=6.0),
    }
    lat = {"hop": latency("hop", [1.0] * 98 + [3.0] * 2),
           "lsi": latency("lsi", [20.0] * 97 + [150.0] * 3)}  # fmt: skip
    return drains, lat


def test_the_four_targets_of_the_issue_come_first_with_their_verdicts() -> None:
    drains, lat = measured()
    rs = {r.key: r for r in ratios(drains, lat)}
    keys = [r.key for r in ratios(drains, lat)]
    assert keys[:5] == ["lsi_vs_faust", "lsi_model_vs_faust", "two_workers_vs_one",
                        "latency_p50", "latency_p99"]  # fmt: skip
    assert rs["lsi_vs_faust"].value == pytest.approx(10_000 / 12_000)
    assert rs["lsi_vs_faust"].passed is True  # 0.83 ≥ 0.75
    assert rs["lsi_model_vs_faust"].value == pytest.approx(5_000 / 12_000)
    assert rs["lsi_model_vs_faust"].passed is False  # 0.42 < 0.50
    assert rs["two_workers_vs_one"].value == pytest.approx(1.7) and rs["two_workers_vs_one"].passed
    assert rs["latency_p50"].value == pytest.approx(20.0) and rs["latency_p50"].passed
    assert rs["latency_p99"].value == pytest.approx(150.0) and rs["latency_p99"].passed is False
    assert "hop 1.0 ms" in rs["latency_p50"].detail
    assert rs["latency_p50_vs_hop"].value == pytest.approx(20.0)
    assert rs["faust_table_vs_faust"].value == pytest.approx(0.25)
    # from process start: the model's slower start counts there
    assert rs["lsi_model_vs_faust"].from_start is not None
    assert rs["lsi_model_vs_faust"].from_start < rs["lsi_model_vs_faust"].value
    for r in rs.values():
        assert (r.target is None) == (r.passed is None)


def test_a_step_that_did_not_run_is_a_miss_not_an_error() -> None:
    drains, lat = measured()
    del drains["lsi_model"], lat["lsi"]
    rs = {r.key: r for r in ratios(drains, lat, model=False)}
    assert rs["lsi_model_vs_faust"].value is None and rs["lsi_model_vs_faust"].passed is False
    assert rs["latency_p99"].value is None and rs["latency_p99"].passed is False
    assert "no model" in rs["latency_p50"].label


def report_of(tmp_path: Path, catalogue: dict[str, Any] | None) -> dict[str, Any]:
    drains, lat = measured()
    return {
        "commit": "abc123", "dirty": False, "date": "2026-12-07 08:00 UTC",
        "dataset": "ml-1m", "events": 200_000,
        "machine": {"cpus": 2, "python": "3.11.7", "kafka": "4.0.1"},
        "load_average": {"start": [0.12, 0.2, 0.3], "end": [1.5, 1.1, 0.7]},
        "settings": {"partitions": 8, "batch_max": 500, "batch_within_s": 0.05,
                     "emit_policy": "batch", "omp_num_threads": "1"},
        "model": {"version": "v000001", "events": 200_000, "train_seconds": 61.0, "max_len": 200},
        "drains": {k: d.to_dict() for k, d in drains.items()},
        "latency": {k: v.to_dict() for k, v in lat.items()},
        "ratios": [r.to_dict() for r in ratios(drains, lat)],
        "timelines": {"lsi": [(0.0, 0.0), (5.0, 60_000.0), (22.0, 200_000.0)]},
        "catalogue": catalogue,
        "steps": [{"step": "publish", "load_average": [0.12, 0.2, 0.3]}],
        "command": "lsi bench pipeline",
    }  # fmt: skip


def test_the_markdown_prints_every_ratio_with_its_target_and_verdict(tmp_path: Path) -> None:
    report = report_of(tmp_path, {"path": "cat/report.md",
                                  "markdown": "# Catalogue\n\n| size | µs |\n"})  # fmt: skip
    md = markdown(report)
    for r in report["ratios"]:
        assert r["label"] in md
    assert "| one lsi worker, no model ÷ bare Faust agent | 0.83× | ≥ 0.75× | **pass** |" in md
    assert "| 0.42× | ≥ 0.50× | **miss** |" in md
    assert "| 150.0 ms | ≤ 100.0 ms | **miss** |" in md
    assert "two lsi workers ÷ one, same backlog | 1.70× | ≥ 1.60× | **pass**" in md
    assert "0.12 / 0.20 / 0.30" in md and "abc123" in md, "load average and commit"
    assert "## Catalogue" in md, "the catalogue report is included, one heading level down"
    assert "Reproduce: `lsi bench pipeline`" in md
    plot(report, tmp_path / "report.png")
    assert (tmp_path / "report.png").stat().st_size > 10_000
    missing = markdown(report_of(tmp_path, {"path": "cat", "markdown": None}))
    assert "no `lsi bench catalogue` report in `cat`" in missing


def test_the_group_counts_as_assigned_once_stable_with_every_member_on_the_topic() -> None:
    def member(*topics: str) -> dict[str, Any]:
        return {"member_assignment": {"assigned_partitions": [
            {"topic": t, "partitions": [0, 1]} for t in topics]}}  # fmt: skip

    stable = {"group_state": "Stable", "members": [member("ev", "x"), member("ev")]}
    assert group_assigned(stable, "ev", 2)
    assert not group_assigned(stable, "ev", 3), "a member is missing"
    assert not group_assigned({**stable, "group_state": "PreparingRebalance"}, "ev", 2)
    assert not group_assigned({"group_state": "Stable", "members": [member("ev"), member("x")]},
                              "ev", 2), "a member without the topic"  # fmt: skip
    assert group_assigned({"group_state": "Stable", "members": [{"member_assignment": b""}]},
                          "ev", 1), "an assignment that cannot be decoded is not held against it"  # fmt: skip
    assert not group_assigned({}, "ev", 1)


def test_the_catalogue_report_is_found_in_its_folder_or_as_a_file(tmp_path: Path) -> None:
    assert _catalogue(None) is None
    assert _catalogue(tmp_path / "none") == {"path": str(tmp_path / "none"), "markdown": None}
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "sizes.md").write_text("# sizes\n")
    assert _catalogue(tmp_path / "cat") == {"path": str(tmp_path / "cat/sizes.md"),
                                            "markdown": "# sizes\n"}  # fmt: skip
    (tmp_path / "cat" / "report.md").write_text("# report\n")
    assert _catalogue(tmp_path / "cat")["markdown"] == "# report\n"  # type: ignore[index]
    assert _catalogue(tmp_path / "cat" / "sizes.md")["markdown"] == "# sizes\n"  # type: ignore[index]


def test_the_reproduce_command_names_what_differs_from_the_defaults() -> None:
    assert _command(PipelineBenchOptions()) == "lsi bench pipeline"
    quick = PipelineBenchOptions(**QUICK, dataset="ml-100k", model=False)
    assert _command(quick) == ("lsi bench pipeline --dataset ml-100k --events 3000 "
                               "--live-events 600 --rate 200 --train-budget 5 --max-len 50 "
                               "--skip-model")  # fmt: skip
    assert PipelineBenchOptions().deadline_s == 620.0
    assert PipelineBenchOptions(wait_s=30).deadline_s == 30.0


@pytest.mark.parametrize("argv", [
    ["faust", "--events", "10"],  # no group
    ["aiokafka", "--group", "g"],  # no count
    ["faust-table", "--group", "g", "--events", "10"],  # no data dir
    ["latency"],  # no ready file
    ["faust-relay", "--group", "g", "--ready", "r.ready"],  # no topic to relay to
    ["produce", "--events", "10"],  # no dataset
])  # fmt: skip
def test_an_anchor_refuses_to_start_without_what_its_kind_needs(
    argv: list[str], tmp_path: Path
) -> None:
    from lsi.bench.anchors import main

    with pytest.raises(SystemExit) as exc:
        main([*argv, "--brokers", "127.0.0.1:1", "--topic", "t", "--result", str(tmp_path / "r")])
    assert exc.value.code == 2
    assert not (tmp_path / "r").exists()


def test_the_markdown_judges_the_per_user_state_of_a_full_window(tmp_path: Path) -> None:
    def sizes(p99: int) -> dict[str, Any]:
        return {"count": 10, "p50": p99 // 2, "p90": p99, "p99": p99, "max": p99, "mean": 1.0}

    report = report_of(tmp_path, None)
    report["state"] = {"dataset": "ml-1m", "events": 1000, "users": 20, "recent_n": 200,
                       "binary": {"full": sizes(1404), "all": sizes(1258)}}  # fmt: skip
    md = markdown(report)
    assert "| with ≥ 200 events (10) | 702 B | 1,404 B | 1,404 B | ≤ 2,048 B | pass |" in md
    report["state"]["binary"]["full"] = sizes(2049)
    assert "| 2,049 B | 2,049 B | ≤ 2,048 B | miss |" in markdown(report)
