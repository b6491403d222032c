"""The Python client of lsi: publish click events, read recommendations.

:class:`EventProducer` sends events to the events topic as the workers expect them (the JSON
of :class:`~lsi.wire.records.Event`, key = ``user_id`` in UTF-8, the user's murmur2
partition) after checking each one with the workers' own rules
(:func:`lsi.wire.validation.validate_event`). :class:`RecommendationsClient` asks a worker
over HTTP (``GET /recommendations/{user_id}/``, retrying while the worker cannot answer yet)
and follows the recommendations topic. Both hand out typed records
(:class:`~lsi.wire.records.Recommendation`). Nothing connects at import, and the Kafka client
is loaded only by what uses Kafka.

Errors, beside :class:`~lsi.errors.InvalidEvent` (an event the workers would dead-letter,
raised before anything is sent) and :class:`~lsi.errors.BrokerError` (Kafka cannot be
reached)::

    LsiError
    └── ClientError             a call of this client failed; ``str(exc)`` says what and where
        ├── WorkerUnavailable   503, or no connection, until ``retry_for_s`` ran out
        ├── RequestRejected     the worker (400) or the client refused the request
        └── DeliveryFailed      ``flush``: events the broker did not acknowledge
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import orjson

from lsi.config import Settings
from lsi.errors import BrokerError, InvalidEvent, InvalidRecord, LsiError
from lsi.wire.partitioning import partition_of
from lsi.wire.records import Event, RecItem, Recommendation, ScoredItem
from lsi.wire.validation import id_problem, validate_event

__all__ = [
    "ClientError",
    "DeliveryFailed",
    "EventProducer",
    "RecommendationsClient",
    "RequestRejected",
    "WorkerUnavailable",
    "parse_recommendation",
]

log = logging.getLogger(__name__)

#: what :class:`EventProducer` changes in :func:`lsi.kafka.clients.producer`'s options: a
#: missing topic is an error, not created with the broker's default partition count
_PRODUCER_OPTIONS: dict[str, Any] = {"allow_auto_create_topics": False, "max_block_ms": 30_000}
#: bounds of one wait between two HTTP attempts, in seconds (a ``Retry-After`` is clamped)
_MIN_WAIT_S, _MAX_WAIT_S = 0.05, 5.0


class ClientError(LsiError):
    """A call of :mod:`lsi.client` failed."""


class WorkerUnavailable(ClientError):
    """The worker answered 503 (or could not be reached) until the retry deadline passed.

    Attributes:
        url: the URL asked.
        message: the worker's ``error`` message, or the connection error.
    """

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url, self.message = url, message


class RequestRejected(ClientError):
    """The worker refused the request (``status`` 400 …) or, with ``status`` ``None``, the
    client did, by the rule the worker applies (a user id no event could carry)."""

    def __init__(self, url: str, status: int | None, message: str) -> None:
        super().__init__(f"{url}: {status or 'not sent'}: {message}")
        self.url, self.status, self.message = url, status, message


class DeliveryFailed(ClientError):
    """Events the broker did not acknowledge (``failed``), or did not acknowledge in time
    (``pending``). ``errors``: ``(event_id, exception)`` of the failed ones."""

    def __init__(self, topic: str, errors: list[tuple[str, BaseException]], pending: int) -> None:
        parts = [f"{len(errors)} event(s) were not delivered"] if errors else []
        if pending:
            parts.append(f"{pending} event(s) not yet acknowledged when flush timed out")
        first = f" (first: {errors[0][0]}: {errors[0][1]!r})" if errors else ""
        super().__init__(f"{topic}: {' and '.join(parts)}{first}")
        self.topic, self.errors, self.pending = topic, errors, pending

    @property
    def failed(self) -> int:
        return len(self.errors)


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


_FIELDS = ("user_id", "ts", "model_version", "long_weight", "items", "short_term", "long_term",
           "source", "event_ts", "emitted_at", "trigger", "history_size")  # fmt: skip


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRecord("wrong_type", f"{where} must be a number, got {value!r:.40}")
    if not math.isfinite(value):
        raise InvalidRecord("invalid_value", f"{where} must be finite, got {value!r}")
    return float(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRecord("wrong_type", f"{where} must be a non-empty string, got {value!r:.40}")
    return value


def _objects(data: Mapping[str, Any], name: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``("name[n]", object)`` for the objects of the array ``data[name]``."""
    value = data[name]
    if not isinstance(value, list):
        raise InvalidRecord("wrong_type", f"{name} must be an array, got {value!r:.40}")
    for n, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise InvalidRecord("wrong_type", f"{name}[{n}] must be an object, got {item!r:.40}")
        yield f"{name}[{n}]", item


