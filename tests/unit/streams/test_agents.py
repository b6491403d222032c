"""The Faust agents and views without a broker.

The app is the one ``lsi worker`` runs (:func:`streams.app.build_app`), with two stand-ins at
the Kafka boundary: :class:`MemoryProducer` replaces Faust's producer (it records every record
the app sends and every table changelog write, partitions keys with Kafka's default murmur2
partitioner, and acknowledges at once), and :class:`Source` builds the Faust events a consumer
would hand an agent. Tables run on both of Faust's stores, the in-memory one and the RocksDB
one the worker uses.

Most tests call an agent's ``handle(batch)`` directly, so that a test decides exactly what a
micro-batch holds; ``test_the_*_agent_consumes_*`` drive the registered agents through Faust's
``agent.test_context()``. The worker agent (``lsi.interest``) reads ``lsi.events`` and
``lsi.events.rekeyed`` together: an event on its user's murmur2 partition is learned in place,
any other is re-keyed and learned when it comes back (:class:`Source` of the rekey topic).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import inspect
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import ClientConnectorError
from aiohttp.test_utils import make_mocked_request
from aiokafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    UnknownTopicOrPartitionError,
)
from faust.events import Event as FaustEvent
from faust.exceptions import ProducerSendError, SameNode
from faust.types import TP, Message
from faust.types.tuples import RecordMetadata

import lsi
import streams.interest
from lsi.config import Settings
from lsi.core.state import StateConfig, UserState, event_hash
from lsi.core.stats import ItemStats, Trending
from lsi.wire.records import SOURCE_HEADER, Event, ItemDelta, RecItem, decode_bundle, encode_bundle
from lsi.wire.validation import validate_event
from streams.app import Pipeline, build_app
from streams.context import key_for_partition, partition_of
from streams.delivery import classify, deliver
from streams.dlq import MAX_VALUE_BYTES
from streams.tables import item_key, trending_key, user_key

PARTITIONS = 4
EVENTS, REKEYED = "lsi.events", "lsi.events.rekeyed"
INTERACTIONS, RECOMMENDATIONS = "lsi.interactions", "lsi.recommendations"
DLQ, ITEM_DELTAS = "lsi.events.dlq", "lsi.item-deltas"
STATE_CHANGELOG = "lsi-user_state-changelog"
STATS_CHANGELOG, TRENDING_CHANGELOG = "lsi-item_stats-changelog", "lsi-trending-changelog"
REC_SCHEMA = json.loads(
    (Path(lsi.__file__).parent / "wire" / "schemas" / "recommendation.schema.json").read_text()
)


# -- the Kafka boundary --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Record:
    """One record the app handed to the producer."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int
    headers: list[tuple[str, bytes]]


class MemoryProducer:
    """Stands in for Faust's producer: records what is sent, acknowledges at once.

    ``send`` carries the agents' output, ``send_soon`` the tables' changelog writes.
    ``fail_sends`` makes the next sends' acknowledgements fail, as a broker timeout would;
    ``raise_sends`` makes the next sends raise at once, as Faust's producer does when it
    cannot queue a record (no metadata, buffer full); a record over ``max_request_size`` is
    refused for good, as aiokafka refuses it. ``log`` keeps the order of everything:
    ``(kind, topic)`` with kind ``send``, ``failed`` or ``changelog``.
    """

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.records: list[Record] = []
        self.changelog: list[Record] = []
        self.log: list[tuple[str, str]] = []
        self.fail_sends = 0
        self.raise_sends = 0
        self.max_request_size = 1_000_000  # Faust's producer_max_request_size default

    async def maybe_start(self) -> None:
        return None

    def key_partition(self, topic: str, key: bytes) -> TP:
        return TP(topic, partition_of(key, self.partitions))

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        if self.raise_sends > 0:
            self.raise_sends -= 1
            self.log.append(("failed", topic))
            raise ProducerSendError(f"Error while sending: {KafkaTimeoutError()!r}")
        pairs_ = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
        size = len(key or b"") + len(value or b"") + sum(len(k) + len(v) for k, v in pairs_)
        if size > self.max_request_size:  # what aiokafka raises, wrapped as Faust does
            self.log.append(("refused", topic))
            too_large = MessageSizeTooLargeError(f"{size} bytes")
            raise ProducerSendError(f"Error while sending: {too_large!r}") from too_large
        fut: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        if self.fail_sends > 0:
            self.fail_sends -= 1
            self.log.append(("failed", topic))
            fut.set_exception(KafkaTimeoutError())
            return fut
        if partition is None:
            partition = partition_of(key or b"", self.partitions)
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
        self.records.append(Record(topic, key, value, partition, pairs))
        self.log.append(("send", topic))
        tp = TP(topic, partition)
        fut.set_result(RecordMetadata(topic, partition, tp, len(self.records), timestamp, 0))
        return fut

    async def send_and_wait(self, *args: Any, **kwargs: Any) -> RecordMetadata:
        return await (await self.send(*args, **kwargs))

    def send_soon(self, fut: Any) -> None:
        msg = fut.message
        topic = msg.channel.get_topic_name()
        self.changelog.append(Record(topic, msg.key, msg.value, msg.partition, []))
        self.log.append(("changelog", topic))

    def sent_to(self, topic: str) -> list[Record]:
        return [r for r in self.records if r.topic == topic]

    def written_to(self, topic: str) -> list[Record]:
        return [r for r in self.changelog if r.topic == topic]


