"""Reading recommendations: :class:`RecommendationsClient` (a worker's HTTP views, the
recommendations topic) and :class:`SimilarItems` (the answer of its similar-items view)."""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from lsi.config import Settings
from lsi.errors import ClientError, InvalidRecord, RequestRejected, WorkerUnavailable
from lsi.wire.records import Recommendation, ScoredItem, parse_recommendation
from lsi.wire.validation import id_problem

__all__ = ["RecommendationsClient", "SimilarItems"]

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


@dataclass(frozen=True, slots=True)
class SimilarItems:
    """The items most similar to ``item_id``, best first (``GET /items/{item_id}/similar/``).

    Attributes:
        item_id: the item asked about.
        source: ``long_term`` (cosine of the live snapshot's item vectors) or
            ``covisitation`` (the workers' co-visitation statistics: no snapshot, or one
            that does not know the item yet).
        model_version: the snapshot's version, or ``baseline-covisit``.
        items: each similar item with its score (a cosine in [-1, 1], or the item's share of
            the co-visits, in (0, 1]).
    """

    item_id: str
    source: str
    model_version: str
    items: tuple[ScoredItem, ...]

    @classmethod
    def from_json(cls, body: bytes) -> SimilarItems:
        """The answer's JSON; ``ValueError`` naming what is wrong if it is not one."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(data, Mapping):
            raise ValueError("expected a JSON object")
        texts = [data.get(name) for name in ("item_id", "source", "model_version")]
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("item_id, source and model_version must be strings")
        items = data.get("items")
        if not isinstance(items, list):
            raise ValueError("items must be a list")
        parsed = []
        for entry in items:
            if not isinstance(entry, Mapping):
                raise ValueError("each item must be an object")
            item_id, score = entry.get("item_id"), entry.get("score")
            if not isinstance(item_id, str) or isinstance(score, bool) \
                    or not isinstance(score, (int, float)):  # fmt: skip
                raise ValueError("each item needs a string item_id and a numeric score")
            parsed.append(ScoredItem(item_id, float(score)))
        return cls(str(texts[0]), str(texts[1]), str(texts[2]), tuple(parsed))


def _quoted(value: str | int) -> str:
    """An id percent-encoded whole, ``/`` included (an id is one path segment)."""
    return urllib.parse.quote(str(value), safe="", errors="surrogatepass")


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
    """Asks a worker for a user's recommendations, or an item's similar items, over HTTP;
    follows the recommendations topic.

    ``recommend`` and ``similar`` retry a 503 (the group is forming or rebalancing, the
    owner of the user just left), waiting what ``Retry-After`` says, and a connection that
    fails (refused, reset, timed out), backing off from 0.1 s, until ``retry_for_s`` has
    passed since the call; every wait is clamped to [0.05, 5] s and to the time left. Then
    it raises :class:`WorkerUnavailable` with the worker's message or the connection error.
    A 400 (and any other answer) raises at once.

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

    def url_for(self, user_id: str | int, n: int | None = None,
                exclude: Iterable[str | int] = (), category: str | None = None) -> str:  # fmt: skip
        """``{base_url}/recommendations/{user_id}/``, the id percent-encoded (``/`` too), with
        ``?n=…&exclude=a,b&category=c`` (each id percent-encoded) when they are given."""
        url = f"{self.base_url}/recommendations/{_quoted(user_id)}/"
        params = [] if n is None else [f"n={n}"]
        ids = [str(item) for item in exclude]
        if ids:
            params.append("exclude=" + ",".join(_quoted(item) for item in ids))
        if category is not None:
            params.append(f"category={_quoted(category)}")
        return f"{url}?{'&'.join(params)}" if params else url

    def recommend(self, user_id: str | int, n: int | None = None,
                  exclude: Iterable[str | int] = (),
                  category: str | None = None) -> Recommendation:  # fmt: skip
        """The user's lists, scored now (``trigger = "request"``).

        Args:
            user_id: the user.
            n: the lists' length (the worker's ``LSI_TOP_K`` when ``None``; at most 100,
                or ``LSI_TOP_K`` if that is larger); 0 keeps no item (the record's other
                fields only).
            exclude: item ids none of the lists may hold (at most 100; an id holding a
                comma cannot be excluded: the list is comma-separated). The worker leaves
                them out before ranking, so ``items`` still has ``n`` entries while enough
                other candidates exist.
            category: a catalogue category every listed item must be in (the worker
                filters before cutting; a rare category may give fewer than ``n``).

        The worker applies ``n`` and ``exclude``; the client only makes sure of them for a worker older than
        this version, which ignores them (it drops the excluded items from ``items`` and
        keeps the first ``n``: nothing to do with a current worker).

        Raises:
            RequestRejected: an id no event could carry, among the excluded ids too, or an
                excluded id with a comma (not sent); a 400 (``n`` out of range, too many
                ids), or another answer.
            WorkerUnavailable: 503 or no connection until ``retry_for_s`` passed.
            ClientError: a 200 whose body is not a recommendation.
        """
        if n is not None and n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        ids = tuple(dict.fromkeys(str(item) for item in exclude))
        url = self.url_for(user_id, n or None, ids, category)
        problem = id_problem(str(user_id), "user_id")
        if problem is None and category is not None:
            problem = id_problem(category, "category")
        for item in ids:
            if problem is None:
                problem = id_problem(item, "an excluded item_id")
            if problem is None and "," in item:
                problem = f"an excluded item_id cannot hold a comma, got {item!r:.60}"
        if problem is not None:
            raise RequestRejected(url, None, problem)
        body = self._get(url)
        try:
            rec = parse_recommendation(body)
        except InvalidRecord as exc:
            raise ClientError(f"{url}: the answer is not a recommendation ({exc})") from None
        dropped = set(ids)
        items = tuple(i for i in rec.items if i.item_id not in dropped)[:n]
        return rec if items == rec.items else replace(rec, items=items)

    def similar(self, item_id: str | int, n: int = 10) -> SimilarItems:
        """The ``n`` items most similar to ``item_id`` (``GET /items/{item_id}/similar/``):
        by the live snapshot's item vectors, or by co-visitation when the snapshot does not
        know the item. Retries as :meth:`recommend` does.

        Raises:
            RequestRejected: an id no event could carry (not sent); 404 (no worker knows the
                item: ``.status == 404``), 400 (``n`` outside 1..100), or another answer.
            WorkerUnavailable: 503 or no connection until ``retry_for_s`` passed.
            ClientError: a 200 whose body is not a list of similar items.
        """
        url = f"{self.base_url}/items/{_quoted(item_id)}/similar/?n={n}"
        problem = id_problem(str(item_id), "item_id")
        if problem is not None:
            raise RequestRejected(url, None, problem)
        body = self._get(url)
        try:
            return SimilarItems.from_json(body)
        except ValueError as exc:
            raise ClientError(f"{url}: the answer is not a list of similar items ({exc})") from None

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
