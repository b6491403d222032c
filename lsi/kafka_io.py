"""Small kafka-python helpers for the CLI tools: topics, producer, consumer.

Connection failures become :class:`~lsi.errors.BrokerError` with what to do about them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from lsi.config import Settings
from lsi.errors import BrokerError

__all__ = [
    "client_errors",
    "consumer",
    "ensure_topics",
    "producer",
    "topic_names",
]


#: how long a CLI tool waits for an unreachable broker before saying so
BOOTSTRAP_TIMEOUT_MS = 5000


def _unreachable(settings: Settings, exc: Exception) -> BrokerError:
    return BrokerError(
        f"Kafka at {settings.brokers} failed ({type(exc).__name__}: {exc}); is it running? "
        "Start the local broker with `lsi kafka up`, or point LSI_BROKERS at yours"
    )


@contextmanager
def client_errors(settings: Settings) -> Iterator[None]:
    """Translate kafka-python's connection errors into a :class:`BrokerError`."""
    try:
        yield
    except KafkaError as exc:
        raise _unreachable(settings, exc) from None


def topic_names(settings: Settings) -> list[str]:
    return [
        settings.events_topic,
        settings.interactions_topic,
        settings.recommendations_topic,
        settings.dlq_topic,
        settings.item_deltas_topic,
    ]


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create the lsi topics that are missing, each with ``settings.partitions``.

    Returns the names created.
    """
    with client_errors(settings):
        admin = KafkaAdminClient(
            bootstrap_servers=settings.brokers,
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        )
        try:
            existing = set(admin.list_topics())
            missing = [t for t in topic_names(settings) if t not in existing]
            if missing:
                # another worker or tool may create them at the same moment
                with suppress(TopicAlreadyExistsError):
                    admin.create_topics(
                        [NewTopic(t, settings.partitions, 1) for t in missing],
                        timeout_ms=int(timeout_s * 1000),
                    )
            return missing
        finally:
            admin.close()


def producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """An idempotent, batching producer (acks=all)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.brokers,
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "compression_type": None,
    }
    options.update(overrides)
    with client_errors(settings):
        return KafkaProducer(**options)


def consumer(settings: Settings, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A consumer without a group (reads, never commits)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.brokers,
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "consumer_timeout_ms": 1000,
    }
    options.update(overrides)
    with client_errors(settings):
        return KafkaConsumer(*topics, **options)
