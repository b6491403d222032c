"""lsi.client without a broker: a fake producer that records what it is given, a fake
consumer, and a real HTTP server on a loopback port playing the worker."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, NotEnoughReplicasError
from kafka.future import Future
from kafka.partitioner import DefaultPartitioner
from kafka.partitioner import murmur2 as kafka_murmur2

import lsi.client
from lsi.client import (
    ClientError,
    DeliveryFailed,
    EventProducer,
    RecommendationsClient,
    RequestRejected,
    WorkerUnavailable,
    parse_recommendation,
)
from lsi.config import Settings
from lsi.errors import InvalidEvent, InvalidRecord
from lsi.wire.partitioning import partition_of
from lsi.wire.records import Event, RecItem, Recommendation, ScoredItem
from lsi.wire.validation import id_problem, validate_event
from tests.http import Answer, JsonServer

TOPIC = "t.events"
SETTINGS = Settings(events_topic=TOPIC, recommendations_topic="t.recs")


# -- producer -------------------------------------------------------------------------------


@dataclass
class Sent:
    topic: str
    key: bytes
    value: bytes
    partition: int
    future: Future


class FakeProducer:
    """Records every send; ``flush`` acknowledges them, failing the event ids in ``fail``."""

    def __init__(self, partitions: int = 8, fail: tuple[str, ...] = ()) -> None:
        self.partitions = partitions
        self.fail = set(fail)
        self.sent: list[Sent] = []
        self.flushes = 0
        self.flush_times_out = False
        self.closed = False

    def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def send(self, topic: str, *, value: bytes, key: bytes, partition: int) -> Future:
        future = Future()
        self.sent.append(Sent(topic, key, value, partition, future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1
        if self.flush_times_out:
            raise KafkaTimeoutError("Timeout waiting for future")
        for sent in self.sent:
            if not sent.future.is_done:
                if json.loads(sent.value)["event_id"] in self.fail:
                    sent.future.failure(NotEnoughReplicasError("2 of 3 replicas are down"))
                else:
                    sent.future.success(("metadata", sent.partition))

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


class Cluster:
    """What kafka-python's partitioners read of the cluster metadata: one topic."""

    def __init__(self, partitions: int) -> None:
        self.ids = set(range(partitions))

    def topics(self) -> set[str]:
        return {TOPIC}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.ids

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.ids


def test_an_event_is_the_contracts_json_keyed_by_its_user_on_the_partition_kafka_picks() -> None:
    keys: list[str | int] = [
        "u1",
        "alice",
        "ünïcødé-user",
        "a/b c",
        "user-1234567890",
        "x" * 128,
        7,
        0,
    ]
    for count in (1, 3, 8, 12, 64):
        fake = FakeProducer(partitions=count)
        events = EventProducer(SETTINGS, producer=fake)
        for user in keys:
            events.send(user, "i42", "click", weight=2.0, context={"page": "home"})
        for user, sent in zip(keys, fake.sent, strict=True):
            key = str(user).encode()
            assert sent.topic == TOPIC and sent.key == key
            event = validate_event(sent.value, sent.key, time.time(), SETTINGS.limits())
            assert (event.user_id, event.item_id, event.type) == (str(user), "i42", "click")
            assert (event.weight, event.context) == (2.0, {"page": "home"})
            by_kafka = DefaultPartitioner().partition(
                TOPIC, key, key, sent.value, sent.value, Cluster(count)
            )
            assert sent.partition == partition_of(key, count) == by_kafka
            assert sent.partition == (kafka_murmur2(key) & 0x7FFFFFFF) % count


def test_defaults_a_fresh_event_id_per_send_and_now_and_keeps_a_given_id() -> None:
    fake = FakeProducer()
    events = EventProducer(SETTINGS, producer=fake)
    before = time.time()
    events.send("u1", "i1")
    events.send("u1", "i1")
    events.send("u1", "i1", event_id="order-17", ts=1_700_000_000.5)
    first, second, given = (json.loads(s.value) for s in fake.sent)
    assert first["type"] == "view" and "weight" not in first and "context" not in first
    assert len(first["event_id"]) == 32 and int(first["event_id"], 16) >= 0
    assert first["event_id"] != second["event_id"]
    assert before - 0.01 <= first["ts"] <= time.time() + 0.01
    assert (given["event_id"], given["ts"]) == ("order-17", 1_700_000_000.5)


