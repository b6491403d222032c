"""Table declarations: all durable worker state, RocksDB-backed with Kafka changelogs.

Every write names the event it belongs to (:func:`streams.context.acting_for`), and a table's
changelog partition is that event's partition (Faust's default; ``use_partitioner`` off). The
agents pick that event so that a user's state, its changelog partition and the user's events
share one partition number: the worker learns an event of ``lsi.events`` in place only when
it sits on its user's murmur2 partition, re-keys any other to ``lsi.events.rekeyed`` (and
refuses a re-keyed record on a wrong partition), and ``lsi.item-deltas`` bundles hold only
items of their own partition.

Keys are namespaced (:func:`user_key`, :func:`item_key`, :func:`trending_key`): Faust keeps
its own offset under ``__faust\x00offset__`` in the same RocksDB key space, and no id, valid
or not, can reach that key. Values are the compact bytes of the pure state types
(:class:`~lsi.core.state.UserState`, :class:`~lsi.core.stats.ItemStats` …).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from lsi.config import Settings

__all__ = ["Tables", "item_key", "read", "trending_key", "user_key"]


def user_key(user_id: str) -> bytes:
    """The ``user_state`` key of a user."""
    return b"u:" + user_id.encode()


def item_key(item_id: str) -> bytes:
    """The ``item_stats`` key of an item."""
    return b"i:" + item_id.encode()


def trending_key(partition: int) -> bytes:
    """The ``trending`` key of an item-deltas partition's list."""
    return b"t:%d" % partition


def read(table: Any, key: bytes) -> bytes | None:
    """The value of ``key`` in ``table``, in one store lookup (``Table.get`` makes two: it
    asks the store whether it holds the key, then for the value, each a probe of every
    partition's RocksDB on a miss)."""
    value: bytes | None = table.data.get(key)
    return value


@dataclass(frozen=True, slots=True)
class Tables:
    """The tables of one app.

    Attributes:
        user_state: ``u:<user_id>`` → :class:`~lsi.core.state.UserState` bytes (partitioned).
        item_stats: ``i:<item_id>`` → :class:`~lsi.core.stats.ItemStats` bytes; a
            ``GlobalTable``, so every worker can score any user.
        trending: ``t:<partition>`` → :class:`~lsi.core.stats.Trending` bytes of that stats
            partition (global; merged at scoring time).
        catalogue: ``i:<item_id>`` → :class:`~lsi.wire.catalogue.CatalogueItem` bytes
            (global: every worker filters every list with it).
    """

    user_state: Any
    item_stats: Any
    trending: Any
    catalogue: Any

    @classmethod
    def declare(cls, app: faust.App, settings: Settings,
                on_catalogue_change: Any = None) -> Tables:  # fmt: skip
        """The tables of ``app``; ``on_catalogue_change``: Faust's ``on_changelog_event``
        callback of the catalogue (:class:`streams.catalogue.CatalogueView`)."""
        common: dict[str, Any] = {
            "key_type": bytes,  # bytes => the "raw" codec for store and changelog
            "value_type": bytes,
            "partitions": settings.partitions,
            "use_partitioner": False,  # the changelog partition is the current event's
        }
        # Global tables are written by whichever worker owns an item's partition and read by
        # all: every worker must follow every changelog partition.
        glob: dict[str, Any] = {**common, "synchronize_all_active_partitions": True}
        return cls(
            user_state=app.Table("user_state", help="Short-term state per user", **common),
            item_stats=app.GlobalTable("item_stats", help="Item popularity/co-visits", **glob),
            trending=app.GlobalTable("trending", help="Trending per stats partition", **glob),
            catalogue=app.GlobalTable(
                "catalogue",
                help="The item catalogue",
                on_changelog_event=on_catalogue_change,
                **glob,
            ),
        )
