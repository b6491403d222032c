"""The item catalogue's records: what ``lsi.items`` carries, validated like events.

A catalogue record describes one item; the topic is compacted, keyed by ``item_id``, so its
newest record per item is the item's current description, and a tombstone (a record with no
value) removes the item from the catalogue. The catalogue is optional: an item it does not
describe is recommended as before. What a record can say:

==============  ===========================================================================
``item_id``     required; the message key must equal it
``title``       text shown beside the item (at most :data:`MAX_TITLE` characters)
``categories``  up to :data:`MAX_TAGS` names; they reach the recommendation records
``labels``      up to :data:`MAX_TAGS` free names (brand, collection …)
``available``   ``false`` hides the item (out of stock, withdrawn): it is in no list
``created_at``  when the item appeared, seconds since the epoch
``expires_at``  after this (seconds since the epoch) the item is in no list
==============  ===========================================================================

Validation (:func:`validate_item`) uses the event contract's reason codes
(:mod:`lsi.wire.validation`): ``oversized``, ``malformed_json``, ``not_an_object``,
``missing_field``, ``unknown_field``, ``wrong_type``, ``invalid_value`` and
``key_mismatch`` (the key differs from ``item_id``, or the record is not on the item's
murmur2 partition, where every worker's catalogue expects it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from lsi.errors import InvalidEvent, InvalidRecord
from lsi.wire.partitioning import partition_of
from lsi.wire.validation import describe, id_problem, parse_json

__all__ = ["MAX_TAGS", "MAX_TITLE", "CatalogueItem", "validate_item"]

#: most characters of a title
MAX_TITLE = 500
#: most categories, and most labels, of one item
MAX_TAGS = 32
#: a timestamp above this is in milliseconds (year 5138 in seconds)
_MS_THRESHOLD = 1e11
_ALLOWED = frozenset(("item_id", "title", "categories", "labels", "available", "created_at",
                      "expires_at"))  # fmt: skip


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    """One item as the catalogue describes it (see the module docstring)."""

    item_id: str
    title: str = ""
    categories: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    available: bool = True
    created_at: float | None = None
    expires_at: float | None = None

    def visible(self, now: float) -> bool:
        """Whether a list may offer the item at ``now``: available and not expired."""
        return self.available and (self.expires_at is None or now < self.expires_at)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"item_id": self.item_id}
        if self.title:
            out["title"] = self.title
        if self.categories:
            out["categories"] = list(self.categories)
        if self.labels:
            out["labels"] = list(self.labels)
        out["available"] = self.available
        for name in ("created_at", "expires_at"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    def to_bytes(self) -> bytes:
        """The compact JSON the catalogue table keeps (and the topic carries)."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_bytes(cls, raw: bytes) -> CatalogueItem:
        """Read back what :meth:`to_bytes` wrote (trusted: validated on the way in)."""
        d = orjson.loads(raw)
        return cls(d["item_id"], d.get("title", ""), tuple(d.get("categories", ())),
                   tuple(d.get("labels", ())), d.get("available", True), d.get("created_at"),
                   d.get("expires_at"))  # fmt: skip


def _tags(data: dict[str, Any], name: str) -> tuple[str, ...]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRecord("wrong_type", f"{name} must be an array of strings, got "
                            f"{describe(value)}")  # fmt: skip
    if len(value) > MAX_TAGS:
        raise InvalidRecord(
            "invalid_value", f"{name} holds {len(value)} names (at most {MAX_TAGS})"
        )
    for v in value:
        problem = id_problem(v, f"each of {name}")
        if problem is not None:
            raise InvalidRecord("invalid_value", problem)
    return tuple(dict.fromkeys(value))  # each once, in order


def _time(data: dict[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRecord("wrong_type", f"{name} must be a number of seconds, got "
                            f"{describe(value)}")  # fmt: skip
    if not math.isfinite(value) or value < 0:
        raise InvalidRecord("invalid_value", f"{name} must be a time >= 0, got {value!r}")
    if value > _MS_THRESHOLD:
        raise InvalidRecord("invalid_value", f"{name} {value!r} looks like milliseconds; send "
                            "seconds since the epoch")  # fmt: skip
    return float(value)


def validate_item(raw: bytes | None, key: bytes | None, partition: int, partitions: int,
                  max_bytes: int = 16 * 1024) -> CatalogueItem | str:  # fmt: skip
    """A catalogue record as a :class:`CatalogueItem`, or, for a tombstone (no value), the id
    of the item it removes.

    Raises:
        InvalidRecord: with the reason codes of the module docstring.
    """
    try:
        key_text = key.decode("utf-8") if key is not None else None
    except UnicodeDecodeError:
        key_text = None
    if key is None or key_text is None or id_problem(key_text, "the key") is not None:
        raise InvalidRecord("key_mismatch", "the message key must be the item_id (UTF-8 text)")
    if partition_of(key, partitions) != partition:
        raise InvalidRecord("key_mismatch", f"the record for {key_text!r} is on partition "
                            f"{partition}, not on its item's murmur2 partition "
                            f"{partition_of(key, partitions)}: produce with the key's "
                            "default partitioner")  # fmt: skip
    if raw is None:
        return key_text
    if len(raw) > max_bytes:
        raise InvalidRecord("oversized", f"the record has {len(raw)} bytes (at most {max_bytes})")
    try:
        data = parse_json(raw)
    except InvalidEvent as exc:
        raise InvalidRecord(exc.reason, exc.detail) from None
    if not isinstance(data, dict):
        raise InvalidRecord("not_an_object", f"expected a JSON object, got {describe(data)}")
    unknown = sorted(set(data) - _ALLOWED)
    if unknown:
        raise InvalidRecord("unknown_field", f"unknown field(s) {', '.join(unknown)}; a "
                            f"catalogue record has {', '.join(sorted(_ALLOWED))}")  # fmt: skip
    if "item_id" not in data:
        raise InvalidRecord("missing_field", "item_id is required")
    item_id = data["item_id"]
    if not isinstance(item_id, str):
        raise InvalidRecord("wrong_type", f"item_id must be a string, got {describe(item_id)}")
    if item_id != key_text:
        raise InvalidRecord("key_mismatch", f"the key {key_text!r} is not the item_id {item_id!r}")
    title = data.get("title", "")
    if not isinstance(title, str):
        raise InvalidRecord("wrong_type", f"title must be a string, got {describe(title)}")
    if len(title) > MAX_TITLE:
        raise InvalidRecord("invalid_value", f"title has {len(title)} characters (at most "
                            f"{MAX_TITLE})")  # fmt: skip
    available = data.get("available", True)
    if not isinstance(available, bool):
        raise InvalidRecord("wrong_type", f"available must be true or false, got "
                            f"{describe(available)}")  # fmt: skip
    return CatalogueItem(item_id, title, _tags(data, "categories"), _tags(data, "labels"),
                         available, _time(data, "created_at"), _time(data, "expires_at"))  # fmt: skip
