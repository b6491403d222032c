"""Topic declarations: every lsi topic with an explicit partition count, raw bytes on the wire.

Values are raw so that ingest sees exactly what the producer sent (and can dead-letter the
original bytes); the typed records live in :mod:`lsi.records`.
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
        interactions: ``lsi.interactions``: validated, de-duplicated events, re-keyed so that
            a user always lands on the same partition (murmur2 of user_id).
        recommendations: ``lsi.recommendations``: recommendation records (key = user_id).
        dlq: ``lsi.events.dlq``: rejected events, original bytes, reason in headers.
        item_deltas: internal, item-keyed statistics increments for the stats agent.
    """

    events: Any
    interactions: Any
    recommendations: Any
    dlq: Any
    item_deltas: Any

    @classmethod
    def declare(cls, app: faust.App, settings: Settings) -> Topics:
        def topic(name: str) -> Any:
            return app.topic(
                name,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                partitions=settings.partitions,
            )

        return cls(
            events=topic(settings.events_topic),
            interactions=topic(settings.interactions_topic),
            recommendations=topic(settings.recommendations_topic),
            dlq=topic(settings.dlq_topic),
            item_deltas=topic(settings.item_deltas_topic),
        )
