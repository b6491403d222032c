"""The ``ingest`` agent: validate, de-duplicate, re-key; dead-letter the rest.

Per micro-batch of ``lsi.events``:

1. :func:`lsi.validation.validate_event` on the original bytes and key. A rejected event goes
   to ``lsi.events.dlq`` with its original key, value and headers plus
   ``lsi-dlq-reason`` / ``lsi-dlq-detail`` / ``lsi-source-topic`` / ``lsi-source-partition`` /
   ``lsi-source-offset`` / ``lsi-dlq-at``.
2. An ``event_id`` in the user's recent window (table ``ingest_seen``) is a duplicate:
   dropped and counted.
3. The rest is forwarded to ``lsi.interactions`` as canonical JSON, key = user_id, partition
   chosen by the producer's murmur2 partitioner (co-partitioned with the user's state), with
   header ``lsi-src: <partition>:<offset>`` naming the original message.

Output is delivered before the de-duplication window is written (:mod:`streams.delivery`),
so a crash can re-forward an event but never lose one; the interest agent recognises the
re-forwarded copy by its ``lsi-src`` offset and skips it. A bug on one event dead-letters
that event with reason ``internal_error`` (the detail names the stage and the exception)
instead of stopping the worker or costing the rest of the batch. A user whose event is found
in the window again has their window written again, so the changelog catches up with a local
write that a crash kept from reaching it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from lsi.config import Settings
from lsi.errors import InvalidEvent
from lsi.metrics import WorkerMetrics
from lsi.records import SOURCE_HEADER
from lsi.state import event_hash
from lsi.validation import validate_event
from streams.context import acting_for
from streams.delivery import Outgoing, deliver
from streams.dlq import DeadLetters, dlq_headers
from streams.tables import Tables, seen_key
from streams.topics import Topics

__all__ = ["SEEN_WINDOW", "Ingest", "dlq_headers"]

log = logging.getLogger(__name__)

#: event ids remembered per user at ingest
SEEN_WINDOW = 64


class Ingest:
    """Validation and de-duplication at the boundary."""

    name = "ingest"

    def __init__(self, settings: Settings, topics: Topics, tables: Tables, metrics: WorkerMetrics):
        self.settings = settings
        self.topics = topics
        self.tables = tables
        self.metrics = metrics
        self.limits = settings.limits()
        self.dead = DeadLetters(topics.dlq, self.name, metrics)

    def register(self, app: Any) -> None:
        @app.agent(self.topics.events, name="lsi.ingest")
        async def ingest(stream: Any) -> None:
            async for batch in stream.take_events(self.settings.batch_max,
                                                  within=self.settings.batch_within_s):  # fmt: skip
                await self.handle(batch)

    def _seen(self, user: str, cache: dict[str, list[int]]) -> list[int]:
        seen = cache.get(user)
        if seen is None:
            raw = self.tables.ingest_seen.get(seen_key(user))
            seen = cache[user] = json.loads(raw) if raw else []
        return seen

    async def handle(self, batch: Sequence[Any]) -> None:
        now = time.time()
        out: list[Outgoing] = []
        seen_cache: dict[str, list[int]] = {}
        changed: dict[str, Any] = {}  # user -> an event of theirs (see streams.context)
        m = self.metrics
        m.batch_size.labels(agent=self.name).observe(len(batch))
        for ev in batch:
            msg = ev.message
            try:
                event = validate_event(msg.value, msg.key, now, self.limits)
                seen = self._seen(event.user_id, seen_cache)
                fingerprint = event_hash(event.event_id)
                # seen again: a client duplicate, or our own re-delivery after a crash that
                # may have kept the window's changelog record from the broker; either way
                # the window is written again (it is unchanged, so that costs nothing else)
                changed[event.user_id] = ev
                if fingerprint in seen:
                    m.events.labels(agent=self.name, type=event.type, outcome="duplicate").inc()
                    continue
                seen.append(fingerprint)
                if len(seen) > SEEN_WINDOW:
                    del seen[: len(seen) - SEEN_WINDOW]
                origin = [(SOURCE_HEADER, f"{msg.partition}:{msg.offset}".encode())]
                out.append(
                    (self.topics.interactions, event.user_id.encode(), event.to_json(), origin)
                )
                m.events.labels(agent=self.name, type=event.type, outcome="forwarded").inc()
            except InvalidEvent as exc:
                out.append(self.dead.record(msg, exc.reason, exc.detail, now))
            except Exception as exc:  # a bug must cost one event, not the worker
                log.exception("ingest: %s[%s]@%s failed", msg.topic, msg.partition, msg.offset)
                m.errors.labels(agent=self.name, kind="internal").inc()
                detail = f"stage ingest.validate: {type(exc).__name__}: {exc}"
                out.append(self.dead.record(msg, "internal_error", detail, now))
        await deliver(out, self.name, m, replace=self.dead.undeliverable)
        for user, source in changed.items():
            with acting_for(source):
                self.tables.ingest_seen[seen_key(user)] = json.dumps(seen_cache[user]).encode()
        done = time.time()
        for ev in batch:
            m.processing_latency.labels(agent=self.name).observe(
                max(0.0, done - ev.message.timestamp)
            )
