"""Table declarations: all durable worker state, RocksDB-backed with Kafka changelogs.

Every write names the event it belongs to (:func:`streams.context.acting_for`), and a table's
changelog partition is that event's partition (Faust's default; ``use_partitioner`` off). The
agents pick that event so that a user's state, its changelog partition and its interactions
share one partition number: ``lsi.interactions`` is keyed by murmur2(user_id) (ingest re-keys
it, and the interest agent refuses a record on any other partition), ``lsi.item-deltas``
bundles hold only items of their own partition. ``ingest_seen`` lives beside ``lsi.events``
itself and follows its partitions.

Keys are namespaced (:func:`user_key`, :func:`item_key`, :func:`trending_key`): Faust keeps
its own offset under ``__faust\x00offset__`` in the same RocksDB key space, and no id, valid
or not, can reach that key. Values are the compact bytes of the pure state types
(:class:`~lsi.state.UserState`, :class:`~lsi.stats.ItemStats` …).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from lsi.config import Settings

__all__ = ["Tables", "item_key", "seen_key", "trending_key", "user_key"]


def user_key(user_id: str) -> bytes:
    """The ``user_state`` key of a user."""
    return b"u:" + user_id.encode()


def seen_key(user_id: str) -> bytes:
    """The ``ingest_seen`` key of a user."""
    return b"s:" + user_id.encode()


def item_key(item_id: str) -> bytes:
    """The ``item_stats`` key of an item."""
    return b"i:" + item_id.encode()


def trending_key(partition: int) -> bytes:
    """The ``trending`` key of an item-deltas partition's list."""
    return b"t:%d" % partition


@dataclass(frozen=True, slots=True)
class Tables:
    """The tables of one app.

    Attributes:
        user_state: ``u:<user_id>`` → :class:`~lsi.state.UserState` bytes (partitioned).
        ingest_seen: ``s:<user_id>`` → recent event-id fingerprints, ingest's
            de-duplication window.
        item_stats: ``i:<item_id>`` → :class:`~lsi.stats.ItemStats` bytes; a
            ``GlobalTable``, so every worker can score any user.
        trending: ``t:<partition>`` → :class:`~lsi.stats.Trending` bytes of that stats
            partition (global; merged at scoring time).
    """

    user_state: Any
    ingest_seen: Any
    item_stats: Any
    trending: Any

    @classmethod
    def declare(cls, app: faust.App, settings: Settings) -> Tables:
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
            # ingest runs on lsi.events, whose producers may not partition by murmur2: its
            # window follows the source partition, as every table follows its event's
            ingest_seen=app.Table("ingest_seen", help="Recent event ids per user", **common),
            item_stats=app.GlobalTable("item_stats", help="Item popularity/co-visits", **glob),
            trending=app.GlobalTable("trending", help="Trending per stats partition", **glob),
        )
