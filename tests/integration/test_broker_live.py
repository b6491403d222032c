"""Live test of lsi.kafka.broker: a real Kafka broker on free ports in a temporary data dir.

Needs Java 17+ and either the cached jars or Maven with network access.
"""

from __future__ import annotations

import dataclasses
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lsi.config import Settings
from lsi.kafka.broker import BrokerSettings, KafkaBroker

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),
    # kafka-python 3 reads its schemas with importlib.resources.open_text on import; the
    # warning is attributed to importlib, so the project's `kafka.*` ignore misses it
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of its own: a temp data dir and free ports; the shared jar cache."""
    port, controller_port = _free_port(), _free_port()
    while controller_port == port:
        controller_port = _free_port()
    settings = dataclasses.replace(
        BrokerSettings.from_env(),
        host="127.0.0.1",
        port=port,
        controller_port=controller_port,
        data_dir=tmp_path / "kafka",
        heap="256m",
    )
    managed = KafkaBroker(settings)
    try:
        yield managed
    finally:
        managed.down()


def test_up_serves_a_topic_and_down_stops_it(broker: KafkaBroker) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

    status = broker.up()
    assert status.running and status.answering and status.pid is not None
    assert broker.status().answering
    assert broker.up().pid == status.pid  # idempotent: no second broker

    bootstrap = status.bootstrap
    topic, group = f"lsi-test-{uuid.uuid4().hex[:8]}", f"lsi-test-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        producer.send(topic, key=b"user-1", value=b"hello").get(timeout=30)
    finally:
        producer.close()
    # a consumer group needs __consumer_offsets, i.e. replication factor 1 on one broker
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
    )
    received: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 30
    try:
        while not received and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1_000).values():
                received += [(record.key, record.value) for record in records]
        consumer.commit()
    finally:
        consumer.close()
    assert received == [(b"user-1", b"hello")]

    assert broker.down() is True
    after = broker.status()
    assert (after.running, after.pid, after.answering) == (False, None, False)
    assert broker.down() is False
    assert any("Kafka Server started" in line for line in broker.tail_logs(500))


def test_reset_stream_removes_topics_changelogs_and_the_group(lsi_settings: Settings) -> None:
    """What `lsi demo` does before replaying: a clean stream, then the topics again."""
    from kafka import KafkaAdminClient

    from lsi.kafka.clients import changelog_names, consumer, ensure_topics, producer, reset_stream

    s = lsi_settings
    ensure_topics(s, changelogs=True)
    prod = producer(s)
    prod.send(s.events_topic, key=b"u1", value=b"{}").get(30)
    prod.close()
    group = consumer(s, s.events_topic, group_id=s.app_id, enable_auto_commit=False,
                     consumer_timeout_ms=1000)  # fmt: skip
    assert sum(len(b) for b in group.poll(timeout_ms=10_000).values()) == 1
    group.commit()
    group.close()

    deleted = reset_stream(s)
    assert s.events_topic in deleted and set(changelog_names(s)) <= set(deleted)
    admin = KafkaAdminClient(bootstrap_servers=s.brokers)
    try:
        assert not set(deleted) & set(admin.list_topics())
        assert s.app_id not in {g["group_id"] for g in admin.list_groups()}
    finally:
        admin.close()
    assert reset_stream(s) == []  # nothing left to clear
    ensure_topics(s)  # and the stream can start again
