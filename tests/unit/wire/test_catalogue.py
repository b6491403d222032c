"""Catalogue records (lsi/wire/catalogue.py): what ``lsi.items`` accepts, against its JSON
Schema, and every refusal with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from lsi.errors import InvalidRecord
from lsi.wire.catalogue import CatalogueItem, validate_item
from lsi.wire.partitioning import partition_of

SCHEMA = json.loads((Path(__file__).parents[3] / "lsi/wire/schemas/item.schema.json").read_text())
P = 8


def check(value: dict | bytes | None, key: bytes = b"i1", partition: int | None = None):  # type: ignore[no-untyped-def,type-arg]
    raw = value if isinstance(value, bytes) or value is None else json.dumps(value).encode()
    part = partition_of(key, P) if partition is None else partition
    return validate_item(raw, key, part, P, max_bytes=2000)


def test_a_full_record_round_trips_and_the_schema_agrees() -> None:
    rec = {"item_id": "i1", "title": "Red shoes", "categories": ["shoes", "women", "shoes"],
           "labels": ["brand-x"], "available": False, "created_at": 1_700_000_000,
           "expires_at": 1_800_000_000.5}  # fmt: skip
    jsonschema.validate(rec, SCHEMA)
    item = check(rec)
    assert item == CatalogueItem("i1", "Red shoes", ("shoes", "women"), ("brand-x",), False,
                                 1_700_000_000.0, 1_800_000_000.5)  # fmt: skip
    assert isinstance(item, CatalogueItem) and CatalogueItem.from_bytes(item.to_bytes()) == item
    assert check({"item_id": "i1"}) == CatalogueItem("i1")  # everything else optional


def test_visibility_is_availability_and_expiry() -> None:
    assert CatalogueItem("a").visible(10.0)
    assert not CatalogueItem("a", available=False).visible(10.0)
    assert CatalogueItem("a", expires_at=11.0).visible(10.0)
    assert not CatalogueItem("a", expires_at=10.0).visible(10.0)


def test_a_tombstone_names_the_item_it_removes() -> None:
    assert check(None, b"gone") == "gone"


@pytest.mark.parametrize(
    ("reason", "value", "key"),
    [
        ("key_mismatch", {"item_id": "i2"}, b"i1"),
        ("key_mismatch", {"item_id": "i1"}, b"\xff"),
        ("malformed_json", b"{", b"i1"),
        ("malformed_json", b'{"item_id": "i1", "created_at": NaN}', b"i1"),
        ("not_an_object", b"[1]", b"i1"),
        ("missing_field", {"title": "x"}, b"i1"),
        ("unknown_field", {"item_id": "i1", "price": 3}, b"i1"),
        ("wrong_type", {"item_id": 1}, b"1"),
        ("wrong_type", {"item_id": "i1", "title": 3}, b"i1"),
        ("wrong_type", {"item_id": "i1", "categories": "shoes"}, b"i1"),
        ("wrong_type", {"item_id": "i1", "available": "yes"}, b"i1"),
        ("wrong_type", {"item_id": "i1", "created_at": "today"}, b"i1"),
        ("invalid_value", {"item_id": "i1", "created_at": 1_700_000_000_000}, b"i1"),
        ("invalid_value", {"item_id": "i1", "expires_at": -1}, b"i1"),
        ("invalid_value", {"item_id": "i1", "categories": [""]}, b"i1"),
        ("invalid_value", {"item_id": "i1", "labels": ["x"] * 33}, b"i1"),
        ("invalid_value", {"item_id": "i1", "title": "x" * 501}, b"i1"),
        ("oversized", {"item_id": "i1", "title": "x" * 400, "labels": ["y" * 100] * 20}, b"i1"),
    ],
)
def test_each_refusal_has_its_reason(reason: str, value: dict | bytes, key: bytes) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidRecord) as err:
        check(value, key)
    assert err.value.reason == reason
    if isinstance(value, dict) and reason not in ("key_mismatch", "oversized"):
        with pytest.raises(jsonschema.ValidationError):  # the schema refuses it too
            jsonschema.validate(value, SCHEMA)


def test_a_record_off_its_items_partition_is_refused() -> None:
    home = partition_of(b"i1", P)
    with pytest.raises(InvalidRecord, match="murmur2 partition") as err:
        check({"item_id": "i1"}, partition=(home + 1) % P)
    assert err.value.reason == "key_mismatch"
