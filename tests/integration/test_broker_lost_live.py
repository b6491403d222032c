"""A worker whose broker goes away says so a few times, not thousands of times a second, and
still stops when asked.

Issue 19: with the broker down a worker logged about 4,500 lines a second of aiokafka
reconnect errors at ``--loglevel warning``. The test stops a broker of its own under a
running worker and counts the lines the worker writes.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lsi.config import Settings
from lsi.kafka.broker import BrokerSettings, KafkaBroker
from lsi.kafka.clients import ensure_topics, producer
from lsi.serving.worker_process import scrape_metrics, start_worker, stop_worker
from tests.integration.conftest import ROOT, free_port

pytestmark = pytest.mark.timeout(300)

#: what aiokafka logs, at ERROR, each time it fails to reach the broker
UNREACHABLE = "Connect call failed"


@contextmanager
def own_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of this test's own (the test stops it under a worker), down at the end."""
    port, controller = free_port(), free_port()
    while controller == port:
        controller = free_port()
    broker = KafkaBroker(dataclasses.replace(BrokerSettings.from_env(), port=port,
                                             controller_port=controller,
                                             data_dir=tmp_path / "kafka", heap="256m"))  # fmt: skip
    broker.up()
    try:
        yield broker
    finally:
        broker.down()


@contextmanager
def running_worker(broker: KafkaBroker, tmp_path: Path, **overrides: Any) -> Iterator[Worker]:
    """A real ``lsi worker`` on ``broker``, serving metrics; stopped at the end."""
    settings = Settings.from_env({}, brokers=broker.settings.bootstrap, partitions=4,
                                 data_dir=tmp_path / "worker", web_port=free_port(),
                                 models_dir=tmp_path / "models", session_timeout_s=10.0,
                                 **overrides)  # fmt: skip
    ensure_topics(settings)
    log = tmp_path / "worker.log"
    proc = start_worker(settings, log, "--loglevel", "warning", cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        # ready: partitions assigned and tables restored, so Faust has declared its topics (a
        # broker lost before that fails the worker's start, a different story from this test's)
        while scrape_metrics(settings, timeout_s=1) is None or not _ready(settings):
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the worker was not ready in 120 s"
            time.sleep(0.5)
        yield Worker(settings, proc, log)
    finally:
        stop_worker(proc)


def _ready(settings: Settings) -> bool:
    """Whether the worker answers its readiness probe with 200."""
    try:
        with urllib.request.urlopen(f"{settings.web_url}/healthz/ready/", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:  # 503 while starting (HTTPError), or no answer yet
        return False


@dataclasses.dataclass(frozen=True)
class Worker:
    settings: Settings
    proc: subprocess.Popen[bytes]
    log: Path


def test_a_worker_that_loses_its_broker_does_not_flood_its_log(tmp_path: Path) -> None:
    with own_broker(tmp_path) as broker, running_worker(broker, tmp_path) as worker:
        proc, log = worker.proc, worker.log
        broker.down()

        def lines() -> list[str]:
            return log.read_text(errors="replace").splitlines()

        # the worker says the broker is unreachable ...
        deadline = time.monotonic() + 60
        while not any(UNREACHABLE in line for line in lines()):
            assert time.monotonic() < deadline, "\n".join(lines()[-20:])
            time.sleep(0.2)
        first = next(n for n, line in enumerate(lines()) if UNREACHABLE in line)
        since = time.monotonic()
        # ... and, a window (10 s) later, how often it failed meanwhile
        deadline = since + 40
        while not any("[repeated" in line for line in lines()[first:]):
            assert proc.poll() is None, "\n".join(lines()[-20:])
            assert time.monotonic() < deadline, "\n".join(lines()[-40:])
            time.sleep(0.5)
        time.sleep(max(0.0, since + 15 - time.monotonic()))
        written = lines()[first:]
        elapsed = time.monotonic() - since

    # about three templates, each once per 10 s (before: ~40 lines a second on 2 cores,
    # thousands on a fast machine)
    assert len(written) < 60, f"{len(written)} lines in {elapsed:.0f} s:\n" + "\n".join(
        written[:80]
    )
    summaries = [line for line in written if UNREACHABLE in line and "[repeated" in line]
    assert summaries, "\n".join(written)
    counts = [int(line.split("[repeated ")[1].split()[0]) for line in summaries]
    assert max(counts) >= 10, summaries  # the reconnect loop did go on, held back


def test_a_worker_stuck_on_a_batch_it_cannot_deliver_still_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    """Faust waits for in-flight batches before it stops; one whose output cannot reach a
    stopped broker used to hold SIGTERM off for good (45+ s seen). The worker now exits
    after its grace period (15 s), without committing the batch."""
    with own_broker(tmp_path) as broker, running_worker(broker, tmp_path, batch_max=50) as w:
        prod = producer(w.settings)
        now = time.time()
        for i in range(20_000):
            user = f"u{i % 500}"
            event = {"event_id": f"e{i}", "user_id": user, "item_id": f"i{i % 97}",
                     "type": "view", "ts": now}  # fmt: skip
            prod.send(w.settings.events_topic, key=user.encode(),
                      value=json.dumps(event).encode())  # fmt: skip
        prod.flush(timeout=60)
        prod.close()
        deadline = time.monotonic() + 60
        while True:  # the worker is in the middle of the stream
            m = scrape_metrics(w.settings, timeout_s=1)
            if m is not None and m.total("lsi_events_total", agent="ingest") > 0:
                break
            assert time.monotonic() < deadline, w.log.read_text(errors="replace")[-3000:]
            time.sleep(0.05)
        broker.down()
        time.sleep(3)  # its sends now fail and are retried
        assert w.proc.poll() is None, w.log.read_text(errors="replace")[-3000:]
        start = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        try:
            w.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the worker ignored SIGTERM for 60 s")
        took = time.monotonic() - start
    assert took < 30, f"the worker took {took:.0f} s to stop"
