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
re-forwarded copy by its ``lsi-src`` offset and skips it. A bug on one event dead-letters that event with
reason ``internal_error`` instead of stopping the worker.
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
from streams.tables import Tables
from streams.topics import Topics

__all__ = ["SEEN_WINDOW", "Ingest", "dlq_headers"]

log = logging.getLogger(__name__)

#: event ids remembered per user at ingest
SEEN_WINDOW = 64


def dlq_headers(message: Any, reason: str, detail: str, now: float) -> list[tuple[str, bytes]]:
    """The original headers plus the reason and the source coordinates."""
    original = list(message.headers or [])
    if isinstance(message.headers, dict):
        original = list(message.headers.items())
    return [
        *[(str(k), bytes(v) if v is not None else b"") for k, v in original],
        ("lsi-dlq-reason", reason.encode()),
        ("lsi-dlq-detail", detail.encode()[:1024]),
        ("lsi-source-topic", str(message.topic).encode()),
        ("lsi-source-partition", str(message.partition).encode()),
        ("lsi-source-offset", str(message.offset).encode()),
        ("lsi-dlq-at", f"{now:.3f}".encode()),
    ]


class Ingest:
    """Validation and de-duplication at the boundary."""

    name = "ingest"

    def __init__(self, settings: Settings, topics: Topics, tables: Tables, metrics: WorkerMetrics):
        self.settings = settings
        self.topics = topics
        self.tables = tables
        self.metrics = metrics
        self.limits = settings.limits()

    def register(self, app: Any) -> None:
        @app.agent(self.topics.events, name="lsi.ingest")
        async def ingest(stream: Any) -> None:
            async for batch in stream.take_events(self.settings.batch_max,
                                                  within=self.settings.batch_within_s):  # fmt: skip
                await self.handle(batch)

    def _seen(self, user: str, cache: dict[str, list[int]]) -> list[int]:
        seen = cache.get(user)
        if seen is None:
            raw = self.tables.ingest_seen.get(user.encode())
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
                if fingerprint in seen:
                    m.events.labels(agent=self.name, type=event.type, outcome="duplicate").inc()
                    continue
                seen.append(fingerprint)
                if len(seen) > SEEN_WINDOW:
                    del seen[: len(seen) - SEEN_WINDOW]
                changed[event.user_id] = ev
                origin = [(SOURCE_HEADER, f"{msg.partition}:{msg.offset}".encode())]
                out.append(
                    (self.topics.interactions, event.user_id.encode(), event.to_json(), origin)
                )
                m.events.labels(agent=self.name, type=event.type, outcome="forwarded").inc()
            except InvalidEvent as exc:
                self._dead_letter(out, msg, exc.reason, exc.detail, now)
            except Exception as exc:  # a bug must cost one event, not the worker
                log.exception("ingest: %s[%s]@%s failed", msg.topic, msg.partition, msg.offset)
                m.errors.labels(agent=self.name, kind="internal").inc()
                self._dead_letter(out, msg, "internal_error", repr(exc), now)
        await deliver(out, self.name, m)
        for user, source in changed.items():
            with acting_for(source):
                self.tables.ingest_seen[user.encode()] = json.dumps(seen_cache[user]).encode()
        done = time.time()
        for ev in batch:
            m.processing_latency.labels(agent=self.name).observe(
                max(0.0, done - ev.message.timestamp)
            )

    def _dead_letter(
        self, out: list[Outgoing], msg: Any, reason: str, detail: str, now: float
    ) -> None:
        log.info("ingest: dead-letter %s[%s]@%s: %s: %s", msg.topic, msg.partition, msg.offset,
                 reason, detail)  # fmt: skip
        value = msg.value if msg.value is not None else b""
        out.append((self.topics.dlq, msg.key, value, dlq_headers(msg, reason, detail, now)))
        self.metrics.dlq.labels(reason=reason).inc()
        self.metrics.events.labels(agent=self.name, type="unknown", outcome="dlq").inc()
