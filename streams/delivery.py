"""Sending a batch's output and waiting until Kafka has it.

A batch's input offsets are acknowledged when the agent's loop body returns, even if it
raised (that is how ``Stream.take_events`` works). So an agent must not give up on output
that can still get through: :func:`deliver` retries a send that failed for a passing reason
(the broker is down, a leader is moving) until the broker acknowledges it, and only then lets
the agent write its tables and move on. That ordering is the at-least-once contract: output,
then state, then offsets.

A send that can never succeed is not retried: a record the producer or the broker refuses
for what it is (too large, invalid, corrupt, refused by a topic policy) fails at once, and one
that keeps failing for a reason that is not an outage (an unknown topic, a missing
authorisation) fails after :data:`MAX_TRIES`. Such a record is handed to ``replace`` (the
agents put a bounded dead-letter record in its place, :mod:`streams.dlq`); a replacement that
fails for good too is dropped, logged and counted (``lsi_errors_total{kind="undeliverable"}``).
Either way the batch moves on: one record never stalls a partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    CorruptRecordException,
    InvalidRequestError,
    InvalidTimestampError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    PolicyViolationError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
    UnsupportedForMessageFormatError,
    UnsupportedVersionError,
)
from faust.exceptions import ProducerSendError

from lsi.monitoring.metrics import WorkerMetrics

__all__ = ["MAX_TRIES", "Outgoing", "classify", "deliver"]

log = logging.getLogger(__name__)

#: (topic, key, value, headers)
Outgoing = tuple[Any, bytes | None, bytes, Sequence[tuple[str, bytes]] | None]

#: errors that say the record itself can never be written
_PERMANENT: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    CorruptRecordException,
    InvalidRequestError,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
    UnsupportedVersionError,
    PolicyViolationError,
)
#: errors that an operator may fix, but that no outage causes: tried :data:`MAX_TRIES` times
_BOUNDED: tuple[type[BaseException], ...] = (
    UnknownTopicOrPartitionError,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)
#: tries of a record that fails for a :func:`classify` ``bounded`` reason
MAX_TRIES = 5


def classify(exc: BaseException) -> str:
    """``permanent``, ``bounded`` or ``transient``: how a failed send may end.

    Faust wraps the producer's errors in :class:`ProducerSendError` (the cause is the Kafka
    error); an error that is not Kafka's at all is a bug in the record and never passes.
    """
    root = exc.__cause__ if isinstance(exc, ProducerSendError) and exc.__cause__ else exc
    if isinstance(root, _PERMANENT):
        return "permanent"
    if isinstance(root, _BOUNDED):
        return "bounded"
    if isinstance(root, (KafkaError, ProducerSendError, asyncio.TimeoutError, OSError)):
        return "transient"
    return "permanent"


async def deliver(
    records: Sequence[Outgoing],
    agent: str,
    metrics: WorkerMetrics,
    *,
    replace: Callable[[Outgoing, BaseException], Outgoing | None] | None = None,
    max_backoff_s: float = 5.0,
) -> None:
    """Send ``records`` and wait for every acknowledgement.

    A send that fails for a passing reason is retried with backoff for as long as it takes;
    one that can never succeed is replaced by ``replace(record, error)`` (once) or dropped.
    """
    if not records:
        return
    # the producer itself, not ``Topic.send``: Faust's per-message machinery (a future
    # message, callbacks, sensors) would cost as much again as the whole record
    producer = await records[0][0].app.maybe_start_producer()
    pending: list[tuple[Outgoing, int, bool]] = [(rec, 0, False) for rec in records]
    backoff = 0.1
    while pending:
        queued: list[Any] = []
        for (topic, key, value, headers), _, _ in pending:
            try:
                queued.append(await producer.send(topic.get_topic_name(), key, value,
                                                  None, None, headers))  # fmt: skip
            except Exception as exc:  # refused before it was queued
                queued.append(exc)
        results = [await _settle(q) for q in queued]
        retry: list[tuple[Outgoing, int, bool]] = []
        first: BaseException | None = None
        for (rec, tries, replaced), res in zip(pending, results, strict=True):
            if not isinstance(res, BaseException):
                continue
            if not isinstance(res, Exception):  # CancelledError: the worker is stopping
                raise res
            kind = classify(res)
            tries += 1
            if kind == "transient" or (kind == "bounded" and tries < MAX_TRIES):
                first = first or res
                retry.append((rec, tries, replaced))
                continue
            metrics.errors.labels(agent=agent, kind="send_permanent").inc()
            substitute = replace(rec, res) if replace is not None and not replaced else None
            if substitute is None:
                metrics.errors.labels(agent=agent, kind="undeliverable").inc()
                log.error("%s: dropped a record the broker refused for good: %r", agent, res)
                continue
            log.warning("%s: the broker refused a record for good (%r); dead-lettering it",
                        agent, res)  # fmt: skip
            retry.append((substitute, 0, True))
        if retry and first is not None:
            metrics.errors.labels(agent=agent, kind="send").inc(len(retry))
            log.warning("%s: %d of %d sends failed (%r); retrying in %.1fs", agent, len(retry),
                        len(pending), first, backoff)  # fmt: skip
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)
        pending = retry


async def _settle(item: Any) -> Any:
    """The acknowledgement of one queued send, or the exception that failed it (returned,
    not raised; a cancellation is raised: the worker is stopping). The sends are all
    queued before the first is awaited, so awaiting them in turn waits as long as the
    slowest, without a task per record."""
    if isinstance(item, BaseException):
        return item
    try:
        return await item
    except Exception as exc:
        return exc
