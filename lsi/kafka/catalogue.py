"""Loading an item catalogue into ``lsi.items``: from a CSV file or from a dataset's own item
descriptions (MovieLens titles and genres, Taobao's item categories).

CSV columns (a header row; only ``item_id`` is required)::

    item_id,title,categories,labels,available,created_at,expires_at
    i1,Red shoes,shoes|women,brand-x,true,1700000000,
    i2,Old hat,hats,,false,,

``categories`` and ``labels`` are ``|``-separated; ``available`` is ``true``/``false``
(``1``/``0``, ``yes``/``no``); times are seconds since the epoch. Each record is checked with
the workers' rules (:func:`lsi.wire.catalogue.validate_item`) before it is sent, and sent with
key ``item_id`` to the key's murmur2 partition.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsi.config import Settings
from lsi.errors import DatasetError, InvalidRecord
from lsi.evaluation.datasets import datasets_root
from lsi.wire.catalogue import CatalogueItem, validate_item
from lsi.wire.partitioning import partition_of

__all__ = ["CataloguePublished", "from_csv", "from_dataset", "publish_catalogue"]

_COLUMNS = ("item_id", "title", "categories", "labels", "available", "created_at", "expires_at")
_TRUE, _FALSE = ("true", "1", "yes", "y", ""), ("false", "0", "no", "n")


@dataclass(slots=True)
class CataloguePublished:
    """What :func:`publish_catalogue` did: ``sent`` records, and the ``refused`` ones as
    ``(row, item_id, reason: detail)``."""

    sent: int = 0
    refused: list[tuple[int, str, str]] = field(default_factory=list)


def _open(path: Path) -> Any:
    return gzip.open(path, "rt", encoding="utf-8", newline="") if path.suffix == ".gz" else (
        path.open(encoding="utf-8", newline=""))  # fmt: skip


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split("|") if v.strip()]


def _row(row: dict[str, str], line: int) -> dict[str, Any]:
    """One CSV row as a catalogue record (JSON-ready); a value it cannot read raises."""
    out: dict[str, Any] = {"item_id": (row.get("item_id") or "").strip()}
    if row.get("title"):
        out["title"] = row["title"]
    for name in ("categories", "labels"):
        if row.get(name):
            out[name] = _names(row[name])
    flag = (row.get("available") or "").strip().lower()
    if flag not in _TRUE + _FALSE:
        raise DatasetError(f"row {line}: available must be true or false, got {flag!r}")
    out["available"] = flag in _TRUE
    for name in ("created_at", "expires_at"):
        text = (row.get(name) or "").strip()
        if text:
            try:
                out[name] = float(text)
            except ValueError:
                raise DatasetError(f"row {line}: {name} must be seconds since the epoch, "
                                   f"got {text!r}") from None  # fmt: skip
    return out


def from_csv(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a catalogue CSV (see the module docstring)."""
    if not path.is_file():
        raise DatasetError(f"{path} does not exist")
    with _open(path) as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        if "item_id" not in header:
            raise DatasetError(f"{path}: the header must name an item_id column (and any of "
                               f"{', '.join(_COLUMNS[1:])}); it has {', '.join(header) or 'none'}")  # fmt: skip
        unknown = sorted(set(header) - set(_COLUMNS))
        if unknown:
            raise DatasetError(f"{path}: unknown column(s) {', '.join(unknown)}; a catalogue "
                               f"has {', '.join(_COLUMNS)}")  # fmt: skip
        for line, row in enumerate(reader, start=2):
            yield _row(row, line)


def from_dataset(name: str, root: Path | None = None) -> Iterator[dict[str, Any]]:
    """A dataset's own catalogue: MovieLens ``items.csv.gz`` (title, genres as categories),
    or, for a log with a ``category_id`` column (Taobao), each item's category."""
    folder = (root or datasets_root()) / name
    items = folder / "items.csv.gz"
    if items.is_file():
        with _open(items) as fh:
            for row in csv.DictReader(fh):
                rec: dict[str, Any] = {"item_id": row["item_id"], "title": row.get("title", "")}
                if row.get("genres"):
                    rec["categories"] = _names(row["genres"])
                yield rec
        return
    log = folder / "interactions.csv.gz"
    if not log.is_file():
        raise DatasetError(f"no dataset {name!r} in {folder.parent}")
    with _open(log) as fh:
        reader = csv.DictReader(fh)
        if "category_id" not in (reader.fieldnames or []):
            raise DatasetError(f"{name} has no item descriptions (items.csv.gz) and no "
                               "category_id column: give a catalogue CSV with --csv")  # fmt: skip
        seen: dict[str, str] = {}
        for row in reader:
            seen.setdefault(row["item_id"], row["category_id"])
    for item, category in seen.items():
        yield {"item_id": item, "categories": [category]}


def publish_catalogue(settings: Settings, records: Iterable[dict[str, Any]], *,
                      limit: int | None = None, producer: Any = None) -> CataloguePublished:  # fmt: skip
    """Send ``records`` to the catalogue topic, each checked with the workers' rules first;
    a record they would refuse is not sent and is listed in the result."""
    import orjson

    from lsi.kafka.clients import client_errors, ensure_topics
    from lsi.kafka.clients import producer as make_producer

    out = CataloguePublished()
    topic = settings.items_topic
    own = producer is None
    with client_errors(settings):
        if own:
            ensure_topics(settings)
            producer = make_producer(settings)
        try:
            partitions = len(producer.partitions_for(topic))
            for row, rec in enumerate(records, start=1):
                if limit is not None and out.sent + len(out.refused) >= limit:
                    break
                key = str(rec.get("item_id", "")).encode()
                value = orjson.dumps(rec)
                partition = partition_of(key, partitions) if key else 0
                try:
                    item = validate_item(value, key, partition, partitions,
                                         settings.max_event_bytes)  # fmt: skip
                except InvalidRecord as exc:
                    out.refused.append((row, key.decode(errors="replace"), str(exc)))
                    continue
                assert isinstance(item, CatalogueItem)
                producer.send(topic, key=key, value=item.to_bytes(), partition=partition)
                out.sent += 1
            producer.flush()
        finally:
            if own:
                producer.close()
    return out
