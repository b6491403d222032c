"""Every documented flag of every ``lsi`` command is exercised through :func:`lsi.cli.main.main`.

Issue 19: ``lsi worker --data-dir`` crashed at start because no test had ever passed the
flag. :data:`TESTED` lists every option and positional choice of the argparse tree
(:func:`lsi.cli.main.build_parser`) with the tests that run it; the first two tests walk the tree
and fail for a flag that no test covers, or for a test that no longer exists or never
mentions its flag. The commands that need a broker are run in
``tests/integration/test_cli_flags.py``; those that train for seconds (``lsi bench
refresh``, ``lsi bench catalogue``, ``lsi models``) in ``tests/component``; here are the
others: the benchmarks (the cheap ones for real, on a synthetic log; the slow ones with the
runner replaced where ``main`` imports it, so that the options it would get are checked), the
demo, the refresh loop, and the two Prometheus commands against a fake Prometheus that
records each request.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import lsi.bench
import lsi.bench.accuracy
import lsi.cli.demo
from lsi.cli.main import build_parser, main
from models.training.sequence import SequenceConfig
from tests.unit.bench.test_bench_accuracy import synthetic_log

ROOT = Path(__file__).resolve().parents[3]

# the tests that cover the flags (file::function)
UNIT = "tests/unit/cli/test_cli_flags.py::"
COMPONENT = "tests/component/test_cli_flags.py::"
LIVE = "tests/integration/test_cli_flags.py::"
CLI = "tests/component/test_cli.py::"
WORKER = LIVE + "test_worker_flags_beat_the_environment"
PUBLISH = LIVE + "test_publish_flags_make_the_record"
REPLAY = LIVE + "test_replay_flags_choose_pace_slice_ids_and_time"
RECS_TOPIC = LIVE + "test_recs_from_the_topic_users_top_json_and_titles"
RECS_FOLLOW = LIVE + "test_recs_follow_prints_new_records_of_one_user"
REFRESH_ONCE = LIVE + "test_refresh_once_with_flags"
KAFKA = LIVE + "test_kafka_up_status_logs_down"
MODELS = LIVE + "test_models_list_json_and_announce_through_brokers"
MODELS_OFFLINE = (
    "tests/component/test_refresh_job.py::test_models_list_promote_rollback_from_the_command_line"
)
ORPHAN = "tests/integration/test_pipeline.py::test_a_worker_stops_when_the_tool_that_started_it_is_killed"
DEMO_LIVE = "tests/integration/test_cli_live.py::test_demo_runs_end_to_end_and_stops_everything"
PIPELINE = UNIT + "test_bench_pipeline_flags_reach_its_options"
ACCURACY = UNIT + "test_bench_accuracy_flags_reach_its_options"
ACCURACY_RUN = UNIT + "test_bench_accuracy_runs_from_the_command_line"
REFRESH_BENCH = COMPONENT + "test_bench_refresh_runs_from_the_command_line"
FAULTS = UNIT + "test_bench_faults_flags_reach_its_options"
DEMO = UNIT + "test_demo_flags_reach_its_options"
REFRESH_LOOP = UNIT + "test_refresh_loop_flags_reach_the_job_and_the_loop"
REPORT = UNIT + "test_report_metrics_flags_shape_the_queries"
MONITORING = UNIT + "test_monitoring_check_flags_shape_the_queries"
SETTINGS = "tests/unit/cli/test_cli_settings.py::"
ITEMS = "tests/unit/cli/test_cli_items.py::"
EXPERIMENT = "tests/unit/cli/test_cli_experiment.py::"
CATALOGUE = (
    "tests/component/test_bench_catalogue.py::test_bench_catalogue_runs_from_the_command_line"
)

#: the flags the end-to-end demo test passes (it runs a real broker, worker and replay)
DEMO_LIVE_FLAGS = frozenset({"--limit", "--rate", "--exit-when-done", "--refresh-after"})

#: every option (``command --flag``) and positional choice (``command choice``; a free
#: positional as ``command NAME``) of the CLI → the tests that pass it
TESTED: dict[str, tuple[str, ...]] = {
    " --version": ("tests/unit/cli/test_cli_checks.py::test_version",),
    "kafka up": (KAFKA,), "kafka down": (KAFKA,), "kafka status": (KAFKA,),
    "kafka logs": (KAFKA,), "kafka --lines": (KAFKA,),
    **{f"kafka {word}": ("tests/unit/kafka/test_broker_tools.py::"
                         "test_lsi_kafka_tool_passes_the_arguments_and_the_exit_status",
                         "tests/integration/test_kafka_tools_live.py::"
                         "test_topics_and_consumer_groups_through_lsi_kafka_tool")
       for word in ("tool", "TOOL_ARGS")},
    "worker --brokers": (WORKER,), "worker --web-port": (WORKER,),
    "worker --web-host": (WORKER,), "worker --data-dir": (WORKER,),
    "worker --emit-policy": (WORKER,), "worker --loglevel": (WORKER,),
    "worker --parent-pid": (WORKER, ORPHAN, CLI + "test_a_worker_whose_parent_is_gone_says_so"),
    "replay DATASET": (REPLAY,), "replay --brokers": (REPLAY,), "replay --limit": (REPLAY,),
    "replay --start": (REPLAY,), "replay --rate": (REPLAY,), "replay --speedup": (REPLAY,),
    "replay --keep-ts": (REPLAY,), "replay --run-id": (REPLAY,), "replay --quiet": (REPLAY,),
    "publish --brokers": (PUBLISH,), "publish --user": (PUBLISH,), "publish --item": (PUBLISH,),
    "publish --type": (PUBLISH,), "publish --ts": (PUBLISH,), "publish --weight": (PUBLISH,),
    "publish --event-id": (PUBLISH,), "publish --json": (PUBLISH,), "publish --key": (PUBLISH,),
    "recs --brokers": (RECS_TOPIC, RECS_FOLLOW), "recs --user": (WORKER, RECS_FOLLOW),
    "recs --follow": (RECS_FOLLOW,), "recs --dataset": (RECS_TOPIC,),
    "recs --users": (RECS_TOPIC,), "recs --top": (RECS_TOPIC, WORKER),
    "recs --json": (RECS_TOPIC, WORKER, RECS_FOLLOW), "recs --web-port": (WORKER,),
    "recs --web-host": (WORKER,),
    **{f"bench pipeline {flag}": (PIPELINE,) for flag in (
        "--dataset", "--events", "--live-events", "--rate", "--out", "--skip-model", "--quick",
        "--train-budget", "--max-len", "--catalogue")},
    **{f"bench accuracy {flag}": (ACCURACY, ACCURACY_RUN) for flag in (
        "--dataset", "--protocol", "--models", "--seeds", "--filter-seen", "--limit", "--phase",
        "--out", "--refresh-every", "--max-len", "--windows", "--dropout", "--dim", "--layers",
        "--heads", "--negatives", "--epochs", "--lr-schedule", "--ema-decay", "--balanced-init",
        "--patience", "--train-budget", "--device", "--precision", "--jobs", "--merge")},
    "bench accuracy --no-balanced-init": (ACCURACY,),
    **{f"bench refresh {flag}": (REFRESH_BENCH,) for flag in (
        "--dataset", "--out", "--device", "--scaling-edges", "--scaling-epochs",
        "--new-fraction", "--valid-cases", "--epochs", "--warm-epochs", "--dim", "--seed")},
    **{f"bench rules {flag}": ("tests/unit/bench/test_bench_rules.py::"
                               "test_bench_rules_runs_from_the_command_line",)
       for flag in ("--dataset", "--phase", "--seeds", "--rules", "--catalogue", "--epochs",
                    "--negatives", "--out")},
    **{f"bench catalogue {flag}": (CATALOGUE,) for flag in (
        "--sizes", "--batch", "--batches", "--candidates", "--nprobe", "--storage", "--seed",
        "--ml1m", "--ml1m-budget", "--phase", "--quick", "--out")},
    **{f"bench faults {flag}": (FAULTS,) for flag in (
        "--events", "--kills", "--dataset", "--rate", "--seed", "--partitions",
        "--no-broker-restart", "--no-rebalance", "--no-corpus", "--restore-users", "--wait",
        "--out", "--name")},
    "refresh --brokers": (REFRESH_ONCE, REFRESH_LOOP), "refresh --every": (REFRESH_LOOP,),
    "refresh --after-events": (REFRESH_LOOP,), "refresh --drift": (REFRESH_LOOP,),
    "refresh --device": (REFRESH_ONCE, REFRESH_LOOP), "refresh --epochs": (REFRESH_ONCE,),
    "refresh --models-dir": (REFRESH_ONCE, REFRESH_LOOP), "refresh --quiet": (REFRESH_ONCE,),
    "models list": (MODELS, MODELS_OFFLINE), "models promote": (MODELS, MODELS_OFFLINE),
    "models rollback": (MODELS_OFFLINE,), "models VERSION": (MODELS, MODELS_OFFLINE),
    "models --brokers": (MODELS,), "models --models-dir": (MODELS, MODELS_OFFLINE),
    "models --json": (MODELS,), "models --no-announce": (MODELS_OFFLINE,),
    **{f"models {word}": (EXPERIMENT + "test_experiment_start_status_stop",)
       for word in ("experiment", "CANDIDATE", "--fraction", "--name")},
    "models --prometheus": (EXPERIMENT + "test_status_reads_the_arms_from_prometheus",),
    "report metrics": (REPORT,), "report --prometheus": (REPORT,), "report --out": (REPORT,),
    "report --since": (REPORT,), "report --step": (REPORT,),
    "monitoring check": (MONITORING,), "monitoring --prometheus": (MONITORING,),
    "monitoring --rate-interval": (MONITORING,), "monitoring --dashboards": (MONITORING,),
    "monitoring --json": (MONITORING,),
    **{f"items {flag}": (ITEMS + "test_items_publish_csv_limit_and_brokers",)
       for flag in ("publish", "--csv", "--limit", "--brokers")},
    "items --dataset": (ITEMS + "test_items_publish_dataset",),
    "settings --markdown": (SETTINGS + "test_lsi_settings_markdown_is_the_rendered_page",),
    "settings --write": (SETTINGS + "test_lsi_settings_write_regenerates_the_page",),
    **{f"demo {flag}": (DEMO, DEMO_LIVE) if flag in DEMO_LIVE_FLAGS else (DEMO,) for flag in (
        "--dataset", "--limit", "--rate", "--users", "--exit-when-done", "--keep-broker",
        "--refresh-after", "--no-prometheus")},
}  # fmt: skip


def cli_options(parser: argparse.ArgumentParser, path: str = "") -> Iterator[str]:
    """``command --flag`` for every option, ``command choice`` for every positional choice
    (``command NAME`` for a positional without choices), through every sub-command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from cli_options(sub, f"{path} {name}".strip())
        elif isinstance(action, argparse._HelpAction):
            continue
        elif action.option_strings:
            yield from (f"{path} {flag}" for flag in action.option_strings)
        elif action.choices:
            yield from (f"{path} {choice}" for choice in action.choices)
        else:
            yield f"{path} {action.dest.upper()}"


