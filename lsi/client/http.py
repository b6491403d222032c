"""Reading recommendations: :class:`RecommendationsClient` (a worker's HTTP view, the
recommendations topic)."""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Generator
from dataclasses import replace
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from lsi.config import Settings
from lsi.errors import ClientError, InvalidRecord, RequestRejected, WorkerUnavailable
from lsi.wire.records import Recommendation, parse_recommendation
from lsi.wire.validation import id_problem

__all__ = ["RecommendationsClient"]

log = logging.getLogger(__name__)

#: bounds of one wait between two HTTP attempts, in seconds (a ``Retry-After`` is clamped)
_MIN_WAIT_S, _MAX_WAIT_S = 0.05, 5.0


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
        quoted = urllib.parse.quote(str(user_id), safe="", errors="surrogatepass")
        return f"{self.base_url}/recommendations/{quoted}/"

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
    ) -> Generator[Recommendation, None, None]:  # fmt: skip
        """Recommendation records from ``settings.recommendations_topic`` as they arrive.

        A record that does not parse is logged (``topic[partition]@offset`` and why) and
        skipped. Reads without a consumer group, from where the topic ends when iteration
        starts, or from its beginning with ``from_beginning``; stops after ``timeout_s``
        (``None``: never); closing the generator closes the consumer it made. Treat the
        newest record per user as current: records may repeat.

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
