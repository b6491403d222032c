"""Publishing click events as the workers expect them: :class:`EventProducer`."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from lsi.config import Settings
from lsi.errors import BrokerError, ClientError, DeliveryFailed, InvalidEvent, LsiError
from lsi.wire.partitioning import partition_of
from lsi.wire.records import Event
from lsi.wire.validation import validate_event

__all__ = ["EventProducer"]

log = logging.getLogger(__name__)

#: what :class:`EventProducer` changes in :func:`lsi.kafka.clients.producer`'s options: a
#: missing topic is an error, not created with the broker's default partition count
_PRODUCER_OPTIONS: dict[str, Any] = {"allow_auto_create_topics": False, "max_block_ms": 30_000}


def _encode(data: Mapping[str, Any]) -> bytes:
    """Compact JSON as a worker reads it. NaN and Infinity are written as such (the validator
    then refuses them, as a worker would); a lone surrogate is escaped, as the stdlib writes it."""
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(data, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:  # not JSON at all (a set, a datetime, a cycle)
        raise InvalidEvent("wrong_type", f"the event cannot be written as JSON: {exc}") from None


class EventProducer:
    """Publishes click events to ``settings.events_topic``, batched, acknowledged by all
    in-sync replicas.

    Each event is encoded, then checked with :func:`~lsi.wire.validation.validate_event` and
    ``settings.limits()`` (the rules of ingest): one the workers would dead-letter raises
    :class:`~lsi.errors.InvalidEvent` with their reason code and detail, and nothing is sent.
    The key is ``user_id`` in UTF-8 and the partition murmur2 of the key over the topic's
    partition count (``partitions_for``), as Kafka's default partitioner picks it: the event
    lands on its user's partition. ``send`` does not wait for the broker; :meth:`flush` does,
    and raises :class:`DeliveryFailed` with the count of the events that failed since the
    previous flush.

    Args:
        settings: brokers, security, topic and limits (default: ``Settings.from_env()``).
        producer: a kafka-python ``KafkaProducer`` (or an object with its ``partitions_for``,
            ``send``, ``flush`` and ``close``) to use instead of a new one; the caller closes it.
        options: overrides of the new producer's options (``linger_ms`` …).

    >>> with EventProducer() as events:  # doctest: +SKIP
    ...     events.send("u1", "i42", "click", context={"page": "home"})
    """

    def __init__(
        self, settings: Settings | None = None, *, producer: Any = None, **options: Any
    ) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        self.topic = self.settings.events_topic
        self._limits = self.settings.limits()
        self._owned = producer is None
        if producer is None:
            from lsi.kafka.clients import producer as kafka_producer

            producer = kafka_producer(self.settings, **(_PRODUCER_OPTIONS | options))
        self._producer = producer
        self._lock = threading.Lock()
        self._pending = 0
        self._errors: list[tuple[str, BaseException]] = []
        self._closed = False

    def send(
        self,
        user_id: str | int,
        item_id: str | int,
        type: str = "view",
        ts: float | None = None,
        weight: float | None = None,
        event_id: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Check and publish one event (``ts``: now; ``event_id``: a new uuid4 hex, so only
        a caller that resends with the same ``event_id`` has the repeat dropped as a duplicate).

        Raises:
            InvalidEvent: the workers would dead-letter it (nothing was sent).
            BrokerError: the topic's partitions are unknown (no broker, no topic).
        """
        data: dict[str, Any] = {
            "event_id": uuid.uuid4().hex if event_id is None else event_id,
            "user_id": user_id,
            "item_id": item_id,
            "type": type,
            "ts": round(time.time(), 3) if ts is None else ts,
        }
        if weight is not None:
            data["weight"] = weight
        if context is not None:
            data["context"] = dict(context)
        self._publish(data)

    def send_event(self, event: Event) -> None:
        """Check and publish ``event`` (as :meth:`send`)."""
        self._publish(event.to_dict())

    def _publish(self, data: Mapping[str, Any]) -> None:
        if self._closed:
            raise ClientError(f"{self.topic}: the producer is closed")
        value = _encode(data)
        # validate_event checks the ids before the key: a key from an invalid id is never used
        key = str(data.get("user_id")).encode("utf-8", "surrogatepass")
        event = validate_event(value, key, time.time(), self._limits)
        with self._lock:
            self._pending += 1
        try:
            partitions = self._producer.partitions_for(self.topic)
            if not partitions:
                raise BrokerError(f"{self.topic} has no partitions")
            partition = partition_of(key, len(partitions))
            future = self._producer.send(self.topic, value=value, key=key, partition=partition)
        except BaseException as exc:
            with self._lock:
                self._pending -= 1
            from kafka.errors import KafkaError

            if isinstance(exc, KafkaError):
                raise BrokerError(
                    f"cannot send to {self.topic} at {self.settings.brokers} ({exc!r}): is the "
                    "broker up, and does the topic exist (`lsi worker` creates lsi's topics)?"
                ) from None
            raise
        future.add_callback(self._delivered)
        future.add_errback(self._failed, event.event_id)

    def _delivered(self, _metadata: Any) -> None:
        with self._lock:
            self._pending -= 1

    def _failed(self, event_id: str, exc: BaseException) -> None:
        with self._lock:
            self._pending -= 1
            self._errors.append((event_id, exc))

    def flush(self, timeout_s: float | None = None) -> None:
        """Send what is batched and wait for the broker's answers (``None``: until each
        event succeeded or failed; kafka-python's ``delivery_timeout_ms`` bounds that).

        Raises:
            DeliveryFailed: events failed since the last flush, or were still unacknowledged
                after ``timeout_s``; each failure is reported once.
        """
        from kafka.errors import KafkaTimeoutError

        timed_out = False
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaTimeoutError:
            timed_out = True
        with self._lock:
            errors, self._errors = self._errors, []
            pending = self._pending if timed_out else 0
        if errors or pending:
            raise DeliveryFailed(self.topic, errors, pending)

    def close(self, timeout_s: float | None = None) -> None:
        """Flush, then close the producer this object made (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush(timeout_s)
        finally:
            if self._owned:
                self._producer.close(timeout=timeout_s)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
            return
        try:  # the error in the block matters more than the deliveries it interrupted
            self.close()
        except LsiError as failed:
            log.warning("closing the event producer after an error: %s", failed)
