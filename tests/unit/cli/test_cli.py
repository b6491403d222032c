"""The ``lsi`` command line without a broker: one-line errors with exit status 2, and the
human-readable views of records and metrics (:mod:`lsi.monitoring.scrape`)."""

from __future__ import annotations

import csv
import gzip
import math
import os
import re
import socket
import time
from pathlib import Path

import kafka.errors
import pytest
from prometheus_client import CollectorRegistry, generate_latest

import lsi.kafka.clients
from lsi.cli.common import parse_duration
from lsi.cli.main import main
from lsi.cli.present import format_recommendation
from lsi.config import Settings
from lsi.errors import BrokerError, LsiError
from lsi.kafka.clients import client_errors
from lsi.monitoring.metrics import WorkerMetrics
from lsi.monitoring.scrape import histogram_quantile, parse_metrics


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``LSI_*`` variable of the caller's shell leaks into a test."""
    for var in list(os.environ):
        if var.startswith("LSI_"):
            monkeypatch.delenv(var)


def closed_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def one_line_error(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"lsi {command}: error: "), err
    return lines[0]


def write_ml100k(root: Path) -> None:
    """A tiny synthetic ``ml-100k`` (never real data)."""
    path = root / "ml-100k" / "interactions.csv.gz"
    path.parent.mkdir(parents=True)
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "item_id", "rating", "timestamp"])
        writer.writerows([[1, 10, 4, 100], [2, 11, 5, 101]])


# -- errors --------------------------------------------------------------------------------
def test_publish_without_user_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", "--item", "i1"]) == 2
    out, err = capsys.readouterr()
    line = one_line_error(err, "publish")
    assert "--user" in line and "--item" in line
    assert out == ""


def test_recs_with_no_worker_says_to_start_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    monkeypatch.setenv("LSI_WEB_PORT", str(port))
    started = time.monotonic()
    assert main(["recs", "--user", "1"]) == 2
    assert time.monotonic() - started < 10
    line = one_line_error(capsys.readouterr().err, "recs")
    assert f"http://127.0.0.1:{port}" in line
    assert "lsi worker" in line
    assert "LSI_WEB_PORT" in line


def test_recs_web_port_flag_beats_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LSI_WEB_PORT", "1")
    port = closed_port()
    assert main(["recs", "--user", "1", "--web-port", str(port)]) == 2
    assert f":{port}" in one_line_error(capsys.readouterr().err, "recs")


@pytest.mark.parametrize("argv", [["monitoring", "check"], ["report", "metrics", "--out", "x"]])
def test_prometheus_commands_without_a_server_say_to_start_one(
    argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    if argv[0] == "report":
        argv = [*argv[:-1], str(tmp_path / "charts")]
    assert main([*argv, "--prometheus", url]) == 2
    line = one_line_error(capsys.readouterr().err, argv[0])
    assert f"cannot reach Prometheus at {url}" in line and "--prometheus" in line
    assert not (tmp_path / "charts").exists()


def test_report_rejects_a_url_that_is_not_http(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "metrics", "--out", "x", "--prometheus", "localhost:9090"]) == 2
    assert "http://" in one_line_error(capsys.readouterr().err, "report")


def test_replay_of_an_unknown_dataset_names_the_datasets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["replay", "nope-dataset", "--quiet"]) == 2
    line = one_line_error(capsys.readouterr().err, "replay")
    assert "'nope-dataset'" in line
    for name in ("ml-100k", "ml-1m", "amazon-beauty", "taobao", "yoochoose-clicks"):
        assert name in line


def test_replay_with_no_broker_says_to_start_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # kafka-python spends 30 s trying to bootstrap from a closed port; make the admin client
    # fail the way it does at the end of that, at once.
    def unreachable(**config: object) -> None:
        raise kafka.errors.KafkaTimeoutError(
            f"Unable to bootstrap from {config['bootstrap_servers']}"
        )

    monkeypatch.setattr(lsi.kafka.clients, "KafkaAdminClient", unreachable)
    # the dataset is found as <cwd or above>/shared/datasets (LSI_DATASETS_DIR: see below)
    write_ml100k(tmp_path / "shared" / "datasets")
    monkeypatch.chdir(tmp_path)
    port = closed_port()
    assert main(["replay", "ml-100k", "--brokers", f"127.0.0.1:{port}", "--quiet"]) == 2
    out, err = capsys.readouterr()
    line = one_line_error(err, "replay")
    assert f"127.0.0.1:{port}" in line
    assert f"KafkaTimeoutError: Unable to bootstrap from 127.0.0.1:{port}" in line
    assert "`lsi kafka up`" in line and "LSI_BROKERS" in line
    assert "sent" not in out