def test_send_event_sends_the_event_as_it_is() -> None:
    fake = FakeProducer()
    event = Event("e1", "u9", "i3", "rate", 1_700_000_000.0, 4.5, {"k": [1, 2]})
    EventProducer(SETTINGS, producer=fake).send_event(event)
    (sent,) = fake.sent
    assert validate_event(sent.value, sent.key, time.time(), SETTINGS.limits()) == event


NOW = time.time()


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"type": "bogus"}, "unknown_type"),
        ({"ts": NOW * 1000}, "future_timestamp"),
        ({"ts": -1.0}, "invalid_value"),
        ({"weight": 5000.0}, "invalid_value"),
        ({"weight": float("nan")}, "malformed_json"),
        ({"user_id": ""}, "invalid_value"),
        ({"user_id": -3}, "invalid_value"),
        ({"user_id": True}, "wrong_type"),
        ({"item_id": "a\x00b"}, "invalid_value"),
        ({"item_id": "\ud800"}, "invalid_value"),
        ({"event_id": "x" * 129}, "invalid_value"),
        ({"context": {"blob": "x" * 20_000}}, "oversized"),
        ({"context": {"deep": json.loads("[" * 20 + "]" * 20)}}, "invalid_value"),
    ],
)  # fmt: skip
def test_an_event_the_workers_would_dead_letter_raises_their_reason_and_is_not_sent(
    fields: dict[str, Any], reason: str
) -> None:
    data: dict[str, Any] = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "view",
                            "ts": NOW, **fields}  # fmt: skip
    fake = FakeProducer()
    with pytest.raises(InvalidEvent) as raised:
        EventProducer(SETTINGS, producer=fake).send(**data)
    assert fake.sent == []
    assert raised.value.reason == reason
    # what a worker says of the same event, written by another encoder
    raw = json.dumps(data, separators=(",", ":")).encode()
    key = str(data["user_id"]).encode("utf-8", "surrogatepass")
    with pytest.raises(InvalidEvent) as worker:
        validate_event(raw, key, time.time(), SETTINGS.limits())
    assert worker.value.reason == reason
    if reason != "future_timestamp":  # its detail quotes the clock
        assert raised.value.detail == worker.value.detail


def test_the_limits_are_the_settings_ones() -> None:
    small = Settings(events_topic=TOPIC, max_event_bytes=300, max_future_s=10.0)
    fake = FakeProducer()
    events = EventProducer(small, producer=fake)
    with pytest.raises(InvalidEvent, match="oversized"):
        events.send("u1", "i1", context={"note": "x" * 300})
    with pytest.raises(InvalidEvent, match="future_timestamp"):
        events.send("u1", "i1", ts=time.time() + 60)
    assert fake.sent == []
    EventProducer(SETTINGS, producer=fake).send("u1", "i1", ts=time.time() + 60)
    assert len(fake.sent) == 1


def test_a_value_json_cannot_hold_is_refused() -> None:
    with pytest.raises(InvalidEvent, match="wrong_type: the event cannot be written as JSON"):
        EventProducer(SETTINGS, producer=FakeProducer()).send("u1", "i1", context={"s": {1}})


def test_send_does_not_wait_and_flush_reports_the_failed_events_once() -> None:
    fake = FakeProducer(fail=("e2", "e4"))
    events = EventProducer(SETTINGS, producer=fake)
    for n in range(1, 6):
        events.send("u1", f"i{n}", event_id=f"e{n}")
    assert fake.flushes == 0 and not any(s.future.is_done for s in fake.sent)
    with pytest.raises(DeliveryFailed, match="2 event") as failed:
        events.flush(5.0)
    assert failed.value.failed == 2 and failed.value.pending == 0
    assert [event_id for event_id, _ in failed.value.errors] == ["e2", "e4"]
    assert isinstance(failed.value.errors[0][1], NotEnoughReplicasError)
    events.flush(5.0)  # reported once
    events.send("u1", "i6", event_id="e6")
    events.flush(5.0)


