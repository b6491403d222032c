"""Fixtures for tests against a real Kafka broker and real worker processes.

One broker per test session: the one named by ``LSI_TEST_BROKERS`` if set, else a broker of
the session's own (``lsi.kafka.broker``, free ports, temporary data dir). Each test gets topics,
consumer group and tables of its own (a unique prefix), and workers are real ``lsi worker``
processes, so SIGKILL means SIGKILL.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lsi.config import Settings
from lsi.kafka.broker import BrokerSettings, KafkaBroker
from lsi.kafka.clients import consumer, ensure_topics
from lsi.monitoring.scrape import MetricsSnapshot
from lsi.serving.worker_process import scrape_metrics
from lsi.serving.worker_process import start_worker as spawn_worker

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a running broker for the whole session."""
    external = os.environ.get("LSI_TEST_BROKERS")
    if external:
        yield external
        return
    port, controller = free_port(), free_port()
    while controller == port:
        controller = free_port()
    settings = dataclasses.replace(
        BrokerSettings.from_env(),
        port=port,
        controller_port=controller,
        data_dir=tmp_path_factory.mktemp("kafka"),
        heap="512m",
    )
    broker = KafkaBroker(settings)
    status = broker.up()
    try:
        yield status.bootstrap
    finally:
        broker.down()


@pytest.fixture
def lsi_settings(kafka: str, tmp_path: Path) -> Settings:
    """Settings with topics, group and tables unique to this test; topics created."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env(
        {},
        brokers=kafka,
        partitions=4,
        data_dir=tmp_path / "worker",
        web_port=free_port(),
        models_dir=tmp_path / "models",
        session_timeout_s=10.0,
    ).isolated(prefix)
    ensure_topics(settings)
    return settings


@dataclasses.dataclass
class WorkerProcess:
    """A real ``lsi worker`` child process."""

    settings: Settings
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return self.settings.web_url

    def get(self, path: str, timeout: float = 5.0) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return json.loads(resp.read())

    def metrics(self) -> MetricsSnapshot:
        snapshot = scrape_metrics(self.settings)
        assert snapshot is not None, f"worker does not serve /metrics:\n{self.tail()}"
        return snapshot

    def wait_http(self, timeout_s: float = 60.0) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            assert self.proc.poll() is None, f"worker exited:\n{self.tail()}"
            try:
                self.get("/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"worker did not serve HTTP in {timeout_s}s:\n{self.tail()}")

    def wait_metric(
        self, predicate: Callable[[MetricsSnapshot], bool], timeout_s: float = 90.0
    ) -> MetricsSnapshot:
        deadline = time.time() + timeout_s
        last: MetricsSnapshot | None = None
        while time.time() < deadline:
            assert self.proc.poll() is None, f"worker exited:\n{self.tail()}"
            last = self.metrics()
            if predicate(last):
                return last
            time.sleep(0.5)
        raise AssertionError(f"metrics condition not met in {timeout_s}s; last counters: "
                             f"{last.counters if last else None}\n{self.tail()}")  # fmt: skip

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture
def start_worker(lsi_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``lsi worker`` processes for this test; all are stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(name: str = "w1", **overrides: Any) -> WorkerProcess:
        settings = lsi_settings.with_(data_dir=tmp_path / name, **overrides)
        log = tmp_path / f"{name}.log"
        proc = spawn_worker(settings, log, "--loglevel", "warning", cwd=ROOT)
        worker = WorkerProcess(settings, proc, log)
        started.append(worker)
        worker.wait_http()
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.terminate()
            try:
                worker.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.proc.kill()


def streamed_list(settings: Settings, user: str, history_size: int,
                  timeout_s: float = 60.0) -> dict[str, Any]:  # fmt: skip
    """The newest record on the recommendations topic for ``user`` after their
    ``history_size``-th event (read from the beginning until it is there, or fail)."""

    def of_user(records: list[Any]) -> list[dict[str, Any]]:
        return [r for r in (json.loads(m.value) for m in records)
                if r["user_id"] == user and r["history_size"] == history_size]  # fmt: skip

    records = consume(settings, settings.recommendations_topic, lambda rs: bool(of_user(rs)),
                      timeout_s=timeout_s)  # fmt: skip
    return of_user(records)[-1]


def consume(
    settings: Settings, topic: str, until: Callable[[list[Any]], bool], timeout_s: float = 90.0
) -> list[Any]:
    """Read ``topic`` from the beginning until ``until(records)`` holds (or fail)."""
    cons = consumer(settings, topic, consumer_timeout_ms=500)
    records: list[Any] = []
    deadline = time.time() + timeout_s
    try:
        while time.time() < deadline:
            for batch in cons.poll(timeout_ms=500).values():
                records.extend(batch)
            if until(records):
                return records
    finally:
        cons.close()
    raise AssertionError(f"{topic}: condition not met in {timeout_s}s with {len(records)} records")


def wait_until(what: str, check: Callable[[], Any], timeout_s: float = 60.0,
               worker: WorkerProcess | None = None) -> Any:  # fmt: skip
    """``check()`` once it returns something true (polled every 0.3 s), or fail naming
    ``what`` (with the tail of ``worker``'s log, if given) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    tail = f"\n{worker.tail()}" if worker is not None else ""
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s (last {last!r}){tail}")
