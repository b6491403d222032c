"""The documented commands, run as a user runs them: `lsi publish`, `lsi recs`, `lsi kafka`, `lsi demo`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lsi.config import Settings
from lsi.serving.worker_process import settings_env
from tests.integration.conftest import ROOT, WorkerProcess, free_port

pytestmark = pytest.mark.timeout(300)


def lsi(
    *args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lsi", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip


def test_publish_then_recs_for_that_user(
    lsi_settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker()
    env = settings_env(worker.settings)
    out = lsi("publish", "--user", "alice", "--item", "42", "--type", "cart", env=env)
    assert out.returncode == 0, out.stderr
    assert f"published to {lsi_settings.events_topic}[" in out.stdout

    deadline = time.time() + 60
    rec: dict[str, object] = {}
    while time.time() < deadline:
        res = lsi("recs", "--user", "alice", "--json", env=env)
        if res.returncode == 0:
            rec = json.loads(res.stdout)
            if rec["history_size"] == 1:
                break
        time.sleep(1)
    assert rec.get("history_size") == 1 and rec["trigger"] == "request"

    shown = lsi("recs", "--users", "3", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "user alice" in shown.stdout and "short-term 1.00 / long-term 0.00" in shown.stdout

    bad = lsi("publish", "--json", "{oops", "--key", "alice", env=env)
    assert bad.returncode == 0  # published; ingest dead-letters it
    worker.wait_metric(lambda m: m.total("lsi_dlq_total", reason="malformed_json") == 1)


def test_demo_runs_end_to_end_and_stops_everything(tmp_path: Path) -> None:
    """`lsi demo` with a broker of its own: start, replay, recommendations, metrics, clean stop."""
    port, controller, web = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LSI_")}
    env.update({
        "LSI_KAFKA_PORT": str(port), "LSI_KAFKA_CONTROLLER_PORT": str(controller),
        "LSI_KAFKA_DATA_DIR": str(tmp_path / "kafka"), "LSI_WEB_PORT": str(web),
        "LSI_REFRESH_METRICS_PORT": str(free_port()), "PYTHONUNBUFFERED": "1",
    })  # fmt: skip
    if "LSI_DATASETS_DIR" in os.environ:
        env["LSI_DATASETS_DIR"] = os.environ["LSI_DATASETS_DIR"]
    before = lsi("kafka", "status", env=env, cwd=tmp_path)
    assert before.returncode == 1 and "stopped" in before.stdout

    demo = lsi(
        "demo",
        "--limit",
        "1500",
        "--rate",
        "1000",
        "--exit-when-done",
        "--refresh-after",
        "500",
        env=env,
        cwd=tmp_path,
        timeout=240,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    out = demo.stdout
    assert "sent 3 invalid events" in out
    assert "[metrics]" in out and "dlq   3" in out
    assert "short-term" in out and "model baseline-covisit" in out
    assert "all 1500 events processed; the worker scores with snapshot v0000" in out
    assert "[refresh] refresh [" in out and "v000001 promoted" in out
    assert "swapped to snapshot v0000" in out and "fused" in out and "model v0000" in out
    # the replay waited for the first snapshot, so the worker streamed fused lists, and the
    # demo showed them as they came (not only the ones it asked for after the swap)
    assert "the rest follows once the worker scores with the first snapshot" in out
    assert re.search(r"·  fused  ·  model v0000\d+  ·[^\n]*\(event\)", out), out[-3000:]
    assert "stopping Kafka" in out
    # Debian's Prometheus (installed by .ci/run) scraped the worker and the refresh job; the
    # demo checked the dashboards against it and drew the charts
    assert "[demo] Prometheus at http://127.0.0.1:" in out
    assert re.search(r"\[demo\] dashboards: \d+ of \d+ panel queries", out), out[-2000:]
    charts = tmp_path / "var" / "demo" / "metrics"
    assert (charts / "README.md").is_file() and (charts / "throughput.png").is_file()

    after = lsi("kafka", "status", env=env, cwd=tmp_path)
    assert after.returncode == 1 and "stopped" in after.stdout
