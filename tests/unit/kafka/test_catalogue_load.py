"""Loading a catalogue (lsi/kafka/catalogue.py): CSV and dataset sources, and publishing
with the workers' checks, to each item's murmur2 partition."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from lsi.config import Settings
from lsi.errors import DatasetError
from lsi.kafka.catalogue import from_csv, from_dataset, publish_catalogue
from lsi.wire.catalogue import CatalogueItem
from lsi.wire.partitioning import partition_of


class FakeProducer:
    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.sent: list[tuple[str, bytes, bytes, int]] = []
        self.flushed = False

    def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def send(self, topic: str, *, key: bytes, value: bytes, partition: int) -> None:
        self.sent.append((topic, key, value, partition))

    def flush(self) -> None:
        self.flushed = True


def test_a_csv_becomes_records(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("item_id,title,categories,available,expires_at\n"
                    "i1,Red shoes,shoes|women,true,\n"
                    "i2,Old hat,,no,1800000000\n")  # fmt: skip
    assert list(from_csv(path)) == [
        {
            "item_id": "i1",
            "title": "Red shoes",
            "categories": ["shoes", "women"],
            "available": True,
        },
        {"item_id": "i2", "title": "Old hat", "available": False, "expires_at": 1.8e9},
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,title\nx,y\n", "must name an item_id column"),
        ("item_id,price\nx,3\n", "unknown column"),
        ("item_id,available\nx,maybe\n", "row 2: available must be true or false"),
        ("item_id,created_at\nx,yesterday\n", "row 2: created_at must be seconds"),
    ],
)
def test_a_bad_csv_says_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.csv"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        list(from_csv(path))


def test_dataset_catalogues_movielens_and_taobao(tmp_path: Path) -> None:
    (tmp_path / "ml").mkdir()
    with gzip.open(tmp_path / "ml" / "items.csv.gz", "wt") as fh:
        fh.write("item_id,title,genres\n1,Toy Story (1995),Animation|Comedy\n")
    assert list(from_dataset("ml", tmp_path)) == [
        {"item_id": "1", "title": "Toy Story (1995)", "categories": ["Animation", "Comedy"]}
    ]
    (tmp_path / "tb").mkdir()
    with gzip.open(tmp_path / "tb" / "interactions.csv.gz", "wt") as fh:
        fh.write("user_id,item_id,category_id,behavior,timestamp\n1,7,70,pv,1\n2,7,70,pv,2\n"
                 "2,8,80,pv,3\n")  # fmt: skip
    assert list(from_dataset("tb", tmp_path)) == [
        {"item_id": "7", "categories": ["70"]},
        {"item_id": "8", "categories": ["80"]},
    ]
    with pytest.raises(DatasetError, match="no dataset"):
        list(from_dataset("nothing", tmp_path))


def test_publishing_checks_each_record_and_sends_it_to_its_items_partition() -> None:
    prod = FakeProducer(6)
    records: list[dict[str, Any]] = [
        {"item_id": "i1", "title": "A", "available": True},
        {"item_id": "", "title": "no id"},
        {"item_id": "i2", "created_at": 1_700_000_000_000},  # milliseconds
        {"item_id": "i3", "available": False},
    ]
    done = publish_catalogue(Settings(), records, producer=prod)
    assert done.sent == 2 and [(row, item) for row, item, _ in done.refused] == [(2, ""), (3, "i2")]
    assert "milliseconds" in done.refused[1][2]
    assert prod.flushed
    for topic, key, value, partition in prod.sent:
        assert topic == "lsi.items" and partition == partition_of(key, 6)
        assert CatalogueItem.from_bytes(value).item_id == key.decode()
    assert orjson.loads(prod.sent[1][2])["available"] is False


def test_limit_counts_every_record_read() -> None:
    prod = FakeProducer(2)
    done = publish_catalogue(Settings(), ({"item_id": f"i{n}"} for n in range(10)), limit=3,
                             producer=prod)  # fmt: skip
    assert done.sent == 3