def test_replay_accepts_the_datasets_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LSI_DATASETS_DIR", str(tmp_path))
    assert main(["replay", "nope-dataset", "--quiet"]) == 2
    assert "unknown dataset" in capsys.readouterr().err


def test_client_errors_turn_kafka_errors_into_broker_errors() -> None:
    settings = Settings.from_env({}, brokers="127.0.0.1:1")
    with pytest.raises(BrokerError) as info, client_errors(settings):
        raise kafka.errors.KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:1")
    message = str(info.value)
    assert "Kafka at 127.0.0.1:1 failed (KafkaTimeoutError" in message
    assert "`lsi kafka up`" in message and "LSI_BROKERS" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_client_errors_let_other_errors_through() -> None:
    with pytest.raises(ValueError, match="not kafka"), client_errors(Settings.from_env({})):
        raise ValueError("not kafka")


def test_broker_errors_are_lsi_errors() -> None:
    assert issubclass(BrokerError, LsiError)


def test_an_unknown_lsi_variable_fails_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LSI_BROKER", "127.0.0.1:1")
    assert main(["recs", "--user", "1"]) == 2
    line = one_line_error(capsys.readouterr().err, "recs")
    assert "unknown setting LSI_BROKER" in line
    assert "did you mean LSI_BROKERS?" in line


def test_a_bad_lsi_value_is_an_error_not_a_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LSI_WEB_PORT", "sixty")
    assert main(["publish", "--user", "u", "--item", "i"]) == 2
    assert "LSI_WEB_PORT='sixty' is not a valid int" in capsys.readouterr().err


def test_usage_errors_exit_through_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["replay"])
    assert info.value.code == 2
    assert "dataset" in capsys.readouterr().err


# -- durations (`lsi refresh --every`, `lsi report --since/--step`) ------------------------
@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("30s", 30.0), ("15m", 900.0),
                                               ("2h", 7200.0), ("1d", 86400.0)])  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5m", "0"])
def test_bad_durations_say_what_to_write(text: str) -> None:
    with pytest.raises(LsiError, match="duration"):
        parse_duration(text)


# -- present -------------------------------------------------------------------------------
REC = {
    "user_id": "42",
    "ts": 1_700_000_000.0,
    "model_version": "baseline-covisit",
    "long_weight": 0.15,
    "items": [
        {"item_id": "1", "score": 0.9, "long_score": 0.2, "short_score": 1.02353},
        {"item_id": "2", "score": 0.5, "long_score": 0.0, "short_score": 0.58824},
        {"item_id": "3", "score": 0.25, "long_score": 0.0, "short_score": 0.29412},
    ],
    "short_term": [],
    "long_term": [],
    "source": "covisit",
    "event_ts": 1_699_999_999.0,
    "emitted_at": 1_700_000_000.5,
    "trigger": "event",
    "history_size": 7,
}


def test_format_recommendation_shows_the_gate_and_the_attribution() -> None:
    text = format_recommendation(REC, {"1": "Toy Story (1995)", "3": "Heat (1995)"})
    header, *rows = text.splitlines()
    when = time.strftime("%H:%M:%S", time.localtime(1_700_000_000.5))
    assert header == (
        "user 42  ·  short-term 0.85 / long-term 0.15  ·  covisit  ·  model baseline-covisit  ·  "
        f"7 events  ·  {when} (event)"
    )
    assert len(rows) == 3
    assert re.fullmatch(
        r"   1\. 1 Toy Story \(1995\) +score 0\.9000  \(short 1\.0235, long 0\.2000\)", rows[0]
    )
    assert re.fullmatch(r"   2\. 2 +score 0\.5000  \(short 0\.5882, long 0\.0000\)", rows[1])
    assert "3 Heat (1995)" in rows[2]


def test_format_recommendation_shows_each_sources_own_picks() -> None:
    rec = {**REC, "source": "fused",
           "short_term": [{"item_id": "3", "score": 0.3}, {"item_id": "2", "score": 0.2}],
           "long_term": [{"item_id": "1", "score": 0.4}]}  # fmt: skip
    lines = format_recommendation(rec, {"3": "Heat (1995)"}).splitlines()
    assert lines[-2] == "      short-term picks: 3 Heat (1995) · 2"
    assert lines[-1] == "      long-term picks : 1"


def test_format_recommendation_limits_and_handles_empty_lists() -> None:
    assert len(format_recommendation(REC, limit=2).splitlines()) == 1 + 2
    empty = {**REC, "items": [], "long_weight": 0.0, "trigger": "request"}
    text = format_recommendation(empty)
    assert "short-term 1.00 / long-term 0.00" in text
    assert "(request)" in text
    assert text.splitlines()[1] == "   (nothing to recommend yet)"


