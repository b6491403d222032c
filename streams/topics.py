"""Topic declarations: every lsi topic with an explicit partition count, raw bytes on the wire.

Values are raw so that the worker sees exactly what the producer sent (and can dead-letter the
original bytes); the typed records live in :mod:`lsi.wire.records`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from lsi.config import Settings

__all__ = ["Topics"]


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one app.

    Attributes:
        events: ``lsi.events``: raw click events from clients (key = user_id).
        rekeyed: ``lsi.events.rekeyed``: internal; the validated events that arrived on a
            partition other than their user's (murmur2 of user_id), re-keyed there. With
            the documented producer setting (murmur2 keys) it carries nothing.
        source: the worker agent's input: ``lsi.events`` and ``lsi.events.rekeyed``
            together (co-partitioned: partition p of both goes to the same worker).
        interactions: ``lsi.interactions``: the interaction log: every learned event once
            (at least once after a crash), canonical JSON, key = user_id, appended by the
            worker; the refresh job trains on it. No worker consumes it.
        recommendations: ``lsi.recommendations``: recommendation records (key = user_id).
        dlq: ``lsi.events.dlq``: rejected events, original bytes, reason in headers.
        item_deltas: internal, item-keyed statistics increments for the stats agent.
        items: ``lsi.items``: the item catalogue (compacted, key = item_id).
    """

    events: Any
    rekeyed: Any
    source: Any
    interactions: Any
    recommendations: Any
    dlq: Any
    item_deltas: Any
    items: Any

    @classmethod
    def declare(cls, app: faust.App, settings: Settings) -> Topics:
        def topic(*names: str) -> Any:
            return app.topic(
                *names,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                partitions=settings.partitions,
            )

        return cls(
            events=topic(settings.events_topic),
            rekeyed=topic(settings.rekey_topic),
            source=topic(settings.events_topic, settings.rekey_topic),
            interactions=topic(settings.interactions_topic),
            recommendations=topic(settings.recommendations_topic),
            dlq=topic(settings.dlq_topic),
            item_deltas=topic(settings.item_deltas_topic),
            items=topic(settings.items_topic),
        )