class Source:
    """Messages of one topic as a consumer hands them to an agent: Faust events, offsets
    counting up per partition, the partition Kafka's default partitioner picks for the key."""

    def __init__(self, app: Any, topic: str, first_offset: int = 100) -> None:
        self.app = app
        self.topic = topic
        self.next_offset: dict[int, int] = {}
        self.first_offset = first_offset

    def __call__(
        self,
        value: bytes | None,
        key: bytes | None,
        *,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> FaustEvent:
        if partition is None:
            partition = partition_of(key, PARTITIONS) if key else 0
        offset = self.next_offset.get(partition, self.first_offset)
        self.next_offset[partition] = offset + 1
        message = Message(
            topic=self.topic,
            partition=partition,
            offset=offset,
            timestamp=time.time(),
            timestamp_type=0,
            headers=headers,
            key=key,
            value=value,
            checksum=None,
        )
        return FaustEvent(self.app, key, value, headers, message)

    def of(self, records: Sequence[Record]) -> list[FaustEvent]:
        """What a consumer of this topic reads after ``records`` were produced."""
        return [self(r.value, r.key, partition=r.partition, headers=r.headers) for r in records]


# -- fixtures and helpers ------------------------------------------------------------------
@pytest.fixture(autouse=True, scope="module")
def young_objects_only() -> Iterator[None]:
    """While this module runs, the objects made before it (every module the suite imported:
    torch, Faust, the models) are frozen out of the collector, so that the ``gc.collect()``
    after each test (:func:`pipeline`) walks only what the tests made here: with the whole
    suite's heap to walk it took about 0.35 s a test. Unfrozen at the end."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(params=["memory://", "rocksdb://"], ids=["memory", "rocksdb"])
async def pipeline(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pipeline]:
    built = make_pipeline(tmp_path, request.param)
    yield built
    close_pipeline(built)


def make_pipeline(tmp_path: Path, store: str) -> Pipeline:
    """The worker's app on ``store`` (``memory://`` or ``rocksdb://``), with a producer that
    records what is sent; :func:`close_pipeline` after use."""
    settings = Settings.from_env(
        {}, data_dir=tmp_path / "worker", partitions=PARTITIONS, batch_max=50, batch_within_s=0.01
    )
    built = build_app(settings)
    built.app.conf.store = store  # before any table opens its store
    built.app.producer = MemoryProducer(PARTITIONS)
    return built


def close_pipeline(built: Pipeline) -> None:
    # A running stream asks the app for its consumer, which Faust then builds with a thread
    # and an event loop of its own; never started here, nothing else would close that loop.
    consumer = built.app._consumer
    if consumer is not None:
        consumer._thread.thread_loop.close()
    # Collect this test's Faust objects now. Left to a later collection that happens to run
    # inside pytest's ast.parse of a failing test's source, their finalizers make CPython
    # 3.11.7 raise "AST constructor recursion depth mismatch" and the run ends in
    # INTERNALERROR instead of reporting the failure.
    gc.collect()


@pytest.fixture
def producer(pipeline: Pipeline) -> MemoryProducer:
    prod: MemoryProducer = pipeline.app.producer
    return prod


def metric(pipeline: Pipeline, name: str, **labels: str) -> float:
    value = pipeline.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def events_total(pipeline: Pipeline, agent: str, outcome: str, etype: str = "view") -> float:
    """``lsi_events_total{agent,type,outcome}``."""
    return metric(pipeline, "lsi_events_total", agent=agent, type=etype, outcome=outcome)


def event_json(now: float, **fields: Any) -> bytes:
    data: dict[str, Any] = {
        "event_id": "e1",
        "user_id": "u1",
        "item_id": "i1",
        "type": "view",
        "ts": round(now, 3),
    }
    data.update(fields)
    return json.dumps(data).encode()


def rekeyed(
    src: Source, event_id: str, user: str, item: str, ts: float, origin: tuple[int, int] | None
) -> FaustEvent:
    """An ``lsi.events.rekeyed`` message as the worker writes it: canonical JSON keyed by
    user (so on the user's murmur2 partition), with the ``lsi-src`` header naming the event's
    partition and offset in ``lsi.events``."""
    headers = [(SOURCE_HEADER, f"{origin[0]}:{origin[1]}".encode())] if origin else None
    value = Event(event_id, user, item, "view", ts).to_json()
    return src(value, user.encode(), headers=headers)


def home(user: str) -> int:
    """The partition of a user's state: murmur2 of the user id."""
    return partition_of(user.encode(), PARTITIONS)


def away(user: str) -> int:
    """A partition of ``lsi.events`` that is not the user's (a producer with another
    partitioner, or a key that was not the user id when it was partitioned)."""
    return (home(user) + 1) % PARTITIONS


def event_ids(records: Sequence[Record]) -> list[str]:
    """The ``event_id`` of each record (interaction log or re-keyed events), in order."""
    return [json.loads(r.value or b"")["event_id"] for r in records]


def origin_of(record: Record) -> bytes | None:
    """A record's ``lsi-src`` header value, if it has one."""
    return dict(record.headers).get(SOURCE_HEADER)


def user_state(pipeline: Pipeline, user: str) -> UserState | None:
    raw = pipeline.tables.user_state.get(user_key(user))
    return UserState.from_bytes(raw) if raw else None


def item_stats(pipeline: Pipeline, item: str) -> ItemStats | None:
    raw = pipeline.tables.item_stats.get(item_key(item))
    return ItemStats.from_bytes(raw) if raw else None


class Handled:
    """Counts the events an agent part's ``handle`` has finished (wraps it in place)."""

    def __init__(self, part: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.changed = asyncio.Event()
        original = part.handle
        if inspect.iscoroutinefunction(original):

            async def handle(batch: Sequence[Any]) -> None:
                await original(batch)
                self._done(len(batch))

        else:

            def handle(batch: Sequence[Any]) -> None:  # type: ignore[misc]
                original(batch)
                self._done(len(batch))

        monkeypatch.setattr(part, "handle", handle)

    def _done(self, n: int) -> None:
        self.count += n
        self.changed.set()

    async def reach(self, n: int, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while self.count < n:
                self.changed.clear()
                await self.changed.wait()


def coords(event: FaustEvent) -> bytes:
    """``<partition>:<offset>`` of a message: the ``lsi-src`` value that names it."""
    return b"%d:%d" % (event.message.partition, event.message.offset)


def log_is_output_then_state(producer: MemoryProducer, writes: int) -> None:
    """Every send came before the first state write, and there were ``writes`` of them."""
    first = producer.log.index(("changelog", STATE_CHANGELOG))
    assert all(kind in ("send", "failed") for kind, _ in producer.log[:first])  # output first
    assert producer.log[first:] == [("changelog", STATE_CHANGELOG)] * writes


# -- admission: lsi.events -----------------------------------------------------------------
async def test_an_event_on_its_users_partition_is_learned_at_once_and_logged_once(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    events = Source(pipeline.app, EVENTS)
    ts = int(time.time())
    raw = (
        b'{ "user_id": 7, "item_id": 9, "type": "view", "ts": %d, "event_id": "e-1",'
        b' "weight": 2, "context": {"page": "home"} }' % ts
    )
    p = home("7")
    await pipeline.interest.handle([events(raw, b"7", partition=p)])

    assert producer.sent_to(REKEYED) == [] and producer.sent_to(DLQ) == []  # no hop
    [log] = producer.sent_to(INTERACTIONS)  # the interaction log: the event, exactly once
    assert (log.key, log.partition) == (b"7", p)
    assert log.headers == [(SOURCE_HEADER, b"%d:100" % p)]  # where it came from in lsi.events
    expected = {
        "event_id": "e-1",
        "user_id": "7",
        "item_id": "9",
        "type": "view",
        "ts": float(ts),
        "weight": 2.0,
        "context": {"page": "home"},
    }
    assert log.value == json.dumps(expected, separators=(",", ":")).encode()  # canonical
    [rec] = producer.sent_to(RECOMMENDATIONS)  # learned and scored in the same batch
    body = json.loads(rec.value or b"")
    jsonschema.validate(body, REC_SCHEMA)
    assert (body["user_id"], body["history_size"], body["event_ts"]) == ("7", 1, float(ts))
    deltas = {i for r in producer.sent_to(ITEM_DELTAS) for i in decode_bundle(r.value or b"")}
    assert deltas == {"9"}

    state = user_state(pipeline, "7")
    assert state is not None and state.items == ["9"] and state.seen == [event_hash("e-1")]
    assert state.applied == {str(p): [100]}  # its own coordinates: a re-delivery is skipped
    [write] = producer.written_to(STATE_CHANGELOG)
    assert (write.key, write.partition) == (b"u:7", p)
    log_is_output_then_state(producer, 1)

    assert events_total(pipeline, "ingest", "forwarded") == 1
    assert events_total(pipeline, "interest", "accepted") == 1
    assert events_total(pipeline, "ingest", "rekeyed") == 0
    assert events_total(pipeline, "ingest", "dlq", etype="unknown") == 0
    assert metric(pipeline, "lsi_processing_latency_seconds_count", agent="interest") == 1


async def test_an_event_on_another_partition_is_rekeyed_and_learned_once_when_it_comes_back(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    now = round(time.time(), 3)
    events = Source(pipeline.app, EVENTS, first_offset=7)
    wrong = away("u1")
    original = events(event_json(now, event_id="e1"), b"u1", partition=wrong)
    await pipeline.interest.handle([original])

    [hop] = producer.records  # re-keyed, and nothing else: not learned, logged or scored
    assert (hop.topic, hop.key, hop.partition) == (REKEYED, b"u1", home("u1"))
    assert hop.headers == [(SOURCE_HEADER, b"%d:7" % wrong)]
    assert hop.value == Event("e1", "u1", "i1", "view", now).to_json()  # canonical JSON
    assert user_state(pipeline, "u1") is None and producer.changelog == []
    assert events_total(pipeline, "ingest", "rekeyed") == 1
    assert events_total(pipeline, "interest", "accepted") == 0

    back = Source(pipeline.app, REKEYED)  # the hop, read on the user's partition
    await pipeline.interest.handle(back.of([hop]))
    [log] = producer.sent_to(INTERACTIONS)
    assert (log.key, log.value, origin_of(log)) == (b"u1", hop.value, b"%d:7" % wrong)
    assert [r.key for r in producer.sent_to(RECOMMENDATIONS)] == [b"u1"]
    state = user_state(pipeline, "u1")
    assert state is not None and state.items == ["i1"]
    assert state.applied == {str(wrong): [7]}  # the coordinates in lsi.events, not the hop's
    [write] = producer.written_to(STATE_CHANGELOG)
    assert (write.key, write.partition) == (b"u:u1", home("u1"))
    assert events_total(pipeline, "interest", "accepted") == 1

    # a crash before lsi.events' offset was committed: the same record is re-keyed again
    sent = len(producer.records)
    await pipeline.interest.handle([original])
    [again] = producer.records[sent:]
    assert (again.topic, again.value, again.headers) == (REKEYED, hop.value, hop.headers)
    learned = user_state(pipeline, "u1")
    await pipeline.interest.handle(back.of([again]))  # ... and the second copy is skipped
    assert user_state(pipeline, "u1") == learned
    assert len(producer.records) == sent + 1  # no log record, no list, no delta
    assert events_total(pipeline, "interest", "redelivered", etype="unknown") == 1
    assert events_total(pipeline, "interest", "accepted") == 1
    assert events_total(pipeline, "ingest", "forwarded") == 1
    assert events_total(pipeline, "ingest", "rekeyed") == 2


def _malformed(now: float) -> tuple[bytes, bytes]:
    return b'{"event_id": "e1", "user_id": "u1", ', b"u1"


def _wrong_key(now: float) -> tuple[bytes, bytes]:
    return event_json(now), b"u2"


def _unknown_type(now: float) -> tuple[bytes, bytes]:
    return event_json(now, type="hover"), b"u1"


def _oversized(now: float) -> tuple[bytes, bytes]:
    raw = event_json(now, context={"pad": "x" * 17 * 1024})
    assert len(raw) > 17 * 1024
    return raw, b"u1"


def _future(now: float) -> tuple[bytes, bytes]:
    return event_json(now, ts=round(now + 3600, 3)), b"u1"


@pytest.mark.parametrize(
    ("build", "reason", "detail"),
    [
        pytest.param(_malformed, "malformed_json", "not valid JSON", id="malformed-json"),
        pytest.param(_wrong_key, "key_mismatch", "'u2' differs from user_id 'u1'", id="wrong-key"),
        pytest.param(_unknown_type, "unknown_type", "'hover' is not one of", id="unknown-type"),
        pytest.param(_oversized, "oversized", "the limit is 16384", id="oversized-17k"),
        pytest.param(_future, "future_timestamp", "ahead of the worker clock", id="future-ts"),
    ],
)
async def test_an_invalid_event_is_dead_lettered_with_its_original_bytes(
    pipeline: Pipeline, producer: MemoryProducer, build: Any, reason: str, detail: str
) -> None:
    now = time.time()
    raw, key = build(now)
    events = Source(pipeline.app, EVENTS, first_offset=41)
    original_headers = [("traceparent", b"00-abc-01")]
    await pipeline.interest.handle([events(raw, key, partition=3, headers=original_headers)])

    [rec] = producer.records  # neither re-keyed, nor learned, nor logged
    assert rec.topic == DLQ
    assert (rec.key, rec.value) == (key, raw)  # byte for byte what arrived
    assert rec.headers[0] == ("traceparent", b"00-abc-01")  # original headers kept, first
    headers = dict(rec.headers)
    assert headers["lsi-dlq-reason"] == reason.encode()
    assert detail in headers["lsi-dlq-detail"].decode()
    assert headers["lsi-source-topic"] == EVENTS.encode()
    assert headers["lsi-source-partition"] == b"3"
    assert headers["lsi-source-offset"] == b"41"
    assert abs(float(headers["lsi-dlq-at"]) - now) < 60
    assert metric(pipeline, "lsi_dlq_total", reason=reason) == 1
    assert events_total(pipeline, "ingest", "dlq", etype="unknown") == 1
    assert producer.changelog == []  # nothing remembered for a rejected event
    assert user_state(pipeline, "u1") is None and user_state(pipeline, "u2") is None


async def test_a_mixed_batch_isolates_bad_records_direct_events_and_rekeyed_ones(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    now = round(time.time(), 3)
    events, back = Source(pipeline.app, EVENTS), Source(pipeline.app, REKEYED)
    batch = [
        events(event_json(now, event_id="a1", user_id="a"), b"a"),  # on a's partition
        events(b"\xff\xfe", b"a"),  # not an event
        events(
            event_json(now, event_id="b1", user_id="b", item_id="i2"), b"b", partition=away("b")
        ),
        rekeyed(back, "c1", "c", "i3", now, (away("c"), 5)),  # back from its hop
        back(b"{", b"c"),  # a stray write to the rekey topic
        events(event_json(now, event_id="a1", user_id="a"), b"a"),  # same-batch duplicate
        rekeyed(back, "c1", "c", "i3", now, (away("c"), 5)),  # the hop twice (a re-forward)
        events(event_json(now + 1, event_id="a2", user_id="a", item_id="i2"), b"a"),
    ]
    await pipeline.interest.handle(batch)

    log = producer.sent_to(INTERACTIONS)  # each learned event once, in batch order
    assert event_ids(log) == ["a1", "c1", "a2"]
    assert [origin_of(r) for r in log] == [coords(batch[0]), b"%d:5" % away("c"), coords(batch[7])]
    [hop] = producer.sent_to(REKEYED)
    assert (hop.key, origin_of(hop)) == (b"b", coords(batch[2]))
    dead = [dict(r.headers) for r in producer.sent_to(DLQ)]
    assert [(h["lsi-dlq-reason"], h["lsi-source-topic"]) for h in dead] == [
        (b"malformed_json", EVENTS.encode()),
        (b"malformed_json", REKEYED.encode()),
    ]
    assert [r.value for r in producer.sent_to(DLQ)] == [b"\xff\xfe", b"{"]  # original bytes

    a, c = user_state(pipeline, "a"), user_state(pipeline, "c")
    assert a is not None and a.items == ["i1", "i2"]
    assert c is not None and c.items == ["i3"] and c.applied == {str(away("c")): [5]}
    assert user_state(pipeline, "b") is None  # learned when its hop comes back, not now
    assert sorted(r.key or b"" for r in producer.sent_to(RECOMMENDATIONS)) == [b"a", b"c"]

    assert events_total(pipeline, "interest", "accepted") == 3
    assert events_total(pipeline, "ingest", "forwarded") == 3
    assert events_total(pipeline, "ingest", "rekeyed") == 1
    assert events_total(pipeline, "ingest", "duplicate") == 1
    assert events_total(pipeline, "interest", "redelivered", etype="unknown") == 1
    assert events_total(pipeline, "ingest", "dlq", etype="unknown") == 1
    assert events_total(pipeline, "interest", "dlq", etype="unknown") == 1
    assert metric(pipeline, "lsi_errors_total", agent="interest", kind="decode") == 1
    assert metric(pipeline, "lsi_processing_latency_seconds_count", agent="interest") == len(batch)
    # one state write per changed user, after all output
    assert sorted(w.key or b"" for w in producer.written_to(STATE_CHANGELOG)) == [b"u:a", b"u:c"]
    log_is_output_then_state(producer, 2)


async def test_a_client_duplicate_is_learned_once_and_logged_once(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    now = round(time.time(), 3)
    events = Source(pipeline.app, EVENTS)
    await pipeline.interest.handle([events(event_json(now, event_id="e1"), b"u1")])
    await pipeline.interest.handle(
        [
            events(event_json(now + 1, event_id="e1", item_id="other"), b"u1"),  # same id
            events(event_json(now + 1, event_id="e2"), b"u1"),
        ]
    )
    # the same id again, put on another partition (another partitioner): it takes the hop
    # and is dropped when it comes back
    await pipeline.interest.handle(
        [events(event_json(now + 2, event_id="e1"), b"u1", partition=away("u1"))]
    )
    hops = producer.sent_to(REKEYED)
    assert event_ids(hops) == ["e1"]
    await pipeline.interest.handle(Source(pipeline.app, REKEYED).of(hops))

    assert event_ids(producer.sent_to(INTERACTIONS)) == ["e1", "e2"]
    state = user_state(pipeline, "u1")
    assert state is not None and state.items == ["i1", "i1"] and state.n_events == 2
    dup = {"agent": "ingest", "type": "view", "outcome": "duplicate"}
    assert pipeline.metrics.registry.get_sample_value("lsi_events_total", dup) == 2.0
    assert events_total(pipeline, "interest", "duplicate") == 0
    assert events_total(pipeline, "ingest", "forwarded") == 2
    assert events_total(pipeline, "interest", "accepted") == 2
    assert producer.sent_to(DLQ) == []


async def test_the_de_duplication_window_keeps_the_newest_ids(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    window = pipeline.interest.engine.state.seen_ids
    assert window == StateConfig().seen_ids  # the user state's window of event ids
    now = time.time()
    events = Source(pipeline.app, EVENTS)
    batch = [events(event_json(now, event_id=f"e{i}"), b"u1") for i in range(window + 1)]
    await pipeline.interest.handle(batch)
    state = user_state(pipeline, "u1")
    assert state is not None
    assert state.seen == [event_hash(f"e{i}") for i in range(1, window + 1)]

    await pipeline.interest.handle(
        [
            events(event_json(now, event_id="e0"), b"u1"),  # forgotten: learned again
            events(event_json(now, event_id=f"e{window}"), b"u1"),  # remembered
        ]
    )
    assert len(producer.sent_to(INTERACTIONS)) == window + 2
    assert events_total(pipeline, "ingest", "duplicate") == 1
    state = user_state(pipeline, "u1")
    assert state is not None and state.n_events == window + 2


async def test_a_bug_on_one_event_dead_letters_that_event_only(
    pipeline: Pipeline, producer: MemoryProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def flaky(raw: bytes | None, key: bytes | None, now: float, limits: Any) -> Event:
        if key == b"boom":
            raise RuntimeError("boom")
        return validate_event(raw, key, now, limits)

    monkeypatch.setattr(streams.interest, "validate_event", flaky)
    now = time.time()
    events = Source(pipeline.app, EVENTS)
    crash = event_json(now, event_id="x", user_id="boom")
    await pipeline.interest.handle(
        [events(crash, b"boom"), events(event_json(now, event_id="ok"), b"u1")]
    )

    [dead] = producer.sent_to(DLQ)
    assert dead.value == crash
    headers = dict(dead.headers)
    assert headers["lsi-dlq-reason"] == b"internal_error"
    assert headers["lsi-dlq-detail"] == b"stage ingest.validate: RuntimeError: boom"
    assert headers["lsi-source-topic"] == EVENTS.encode()
    assert event_ids(producer.sent_to(INTERACTIONS)) == ["ok"]
    assert user_state(pipeline, "boom") is None
    state = user_state(pipeline, "u1")
    assert state is not None and state.n_events == 1
    assert metric(pipeline, "lsi_errors_total", agent="ingest", kind="internal") == 1
    assert metric(pipeline, "lsi_errors_total", agent="interest", kind="internal") == 0
    assert metric(pipeline, "lsi_dlq_total", reason="internal_error") == 1


async def test_failed_sends_are_retried_before_state_is_written(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    producer.fail_sends = 1
    events = Source(pipeline.app, EVENTS)
    await pipeline.interest.handle([events(event_json(time.time()), b"u1")])

    [(_, topic)] = [entry for entry in producer.log if entry[0] == "failed"]
    assert producer.log.index(("failed", topic)) < producer.log.index(("send", topic))
    log_is_output_then_state(producer, 1)  # the retry landed before the state write
    assert len(producer.sent_to(INTERACTIONS)) == 1
    assert len(producer.sent_to(RECOMMENDATIONS)) == 1
    assert metric(pipeline, "lsi_errors_total", agent="interest", kind="send") == 1


async def test_a_send_that_raises_is_retried_too(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    producer.raise_sends = 1
    events = Source(pipeline.app, EVENTS)
    await pipeline.interest.handle([events(event_json(time.time()), b"u1")])
    assert len(producer.sent_to(INTERACTIONS)) == 1
    assert len(producer.sent_to(RECOMMENDATIONS)) == 1
    log_is_output_then_state(producer, 1)


async def test_a_retried_send_is_not_lost_downstream(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    now = round(time.time(), 3)
    events = Source(pipeline.app, EVENTS)
    wrong = away("a")
    producer.fail_sends = 1  # the first of the two hops times out, the second lands
    await pipeline.interest.handle(
        [
            events(
                event_json(now, event_id="e1", user_id="a", item_id="i1"), b"a", partition=wrong
            ),
            events(
                event_json(now + 1, event_id="e2", user_id="a", item_id="i2"), b"a", partition=wrong
            ),
        ]
    )
    hops = producer.sent_to(REKEYED)
    assert event_ids(hops) == ["e2", "e1"]  # e1 re-sent after e2 landed: a gap, not a replay
    await pipeline.interest.handle(Source(pipeline.app, REKEYED).of(hops))
    state = user_state(pipeline, "a")
    assert state is not None and sorted(state.items) == ["i1", "i2"]
    assert event_ids(producer.sent_to(INTERACTIONS)) == ["e2", "e1"]


async def test_the_interest_agent_consumes_the_events_topic(
    pipeline: Pipeline, producer: MemoryProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    handled = Handled(pipeline.interest, monkeypatch)
    now = time.time()
    async with pipeline.app.agents["lsi.interest"].test_context() as agent:
        # the wrapper names its messages after the agent's topic, which has two names here:
        # name the one these records come from, as the consumer does
        agent.original_channel = pipeline.topics.events
        await agent.put(event_json(now), key=b"u1", partition=home("u1"))
        await agent.put(b"not json", key=b"u1", headers=[("h", b"v")])
        await handled.reach(2)

    assert producer.sent_to(REKEYED) == []
    [log] = producer.sent_to(INTERACTIONS)
    assert origin_of(log) == b"%d:0" % home("u1")
    headers = dict(producer.sent_to(DLQ)[0].headers)
    assert headers["h"] == b"v"
    assert headers["lsi-source-topic"] == EVENTS.encode()  # the agent's own topic
    assert headers["lsi-source-offset"] == b"1"
    state = user_state(pipeline, "u1")
    assert state is not None and state.items == ["i1"]
    assert metric(pipeline, "lsi_batch_size_count", agent="interest") >= 1


def test_the_worker_reads_events_and_their_hops_and_nothing_reads_the_interaction_log(
    pipeline: Pipeline,
) -> None:
    topics = {name: tuple(agent.channel.topics) for name, agent in pipeline.app.agents.items()}
    assert topics["lsi.interest"] == (EVENTS, REKEYED)  # co-partitioned, one agent
    assert "lsi.ingest" not in topics
    assert all(INTERACTIONS not in names for names in topics.values())  # a log, not an input


# -- interest: the rekey topic and learning ------------------------------------------------
async def test_interest_learns_and_emits_one_valid_recommendation_per_user_per_batch(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    t0 = round(time.time(), 3)
    src = Source(pipeline.app, REKEYED)
    batch = [
        rekeyed(src, "e1", "a", "i1", t0, (0, 10)),
        rekeyed(src, "e2", "b", "i1", t0 + 1, (0, 11)),
        rekeyed(src, "e3", "a", "i2", t0 + 2, (0, 12)),
    ]
    await pipeline.interest.handle(batch)

    a, b = user_state(pipeline, "a"), user_state(pipeline, "b")
    assert a is not None and b is not None
    assert (a.items, a.n_events, a.last_ts) == (["i1", "i2"], 2, t0 + 2)
    assert (b.items, b.n_events) == (["i1"], 1)

    recs = producer.sent_to(RECOMMENDATIONS)
    assert [r.key for r in recs] == [b"a", b"b"]  # one per user, not one per event
    for rec, user, event_ts, history in zip(recs, "ab", (t0 + 2, t0 + 1), (2, 1), strict=True):
        body = json.loads(rec.value or b"")
        jsonschema.validate(body, REC_SCHEMA)
        assert rec.partition == partition_of(user.encode(), PARTITIONS)
        assert (body["user_id"], body["trigger"], body["event_ts"]) == (user, "event", event_ts)
        assert body["history_size"] == history
        assert body["model_version"] == pipeline.interest.engine.model_version

    bundles = producer.sent_to(ITEM_DELTAS)
    deltas = {item: d for r in bundles for item, d in decode_bundle(r.value or b"").items()}
    assert set(deltas) == {"i1", "i2"}
    assert deltas["i1"].pop == 2.0 and deltas["i1"].co == {"i2": 1.0}
    assert deltas["i2"].pop == 1.0 and deltas["i2"].co == {"i1": 1.0}
    # one bundle per partition; its key lands on it and so does every item it holds
    assert len({r.partition for r in bundles}) == len(bundles)
    for r in bundles:
        assert r.partition == partition_of(r.key or b"", PARTITIONS)
        assert all(
            partition_of(item.encode(), PARTITIONS) == r.partition
            for item in decode_bundle(r.value or b"")
        )

    writes = producer.written_to(STATE_CHANGELOG)
    assert sorted((w.key, w.partition) for w in writes) == sorted(
        (b"u:" + u, partition_of(u, PARTITIONS)) for u in (b"a", b"b")
    )
    log_is_output_then_state(producer, 2)  # output first

    log = producer.sent_to(INTERACTIONS)  # the interaction log, with the origins in lsi.events
    assert event_ids(log) == ["e1", "e2", "e3"]
    assert [origin_of(r) for r in log] == [b"0:10", b"0:11", b"0:12"]
    assert [r.value for r in log] == [ev.message.value for ev in batch]
    assert producer.sent_to(REKEYED) == []  # already on the right partition: no second hop
    assert events_total(pipeline, "interest", "accepted") == 3
    assert events_total(pipeline, "ingest", "forwarded") == 3
    assert metric(pipeline, "lsi_recommendations_total", trigger="event") == 2
    # no snapshot: the statistics scorer, whose gate is 0 for every list
    weights = [s for f in pipeline.metrics.registry.collect() if f.name == "lsi_long_weight"
               for s in f.samples if s.name == "lsi_long_weight_count"]  # fmt: skip
    assert sum(s.value for s in weights) == 2
    assert {s.labels["source"] for s in weights} <= {"covisit", "trending", "empty"}


async def test_interest_skips_a_redelivered_batch_exactly(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    t0 = round(time.time(), 3)
    src = Source(pipeline.app, REKEYED)
    # more events than the state's event-id window: only the source offsets can tell
    n = 40
    rows = [(f"e{i}", "a", f"i{i}", t0 + i, (2, 500 + i)) for i in range(n)]
    await pipeline.interest.handle([rekeyed(src, *row) for row in rows])
    before = user_state(pipeline, "a")
    assert before is not None and before.n_events == n
    sent = len(producer.records)

    await pipeline.interest.handle([rekeyed(src, *row) for row in rows])  # after a crash
    assert user_state(pipeline, "a") == before
    assert len(producer.records) == sent  # no list, no delta, no log record
    assert events_total(pipeline, "interest", "redelivered", etype="unknown") == n
    assert events_total(pipeline, "interest", "accepted") == n


async def test_interest_drops_a_repeated_event_id_from_a_new_offset(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    t0 = round(time.time(), 3)
    src = Source(pipeline.app, REKEYED)
    await pipeline.interest.handle([rekeyed(src, "e1", "a", "i1", t0, (0, 1))])
    await pipeline.interest.handle(
        [
            rekeyed(src, "e1", "a", "i1", t0, (0, 2)),  # a client re-send at a new offset
            rekeyed(src, "e2", "a", "i2", t0, None),  # no lsi-src header: ids only
            rekeyed(src, "e2", "a", "i2", t0, None),
        ]
    )
    state = user_state(pipeline, "a")
    assert state is not None and state.items == ["i1", "i2"]
    log = producer.sent_to(INTERACTIONS)
    assert [(event_id, origin_of(r)) for event_id, r in zip(event_ids(log), log, strict=True)] == [
        ("e1", b"0:1"),
        ("e2", None),  # no origin, no header
    ]
    assert events_total(pipeline, "ingest", "duplicate") == 2  # counted where ingest counted
    assert events_total(pipeline, "interest", "duplicate") == 0


async def test_interest_skips_an_undecodable_record(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    src = Source(pipeline.app, REKEYED)
    good = rekeyed(src, "e1", "a", "i1", round(time.time(), 3), (0, 1))
    await pipeline.interest.handle([src(b"{not json", b"a"), good])
    assert metric(pipeline, "lsi_errors_total", agent="interest", kind="decode") == 1
    assert [r.key for r in producer.sent_to(RECOMMENDATIONS)] == [b"a"]
    state = user_state(pipeline, "a")
    assert state is not None and state.n_events == 1


async def test_the_interest_agent_consumes_the_rekeyed_topic(
    pipeline: Pipeline, producer: MemoryProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    handled = Handled(pipeline.interest, monkeypatch)
    value = Event("e1", "a", "i1", "view", round(time.time(), 3)).to_json()
    async with pipeline.app.agents["lsi.interest"].test_context() as agent:
        agent.original_channel = pipeline.topics.rekeyed  # see the events-topic test
        await agent.put(
            value,
            key=b"a",
            partition=partition_of(b"a", PARTITIONS),
            headers=[(SOURCE_HEADER, b"3:17")],
        )
        await handled.reach(1)
    [rec] = producer.sent_to(RECOMMENDATIONS)
    jsonschema.validate(json.loads(rec.value or b""), REC_SCHEMA)
    state = user_state(pipeline, "a")
    assert state is not None and state.items == ["i1"] and state.applied == {"3": [17]}
    [log] = producer.sent_to(INTERACTIONS)
    assert (log.value, origin_of(log)) == (value, b"3:17")


# -- item stats ----------------------------------------------------------------------------
def delta(pop: float, ts: float, **co: float) -> ItemDelta:
    return ItemDelta(pop=pop, ts=ts, co=dict(co))


def bundle(item: str, d: ItemDelta) -> tuple[bytes, bytes]:
    """(value, key) of a one-item bundle, keyed onto the item's partition."""
    key = key_for_partition("deltas", partition_of(item.encode(), PARTITIONS), PARTITIONS)
    return encode_bundle({item: d}), key


async def test_item_stats_fold_deltas_and_keep_a_trending_list_per_partition(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    src = Source(pipeline.app, ITEM_DELTAS)
    await pipeline.item_stats.handle(
        [
            src(*bundle("i1", delta(1.0, 100.0, i2=1.0))),
            src(*bundle("i1", delta(2.0, 100.0, i2=0.5, i3=1.0))),
            src(*bundle("i2", delta(1.0, 100.0, i1=1.0))),
        ]
    )
    assert item_stats(pipeline, "i1") == ItemStats(3.0, 100.0, {"i2": 1.5, "i3": 1.0})
    assert item_stats(pipeline, "i2") == ItemStats(1.0, 100.0, {"i1": 1.0})
    # one table write per item per batch, on the item's own partition
    writes = producer.written_to(STATS_CHANGELOG)
    assert sorted((w.key, w.partition) for w in writes) == sorted(
        (b"i:" + k, partition_of(k, PARTITIONS)) for k in (b"i1", b"i2")
    )

    partitions = {partition_of(k, PARTITIONS) for k in (b"i1", b"i2")}
    lists = {}
    for p in partitions:
        lists[p] = Trending.from_bytes(pipeline.tables.trending.get(trending_key(p)))
    assert sorted(item for t in lists.values() for item, _ in t.items) == ["i1", "i2"]
    assert sorted(w.partition for w in producer.written_to(TRENDING_CHANGELOG)) == sorted(
        partitions
    )
    assert pipeline.interest.trending().items == (("i1", 3.0), ("i2", 1.0))

    await pipeline.item_stats.handle(
        [src(*bundle("i1", delta(1.0, 100.0)))]
    )  # a later batch adds up
    stats = item_stats(pipeline, "i1")
    assert stats is not None and stats.pop == 4.0
    assert pipeline.interest.trending().items[0] == ("i1", 4.0)


async def test_item_stats_skip_an_undecodable_delta(pipeline: Pipeline) -> None:
    src = Source(pipeline.app, ITEM_DELTAS)
    await pipeline.item_stats.handle([src(b"{", b"i9"), src(*bundle("i1", delta(1.0, 5.0)))])
    assert metric(pipeline, "lsi_errors_total", agent="item_stats", kind="decode") == 1
    assert item_stats(pipeline, "i9") is None
    assert item_stats(pipeline, "i1") == ItemStats(1.0, 5.0, {})


async def test_the_item_stats_agent_consumes_the_deltas_topic(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    handled = Handled(pipeline.item_stats, monkeypatch)
    async with pipeline.app.agents["lsi.item-stats"].test_context() as agent:
        value, key = bundle("i1", delta(2.0, 7.0))
        await agent.put(value, key=key, partition=partition_of(b"i1", PARTITIONS))
        await handled.reach(1)
    assert item_stats(pipeline, "i1") == ItemStats(2.0, 7.0, {})


# -- the three together, then the web view -------------------------------------------------
async def run_through(pipeline: Pipeline, producer: MemoryProducer, raw: list[FaustEvent]) -> None:
    """The worker agent on ``raw``, then on what it re-keyed (if anything), then item-stats on
    the deltas of both, each reading what the one before produced."""
    start = len(producer.records)
    await pipeline.interest.handle(raw)
    hops = [r for r in producer.records[start:] if r.topic == REKEYED]
    if hops:
        await pipeline.interest.handle(Source(pipeline.app, REKEYED).of(hops))
    deltas = [r for r in producer.records[start:] if r.topic == ITEM_DELTAS]
    await pipeline.item_stats.handle(Source(pipeline.app, ITEM_DELTAS).of(deltas))


async def test_co_visits_learned_from_one_user_reach_another(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    now = round(time.time(), 3)
    events = Source(pipeline.app, EVENTS)
    await run_through(
        pipeline,
        producer,
        [
            events(event_json(now, event_id="1", user_id="a", item_id="i1"), b"a"),
            events(event_json(now + 1, event_id="2", user_id="a", item_id="i2"), b"a"),
            # on another partition: learned after its hop through lsi.events.rekeyed
            events(
                event_json(now + 2, event_id="3", user_id="b", item_id="i1"),
                b"b",
                partition=away("b"),
            ),
        ],
    )
    assert event_ids(producer.sent_to(REKEYED)) == ["3"]
    stats = item_stats(pipeline, "i1")
    assert stats is not None and stats.pop == 2.0 and stats.neighbors == {"i2": 1.0}

    start = len(producer.records)
    await run_through(
        pipeline,
        producer,
        [events(event_json(now + 3, event_id="4", user_id="b", item_id="i3"), b"b")],
    )
    [rec] = [r for r in producer.records[start:] if r.topic == RECOMMENDATIONS]
    body = json.loads(rec.value or b"")
    jsonschema.validate(body, REC_SCHEMA)
    assert body["source"] == "covisit"
    assert body["items"][0]["item_id"] == "i2"  # b took i1, and a went from i1 to i2
    assert {i["item_id"] for i in body["items"]}.isdisjoint({"i1", "i3"})  # seen: filtered


async def get(pipeline: Pipeline, path: str) -> Any:
    """Serve one GET through the app's own routes, without starting a server."""
    web_app = pipeline.app.web.web_app
    match = await web_app.router.resolve(make_mocked_request("GET", path))
    assert match.http_exception is None, f"no route for {path}"
    return await match.handler(make_mocked_request("GET", path, match_info=dict(match)))


@pytest.fixture
def owns_every_key(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """This worker owns every partition (in a running worker the assignor decides)."""

    async def same_node(*args: Any, **kwargs: Any) -> Any:
        raise SameNode()

    monkeypatch.setattr(pipeline.app.router, "route_req", same_node)


@pytest.mark.usefixtures("owns_every_key")
async def test_the_recommendations_view_scores_a_user_on_request(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    now = round(time.time(), 3)
    events = Source(pipeline.app, EVENTS)
    await run_through(
        pipeline,
        producer,
        [
            events(event_json(now, event_id="1", user_id="a", item_id="i1"), b"a"),
            events(event_json(now + 1, event_id="2", user_id="a", item_id="i2"), b"a"),
            events(event_json(now + 2, event_id="3", user_id="b", item_id="i1"), b"b"),
        ],
    )
    sent, state = len(producer.records), user_state(pipeline, "b")

    response = await get(pipeline, "/recommendations/b/")
    assert response.status == 200
    body = json.loads(response.body)
    jsonschema.validate(body, REC_SCHEMA)
    assert (body["user_id"], body["trigger"], body["event_ts"]) == ("b", "request", None)
    assert body["history_size"] == 1 and body["source"] == "covisit"
    assert body["items"][0]["item_id"] == "i2"
    assert metric(pipeline, "lsi_recommendations_total", trigger="request") == 1
    assert len(producer.records) == sent and user_state(pipeline, "b") == state  # read-only
    # the same view without the trailing slash (it was a 404)
    bare = json.loads((await get(pipeline, "/recommendations/b")).body)
    assert (bare["user_id"], bare["items"]) == ("b", body["items"])

    stranger = json.loads((await get(pipeline, "/recommendations/nobody/")).body)
    jsonschema.validate(stranger, REC_SCHEMA)
    assert stranger["history_size"] == 0 and stranger["source"] == "trending"
    assert [i["item_id"] for i in stranger["items"]] == ["i1", "i2"]


@pytest.mark.usefixtures("owns_every_key")
async def test_an_unreadable_user_state_counts_as_absent_not_as_a_failure(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    """A damaged ``user_state`` value (or one of a format this version cannot read) must not
    fail every event of its user, nor answer HTTP 500: the user starts afresh, the error is
    counted, and the next write replaces the value."""
    events = Source(pipeline.app, EVENTS)
    first = events(event_json(time.time(), event_id="1", user_id="u1"), b"u1")
    with streams.interest.acting_for(first):
        pipeline.tables.user_state[user_key("u1")] = b"\x07 not a state"
    response = await get(pipeline, "/recommendations/u1/")
    assert response.status == 200 and json.loads(response.body)["history_size"] == 0

    await pipeline.interest.handle([first])
    state = user_state(pipeline, "u1")
    assert state is not None and state.n_events == 1
    assert producer.sent_to(DLQ) == []
    assert event_ids(producer.sent_to(INTERACTIONS)) == ["1"]
    assert metric(pipeline, "lsi_errors_total", agent="interest", kind="read_user_state") == 2


@pytest.mark.usefixtures("owns_every_key")
async def test_the_recommendations_view_rejects_an_overlong_user_id(pipeline: Pipeline) -> None:
    response = await get(pipeline, f"/recommendations/{'u' * 129}/")
    assert response.status == 400
    assert "1 to 128 characters" in json.loads(response.body)["error"]


async def test_the_metrics_and_health_views(pipeline: Pipeline) -> None:
    events = Source(pipeline.app, EVENTS)
    await pipeline.interest.handle([events(b"nope", b"u1")])
    metrics = await get(pipeline, "/metrics")
    assert metrics.status == 200 and metrics.content_type == "text/plain"
    text = metrics.body.decode()
    assert 'lsi_dlq_total{reason="malformed_json"} 1.0' in text
    assert "lsi_worker_info{" in text
    assert "process_resident_memory_bytes " in text and "process_cpu_seconds_total " in text
    health = await get(pipeline, "/healthz")
    assert json.loads(health.body) == {"status": "ok", "app": "lsi"}
    # readiness: not before the first assignment's tables are restored, then ready
    starting = await get(pipeline, "/healthz/ready/")
    body = json.loads(starting.body)
    assert starting.status == 503 and body["status"] == "starting"
    assert body["waiting_for"] == ["its first partition assignment"]
    pipeline.app.rebalancing = True
    body = json.loads((await get(pipeline, "/healthz/ready")).body)
    assert "a partition assignment (the group is rebalancing)" in body["waiting_for"]
    pipeline.app.rebalancing = False
    pipeline.app.tables.recovery.completed.set()
    ready = await get(pipeline, "/healthz/ready")
    assert ready.status == 200 and json.loads(ready.body) == {"status": "ready", "app": "lsi"}


# -- bad input and failures ----------------------------------------------------------------
async def test_a_value_near_the_broker_limit_is_dead_lettered_bounded_and_the_batch_moves_on(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    now = time.time()
    events = Source(pipeline.app, EVENTS)
    huge = b'{"event_id":"big","context":{"pad":"' + b"x" * 999_950 + b'"}}'
    assert 999_000 < len(huge) < producer.max_request_size  # what the broker would take
    async with asyncio.timeout(10):  # the whole copy was refused and retried forever before
        await pipeline.interest.handle(
            [events(huge, b"u1"), events(event_json(now, event_id="ok"), b"u1")]
        )
    [dead] = producer.sent_to(DLQ)
    headers = dict(dead.headers)
    assert headers["lsi-dlq-reason"] == b"oversized"
    assert dead.value == huge[:MAX_VALUE_BYTES]
    assert headers["lsi-original-size"] == str(len(huge)).encode()
    assert headers["lsi-original-sha256"] == hashlib.sha256(huge).hexdigest().encode()
    assert event_ids(producer.sent_to(INTERACTIONS)) == ["ok"]
    state = user_state(pipeline, "u1")
    assert state is not None and state.seen == [event_hash("ok")]


async def test_a_client_cannot_put_its_own_reason_on_a_dead_letter(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    events = Source(pipeline.app, EVENTS)
    forged = [("lsi-dlq-reason", b"all_good"), ("traceparent", b"00-abc-01")]
    await pipeline.interest.handle([events(b"{nope", b"u1", headers=forged)])
    [dead] = producer.sent_to(DLQ)
    assert [v for k, v in dead.headers if k == "lsi-dlq-reason"] == [b"malformed_json"]
    assert dead.headers[0] == ("traceparent", b"00-abc-01")
    assert dict(dead.headers)["lsi-dlq-headers-dropped"] == b"1"


async def test_a_record_the_broker_refuses_for_good_is_dead_lettered_once_then_dropped(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    producer.max_request_size = 100_000
    topic = pipeline.topics.recommendations
    records: list[Any] = [(topic, b"u1", b"x" * 200_000, None), (topic, b"u2", b"ok", None)]
    async with asyncio.timeout(10):
        await deliver(
            records, "interest", pipeline.metrics, replace=pipeline.interest.dead.undeliverable
        )
    assert [r.value for r in producer.sent_to(RECOMMENDATIONS)] == [b"ok"]
    [dead] = producer.sent_to(DLQ)
    headers = dict(dead.headers)
    assert headers["lsi-dlq-reason"] == b"undeliverable"
    assert headers["lsi-dlq-destination"] == RECOMMENDATIONS.encode()
    assert headers["lsi-original-size"] == b"200000" and len(dead.value or b"") == MAX_VALUE_BYTES
    assert metric(pipeline, "lsi_errors_total", agent="interest", kind="send_permanent") == 1

    producer.max_request_size = 1_000  # now the dead letter is refused too: dropped, counted
    async with asyncio.timeout(10):
        await deliver([(topic, b"u3", b"y" * 2_000, None)], "interest", pipeline.metrics,
                      replace=pipeline.interest.dead.undeliverable)  # fmt: skip
    assert len(producer.sent_to(DLQ)) == 1
    assert metric(pipeline, "lsi_errors_total", agent="interest", kind="undeliverable") == 1


def test_send_errors_are_classified_by_whether_they_can_pass() -> None:
    too_large = ProducerSendError("x")
    too_large.__cause__ = MessageSizeTooLargeError()
    assert classify(too_large) == "permanent"
    assert classify(KafkaTimeoutError()) == "transient"
    assert classify(UnknownTopicOrPartitionError()) == "bounded"
    assert classify(TypeError("not bytes")) == "permanent"  # a bug never passes


async def test_interest_validates_the_rekey_topic_and_dead_letters_stray_records(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    t0 = round(time.time(), 3)
    src = Source(pipeline.app, REKEYED)

    def raw(**fields: Any) -> bytes:
        data = {"event_id": "s", "user_id": "a", "item_id": "i9", "type": "view", "ts": t0}
        data.update(fields)
        return json.dumps(data).encode()

    wrong_home = next(p for p in range(PARTITIONS) if p != partition_of(b"a", PARTITIONS))
    batch = [
        rekeyed(src, "e1", "a", "i1", t0, (0, 1)),
        src(raw(type="hover"), b"a"),  # unknown type
        src(raw(user_id=7), b"a"),  # an integer id that is not the key
        src(raw(user_id="\ud800"), "\ud800".encode("utf-8", "surrogatepass")),
        src(raw(user_id="__faust\x00offset__"), b"__faust\x00offset__"),
        src(raw(ts=float("nan")), b"a"),  # json.dumps writes NaN
        src(raw(), b"a", partition=wrong_home),
        src(raw(), b"a", headers=[(SOURCE_HEADER, b"x:y")]),
        rekeyed(src, "e2", "b", "i2", t0, (1, 1)),
    ]
    await pipeline.interest.handle(batch)

    reasons = [dict(r.headers)["lsi-dlq-reason"].decode() for r in producer.sent_to(DLQ)]
    assert reasons == ["unknown_type", "key_mismatch", "invalid_value", "invalid_value",
                       "malformed_json", "key_mismatch", "invalid_value"]  # fmt: skip
    assert {dict(r.headers)["lsi-source-topic"] for r in producer.sent_to(DLQ)} == {
        REKEYED.encode()
    }
    assert event_ids(producer.sent_to(INTERACTIONS)) == ["e1", "e2"]
    assert producer.sent_to(REKEYED) == []  # a record of the rekey topic never hops again
    a, b = user_state(pipeline, "a"), user_state(pipeline, "b")
    assert a is not None and a.items == ["i1"] and b is not None and b.items == ["i2"]
    assert sorted(r.key or b"" for r in producer.sent_to(RECOMMENDATIONS)) == [b"a", b"b"]
    assert metric(pipeline, "lsi_errors_total", agent="interest", kind="decode") == 7
    assert metric(pipeline, "lsi_dlq_total", reason="key_mismatch") == 2


async def test_an_event_the_scorer_fails_on_is_dead_lettered_alone(
    pipeline: Pipeline, producer: MemoryProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    learn = UserState.learn_one

    def flaky(self: UserState, event: Event, *args: Any) -> Any:
        if event.item_id == "boom":
            self.items.append("half-applied")  # a failure half-way through an update
            raise RuntimeError("boom")
        return learn(self, event, *args)

    monkeypatch.setattr(UserState, "learn_one", flaky)
    t0 = round(time.time(), 3)
    src, events = Source(pipeline.app, REKEYED), Source(pipeline.app, EVENTS)
    direct = events(event_json(t0, event_id="d2", user_id="d", item_id="boom"), b"d")
    await pipeline.interest.handle(
        [
            rekeyed(src, "e1", "a", "i1", t0, (0, 1)),
            rekeyed(src, "e2", "a", "boom", t0 + 1, (0, 2)),
            events(event_json(t0, event_id="d1", user_id="d", item_id="i4"), b"d"),
            direct,  # learned in place, failing in place
            rekeyed(src, "e3", "a", "i2", t0 + 2, (0, 3)),
            rekeyed(src, "e4", "c", "i3", t0, (0, 4)),
        ]
    )
    dead = producer.sent_to(DLQ)
    assert [json.loads(r.value or b"")["event_id"] for r in dead] == ["e2", "d2"]
    assert dead[1].value == direct.message.value  # the original bytes of lsi.events
    assert [dict(r.headers)["lsi-source-topic"] for r in dead] == [
        REKEYED.encode(),
        EVENTS.encode(),
    ]
    for r in dead:
        headers = dict(r.headers)
        assert headers["lsi-dlq-reason"] == b"internal_error"
        assert headers["lsi-dlq-detail"] == b"stage interest.process: RuntimeError: boom"
    a, c, d = user_state(pipeline, "a"), user_state(pipeline, "c"), user_state(pipeline, "d")
    assert a is not None and a.items == ["i1", "i2"] and a.n_events == 2
    assert c is not None and c.items == ["i3"]
    assert d is not None and d.items == ["i4"]
    assert event_ids(producer.sent_to(INTERACTIONS)) == ["e1", "d1", "e3", "e4"]  # in order
    assert events_total(pipeline, "interest", "accepted") == 4
    log_is_output_then_state(producer, 3)


async def test_a_redelivered_batch_writes_the_state_again_for_the_changelog(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    t0 = round(time.time(), 3)
    src = Source(pipeline.app, REKEYED)
    rows = [("e1", "a", "i1", t0, (2, 10)), ("e2", "a", "i2", t0 + 1, (2, 11))]
    await pipeline.interest.handle([rekeyed(src, *row) for row in rows])
    live = pipeline.tables.user_state.get(user_key("a"))
    producer.changelog.clear()  # the crash: the local write stays, its changelog record is lost

    await pipeline.interest.handle([rekeyed(src, *row) for row in rows])
    [write] = producer.written_to(STATE_CHANGELOG)
    assert (write.key, write.value) == (b"u:a", live)  # the changelog has the live state again
    assert events_total(pipeline, "interest", "redelivered", etype="unknown") == 2


async def test_a_redelivered_direct_event_writes_the_state_again_and_is_not_logged_twice(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    events = Source(pipeline.app, EVENTS)
    first = events(event_json(time.time(), event_id="e1"), b"u1")  # on u1's partition
    await pipeline.interest.handle([first])
    live = pipeline.tables.user_state.get(user_key("u1"))
    sent = len(producer.records)
    producer.changelog.clear()  # the crash: the local write stays, its changelog record is lost

    await pipeline.interest.handle([first])  # delivered again: same partition, same offset
    [write] = producer.written_to(STATE_CHANGELOG)
    assert (write.key, write.value) == (b"u:u1", live)  # the changelog has the live state again
    assert write.partition == home("u1")
    assert len(producer.records) == sent  # no second log record, list or delta
    assert events_total(pipeline, "interest", "redelivered", etype="unknown") == 1
    assert events_total(pipeline, "ingest", "duplicate") == 0  # by offset, before the id


async def test_no_record_carries_nan(
    pipeline: Pipeline, producer: MemoryProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = streams.interest.process_batch

    def poisoned(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        bad = result.recommendations[0]
        item = RecItem("i1", float("nan"), 0.0, float("nan"))
        result.recommendations[0] = dataclasses.replace(bad, items=(item,))
        return result

    monkeypatch.setattr(streams.interest, "process_batch", poisoned)
    t0 = round(time.time(), 3)
    src = Source(pipeline.app, REKEYED)
    await pipeline.interest.handle(
        [rekeyed(src, "e1", "a", "i1", t0, (0, 1)), rekeyed(src, "e2", "b", "i2", t0, (0, 2))]
    )
    sent = producer.sent_to(RECOMMENDATIONS)
    assert [r.key for r in sent] == [b"b"]
    for rec in sent:
        json.loads(rec.value or b"", parse_constant=lambda c: pytest.fail(f"{c} on the wire"))
    assert metric(pipeline, "lsi_errors_total", agent="interest", kind="nonfinite") == 1
    state = user_state(pipeline, "a")
    assert state is not None and state.n_events == 1  # the event itself was applied


async def test_item_stats_dead_letter_bad_bundles_and_fold_the_rest(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    src = Source(pipeline.app, ITEM_DELTAS)
    home = partition_of(b"i1", PARTITIONS)
    key = key_for_partition("deltas", home, PARTITIONS)
    other = next(p for p in range(PARTITIONS) if p != home)
    batch = [
        src(b'{"i1":{"p":NaN,"t":5,"c":{}}}', key, partition=home),
        src(b'{"i1":{"p":"3","t":5,"c":{}}}', key, partition=home),
        src(b'{"i1":{"p":-3,"t":5,"c":{}}}', key, partition=home),
        src(b'{"i1":{"p":1,"t":5,"c":{"i2":1e400}}}', key, partition=home),
        src(b'{"i1":{"p":1,"t":5,"c":{}}}', key, partition=other),
        src(b"[1]", key, partition=home),
        src(*bundle("i1", delta(1.0, 5.0, i2=2.0))),
    ]
    await pipeline.item_stats.handle(batch)
    reasons = [dict(r.headers)["lsi-dlq-reason"].decode() for r in producer.sent_to(DLQ)]
    assert reasons == ["malformed_json", "wrong_type", "invalid_value", "invalid_value",
                       "key_mismatch", "not_an_object"]  # fmt: skip
    assert item_stats(pipeline, "i1") == ItemStats(1.0, 5.0, {"i2": 2.0})
    assert pipeline.interest.trending().items == (("i1", 1.0),)


@pytest.mark.parametrize(
    "failure",
    [
        TypeError("'NoneType' object is not subscriptable"),
        ClientConnectorError(None, OSError()),  # type: ignore[arg-type]
        RuntimeError("Session is closed"),
    ],
    ids=["no-metadata-yet", "owner-gone", "shutting-down"],
)
async def test_the_recommendations_view_answers_503_while_routing_cannot(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    async def route(*args: Any, **kwargs: Any) -> Any:
        raise failure

    monkeypatch.setattr(pipeline.app.router, "route_req", route)
    response = await get(pipeline, "/recommendations/u1/")
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert "try again" in json.loads(response.body)["error"]


@pytest.mark.usefixtures("owns_every_key")
async def test_the_recommendations_view_rejects_ids_no_event_could_carry(
    pipeline: Pipeline,
) -> None:
    response = await get(pipeline, "/recommendations/__faust%00offset__/")
    assert response.status == 400
    assert "control character" in json.loads(response.body)["error"]
