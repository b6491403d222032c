"""The ``catalogue`` agent: keeps the item catalogue (``lsi.items``) in a global table.

Every record is validated on its own (:func:`lsi.wire.catalogue.validate_item`): a bad one
is dead-lettered with its reason and the rest of its batch is applied. A valid record replaces
the item's entry in the ``catalogue`` GlobalTable (written under the record's own partition,
the item's murmur2 partition, so a restore from the changelog replays each item's records in
their order); a tombstone removes it. Every worker replicates the table, and the ``interest``
agent leaves out of every list the items the catalogue hides (``available: false``, or past
``expires_at``), from the next batch on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from lsi.config import Settings
from lsi.errors import InvalidRecord
from lsi.monitoring.metrics import WorkerMetrics
from lsi.wire.catalogue import CatalogueItem, validate_item
from lsi.wire.records import Recommendation
from streams.context import acting_for
from streams.delivery import Outgoing, deliver
from streams.dlq import DeadLetters
from streams.tables import Tables, item_key
from streams.topics import Topics

__all__ = ["NEW_ITEMS_MAX", "CatalogueAgent", "CatalogueView"]

log = logging.getLogger(__name__)

#: the most new items the exploration places rotate over (the newest)
NEW_ITEMS_MAX = 1000


class CatalogueView:
    """What the scorers need of the catalogue, in memory: the items it hides now, the
    categories of the items that have some (what :meth:`label` puts on records and the
    rules' category cap and filter read, :meth:`categories_of`) and the creation times (the
    rules' new items, :meth:`new_items`).

    The ``catalogue`` table is global: every worker holds every item, written by whichever
    worker owns the item's partition. This view follows it: this worker's own writes
    (:meth:`put`), the other workers' as their changelog records arrive
    (:meth:`on_changelog_event`, Faust's callback), and, after every rebalance, the whole
    table once, before the first batch that needs it, so that a restore
    from the changelog gives the view the live worker had. The scan runs without yielding
    to the event loop, so no changelog record can land between it and the next batch.
    """

    def __init__(self, table: Any = None) -> None:
        self.table = table
        self._unavailable: set[str] = set()
        self._expires: dict[str, float] = {}
        self._categories: dict[str, tuple[str, ...]] = {}  # items that have categories
        self._created: dict[str, float] = {}  # items that have a created_at
        self._by_age: list[tuple[float, str]] | None = []  # _created sorted (None: redo)
        self._stale = True  # rebuild before the next use

    def put(self, item: CatalogueItem | str) -> None:
        """Follow one catalogue change: a description, or the id of a removed item."""
        item_id = item if isinstance(item, str) else item.item_id
        self._unavailable.discard(item_id)
        self._expires.pop(item_id, None)
        self._categories.pop(item_id, None)
        if self._created.pop(item_id, None) is not None:
            self._by_age = None
        if isinstance(item, CatalogueItem):
            if item.created_at is not None:
                self._created[item_id] = item.created_at
                self._by_age = None
            if item.categories:
                self._categories[item_id] = item.categories
            if not item.available:
                self._unavailable.add(item_id)
            if item.expires_at is not None:
                self._expires[item_id] = item.expires_at

    async def on_changelog_event(self, event: Any) -> None:
        """Faust's callback for each changelog record another worker (or a restore) wrote."""
        key, value = event.message.key, event.message.value
        if not key or not key.startswith(b"i:"):
            return
        self.put(CatalogueItem.from_bytes(value) if value else key[2:].decode())

    def invalidate(self) -> None:
        """After a rebalance: read the whole table again before the next use."""
        self._stale = True

    def label(self, rec: Recommendation) -> Recommendation:
        """``rec`` with each listed item's catalogue categories."""
        self._refresh()
        cats = self._categories
        if not any(i.item_id in cats for i in rec.items):
            return rec
        items = tuple(replace(i, categories=cats.get(i.item_id, ())) for i in rec.items)
        return replace(rec, items=items)

    def categories_of(self, item: str) -> tuple[str, ...]:
        """The item's catalogue categories (empty if it has none, or is not catalogued)."""
        self._refresh()
        return self._categories.get(item, ())

    def has_categories(self) -> bool:
        """Whether any catalogued item has categories (else no category rule can apply)."""
        self._refresh()
        return bool(self._categories)

    def _refresh(self) -> None:
        """Read the whole table again if a rebalance made the view stale."""
        if self._stale and self.table is not None:
            self._unavailable.clear()
            self._expires.clear()
            self._categories.clear()
            self._created.clear()
            self._by_age = None
            for key, value in self.table.data.items():
                if key.startswith(b"i:") and value:
                    self.put(CatalogueItem.from_bytes(value))
            self._stale = False

    def new_items(self, now: float, days: float, hidden: frozenset[str] | None = None,
                  limit: int = NEW_ITEMS_MAX) -> tuple[str, ...]:  # fmt: skip
        """The visible items created within ``days`` before ``now`` (not in the future),
        newest first, at most ``limit`` (the rules' exploration places pick among them).
        ``hidden``: :meth:`hidden` at ``now``, when the caller has it already."""
        self._refresh()
        if self._by_age is None:
            self._by_age = sorted((t, i) for i, t in self._created.items())
        since = now - days * 86400.0
        if hidden is None:
            hidden = self.hidden(now)
        out: list[str] = []
        for t, item in reversed(self._by_age):
            if t < since or len(out) >= limit:
                break
            if t <= now and item not in hidden:
                out.append(item)
        return tuple(out)

    def hidden(self, now: float) -> frozenset[str]:
        """The items no list may offer at ``now``: unavailable, or past their expiry."""
        self._refresh()
        expired = [i for i, t in self._expires.items() if t <= now]
        return frozenset(self._unavailable.union(expired))


class CatalogueAgent:
    """Maintains the global item catalogue."""

    name = "catalogue"

    def __init__(self, settings: Settings, topics: Topics, tables: Tables, metrics: WorkerMetrics,
                 view: CatalogueView | None = None) -> None:  # fmt: skip
        self.view = view or CatalogueView(tables.catalogue)
        self.settings = settings
        self.topics = topics
        self.tables = tables
        self.metrics = metrics
        self.dead = DeadLetters(topics.dlq, self.name, metrics)

    def register(self, app: Any) -> None:
        @app.agent(self.topics.items, name="lsi.catalogue")
        async def catalogue(stream: Any) -> None:
            async for batch in stream.take_events(self.settings.batch_max,
                                                  within=self.settings.batch_within_s):  # fmt: skip
                await self.handle(batch)

    async def handle(self, batch: Sequence[Any]) -> None:
        m = self.metrics
        m.batch_size.labels(agent=self.name).observe(len(batch))
        rejected: list[Outgoing] = []
        now = time.time()
        for ev in batch:
            msg = ev.message
            try:
                item = validate_item(msg.value, msg.key, msg.partition, self.settings.partitions,
                                     self.settings.max_event_bytes)  # fmt: skip
            except InvalidRecord as exc:
                rejected.append(self.dead.refused(msg, exc, now))
                continue
            except Exception as exc:
                rejected.append(self.dead.failed(msg, "catalogue.validate", exc, now))
                continue
            with acting_for(ev):
                if isinstance(item, str):  # a tombstone: the item leaves the catalogue
                    self.tables.catalogue.pop(item_key(item), None)
                else:
                    self.tables.catalogue[item_key(item.item_id)] = item.to_bytes()
            self.view.put(item)
        if rejected:
            await deliver(rejected, self.name, m, replace=self.dead.undeliverable)
        done = time.time()
        for ev in batch:
            m.processing_latency.labels(agent=self.name).observe(
                max(0.0, done - ev.message.timestamp)
            )
