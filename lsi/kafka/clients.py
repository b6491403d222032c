"""Small kafka-python helpers for the CLI tools: topics, producer, consumer.

Every client connects with the security settings of :mod:`lsi.kafka.security` (TLS, SASL), and
connection failures become :class:`~lsi.errors.BrokerError` with what to do about them. A
broker that rejects the client's credentials closes the connection, which kafka-python
retries until its bootstrap timeout (:data:`BOOTSTRAP_TIMEOUT_MS`) and then reports as a
timeout; :func:`client_errors` adds the last connection error it logged (a TLS handshake
failure, a dropped connection) and what to check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from lsi.config import Settings
from lsi.errors import BrokerError
from lsi.kafka.security import describe, kafka_python_options, uses_sasl, uses_tls

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


def _unreachable(settings: Settings, exc: Exception, cause: str | None = None) -> BrokerError:
    secured = settings.kafka_security_protocol != "PLAINTEXT"
    where = f"Kafka at {settings.brokers}" + (f" ({describe(settings)})" if secured else "")
    what = _error_text(exc) + (f"; last connection error: {cause}" if cause else "")
    hint = ""
    if uses_tls(settings) and cause is not None and ("SSL" in cause or "certificate" in cause):
        hint = ("check LSI_KAFKA_SSL_CAFILE (the CA that signed the brokers' certificates) and "
                "LSI_KAFKA_SSL_CHECK_HOSTNAME; ")  # fmt: skip
    elif uses_sasl(settings):
        hint = ("check LSI_KAFKA_SASL_USERNAME, LSI_KAFKA_SASL_PASSWORD and "
                "LSI_KAFKA_SASL_MECHANISM (a broker closes the connection of a client it does not "
                "authenticate) and LSI_KAFKA_SECURITY_PROTOCOL; ")  # fmt: skip
    return BrokerError(
        f"{where} failed ({what}); {hint}is it running? "
        "Start the local broker with `lsi kafka up`, or point LSI_BROKERS at yours"
    )


def _error_text(exc: BaseException) -> str:
    """``Type: message`` (kafka-python's errors already start with their type's name)."""
    text, kind = str(exc), type(exc).__name__
    return text if text.startswith(kind) else f"{kind}: {text}"


class _LastConnectionError(logging.Handler):
    """Remembers the last exception kafka-python's connection manager logged."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.error: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        found = next((a for a in args if isinstance(a, BaseException)), None)
        # the final "unable to bootstrap" timeout is the error itself, not its cause
        if found is not None and not isinstance(found, KafkaTimeoutError):
            self.error = _error_text(found)[:300]


_CONNECTION_LOGGER = logging.getLogger("kafka.net.manager")
_capture_lock = threading.Lock()


@contextmanager
def client_errors(settings: Settings) -> Iterator[None]:
    """Translate kafka-python's connection errors into a :class:`BrokerError` (with the last
    connection error kafka-python logged meanwhile, when it logged one)."""
    handler = _LastConnectionError()
    with _capture_lock:
        _CONNECTION_LOGGER.addHandler(handler)
    try:
        yield
    except KafkaError as exc:
        raise _unreachable(settings, exc, handler.error) from None
    finally:
        with _capture_lock:
            _CONNECTION_LOGGER.removeHandler(handler)


def topic_names(settings: Settings) -> list[str]:
    return [
        settings.events_topic,
        settings.rekey_topic,
        settings.interactions_topic,
        settings.recommendations_topic,
        settings.dlq_topic,
        settings.item_deltas_topic,
        settings.models_topic,
        settings.items_topic,
    ]


#: the worker's tables (streams/tables.py); their changelogs are created up front
TABLES = ("user_state", "item_stats", "trending", "catalogue")


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
            **kafka_python_options(settings),
        )
        try:
            yield admin
        finally:
            admin.close()


def ensure_topics(
    settings: Settings, timeout_s: float = 30.0, *, changelogs: bool = False
) -> list[str]:
    """Create the lsi topics that are missing, each with ``settings.partitions``, replicated
    ``settings.replication_factor`` times with ``min.insync.replicas`` from the settings.

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
    announcements are one compacted partition (the newest per key is what a worker needs).
    Every topic has the settings' replication factor and ``min.insync.replicas`` (which,
    with the producers' ``acks=all``, is how many replicas at least hold a sent record)."""
    configs = {"min.insync.replicas": str(settings.min_insync_replicas)}
    partitions = settings.partitions
    if name == settings.models_topic:
        partitions, configs["cleanup.policy"] = 1, "compact"
    elif name == settings.interactions_topic:
        configs |= {"retention.ms": "-1", "retention.bytes": "-1"}
    elif compacted or name == settings.items_topic:  # the newest record per item counts
        configs["cleanup.policy"] = "compact"
    return NewTopic(name, partitions, settings.replication_factor, topic_configs=configs)


def producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """An idempotent, batching producer (acks=all), connected as the settings say."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.brokers,
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
        **kafka_python_options(settings),
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "compression_type": None,
    }
    options.update(overrides)
    with client_errors(settings):
        return KafkaProducer(**options)


def consumer(settings: Settings, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A consumer without a group (reads, never commits), connected as the settings say."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.brokers,
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
        **kafka_python_options(settings),
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
