"""Small kafka-python helpers for the CLI tools: topics, producer, consumer.

Connection failures become :class:`~lsi.errors.BrokerError` with what to do about them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from lsi.config import Settings
from lsi.errors import BrokerError

__all__ = [
    "TABLES",
    "changelog_names",
    "client_errors",
    "consumer",
    "ensure_topics",
    "producer",
    "reset_stream",
    "topic_names",
    "wait_for_group_coordinator",
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
        settings.models_topic,
    ]


#: the worker's tables (streams/tables.py); their changelogs are created up front
TABLES = ("user_state", "ingest_seen", "item_stats", "trending")


def changelog_names(settings: Settings) -> list[str]:
    return [f"{settings.app_id}-{table}-changelog" for table in TABLES]


@contextmanager
def _admin(settings: Settings, timeout_s: float) -> Iterator[KafkaAdminClient]:
    """An admin client for one task; broker failures become :class:`BrokerError`."""
    with client_errors(settings):
        admin = KafkaAdminClient(
            bootstrap_servers=settings.brokers,
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        )
        try:
            yield admin
        finally:
            admin.close()


def ensure_topics(
    settings: Settings, timeout_s: float = 30.0, *, changelogs: bool = False
) -> list[str]:
    """Create the lsi topics that are missing, each with ``settings.partitions``.

    With ``changelogs``, also the tables' compacted changelog topics (what Faust would create
    itself, but after its consumer has already subscribed: on a brand-new broker a worker
    then started with a missing-topic subscription and fetched nothing).

    Returns the names created.
    """
    with _admin(settings, timeout_s) as admin:
        existing = set(admin.list_topics())
        wanted = topic_names(settings)
        compacted = set(changelog_names(settings)) if changelogs else set()
        missing = [t for t in [*wanted, *sorted(compacted)] if t not in existing]
        if missing:
            new = [_new_topic(settings, t, t in compacted) for t in missing]
            # another worker or tool may create them at the same moment
            with suppress(TopicAlreadyExistsError):
                admin.create_topics(new, timeout_ms=int(timeout_s * 1000))
        return missing


def reset_stream(settings: Settings, timeout_s: float = 60.0) -> list[str]:
    """Delete the lsi topics, the tables' changelogs and the consumer group of ``settings``
    (for the demo, which replays a dataset from its start into a clean stream).

    Returns the topics deleted. Fails with a clear message if a worker of the group is running.
    """
    with _admin(settings, timeout_s) as admin:
        existing = set(admin.list_topics())
        doomed = [t for t in [*topic_names(settings), *changelog_names(settings)]
                  if t in existing]  # fmt: skip
        _delete_group(admin, settings.app_id, timeout_s)
        if doomed:
            admin.delete_topics(doomed, timeout_ms=int(timeout_s * 1000))
            deadline = time.time() + timeout_s
            while set(doomed) & set(admin.list_topics()):
                if time.time() > deadline:
                    raise BrokerError(f"topics {doomed} were not deleted in {timeout_s:g} s")
                time.sleep(0.5)
        return doomed


_RETRY = {"NotCoordinatorError", "CoordinatorLoadInProgressError", "CoordinatorNotAvailableError"}


def _delete_group(admin: KafkaAdminClient, group: str, timeout_s: float) -> None:
    """Delete ``group``'s committed offsets; a missing group is fine, a live one is not."""
    deadline = time.time() + timeout_s
    while True:
        error: Any
        try:
            answer = admin.delete_groups([group])
            pairs = answer.items() if isinstance(answer, dict) else answer
            error = next((e for g, e in pairs if g == group), None)
        except KafkaError as exc:  # a new broker has no coordinator until asked for one
            error = exc
        name = getattr(error, "__name__", None) or (
            type(error).__name__ if isinstance(error, BaseException) else error
        )
        if name in (None, "OK", "NoError", "GroupIdNotFoundError"):
            return
        if name in _RETRY and time.time() < deadline:
            time.sleep(0.5)
            continue
        raise BrokerError(f"cannot delete consumer group {group} ({name}): stop the workers "
                          "that use it, or give the demo its own LSI_APP_ID")  # fmt: skip


def _new_topic(settings: Settings, name: str, compacted: bool) -> NewTopic:
    """The interaction log is kept forever (the refresh job trains on all of it); model
    announcements are one compacted partition (the newest per key is what a worker needs)."""
    if name == settings.models_topic:
        return NewTopic(name, 1, 1, topic_configs={"cleanup.policy": "compact"})
    if name == settings.interactions_topic:
        return NewTopic(name, settings.partitions, 1, topic_configs={"retention.ms": "-1",
                                                                     "retention.bytes": "-1"})  # fmt: skip
    configs = {"cleanup.policy": "compact"} if compacted else {}
    return NewTopic(name, settings.partitions, 1, topic_configs=configs)


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


def wait_for_group_coordinator(settings: Settings, timeout_s: float = 60.0) -> None:
    """Block until the broker can coordinate the worker's consumer group.

    A broker that has just started creates ``__consumer_offsets`` on first use; a worker that
    joins before that is answered "coordinator not available" and, seen here, may never
    recover its subscription.
    """
    deadline = time.monotonic() + timeout_s
    with _admin(settings, timeout_s) as admin:
        while True:
            try:
                admin.describe_groups([settings.app_id])
                return
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