@cache
def function_sources(path: str) -> dict[str, str]:
    """The source of each top-level test function of ``path``, by name."""
    text = (ROOT / path).read_text()
    return {node.name: ast.get_source_segment(text, node) or ""
            for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)}  # fmt: skip


def test_every_flag_of_every_command_is_listed_with_its_tests() -> None:
    found = set(cli_options(build_parser()))
    untested = sorted(found - TESTED.keys())
    assert not untested, f"flags without a test (write one and list it in TESTED): {untested}"
    assert not sorted(TESTED.keys() - found), "TESTED lists flags the CLI no longer has"


def test_the_tests_listed_exist_and_pass_their_flag() -> None:
    for key, tests in TESTED.items():
        sources = []
        for test in tests:
            path, name = test.split("::")
            assert name in function_sources(path), f"{key}: no test {test}"
            sources.append(function_sources(path)[name])
        word = key.split()[-1]
        if not word.isupper():  # a free positional (DATASET) has no literal to look for
            assert any(f'"{word}"' in src for src in sources), f"{key}: not in any of {tests}"


@pytest.mark.parametrize(
    ("argv", "floor"),
    [
        (["kafka", "logs", "--lines", "-1"], 0),  # was a traceback (deque maxlen)
        (["replay", "ml-100k", "--start", "-2"], 0),  # replayed the last two events
        (["replay", "ml-100k", "--limit", "-1"], 0),  # all but the last
        (["recs", "--users", "0"], 1),  # showed every user
        (["recs", "--top", "0"], 1),
    ],
)
def test_counts_below_their_floor_are_usage_errors(
    argv: list[str], floor: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert f"{argv[-2]}: must be at least {floor}, got {argv[-1]}" in capsys.readouterr().err


# -- bench pipeline / accuracy / refresh / faults ------------------------------------------
@dataclass
class Captured:
    """The options a replaced runner was called with."""

    calls: list[Any] = field(default_factory=list)


def test_bench_pipeline_flags_reach_its_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = Captured()

    def run(opts: lsi.bench.PipelineBenchOptions) -> dict[str, Any]:
        seen.calls.append(opts)
        opts.out.mkdir(parents=True, exist_ok=True)
        (opts.out / "report.md").write_text("# pipeline report\n")
        return {"failed": ["lsi: did not finish"]} if opts.events == 7 else {"failed": []}

    monkeypatch.setattr(lsi.bench, "run_pipeline_bench", run)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bp"
    assert main(["bench", "pipeline", "--dataset", "ml-100k", "--events", "300",
                 "--live-events", "100", "--rate", "50", "--out", str(out), "--skip-model",
                 "--train-budget", "5", "--max-len", "20", "--catalogue", "cat"]) == 0  # fmt: skip
    assert "# pipeline report" in capsys.readouterr().out
    opts = seen.calls[0]
    assert (opts.dataset, opts.events, opts.live_events, opts.rate) == ("ml-100k", 300, 100, 50.0)
    assert (opts.out, opts.model, opts.train_budget_s, opts.max_len) == (out, False, 5.0, 20)
    assert opts.catalogue == Path("cat")
    assert main(["bench", "pipeline"]) == 0
    full = seen.calls[1]
    assert (full.dataset, full.events, full.live_events, full.rate) == ("ml-1m", 200_000, 20_000,
                                                                        1000.0)  # fmt: skip
    assert full.out == Path("benchmarks/results/current/pipeline") and full.model
    assert full.catalogue == Path("benchmarks/results/current/catalogue")
    # --quick shrinks every size; a flag given with it still wins
    assert main(["bench", "pipeline", "--quick", "--rate", "300"]) == 0
    quick = seen.calls[2]
    assert (quick.events, quick.live_events, quick.rate, quick.train_budget_s) == (3000, 600,
                                                                                   300.0, 5.0)  # fmt: skip
    assert main(["bench", "pipeline", "--events", "7"]) == 1, "a step that did not finish"
    with pytest.raises(SystemExit):
        main(["bench", "pipeline", "--events", "0"])


def test_bench_accuracy_flags_reach_its_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = Captured()

    def run(opts: lsi.bench.accuracy.AccuracyOptions) -> dict[str, Any]:
        seen.calls.append(opts)
        opts.out.mkdir(parents=True, exist_ok=True)
        suffix = "-valid" if opts.phase == "valid" else ""
        (opts.out / f"ring-{opts.protocol}{suffix}.md").write_text("# accuracy report\n")
        return {}

    monkeypatch.setattr(lsi.bench.accuracy, "run_accuracy_bench", run)
    out = tmp_path / "acc"
    assert main(["bench", "accuracy", "--dataset", "data/ring.csv", "--protocol", "loo",
                 "--models", "fused, covisit", "--seeds", "2", "--filter-seen", "--limit", "500",
                 "--phase", "valid", "--out", str(out), "--refresh-every", "100",
                 "--max-len", "12", "--windows", "all", "--dropout", "0.1", "--dim", "16",
                 "--layers", "1", "--heads", "4", "--negatives", "8", "--epochs", "7",
                 "--lr-schedule", "cosine", "--ema-decay", "0.9", "--balanced-init",
                 "--patience", "2", "--train-budget", "30", "--device", "cpu",
                 "--precision", "bf16", "--jobs", "2", "--merge"]) == 0  # fmt: skip
    assert "# accuracy report" in capsys.readouterr().out
    # the encoder's recipe has one default, the refresh job's: balanced unless turned off
    assert main(["bench", "accuracy", "--dataset", "data/ring.csv", "--out", str(out)]) == 0
    assert main(["bench", "accuracy", "--dataset", "data/ring.csv", "--out", str(out),
                 "--no-balanced-init"]) == 0  # fmt: skip
    capsys.readouterr()
    assert [c.sequence.balanced_init for c in seen.calls[1:3]] == [True, False]
    assert seen.calls[1].sequence == SequenceConfig()  # every other default the dataclass's
    del seen.calls[1:3]
    o = seen.calls[0]
    assert (o.dataset, o.protocol, o.models, o.seeds) == ("data/ring.csv", "loo",
                                                          ("fused", "covisit"), 2)  # fmt: skip
    assert (o.filter_seen, o.limit, o.phase, o.out) == (True, 500, "valid", out)
    assert (o.refresh_every, o.merge, o.jobs) == (100, True, 2)
    q = o.sequence
    assert (q.max_len, q.windows, q.dropout, q.dim, q.layers, q.heads) == (12, "all", 0.1, 16, 1, 4)
    assert (q.negatives, q.epochs, q.lr_schedule, q.ema_decay) == (8, 7, "cosine", 0.9)
    assert (q.balanced_init, q.patience, q.max_train_s) == (True, 2, 30.0)
    assert (q.device, q.precision) == ("cpu", "bf16")

    # an encoder the configuration refuses is a one-line error that points at --help
    assert main(["bench", "accuracy", "--dim", "16", "--heads", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lsi bench: error: ") and "lsi bench accuracy --help" in err
    assert len(seen.calls) == 1


def test_bench_accuracy_runs_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real runs of the cheap models: leave-one-out on the validation items, then a merge,
    then prequential on a prefix; the report files and the command line they record."""
    log = str(synthetic_log(tmp_path / "ring.csv"))
    out = tmp_path / "acc"
    common = ["bench", "accuracy", "--dataset", log, "--out", str(out)]
    assert main([*common, "--protocol", "loo", "--models", "mostpop,covisit", "--phase", "valid",
                 "--filter-seen"]) == 0  # fmt: skip
    assert main([*common, "--protocol", "loo", "--models", "biased_mf", "--seeds", "2",
                 "--phase", "valid", "--filter-seen", "--merge"]) == 0  # fmt: skip
    assert f"report: {out / 'ring-loo-valid'}.json" in capsys.readouterr().out
    report = json.loads((out / "ring-loo-valid.json").read_text())
    assert report["phase"] == "valid" and report["filter_seen"] is True
    assert set(report["models"]) == {"mostpop", "covisit", "biased_mf"}  # --merge kept two
    assert report["models"]["biased_mf"]["seeds"] == 2
    assert report["command"] == (f"lsi bench accuracy --dataset {log} --protocol loo --models "
                                 f"biased_mf --seeds 2 --phase valid --filter-seen --merge "
                                 f"--out {out}")  # fmt: skip

    assert main([*common, "--protocol", "prequential", "--models", "recent_pop", "--limit", "150",
                 "--refresh-every", "50"]) == 0  # fmt: skip
    report = json.loads((out / "ring-prequential.json").read_text())
    assert report["events"] == 150
    assert report["command"].endswith("--refresh-every 50 --limit 150 --out " + str(out))


def test_bench_faults_flags_reach_its_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import lsi.bench.faults

    seen = Captured()

    def run(opts: lsi.bench.faults.FaultBenchOptions) -> dict[str, Any]:
        seen.calls.append(opts)
        opts.out.mkdir(parents=True, exist_ok=True)
        (opts.out / f"{opts.name}.md").write_text("# fault report\n")
        return {"passed": len(seen.calls) == 1, "work_dir": str(tmp_path / "kept")}

    monkeypatch.setattr(lsi.bench.faults, "run_fault_bench", run)
    out = tmp_path / "faults"
    argv = ["bench", "faults", "--events", "300", "--kills", "1", "--dataset", "ml-1m",
            "--rate", "50", "--seed", "4", "--partitions", "2", "--no-broker-restart",
            "--no-rebalance", "--no-corpus", "--restore-users", "7", "--wait", "30",
            "--out", str(out), "--name", "ci"]  # fmt: skip
    assert main(argv) == 0
    assert "# fault report" in capsys.readouterr().out
    o = seen.calls[0]
    assert (o.events, o.kills, o.dataset, o.rate, o.seed, o.partitions) == (300, 1, "ml-1m",
                                                                           50.0, 4, 2)  # fmt: skip
    assert (o.broker_restart, o.rebalance, o.corpus) == (False, False, False)
    assert (o.restore_users, o.wait_s, o.out, o.name) == (7, 30.0, out, "ci")
    assert main(argv) == 1  # a failed run exits 1 and says where the logs are
    assert f"worker logs kept in {tmp_path / 'kept'}" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert main(argv[:-4]) == 1  # no --out (nor --name): the options dataclass's folder
    assert seen.calls[-1].out == lsi.bench.faults.FaultBenchOptions().out


def test_bench_help_names_the_report_folders_of_the_options_dataclasses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A benchmark's ``--out`` (and the pipeline's ``--catalogue``) left out is its options
    dataclass's default: the help says which, read from the dataclass when it is printed."""
    import lsi.bench.catalogue
    import lsi.bench.refresh

    pipeline = lsi.bench.PipelineBenchOptions()
    expected = {
        "pipeline": [f"report folder (default {pipeline.out})",
                     f"report to include (default {pipeline.catalogue})"],
        "accuracy": [f"report folder (default {lsi.bench.accuracy.AccuracyOptions().out})"],
        "refresh": [f"report folder (default {lsi.bench.refresh.RefreshBenchOptions().out})"],
        "catalogue": [f"report folder (default {lsi.bench.catalogue.DEFAULT_OUT})"],
    }  # fmt: skip
    for bench, texts in expected.items():
        with pytest.raises(SystemExit) as info:
            main(["bench", bench, "--help"])
        assert info.value.code == 0
        shown = " ".join(capsys.readouterr().out.split())  # as if the help were not wrapped
        for text in texts:
            assert text in shown, f"bench {bench}: {text!r} not in its help"


# -- demo / refresh loop -------------------------------------------------------------------
def test_demo_flags_reach_its_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = Captured()

    def run(opts: lsi.cli.demo.DemoOptions) -> int:
        seen.calls.append(opts)
        return 0

    monkeypatch.setattr(lsi.cli.demo, "run_demo", run)
    assert main(["demo", "--dataset", "ml-1m", "--limit", "700", "--rate", "70", "--users", "4",
                 "--exit-when-done", "--keep-broker", "--refresh-after", "90",
                 "--no-prometheus"]) == 0  # fmt: skip
    o = seen.calls[0]
    assert (o.dataset, o.limit, o.rate, o.users, o.refresh_after) == ("ml-1m", 700, 70.0, 4, 90)
    assert (o.exit_when_done, o.keep_broker, o.prometheus) == (True, True, False)
    assert main(["demo"]) == 0
    assert seen.calls[1] == lsi.cli.demo.DemoOptions()  # no flag: the documented defaults


def test_refresh_loop_flags_reach_the_job_and_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import prometheus_client

    import models.jobs.refresh

    for var in [v for v in os.environ if v.startswith("LSI_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("LSI_BROKERS", "127.0.0.1:1")
    monkeypatch.setenv("LSI_REFRESH_METRICS_PORT", "9999")
    served: list[tuple[int, str]] = []
    loops: list[dict[str, Any]] = []

    def serve(port: int, addr: str, registry: Any) -> None:
        served.append((port, addr))

    def loop(job: models.jobs.refresh.RefreshJob, **kwargs: Any) -> None:
        loops.append({"job": job, **kwargs})
        raise KeyboardInterrupt  # Ctrl-C: the command stops the loop and says so

    monkeypatch.setattr(prometheus_client, "start_http_server", serve)
    monkeypatch.setattr(models.jobs.refresh, "run_forever", loop)
    store = tmp_path / "models"
    assert main(["refresh", "--every", "15m", "--after-events", "50", "--drift", "--device",
                 "cpu", "--models-dir", str(store), "--brokers", "127.0.0.1:2"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert out.startswith(f"lsi refresh: every 15m, after 50 events, drift on; store {store};")
    assert out.rstrip().endswith("lsi refresh: stopped")
    assert served == [(9999, "127.0.0.1")]
    call = loops[0]
    assert (call["every_s"], call["after_events"], call["drift"]) == (900.0, 50, True)
    job = call["job"]
    assert job.settings.brokers == "127.0.0.1:2" and job.settings.models_dir == store
    assert job.cfg.device == "cpu"

    assert main(["refresh", "--after-events", "10", "--models-dir", str(store)]) == 0
    call = loops[1]
    assert (call["every_s"], call["after_events"], call["drift"]) == (None, 10, False)
    assert main(["refresh", "--every", "soon"]) == 2
    assert "cannot read 'soon' as a duration" in capsys.readouterr().err


# -- report / monitoring against a fake Prometheus -----------------------------------------
class FakePrometheus:
    """Answers the HTTP API calls lsi makes, with one or two series each; keeps each request
    (path and parameters)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                params = dict(urllib.parse.parse_qsl(url.query))
                owner.requests.append((url.path, params))
                body = json.dumps({"status": "success", "data": owner.answer(url.path, params)})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        if path == "/api/v1/rules":
            rule = {"type": "recording", "name": "lsi:events:rate1m",
                    "query": "sum(rate(lsi_events_total[1m]))"}  # fmt: skip
            return {"groups": [{"name": "lsi", "rules": [rule]}]}
        if path == "/api/v1/query_range":
            start, step = float(params["start"]), float(params["step"])
            values = [[start + k * step, "1"] for k in range(3)]
            return {"resultType": "matrix", "result": [{"metric": {}, "values": values}]}
        at = float(params["time"])
        return {"resultType": "vector", "result": [{"metric": {"le": le}, "value": [at, "2"]}
                                                   for le in ("0.5", "+Inf")]}  # fmt: skip

    def queries(self, path: str) -> list[dict[str, str]]:
        return [params for p, params in self.requests if p == path]


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    fake.thread.join(timeout=10)


def test_report_metrics_flags_shape_the_queries(
    prometheus: FakePrometheus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "charts"
    assert main(["report", "metrics", "--prometheus", prometheus.url, "--out", str(out),
                 "--since", "10m", "--step", "7s"]) == 0  # fmt: skip
    ranges = prometheus.queries("/api/v1/query_range")
    assert ranges and all(q["step"] == "7.0" for q in ranges)
    assert all(float(q["end"]) - float(q["start"]) == pytest.approx(600.0) for q in ranges)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["since_s"], summary["step_s"], summary["prometheus"]) == (600.0, 7.0,
                                                                            prometheus.url)  # fmt: skip
    assert f"summary: {out / 'summary.json'}" in capsys.readouterr().out
    assert (out / "README.md").is_file()


def test_monitoring_check_flags_shape_the_queries(
    prometheus: FakePrometheus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boards = tmp_path / "dashboards"
    boards.mkdir()
    panel = {"title": "events", "targets": [
        {"refId": "A", "expr": "sum(rate(lsi_events_total[$__rate_interval]))"}]}  # fmt: skip
    (boards / "one.json").write_text(json.dumps({"uid": "one", "panels": [panel]}))
    code = main(["monitoring", "check", "--prometheus", prometheus.url, "--dashboards",
                 str(boards), "--rate-interval", "2m", "--json"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    asked = [q["query"] for q in prometheus.queries("/api/v1/query")]
    assert asked == ["sum(rate(lsi_events_total[2m]))", "lsi:events:rate1m"]
    assert [(a["source"], a["panel"], a["series"]) for a in report["answers"]] == [
        ("one", "events", 2), ("rules", "lsi:events:rate1m", 2)]  # fmt: skip
    # the one dashboard shows only lsi_events_total: every other metric is reported unshown
    assert "lsi_dlq" in report["unshown_metrics"] and code == 1