def _scored(data: Mapping[str, Any], name: str) -> tuple[ScoredItem, ...]:
    return tuple(ScoredItem(_text(i.get("item_id"), f"{at}.item_id"),
                            _number(i.get("score"), f"{at}.score"))
                 for at, i in _objects(data, name))  # fmt: skip


def _fused(data: Mapping[str, Any]) -> tuple[RecItem, ...]:
    return tuple(RecItem(_text(i.get("item_id"), f"{at}.item_id"),
                         *(_number(i.get(f), f"{at}.{f}") for f in ("score", "long_score", "short_score")))
                 for at, i in _objects(data, "items"))  # fmt: skip


def parse_recommendation(raw: bytes | str | Mapping[str, Any]) -> Recommendation:
    """A recommendation record (its JSON, or the decoded object) as a typed
    :class:`~lsi.wire.records.Recommendation`; fields lsi does not define are ignored.

    Raises:
        InvalidRecord: ``malformed_json``, ``not_an_object``, ``missing_field``,
            ``wrong_type`` or ``invalid_value``, naming the field.
    """
    data: Any = raw
    if isinstance(raw, (bytes, str)):
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRecord("malformed_json", f"not JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise InvalidRecord("not_an_object", f"expected a JSON object, got {data!r:.40}")
    missing = [name for name in _FIELDS if name not in data]
    if missing:
        raise InvalidRecord("missing_field", f"the field(s) {', '.join(missing)} are missing")
    history, event_ts = data["history_size"], data["event_ts"]
    if isinstance(history, bool) or not isinstance(history, int) or history < 0:
        raise InvalidRecord("wrong_type", f"history_size must be an integer >= 0, got {history!r:.40}")  # fmt: skip
    return Recommendation(
        user_id=_text(data["user_id"], "user_id"),
        ts=_number(data["ts"], "ts"),
        model_version=_text(data["model_version"], "model_version"),
        long_weight=_number(data["long_weight"], "long_weight"),
        items=_fused(data),
        short_term=_scored(data, "short_term"),
        long_term=_scored(data, "long_term"),
        source=_text(data["source"], "source"),
        event_ts=None if event_ts is None else _number(event_ts, "event_ts"),
        emitted_at=_number(data["emitted_at"], "emitted_at"),
        trigger=_text(data["trigger"], "trigger"),
        history_size=history,
    )


def _retry_after(value: str | None) -> float:
    """Seconds a ``Retry-After`` header asks for (seconds or an HTTP date; 1 if unreadable)."""
    if not value:
        return 1.0
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return 1.0


def _error_message(body: bytes) -> str:
    """The ``error`` of a JSON answer, else the start of the body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return body[:200].decode("utf-8", "replace") or "(empty body)"


class RecommendationsClient:
    """Asks a worker for a user's recommendations over HTTP; follows the recommendations topic.

    ``recommend`` retries a 503 (the group is forming or rebalancing, the owner of the user
    just left), waiting what ``Retry-After`` says, and a connection that fails (refused,
    reset, timed out), backing off from 0.1 s, until ``retry_for_s`` has passed since the
    call; every wait is clamped to [0.05, 5] s and to the time left. Then it raises
    :class:`WorkerUnavailable` with the worker's message or the connection error. A 400 (and
    any other answer) raises at once.

    Args:
        base_url: the worker (any worker: a request reaching one that does not own the user
            is forwarded).
        timeout_s: the socket timeout of one request.
        retry_for_s: how long to keep retrying (0: one attempt).
    """

    def __init__(
        self, base_url: str = "http://127.0.0.1:6066", *, timeout_s: float = 5.0,
        retry_for_s: float = 10.0,
    ) -> None:  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retry_for_s = retry_for_s

    def url_for(self, user_id: str | int) -> str:
        """``{base_url}/recommendations/{user_id}/``, the id percent-encoded (``/`` too)."""
        return f"{self.base_url}/recommendations/{urllib.parse.quote(str(user_id), safe='')}/"

    def recommend(self, user_id: str | int, n: int | None = None) -> Recommendation:
        """The user's list, scored now (``trigger = "request"``); ``n``: its first ``n`` items.

        Raises:
            RequestRejected: an id no event could carry (not sent), a 400, or another answer.
            WorkerUnavailable: 503 or no connection until ``retry_for_s`` passed.
            ClientError: a 200 whose body is not a recommendation.
        """
        if n is not None and n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        url = self.url_for(user_id)
        problem = id_problem(str(user_id), "user_id")
        if problem is not None:
            raise RequestRejected(url, None, problem)
        body = self._get(url)
        try:
            rec = parse_recommendation(body)
        except InvalidRecord as exc:
            raise ClientError(f"{url}: the answer is not a recommendation ({exc})") from None
        return rec if n is None else replace(rec, items=rec.items[:n])

    def _get(self, url: str) -> bytes:
        """The body of a 200, retrying 503 and failed connections until the deadline."""
        deadline = time.monotonic() + self.retry_for_s
        backoff = 0.1
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        while True:
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                    body: bytes = resp.read()
                    return body
            except urllib.error.HTTPError as exc:
                with exc:
                    message = _error_message(exc.read())
                if exc.code != 503:
                    raise RequestRejected(url, exc.code, message) from None
                wait = _retry_after(exc.headers.get("Retry-After"))
            except OSError as exc:  # refused, reset, timed out: the worker may be starting
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                message = f"cannot connect ({reason}); is a worker serving HTTP there?"
                wait, backoff = backoff, min(2 * backoff, 1.0)
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerUnavailable(url, message)
            time.sleep(min(max(wait, _MIN_WAIT_S), _MAX_WAIT_S, left))

    def follow(
        self, settings: Settings | None = None, *, from_beginning: bool = False,
        timeout_s: float | None = None, consumer: Any = None,
    ) -> Iterator[Recommendation]:  # fmt: skip
        """Recommendation records from ``settings.recommendations_topic`` as they arrive.

        A record that does not parse is logged (``topic[partition]@offset`` and why) and
        skipped. Reads without a consumer group, from where the topic ends when iteration
        starts, or from its beginning with ``from_beginning``; stops after ``timeout_s``
        (``None``: never). Treat the newest record per user as current: records may repeat.

        Args:
            settings: brokers, security and topic (default: ``Settings.from_env()``).
            consumer: a kafka-python ``KafkaConsumer`` subscribed to the topic, to read
                instead (the caller closes it).
        """
        settings = settings if settings is not None else Settings.from_env()
        from lsi.kafka.clients import client_errors
        from lsi.kafka.clients import consumer as kafka_consumer

        cons = consumer
        if cons is None:
            reset = "earliest" if from_beginning else "latest"
            cons = kafka_consumer(settings, settings.recommendations_topic, auto_offset_reset=reset)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while deadline is None or time.monotonic() < deadline:
                left_ms = 500 if deadline is None else (deadline - time.monotonic()) * 1000
                with client_errors(settings):
                    batches = cons.poll(timeout_ms=max(1, min(500, int(left_ms))))
                for records in batches.values():
                    for msg in records:
                        try:
                            yield parse_recommendation(msg.value)
                        except InvalidRecord as exc:
                            log.warning("skipped %s[%s]@%s: not a recommendation (%s)",
                                        msg.topic, msg.partition, msg.offset, exc)  # fmt: skip
        finally:
            if consumer is None:
                cons.close()