def test_a_flush_that_times_out_names_the_unacknowledged_events() -> None:
    fake = FakeProducer()
    events = EventProducer(SETTINGS, producer=fake)
    events.send("u1", "i1")
    events.send("u2", "i1")
    fake.flush_times_out = True
    with pytest.raises(DeliveryFailed, match=r"2 event.*not yet acknowledged") as failed:
        events.flush(0.1)
    assert failed.value.pending == 2 and failed.value.failed == 0


def test_close_flushes_leaves_a_given_producer_open_and_refuses_later_sends() -> None:
    fake = FakeProducer()
    with EventProducer(SETTINGS, producer=fake) as events:
        events.send("u1", "i1")
    assert fake.flushes == 1 and fake.sent[0].future.succeeded() and not fake.closed
    with pytest.raises(ClientError, match="closed"):
        events.send("u1", "i2")
    events.close()  # again: nothing


def test_an_error_in_the_block_is_not_hidden_by_failed_deliveries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeProducer(fail=("e1",))
    with pytest.raises(RuntimeError, match="app bug"), EventProducer(SETTINGS, producer=fake) as events:  # fmt: skip
        events.send("u1", "i1", event_id="e1")
        raise RuntimeError("app bug")
    assert "1 event(s) were not delivered" in caplog.text


# -- parsing ----------------------------------------------------------------------------------


def sample(user_id: str = "u1", n_items: int = 5) -> Recommendation:
    return Recommendation(
        user_id=user_id,
        ts=1_700_000_000.25,
        model_version="v000003",
        long_weight=0.375,
        items=tuple(RecItem(f"i{k}", 1 / (k + 2), 0.5, 0.25) for k in range(n_items)),
        short_term=(ScoredItem("i1", 0.75),),
        long_term=(ScoredItem("i2", 0.5), ScoredItem("i3", 0.125)),
        source="fused",
        event_ts=None,
        emitted_at=1_700_000_000.5,
        trigger="request",
        history_size=12,
    )


def rounded(rec: Recommendation) -> Recommendation:
    """``rec`` as it reads back (the wire rounds scores to 6 decimals)."""
    return parse_recommendation(json.loads(rec.to_json()))


def test_a_record_reads_back_typed() -> None:
    rec = sample()
    back = parse_recommendation(rec.to_json())
    assert back == rounded(rec) and back.items[0] == RecItem("i0", 0.5, 0.5, 0.25)
    assert isinstance(back.items, tuple) and isinstance(back.long_term[1], ScoredItem)
    with_event = {**rec.to_dict(), "event_ts": 5, "trigger": "event", "extra": "ignored"}
    assert parse_recommendation(with_event).event_ts == 5.0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.pop("items"), "missing_field"),
        (lambda d: d.update(items=[{"item_id": "i1", "score": "high"}]), "wrong_type"),
        (lambda d: d.update(items=[{"item_id": "", "score": 1, "long_score": 1, "short_score": 1}]), "wrong_type"),
        (lambda d: d.update(long_term="nope"), "wrong_type"),
        (lambda d: d.update(history_size=-1), "wrong_type"),
        (lambda d: d.update(long_weight=True), "wrong_type"),
        (lambda d: d.update(user_id=7), "wrong_type"),
    ],
)  # fmt: skip
def test_a_record_that_is_not_a_recommendation_names_the_problem(
    change: Callable[[dict[str, Any]], object], reason: str
) -> None:
    data = sample().to_dict()
    change(data)
    with pytest.raises(InvalidRecord) as raised:
        parse_recommendation(json.dumps(data).encode())
    assert raised.value.reason == reason
    with pytest.raises(InvalidRecord, match="malformed_json"):
        parse_recommendation(b"{oops")
    with pytest.raises(InvalidRecord, match="not_an_object"):
        parse_recommendation(b"[]")


# -- HTTP ---------------------------------------------------------------------------------------


class FakeWorker(JsonServer):
    """A worker's HTTP view played by :class:`tests.http.JsonServer`."""

    def __enter__(self) -> FakeWorker:
        super().__enter__()
        return self


