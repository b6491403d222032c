"""Live test of lsi.broker: a real Kafka broker on free ports in a temporary data dir.

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

from lsi.broker import BrokerSettings, KafkaBroker

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
