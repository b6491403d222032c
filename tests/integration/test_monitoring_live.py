"""Monitoring, proved on a live pipeline: a broker, a worker, the refresh job and Debian's
Prometheus (loopback) with the shipped rules and scrape jobs named unlike the compose stack's;
a dataset slice is replayed (with some bad events), the refresh job trains and publishes a fused
model, an experiment sends half of the users to the statistics scorer (its per-arm panels), and
then every expression of every dashboard panel (``$job`` and ``$instance`` as All)
and every recording rule must return data through Prometheus' HTTP API.
``lsi report metrics`` then renders its charts from the same server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lsi.cli.main import main
from lsi.config import Settings
from lsi.kafka.clients import producer
from lsi.kafka.producer import replay
from lsi.monitoring.dashboards import (
    check,
    dashboard_queries,
    dashboard_variables,
    load_dashboards,
    recording_rules,
    rules_from_files,
    to_promql,
)
from lsi.monitoring.prometheus_api import PrometheusClient
from lsi.monitoring.prometheus_local import LocalPrometheus
from lsi.serving.worker_process import settings_env
from tests.integration.conftest import ROOT, WorkerProcess, free_port

pytestmark = pytest.mark.timeout(480)

FIRST, SECOND, AFTER = 2500, 1500, 2000


@pytest.fixture
def refresh_job(
    lsi_settings: Settings, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """``lsi refresh`` as a long-running job: refresh after AFTER interactions, with drift."""
    s = lsi_settings.with_(sequence_max_len=20, sequence_epochs=3, sequence_budget_s=30.0,
                           refresh_metrics_port=free_port())  # fmt: skip
    log = tmp_path / "refresh.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lsi", "refresh", "--after-events", str(AFTER), "--drift",
             "--epochs", "3", "--device", "cpu", "--quiet"],
            stdout=fh, stderr=subprocess.STDOUT, env=settings_env(s), cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield proc, s.refresh_metrics_port, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_until(
    cond: Callable[[], bool], timeout_s: float, what: str, log: Path | None = None
) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if cond():
            return
        time.sleep(1.0)
    tail = log.read_text(errors="replace")[-3000:] if log else ""
    raise AssertionError(f"{what} not within {timeout_s:g} s\n{tail}")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def test_every_panel_and_recording_rule_has_data_on_a_live_pipeline(
    lsi_settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    refresh_job: tuple[subprocess.Popen[bytes], int, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = lsi_settings
    proc, refresh_port, refresh_log = refresh_job
    worker = start_worker()
    wait_until(lambda: answers(f"http://127.0.0.1:{refresh_port}/metrics"), 120,
               "the refresh job's /metrics", refresh_log)  # fmt: skip
    # job names other than the compose stack's: no panel may depend on them ($job, $instance)
    prom = LocalPrometheus(tmp_path / "prometheus", free_port(), {
        "recsys-workers": [f"127.0.0.1:{s.web_port}"],
        "recsys-refresh": [f"127.0.0.1:{refresh_port}"],
    }).start()  # fmt: skip
    try:
        # a dataset slice, some events the worker must dead-letter, then a refresh
        replay(s, "ml-100k", limit=FIRST, run_id="m", rate=2000)
        prod = producer(s)
        for i in range(20):
            prod.send(s.events_topic, key=b"u1", value=b"{not json %d" % i)
        prod.flush(30)
        prod.close()
        worker.wait_metric(lambda m: m.total("lsi_dlq_total") >= 20, timeout_s=60)
        worker.wait_metric(lambda m: m.value("lsi_model_version_info", version="v000001") == 1.0,
                           timeout_s=300)  # fmt: skip
        # an experiment between the snapshot and the statistics scorer (docs/experiments.md),
        # announced as `lsi models experiment start` does: its per-arm panels need one
        monkeypatch.setenv("LSI_MODELS_TOPIC", s.models_topic)
        assert main(["models", "experiment", "start", "baseline", "--fraction", "0.5",
                     "--name", "monitoring", "--brokers", s.brokers,
                     "--models-dir", str(s.models_dir)]) == 0  # fmt: skip
        worker.wait_metric(
            lambda m: m.value("lsi_experiment_fraction", experiment="monitoring") == 0.5,
            timeout_s=60,
        )
        capsys.readouterr()
        # the fused model scores the next slice: long_weight, attribution, online hits
        replay(s, "ml-100k", limit=SECOND, start=FIRST, run_id="m", rate=1000)
        worker.wait_metric(
            lambda m: m.total("lsi_events_total", agent="interest", outcome="accepted")
            >= FIRST + SECOND, timeout_s=120)  # fmt: skip
        worker.wait_metric(lambda m: all(
            m.total("lsi_experiment_judged_total", experiment="monitoring", arm=arm) > 0
            for arm in ("control", "candidate")), timeout_s=60)  # fmt: skip
        assert proc.poll() is None, refresh_log.read_text()[-3000:]

        targets = prom.api("targets")["activeTargets"]
        assert {t["labels"]["job"] for t in targets if t["health"] == "up"} >= {
            "recsys-workers", "recsys-refresh"}, targets  # fmt: skip

        client = PrometheusClient(prom.url)
        # the $job and $instance drop-downs list both processes: Grafana's label_values(…), as
        # it asks Prometheus for it, with the other variables at their default (All)
        expected = {
            "job": {"recsys-workers", "recsys-refresh"},
            "instance": {f"127.0.0.1:{s.web_port}", f"127.0.0.1:{refresh_port}"},
        }
        for board in load_dashboards().values():
            for var in board["templating"]["list"]:
                if var["type"] == "query":
                    call = re.fullmatch(r"label_values\((.+), (\w+)\)", var["definition"])
                    assert call is not None, var
                    match = to_promql(call[1], variables=dashboard_variables(board))
                    listed = client.api(f"/api/v1/label/{call[2]}/values", {"match[]": match})
                    assert set(listed) == expected[var["name"]], (var["definition"], listed)
        shipped = rules_from_files()
        assert sorted(n for n, _ in client.recording_rules()) == sorted(n for n, _ in shipped)
        queries = [*dashboard_queries(), *recording_rules(shipped)]
        last: list[str] = []

        def all_answer() -> bool:
            nonlocal last
            last = [f"{a.query.source} / {a.query.panel} [{a.query.ref}]: {a.promql} "
                    f"{a.error or 'no series'}"
                    for a in check(client, queries) if not a.ok]  # fmt: skip
            return not last

        # the recording group evaluates every 15 s; give it a few rounds
        deadline = time.time() + 90
        while not all_answer() and time.time() < deadline:
            time.sleep(3)
        assert not last, "queries without data:\n" + "\n".join(last)

        groups = prom.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) >= len(shipped) + 8
        assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]

        # the same check as users run it, and the charts for people without Grafana
        assert main(["monitoring", "check", "--prometheus", prom.url]) == 0
        out = capsys.readouterr().out
        assert f"{len(queries)} answered with data, 0 without" in out, out
        with capsys.disabled():  # the live check's report, for `pytest -s`
            print("\n" + out)
        charts = tmp_path / "charts"
        assert main(["report", "metrics", "--prometheus", prom.url, "--out", str(charts),
                     "--since", "5m"]) == 0  # fmt: skip
        summary = json.loads((charts / "summary.json").read_text())
        for png in ("throughput.png", "latency.png", "hit_rate.png", "long_weight.png",
                    "consumer_lag.png"):  # fmt: skip
            assert (charts / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert "no data" not in capsys.readouterr().out, summary
    finally:
        prom.stop()
