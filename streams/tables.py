"""Table declarations: all durable worker state, RocksDB-backed with Kafka changelogs.

The state tables use the producer's partitioner (murmur2 of the key) for their changelogs,
the same partitioner ingest uses to re-key ``lsi.interactions``, so a user's state, its
changelog partition and its interactions always share one partition number, whatever
partitioner the client that produced ``lsi.events`` used. ``ingest_seen`` lives beside
``lsi.events`` itself and follows its partitions. Values are the compact bytes of the pure state
types (:class:`~lsi.state.UserState`, :class:`~lsi.stats.ItemStats` …).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from lsi.config import Settings

__all__ = ["Tables"]


@dataclass(frozen=True, slots=True)
class Tables:
    """The tables of one app.

    Attributes:
        user_state: user_id → :class:`~lsi.state.UserState` bytes (partitioned).
        ingest_seen: user_id → recent event-id fingerprints, ingest's de-duplication window.
        item_stats: item_id → :class:`~lsi.stats.ItemStats` bytes; a ``GlobalTable``, so
            every worker can score any user.
        trending: ``trending:<partition>`` → :class:`~lsi.stats.Trending` bytes of that stats
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
            "use_partitioner": True,
        }
        # Global tables are written by whichever worker owns an item's partition and read by
        # all: every worker must follow every changelog partition.
        glob: dict[str, Any] = {**common, "synchronize_all_active_partitions": True}
        return cls(
            user_state=app.Table("user_state", help="Short-term state per user", **common),
            # ingest runs on lsi.events, whose producers may not partition by murmur2: its
            # window follows the source partition, as Faust tables normally do
            ingest_seen=app.Table(
                "ingest_seen",
                help="Recent event ids per user",
                **{**common, "use_partitioner": False},
            ),
            item_stats=app.GlobalTable("item_stats", help="Item popularity/co-visits", **glob),
            trending=app.GlobalTable("trending", help="Trending per stats partition", **glob),
        )
