"""lsi over SASL_SSL with SCRAM, for real: a broker of this module's own with a SASL_SSL
listener (a test CA, client certificates required), a real ``lsi worker`` process, and the
kafka-python tools, every connection authenticated and encrypted.

The broker also has its PLAINTEXT listener (``lsi.kafka.broker`` probes it to see the broker is
up); nothing in these tests connects to it.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lsi.config import Settings
from lsi.kafka.broker import BrokerSettings, KafkaBroker
from lsi.kafka.clients import ensure_topics, producer
from lsi.serving.worker_process import settings_env, start_worker, stop_worker
from lsi.wire.records import Event
from tests.integration.conftest import ROOT, WorkerProcess, consume, free_port
from tests.tls import Certificates, make_certificates

pytestmark = pytest.mark.timeout(420)

PASSWORD = "lsi-Scram-pw.7e2f"


@dataclasses.dataclass(frozen=True)
class SecureKafka:
    """The running broker: its SASL_SSL address and the TLS files clients use."""

    bootstrap: str
    certs: Certificates


def _free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """A broker with a SASL_SSL listener and one user, ``lsi``, for PLAIN and SCRAM."""
    directory = tmp_path_factory.mktemp("secure-kafka")
    certs = make_certificates(directory / "tls")
    port, controller, sasl_ssl = _free_ports(3)
    settings = dataclasses.replace(
        BrokerSettings.from_env(),
        port=port,
        controller_port=controller,
        sasl_ssl_port=sasl_ssl,
        data_dir=directory / "kafka",
        heap="512m",
        tls_keystore=certs.keystore,
        tls_client_ca=certs.ca,
        sasl_users=(("lsi", PASSWORD),),
    )
    broker = KafkaBroker(settings)
    broker.up()
    try:
        assert settings.sasl_ssl_bootstrap is not None
        yield SecureKafka(settings.sasl_ssl_bootstrap, certs)
    finally:
        broker.down()


def secure_settings(kafka: SecureKafka, tmp_path: Path, **changes: Any) -> Settings:
    """Client settings for ``kafka``: SCRAM-SHA-256 as ``lsi``, topics unique to the test."""
    prefix = f"s{uuid.uuid4().hex[:8]}"
    values: dict[str, Any] = {
        "app_id": f"lsi-{prefix}",
        "brokers": kafka.bootstrap,
        "partitions": 2,
        "data_dir": tmp_path / "worker",
        "web_port": free_port(),
        "events_topic": f"{prefix}.events",
        "interactions_topic": f"{prefix}.interactions",
        "recommendations_topic": f"{prefix}.recommendations",
        "dlq_topic": f"{prefix}.events.dlq",
        "item_deltas_topic": f"{prefix}.item-deltas",
        "models_topic": f"{prefix}.models",
        "models_dir": tmp_path / "models",
        "session_timeout_s": 10.0,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-256",
        "kafka_sasl_username": "lsi",
        "kafka_sasl_password": PASSWORD,
        "kafka_ssl_cafile": str(kafka.certs.ca),
        "kafka_ssl_certfile": str(kafka.certs.client_cert),
        "kafka_ssl_keyfile": str(kafka.certs.client_key),
    }
    return Settings.from_env({}, **(values | changes))


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_each_mechanism_creates_writes_and_reads(
    secure_kafka: SecureKafka, tmp_path: Path, mechanism: str
) -> None:
    s = secure_settings(secure_kafka, tmp_path, kafka_sasl_mechanism=mechanism)
    assert s.events_topic in ensure_topics(s)
    assert ensure_topics(s) == []  # listed back over the same connection kind
    prod = producer(s)
    try:
        prod.send(s.events_topic, key=b"u1", value=mechanism.encode()).get(timeout=30)
    finally:
        prod.close()
    (record,) = consume(s, s.events_topic, lambda r: len(r) >= 1, timeout_s=30)
    assert (record.key, record.value) == (b"u1", mechanism.encode())


def test_a_worker_runs_the_pipeline_over_sasl_ssl(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    s = secure_settings(secure_kafka, tmp_path)
    ensure_topics(s, changelogs=True)
    log = tmp_path / "worker.log"
    worker = WorkerProcess(s, start_worker(s, log, "--loglevel", "warning", cwd=ROOT), log)
    try:
        worker.wait_http(timeout_s=120)
        users = {f"user-{n}" for n in range(3)}
        events = [Event(uuid.uuid4().hex, user, f"item-{i}", "click", round(time.time(), 3))
                  for user in sorted(users) for i in range(4)]  # fmt: skip
        prod = producer(s)
        try:
            for event in events:
                prod.send(s.events_topic, key=event.user_id.encode(), value=event.to_json())
            prod.flush(timeout=30)
        finally:
            prod.close()

        recs = consume(s, s.recommendations_topic,
                       lambda r: users <= {json.loads(x.value)["user_id"] for x in r},
                       timeout_s=120)  # fmt: skip
        for record in recs:
            rec = json.loads(record.value)
            assert record.key == rec["user_id"].encode() and rec["user_id"] in users
        interactions = consume(s, s.interactions_topic, lambda r: len(r) >= len(events))
        assert {json.loads(r.value)["event_id"] for r in interactions} == {
            e.event_id for e in events
        }
        worker.wait_metric(
            lambda m: m.total("lsi_events_total", agent="ingest", outcome="forwarded") == 12
        )
        assert worker.proc.poll() is None
    finally:
        stop_worker(worker.proc)
    text = log.read_text(errors="replace")
    assert f"brokers {s.brokers} (SASL_SSL, SCRAM-SHA-256 as lsi)" in text
    assert PASSWORD not in text
    assert "models: following" not in text, "the model watcher (aiokafka) could not connect"


def _lsi(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "lsi", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    return done, time.monotonic() - started


@pytest.mark.parametrize(
    "command", [["publish", "--user", "u1", "--item", "i1"], ["worker"]], ids=["publish", "worker"]
)
def test_a_wrong_password_fails_fast_with_one_line(
    secure_kafka: SecureKafka, tmp_path: Path, command: list[str]
) -> None:
    wrong = "not-the-password"
    s = secure_settings(secure_kafka, tmp_path, kafka_sasl_password=wrong)
    done, seconds = _lsi(*command, env=settings_env(s))
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"lsi {command[0]}: error: Kafka at {s.brokers} "
                               "(SASL_SSL, SCRAM-SHA-256 as lsi) failed")  # fmt: skip
    assert "check LSI_KAFKA_SASL_USERNAME, LSI_KAFKA_SASL_PASSWORD" in lines[0]
    assert wrong not in done.stdout + done.stderr
    assert seconds < 60, f"took {seconds:.0f} s"


def test_an_untrusted_broker_certificate_is_refused(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    # in a child process: kafka-python 3.0 keeps the socket of a failed TLS handshake (and its
    # IO thread) alive after the client's constructor raised, until the process exits
    other = make_certificates(tmp_path / "other-ca")  # a CA that did not sign the broker's
    s = secure_settings(secure_kafka, tmp_path, kafka_ssl_cafile=str(other.ca))
    done, seconds = _lsi("publish", "--user", "u1", "--item", "i1", env=settings_env(s))
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "CERTIFICATE_VERIFY_FAILED" in line and "check LSI_KAFKA_SSL_CAFILE" in line
    assert seconds < 60, f"took {seconds:.0f} s"