def ok(path: str) -> Answer:
    """The record of the user the path names (its id percent-decoded), as a worker answers."""
    user = urllib.parse.unquote(path.split("/")[2])
    return 200, {}, sample(user).to_dict()


def script(*answers: Answer) -> Callable[[str], Answer]:
    """These answers in turn, then ``ok`` for ever."""
    queue = list(answers)
    return lambda path: queue.pop(0) if queue else ok(path)


UNAVAILABLE: Answer = (503, {"Retry-After": "0.2"}, {"error": "the worker that owns this user "
                       "cannot be reached yet (KeyError); try again shortly"})  # fmt: skip


@pytest.fixture
def worker() -> Iterator[FakeWorker]:
    with FakeWorker(ok) as fake:
        yield fake


def test_recommend_returns_the_typed_record_and_n_keeps_the_first_items(worker: FakeWorker) -> None:
    client = RecommendationsClient(worker.url + "/")
    assert client.recommend("u1") == rounded(sample())
    assert worker.paths == ["/recommendations/u1/"]
    short, full = client.recommend("u1", n=2), rounded(sample())
    assert short.items == full.items[:2] and short.long_term == full.long_term
    assert client.recommend("u1", n=0).items == () and len(client.recommend("u1", n=99).items) == 5
    with pytest.raises(ValueError, match="n must be >= 0"):
        client.recommend("u1", n=-1)


def test_odd_ids_are_percent_encoded_whole(worker: FakeWorker) -> None:
    client = RecommendationsClient(worker.url)
    users: list[str | int] = ["a/b", "ü ser?x=1#y%z", "..", "+&;", 42]
    for user in users:
        rec = client.recommend(user)
        assert rec.user_id == str(user)
        assert worker.paths[-1] == f"/recommendations/{urllib.parse.quote(str(user), safe='')}/"
    assert worker.paths[0] == "/recommendations/a%2Fb/"


def test_an_id_no_event_could_carry_is_refused_before_it_is_sent(worker: FakeWorker) -> None:
    client = RecommendationsClient(worker.url)
    for user in ["", "x" * 129, "a\x00b", "\ud800"]:
        with pytest.raises(RequestRejected) as raised:
            client.recommend(user)
        assert raised.value.status is None and raised.value.message == id_problem(user, "user_id")
    assert worker.paths == []


def test_a_503_is_retried_after_what_retry_after_says() -> None:
    with FakeWorker(script(UNAVAILABLE, UNAVAILABLE)) as fake:
        start = time.monotonic()
        rec = RecommendationsClient(fake.url, retry_for_s=10).recommend("u1")
        elapsed = time.monotonic() - start
    assert rec.user_id == "u1" and len(fake.paths) == 3
    assert 0.39 <= elapsed < 5.0


def test_a_503_that_lasts_raises_the_workers_message_at_the_deadline() -> None:
    forever = (503, {"Retry-After": "3600"}, UNAVAILABLE[2])  # every wait is bounded
    with FakeWorker(lambda path: forever) as fake:
        start = time.monotonic()
        with pytest.raises(WorkerUnavailable) as raised:
            RecommendationsClient(fake.url, retry_for_s=0.5).recommend("u1")
        elapsed = time.monotonic() - start
    assert raised.value.message == UNAVAILABLE[2]["error"]
    assert raised.value.url == f"{fake.url}/recommendations/u1/"
    assert len(fake.paths) == 2 and 0.49 <= elapsed < 4.0


def test_no_retry_budget_means_one_attempt() -> None:
    with FakeWorker(lambda path: UNAVAILABLE) as fake, pytest.raises(WorkerUnavailable):
        RecommendationsClient(fake.url, retry_for_s=0).recommend("u1")
    assert len(fake.paths) == 1


@pytest.mark.parametrize("status", [400, 404, 500])
def test_other_answers_raise_at_once_with_the_workers_message(status: int) -> None:
    answer: Answer = (status, {}, {"error": "user_id must have 1 to 128 characters, got 0"})
    with FakeWorker(lambda path: answer) as fake, pytest.raises(RequestRejected) as raised:
        RecommendationsClient(fake.url, retry_for_s=10).recommend("u1")
    assert (raised.value.status, raised.value.message) == (status, answer[2]["error"])
    assert len(fake.paths) == 1


