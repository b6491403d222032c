"""``lsi kafka tool`` against a real broker: Kafka's own tools, run as the user runs them
(``python -m lsi kafka tool NAME ARGS…``), over PLAINTEXT and over SASL_SSL.

Needs Java 17+ and the jars (cached, or Maven with network access). Each JVM takes seconds
to start on a loaded machine; every wait has a deadline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from lsi.kafka.broker import BrokerSettings
from lsi.kafka.broker.runtime import resolve_libs
from lsi.kafka.broker.tools import TOOLS
from tests.integration.conftest import ROOT
from tests.integration.test_security_live import PASSWORD, SecureKafka, secure_kafka

__all__ = ["secure_kafka"]  # the SASL_SSL broker fixture, shared with test_security_live

pytestmark = [
    pytest.mark.timeout(420),
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]

TOOL_TIMEOUT_S = 120.0


def lsi_tool(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``lsi kafka tool ARGS…`` in a process of its own."""
    return subprocess.run([sys.executable, "-m", "lsi", "kafka", "tool", *args], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)  # fmt: skip


def client_env(**variables: str) -> dict[str, str]:
    """The environment with lsi's client settings replaced by ``variables`` (the broker's,
    ``LSI_KAFKA_VERSION``, ``LSI_KAFKA_CACHE_DIR`` …, stay: they choose the jars)."""
    client = ("LSI_BROKERS", "LSI_KAFKA_SECURITY_PROTOCOL", "LSI_KAFKA_SASL_", "LSI_KAFKA_SSL_")
    return {k: v for k, v in os.environ.items() if not k.startswith(client)} | variables


def listed_within(topic: str, env: dict[str, str], timeout_s: float = 60.0) -> list[str]:
    """``kafka-topics --list`` until it names ``topic`` (metadata spreads after the create)."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = lsi_tool("kafka-topics", "--list", env=env)
        assert done.returncode == 0, done.stderr
        names = done.stdout.split()
        if topic in names or time.monotonic() > deadline:
            return names
        time.sleep(1.0)


def test_every_main_class_is_in_the_resolved_jars() -> None:
    libs = resolve_libs(BrokerSettings.from_env())
    classes = set()
    for jar in libs.glob("*.jar"):
        with zipfile.ZipFile(jar) as archive:
            classes.update(name for name in archive.namelist() if name.endswith(".class"))
    missing = [name for name, tool in TOOLS.items()
               if tool.main_class.replace(".", "/") + ".class" not in classes]  # fmt: skip
    assert missing == []


def test_topics_and_consumer_groups_through_lsi_kafka_tool(kafka: str) -> None:
    """The operator's round: create a topic, list it, produce, consume in a group, look at the
    group; ``--bootstrap-server`` comes from ``LSI_BROKERS`` throughout."""
    env = client_env(LSI_BROKERS=kafka)
    prefix = f"tools{uuid.uuid4().hex[:8]}"
    topic, group = f"{prefix}.events", f"lsi-{prefix}"
    created = lsi_tool("kafka-topics", "--create", "--topic", topic, "--partitions", "2", env=env)
    assert created.returncode == 0, created.stderr
    assert f"Created topic {topic}." in created.stdout
    assert topic in listed_within(topic, env)
    groups = lsi_tool("kafka-consumer-groups", "--list", env=env)
    assert groups.returncode == 0, groups.stderr

    produced = subprocess.run(
        [sys.executable, "-m", "lsi", "kafka", "tool", "kafka-console-producer", "--topic", topic],
        input="one\ntwo\n", env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=TOOL_TIMEOUT_S,
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    consumed = lsi_tool("kafka-console-consumer", "--topic", topic, "--group", group,
                        "--from-beginning", "--max-messages", "2", "--timeout-ms", "60000",
                        env=env)  # fmt: skip
    assert consumed.returncode == 0, consumed.stderr
    assert sorted(consumed.stdout.split()) == ["one", "two"]
    described = lsi_tool("kafka-consumer-groups", "--describe", "--group", group, env=env)
    assert described.returncode == 0, described.stderr
    rows = [line.split() for line in described.stdout.splitlines() if line.startswith(group)]
    assert sorted((row[1], row[2]) for row in rows) == [(topic, "0"), (topic, "1")]
    assert sum(int(row[3]) for row in rows) == 2  # CURRENT-OFFSET: both records committed


def test_the_exit_status_and_an_explicit_bootstrap_server_pass_through(kafka: str) -> None:
    env = client_env(LSI_BROKERS="127.0.0.1:1")  # nothing listens there: only the flag can work
    missing = f"tools{uuid.uuid4().hex[:8]}.none"
    done = lsi_tool("kafka-topics", "--describe", "--topic", missing,
                    "--bootstrap-server", kafka, env=env)  # fmt: skip
    assert done.returncode == 1
    said = done.stdout + done.stderr  # Kafka 4.0.1 writes "Topic 'Optional[NAME]' does not …"
    assert missing in said and "does not exist" in said


def test_tools_over_sasl_ssl_use_lsis_security_settings(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    """SCRAM-SHA-512 over TLS with a client certificate: the properties file lsi writes is
    all the tools get (the broker's PLAINTEXT listener is never named)."""
    certs = secure_kafka.certs
    env = client_env(
        LSI_BROKERS=secure_kafka.bootstrap,
        LSI_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        LSI_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        LSI_KAFKA_SASL_USERNAME="lsi",
        LSI_KAFKA_SASL_PASSWORD=PASSWORD,
        LSI_KAFKA_SSL_CAFILE=str(certs.ca),
        LSI_KAFKA_SSL_CERTFILE=str(certs.client_cert),
        LSI_KAFKA_SSL_KEYFILE=str(certs.client_key),
    )
    topic = f"tools{uuid.uuid4().hex[:8]}.secure"
    created = lsi_tool("kafka-topics", "--create", "--topic", topic, env=env)
    assert created.returncode == 0, created.stderr
    assert topic in listed_within(topic, env)
    groups = lsi_tool("kafka-consumer-groups", "--list", env=env)
    assert groups.returncode == 0, groups.stderr
    assert PASSWORD not in created.stdout + created.stderr + groups.stdout + groups.stderr
