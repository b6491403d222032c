"""Dead-letter records: what the agents write to ``lsi.events.dlq``, bounded in size.

Any agent that refuses a record (an invalid event on ``lsi.events``, a stray write to
``lsi.interactions`` or ``lsi.item-deltas``, an event a bug could not process, an output the
broker refused for good) writes one dead-letter record: the original key, value and headers
plus the reason and where the record was.

A dead-letter record must itself be deliverable, whatever arrived: a value up to the
broker's message limit (1 MiB) copied as it is would be refused by the producer, and the
batch behind it would never move on. So the copy is bounded: a value over
:data:`MAX_VALUE_BYTES` keeps its first :data:`MAX_VALUE_BYTES` bytes, with
``lsi-original-size`` and ``lsi-original-sha256`` naming the whole; the key and the
client's headers are bounded likewise. Client headers in lsi's reserved ``lsi-`` namespace are
not copied, so a client cannot put its own ``lsi-dlq-reason`` in front of the worker's.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from lsi.errors import InvalidRecord
from lsi.monitoring.metrics import WorkerMetrics
from streams.delivery import Outgoing

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_KEY_BYTES",
    "MAX_VALUE_BYTES",
    "RESERVED_PREFIX",
    "DeadLetters",
    "dlq_headers",
]

log = logging.getLogger(__name__)

#: largest value copied whole into a dead-letter record (4 × the default event limit)
MAX_VALUE_BYTES = 64 * 1024
#: largest key copied whole
MAX_KEY_BYTES = 1024
#: most bytes of the client's own headers copied (names and values together)
MAX_HEADER_BYTES = 16 * 1024
#: header names lsi writes; a client's headers with this prefix are not copied
RESERVED_PREFIX = "lsi-"


def _text(value: str, limit: int) -> bytes:
    """UTF-8 bytes of ``value`` (lone surrogates escaped), at most ``limit`` bytes."""
    return value.encode("utf-8", "backslashreplace")[:limit]


def _original_headers(message: Any, out: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    raw = message.headers or []
    pairs = list(raw.items()) if isinstance(raw, dict) else list(raw)
    kept: list[tuple[str, bytes]] = []
    used = dropped = 0
    for name, value in pairs:
        name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        data = bytes(value) if value is not None else b""
        if name.startswith(RESERVED_PREFIX):
            dropped += 1
            continue
        used += len(name) + len(data)
        if used > MAX_HEADER_BYTES:
            dropped += 1
            continue
        kept.append((name, data))
    if dropped:
        out.append(("lsi-dlq-headers-dropped", str(dropped).encode()))
    return kept


def dlq_headers(message: Any, reason: str, detail: str, now: float) -> list[tuple[str, bytes]]:
    """The client's headers (bounded, reserved names dropped), then the reason and the source
    coordinates."""
    notes: list[tuple[str, bytes]] = []
    original = _original_headers(message, notes)
    return [
        *original,
        ("lsi-dlq-reason", reason.encode()),
        ("lsi-dlq-detail", _text(detail, 1024)),
        ("lsi-source-topic", _text(str(message.topic), 256)),
        ("lsi-source-partition", str(message.partition).encode()),
        ("lsi-source-offset", str(message.offset).encode()),
        ("lsi-dlq-at", f"{now:.3f}".encode()),
        *notes,
    ]


def _bounded(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
) -> tuple[bytes | None, bytes]:
    """Cut ``key`` and ``value`` to the copy limits, noting the originals in ``headers``."""
    data = value if value is not None else b""
    if len(data) > MAX_VALUE_BYTES:
        headers.append(("lsi-original-size", str(len(data)).encode()))
        headers.append(("lsi-original-sha256", hashlib.sha256(data).hexdigest().encode()))
        data = data[:MAX_VALUE_BYTES]
    if key is not None and len(key) > MAX_KEY_BYTES:
        headers.append(("lsi-original-key-size", str(len(key)).encode()))
        headers.append(("lsi-original-key-sha256", hashlib.sha256(key).hexdigest().encode()))
        key = key[:MAX_KEY_BYTES]
    return key, data


class DeadLetters:
    """Builds an agent's dead-letter records and counts them (``lsi_dlq_total{reason}``).

    Args:
        topic: the dead-letter topic (a Faust topic).
        agent: the agent's name, for ``lsi_events_total{agent, outcome="dlq"}``.
        metrics: the worker's metrics.
    """

    def __init__(self, topic: Any, agent: str, metrics: WorkerMetrics) -> None:
        self.topic = topic
        self.agent = agent
        self.metrics = metrics

    def record(self, message: Any, reason: str, detail: str, now: float) -> Outgoing:
        """The dead-letter record of ``message`` (a Faust message), counted."""
        log.info("%s: dead-letter %s[%s]@%s: %s: %s", self.agent, message.topic,
                 message.partition, message.offset, reason, detail)  # fmt: skip
        headers = dlq_headers(message, reason, detail, now)
        key, value = _bounded(message.key, message.value, headers)
        self.metrics.dlq.labels(reason=reason).inc()
        self.metrics.events.labels(agent=self.agent, type="unknown", outcome="dlq").inc()
        return (self.topic, key, value, headers)

    def refused(self, message: Any, exc: InvalidRecord, now: float) -> Outgoing:
        """The dead letter of a record that failed validation (``exc``), counted as a decode
        error of this agent."""
        self.metrics.errors.labels(agent=self.agent, kind="decode").inc()
        return self.record(message, exc.reason, exc.detail, now)

    def failed(self, message: Any, stage: str, exc: Exception, now: float) -> Outgoing:
        """The dead letter of a record a bug failed on at ``stage`` (reason ``internal_error``,
        the exception in the detail), counted and logged as an internal error."""
        self.metrics.errors.labels(agent=self.agent, kind="internal").inc()
        log.error("%s: %s[%s]@%s failed at %s: %r", self.agent, message.topic,
                  message.partition, message.offset, stage, exc)  # fmt: skip
        detail = f"stage {stage}: {type(exc).__name__}: {exc}"
        return self.record(message, "internal_error", detail, now)

    def undeliverable(self, rec: Outgoing, exc: BaseException) -> Outgoing | None:
        """The replacement of a record the broker refused for good (:mod:`streams.delivery`).

        An output record becomes a dead-letter record with reason ``undeliverable`` (its value
        bounded). A dead-letter record that was refused is sent once more without its value
        and the client's headers, keeping the reason and the coordinates. ``None`` for a
        record that is already such a replacement: it is dropped (and counted by the caller).
        """
        dlq = self.topic
        topic, key, value, headers = rec
        marks = list(headers or [])
        if any(name == "lsi-dlq-undeliverable" for name, _ in marks):
            return None
        note = ("lsi-dlq-undeliverable", _text(repr(exc), 1024))
        if topic is dlq or _name(topic) == _name(dlq):
            kept = [(n, v) for n, v in marks if n.startswith(RESERVED_PREFIX)]
            if value:
                kept.append(("lsi-original-size", str(len(value)).encode()))
                kept.append(("lsi-original-sha256", hashlib.sha256(value).hexdigest().encode()))
            return (dlq, key[:MAX_KEY_BYTES] if key else key, b"", [*kept, note])
        detail = f"the broker refused the record for {_name(topic)}: {exc!r}"
        out: list[tuple[str, bytes]] = [
            ("lsi-dlq-reason", b"undeliverable"),
            ("lsi-dlq-detail", _text(detail, 1024)),
            ("lsi-dlq-destination", _text(_name(topic), 256)),
            note,
        ]
        bkey, bvalue = _bounded(key, value, out)
        self.metrics.dlq.labels(reason="undeliverable").inc()
        return (dlq, bkey, bvalue, out)


def _name(topic: Any) -> str:
    getter = getattr(topic, "get_topic_name", None)
    return str(getter()) if getter is not None else str(topic)