def test_format_recommendation_truncates_long_titles() -> None:
    row = format_recommendation(REC, {"1": "x" * 200}).splitlines()[1]
    assert "x" * 58 in row and "x" * 59 not in row  # "1 " + 58 characters = 60


# cumulative buckets: 2 observations <= 0.1, 4 more <= 0.5, 2 more <= 1, 2 above
BUCKETS = [(0.1, 2.0), (0.5, 6.0), (1.0, 8.0), (math.inf, 10.0)]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.1, 0.05),  # rank 1 of 2 in [0, 0.1]
        (0.2, 0.1),  # rank 2: the top of the first bucket
        (0.5, 0.4),  # rank 5: 0.1 + 0.4 * (5 - 2) / (6 - 2)
        (0.7, 0.75),  # rank 7: 0.5 + 0.5 * (7 - 6) / (8 - 6)
        (0.9, 1.0),  # rank 9 is in +Inf: the largest finite bound
        (1.0, 1.0),
    ],
)
def test_histogram_quantile_interpolates_like_prometheus(q: float, expected: float) -> None:
    got = histogram_quantile(q, BUCKETS)
    assert got == pytest.approx(expected)


def test_histogram_quantile_sorts_its_input_and_knows_when_there_is_no_data() -> None:
    assert histogram_quantile(0.5, reversed(BUCKETS)) == pytest.approx(0.4)
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None


EXPOSITION = """\
# HELP lsi_events_total Events handled by an agent, by type and outcome.
# TYPE lsi_events_total counter
lsi_events_total{agent="ingest",outcome="forwarded",type="view"} 3.0
lsi_events_total{agent="ingest",outcome="dlq",type="unknown"} 2.0
lsi_events_total{agent="interest",outcome="accepted",type="view"} 3.0
# HELP lsi_processing_latency_seconds From the message's Kafka timestamp to the end.
# TYPE lsi_processing_latency_seconds histogram
lsi_processing_latency_seconds_bucket{agent="ingest",le="0.1"} 2.0
lsi_processing_latency_seconds_bucket{agent="ingest",le="0.5"} 6.0
lsi_processing_latency_seconds_bucket{agent="ingest",le="+Inf"} 6.0
lsi_processing_latency_seconds_count{agent="ingest"} 6.0
lsi_processing_latency_seconds_sum{agent="ingest"} 1.2
lsi_processing_latency_seconds_bucket{agent="interest",le="0.1"} 0.0
lsi_processing_latency_seconds_bucket{agent="interest",le="0.5"} 4.0
lsi_processing_latency_seconds_bucket{agent="interest",le="+Inf"} 4.0
lsi_processing_latency_seconds_count{agent="interest"} 4.0
lsi_processing_latency_seconds_sum{agent="interest"} 1.0
"""


def test_parse_metrics_sums_counters_and_merges_histograms() -> None:
    snap = parse_metrics(EXPOSITION)
    assert snap.total("lsi_events_total") == 8.0
    assert snap.total("lsi_events_total", agent="ingest") == 5.0
    assert snap.total("lsi_events_total", agent="ingest", outcome="dlq") == 2.0
    assert snap.total("lsi_events_total", agent="nobody") == 0.0
    assert snap.total("lsi_dlq_total") == 0.0
    # ingest alone: rank 3 of 6 -> 0.1 + 0.4 * (3 - 2) / (6 - 2)
    assert snap.quantile("lsi_processing_latency_seconds", 0.5, agent="ingest") == pytest.approx(
        0.2
    )
    # both agents: buckets 2 / 10 / 10; rank 5 -> 0.1 + 0.4 * (5 - 2) / (10 - 2)
    assert snap.quantile("lsi_processing_latency_seconds", 0.5) == pytest.approx(0.25)
    assert snap.quantile("lsi_end_to_end_latency_seconds", 0.5) is None


def test_parse_metrics_reads_what_a_worker_exports() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    metrics.events.labels(agent="ingest", type="view", outcome="forwarded").inc(4)
    metrics.dlq.labels(reason="oversized").inc()
    for seconds in (0.002, 0.02, 0.2, 2.0):
        metrics.end_to_end_latency.observe(seconds)
    snap = parse_metrics(generate_latest(metrics.registry).decode())
    assert snap.total("lsi_events_total", outcome="forwarded") == 4.0
    assert snap.total("lsi_dlq_total", reason="oversized") == 1.0
    assert snap.total("lsi_dlq_total") == 1.0  # the other reasons exist, at 0
    # rank 2 of 4 falls in (0.01, 0.025]: 0.01 + 0.015 * (2 - 1) / (2 - 1)
    assert snap.quantile("lsi_end_to_end_latency_seconds", 0.5) == pytest.approx(0.025)