def test_a_200_that_is_not_a_recommendation_is_an_error() -> None:
    html: Answer = (200, {}, b"<html>proxy login</html>")
    with FakeWorker(lambda path: html) as fake, pytest.raises(ClientError) as raised:
        RecommendationsClient(fake.url).recommend("u1")
    assert "not a recommendation" in str(raised.value)
    assert type(raised.value) is ClientError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_refused_connection_is_retried_until_the_deadline_then_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(WorkerUnavailable, match="cannot connect") as raised:
        RecommendationsClient(url, retry_for_s=0.6).recommend("u1")
    assert raised.value.url == f"{url}/recommendations/u1/" and url in str(raised.value)
    assert 0.59 <= time.monotonic() - start < 4.0


def test_a_worker_that_comes_up_within_the_deadline_answers() -> None:
    port = free_port()
    started = threading.Event()
    servers: list[FakeWorker] = []

    def come_up() -> None:
        time.sleep(0.5)
        servers.append(FakeWorker(ok, port=port).__enter__())
        started.set()

    thread = threading.Thread(target=come_up, daemon=True)
    thread.start()
    try:
        rec = RecommendationsClient(f"http://127.0.0.1:{port}", retry_for_s=20).recommend("u1")
        assert rec.user_id == "u1" and started.is_set()
    finally:
        thread.join(timeout=10)
        for server in servers:
            server.__exit__()


# -- following the topic ----------------------------------------------------------------------


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes | None


class FakeConsumer:
    """``poll`` hands out one batch per call, then nothing (after waiting as Kafka would)."""

    def __init__(self, *batches: list[Message]) -> None:
        self.batches = list(batches)
        self.closed = False

    def poll(self, timeout_ms: int) -> dict[str, list[Message]]:
        if self.batches:
            return {"t.recs-0": self.batches.pop(0)}
        time.sleep(timeout_ms / 1000)
        return {}

    def close(self) -> None:
        self.closed = True


def test_follow_yields_typed_records_and_skips_what_does_not_parse_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = [sample("u1"), sample("u2", n_items=1)]
    fake = FakeConsumer(
        [Message("t.recs", 0, 0, good[0].to_json()), Message("t.recs", 0, 1, b"{oops")],
        [Message("t.recs", 0, 2, None), Message("t.recs", 0, 3, b'{"user_id": "u3"}')],
        [Message("t.recs", 0, 4, good[1].to_json())],
    )
    caplog.set_level(logging.WARNING, logger="lsi.client")
    start = time.monotonic()
    got = list(RecommendationsClient().follow(SETTINGS, consumer=fake, timeout_s=0.5))
    assert got == [rounded(r) for r in good]
    assert 0.49 <= time.monotonic() - start < 4.0  # the timeout ends it
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 3 and "t.recs[0]@1" in warned[0] and "malformed_json" in warned[0]
    assert "t.recs[0]@2" in warned[1] and "missing_field" in warned[2]
    assert not fake.closed  # the caller's consumer


def test_follow_can_be_left_early() -> None:
    fake = FakeConsumer([Message("t.recs", 1, 7, sample("u1").to_json())])
    records = RecommendationsClient().follow(SETTINGS, consumer=fake)
    assert next(records).user_id == "u1"
    records.close()


# -- the module -------------------------------------------------------------------------------


def test_the_exports_are_deliberate() -> None:
    assert set(lsi.client.__all__) == {
        "ClientError", "DeliveryFailed", "EventProducer", "RecommendationsClient",
        "RequestRejected", "SimilarItems", "WorkerUnavailable", "parse_recommendation",
    }  # fmt: skip
    for name in ("WorkerUnavailable", "RequestRejected", "DeliveryFailed"):
        assert issubclass(getattr(lsi.client, name), ClientError)


def test_importing_the_client_loads_no_kafka_client() -> None:
    code = "import sys, lsi.client; print(sorted(m for m in ('kafka', 'aiokafka', 'faust', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.stdout.strip() == "[]"
