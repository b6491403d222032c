"""The ``catalogue`` agent (streams/catalogue.py) over Faust's in-memory and RocksDB stores:
records into the global table on their item's partition, tombstones out, bad records to the
dead-letter topic without the rest of their batch."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema
import pytest

from lsi.wire.catalogue import CatalogueItem
from lsi.wire.partitioning import partition_of
from lsi.wire.records import parse_recommendation
from streams.app import Pipeline
from streams.context import acting_for
from streams.tables import item_key
from tests.unit.streams.test_agents import (
    DLQ,
    EVENTS,
    PARTITIONS,
    REC_SCHEMA,
    RECOMMENDATIONS,
    MemoryProducer,
    Source,
    close_pipeline,
    event_json,
    make_pipeline,
    run_through,
    young_objects_only,  # noqa: F401  (an autouse fixture: collect this module's objects only)
)

ITEMS = "lsi.items"
CHANGELOG = "lsi-catalogue-changelog"


@pytest.fixture(params=["memory://", "rocksdb://"], ids=["memory", "rocksdb"])
async def pipeline(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pipeline]:
    built = make_pipeline(tmp_path, request.param)
    yield built
    close_pipeline(built)


def entry(pipeline: Pipeline, item: str) -> CatalogueItem | None:
    raw = pipeline.tables.catalogue.get(item_key(item))
    return CatalogueItem.from_bytes(raw) if raw else None


def record(**fields: object) -> tuple[bytes, bytes]:
    return json.dumps(fields).encode(), str(fields["item_id"]).encode()


async def test_records_land_in_the_table_on_their_items_partition(pipeline: Pipeline) -> None:
    src = Source(pipeline.app, ITEMS)
    await pipeline.catalogue.handle([src(*record(item_id="i1", title="A", categories=["c"])),
                                     src(*record(item_id="i2", available=False))])  # fmt: skip
    assert entry(pipeline, "i1") == CatalogueItem("i1", "A", ("c",))
    assert entry(pipeline, "i2") == CatalogueItem("i2", available=False)
    producer: MemoryProducer = pipeline.app.producer
    writes = producer.written_to(CHANGELOG)
    assert sorted((w.key, w.partition) for w in writes) == sorted(
        (b"i:" + k, partition_of(k, PARTITIONS)) for k in (b"i1", b"i2")
    )
    # a newer record replaces the item's description; a tombstone removes it
    await pipeline.catalogue.handle([src(*record(item_id="i1", title="B")), src(None, b"i2")])
    assert entry(pipeline, "i1") == CatalogueItem("i1", "B")
    assert entry(pipeline, "i2") is None


async def test_a_bad_record_is_dead_lettered_and_the_rest_of_its_batch_applied(
    pipeline: Pipeline,
) -> None:
    src = Source(pipeline.app, ITEMS)
    home = partition_of(b"i4", PARTITIONS)
    await pipeline.catalogue.handle([
        src(b"{", b"i3"),
        src(*record(item_id="i4"), partition=(home + 1) % PARTITIONS),  # off its partition
        src(*record(item_id="i5", title="ok")),
    ])  # fmt: skip
    assert entry(pipeline, "i5") == CatalogueItem("i5", "ok")
    assert entry(pipeline, "i3") is None and entry(pipeline, "i4") is None
    producer: MemoryProducer = pipeline.app.producer
    dead = producer.sent_to(DLQ)
    reasons = sorted(dict(r.headers or [])["lsi-dlq-reason"].decode() for r in dead)
    assert reasons == ["key_mismatch", "malformed_json"]
    assert {r.value for r in dead} == {b"{", record(item_id="i4")[0]}  # the original bytes


async def test_the_view_follows_writes_changelog_records_and_expiry(pipeline: Pipeline) -> None:
    view = pipeline.catalogue.view
    src = Source(pipeline.app, ITEMS)
    await pipeline.catalogue.handle([src(*record(item_id="i1", available=False)),
                                     src(*record(item_id="i2", expires_at=100.0)),
                                     src(*record(item_id="i3"))])  # fmt: skip
    assert view.hidden(50.0) == {"i1"} and view.hidden(100.0) == {"i1", "i2"}

    class Changelog:  # a record another worker wrote, as Faust hands it over
        def __init__(self, key: bytes, value: bytes | None) -> None:
            self.message = type("M", (), {"key": key, "value": value})()

    await view.on_changelog_event(
        Changelog(b"i:i3", CatalogueItem("i3", available=False).to_bytes())
    )
    await view.on_changelog_event(Changelog(b"i:i1", None))  # removed from the catalogue
    assert view.hidden(50.0) == {"i3"}


async def test_after_a_rebalance_the_view_reads_the_whole_table(pipeline: Pipeline) -> None:
    """What a restore put in the table (without this worker's agent) is hidden too."""
    table = pipeline.tables.catalogue
    src = Source(pipeline.app, ITEMS)
    for item in (CatalogueItem("r1", available=False), CatalogueItem("r2", expires_at=10.0)):
        with acting_for(src(b"", item.item_id.encode())):  # the store files it by partition
            table.data[item_key(item.item_id)] = item.to_bytes()
    view = pipeline.catalogue.view
    view.invalidate()
    assert view.hidden(20.0) == {"r1", "r2"}
    with acting_for(src(b"", b"r1")):
        del table.data[item_key("r1")]
    assert view.hidden(20.0) == {"r1", "r2"}  # no re-read until the next rebalance
    view.invalidate()
    assert view.hidden(20.0) == {"r2"}


async def test_an_item_the_catalogue_hides_is_in_no_list_from_the_next_batch(
    pipeline: Pipeline,
) -> None:
    """i2 would top b's list (a went from i1 to i2); hidden, it is in no streamed list, no
    requested one and no similar-items answer, and back once available again."""
    now = round(time.time(), 3)
    producer: MemoryProducer = pipeline.app.producer
    events = Source(pipeline.app, EVENTS)
    items = Source(pipeline.app, ITEMS)
    await run_through(pipeline, producer, [
        events(event_json(now, event_id="1", user_id="a", item_id="i1"), b"a"),
        events(event_json(now + 1, event_id="2", user_id="a", item_id="i2"), b"a"),
        events(event_json(now + 1.5, event_id="3", user_id="a", item_id="i4"), b"a"),
    ])  # fmt: skip
    await pipeline.catalogue.handle([items(*record(item_id="i2", available=False))])

    start = len(producer.records)
    await run_through(pipeline, producer,
                      [events(event_json(now + 2, event_id="4", user_id="b", item_id="i1"), b"b")])  # fmt: skip
    [rec] = [r for r in producer.records[start:] if r.topic == RECOMMENDATIONS]
    body = json.loads(rec.value or b"")
    listed = {i["item_id"] for key in ("items", "short_term", "long_term") for i in body[key]}
    assert body["items"] and "i2" not in listed
    assert "i2" not in {i.item_id for i in pipeline.interest.recommend_now("b").items}
    similar = pipeline.interest.similar_now("i1", 10)
    assert similar is not None and "i2" not in {i.item_id for i in similar.items}

    await pipeline.catalogue.handle([items(*record(item_id="i2", available=True))])
    assert "i2" in {i.item_id for i in pipeline.interest.recommend_now("b").items}


async def test_records_carry_their_items_catalogue_categories(pipeline: Pipeline) -> None:
    now = round(time.time(), 3)
    producer: MemoryProducer = pipeline.app.producer
    events = Source(pipeline.app, EVENTS)
    await pipeline.catalogue.handle([Source(pipeline.app, ITEMS)(
        *record(item_id="i2", title="Red shoes", categories=["shoes", "women"]))])  # fmt: skip
    await run_through(pipeline, producer, [
        events(event_json(now, event_id="1", user_id="a", item_id="i1"), b"a"),
        events(event_json(now + 1, event_id="2", user_id="a", item_id="i2"), b"a"),
    ])  # fmt: skip
    start = len(producer.records)
    await run_through(pipeline, producer,
                      [events(event_json(now + 2, event_id="3", user_id="b", item_id="i1"), b"b")])  # fmt: skip
    [rec] = [r for r in producer.records[start:] if r.topic == RECOMMENDATIONS]
    body = json.loads(rec.value or b"")
    jsonschema.validate(body, REC_SCHEMA)
    by_id = {i["item_id"]: i for i in body["items"]}
    assert by_id["i2"]["categories"] == ["shoes", "women"]
    assert all("categories" not in i for k, i in by_id.items() if k != "i2")  # none known
    asked = {i.item_id: i.categories for i in pipeline.interest.recommend_now("b").items}
    assert asked["i2"] == ("shoes", "women")
    assert parse_recommendation(rec.value or b"").items[0].categories == ("shoes", "women")


async def test_the_view_knows_the_new_items_and_their_categories(pipeline: Pipeline) -> None:
    view = pipeline.catalogue.view
    view.hidden(0.0)  # read the (empty) table first, as the first batch does
    day = 86400.0
    now = 100 * day
    for item in (CatalogueItem("old", created_at=now - 30 * day, categories=("a",)),
                 CatalogueItem("new1", created_at=now - 2 * day),
                 CatalogueItem("new2", created_at=now - 1 * day, categories=("b", "c")),
                 CatalogueItem("gone", created_at=now - day / 2, available=False),
                 CatalogueItem("soon", created_at=now + day),
                 CatalogueItem("plain")):  # fmt: skip
        view.put(item)
    assert view.new_items(now, 7.0) == ("new2", "new1")  # newest first, visible, not future
    assert view.new_items(now, 40.0) == ("new2", "new1", "old")
    assert view.new_items(now, 40.0, limit=1) == ("new2",)
    assert view.categories_of("new2") == ("b", "c") and view.categories_of("plain") == ()
    assert view.has_categories()
    view.put("new2")  # removed from the catalogue
    view.put(CatalogueItem("new1", created_at=now - 20 * day))  # re-described, older
    assert view.new_items(now, 7.0) == () and view.categories_of("new2") == ()
