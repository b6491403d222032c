"""Sending a batch's output and waiting until Kafka has it.

A batch's input offsets are acknowledged when the agent's loop body returns, even if it
raised (that is how ``Stream.take_events`` works). So an agent must not give up on output:
:func:`deliver` retries until every record is acknowledged by the broker, and only then lets
the agent write its tables and move on. That ordering is the at-least-once contract:
output, then state, then offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError

from lsi.metrics import WorkerMetrics

__all__ = ["Outgoing", "deliver"]

log = logging.getLogger(__name__)

#: (topic, key, value, headers)
Outgoing = tuple[Any, bytes | None, bytes, Sequence[tuple[str, bytes]] | None]


async def deliver(
    records: Sequence[Outgoing], agent: str, metrics: WorkerMetrics, *, max_backoff_s: float = 5.0
) -> None:
    """Send ``records`` and wait for every acknowledgement, retrying failed sends forever."""
    pending = list(records)
    backoff = 0.1
    while pending:
        queued: list[Any] = []
        for topic, key, value, headers in pending:
            try:
                queued.append(await topic.send(key=key, value=value, headers=headers))
            except (ProducerSendError, KafkaError) as exc:  # refused before it was queued
                queued.append(exc)
        results = await asyncio.gather(*(_settle(q) for q in queued), return_exceptions=True)
        failed = [
            rec for rec, res in zip(pending, results, strict=True) if isinstance(res, BaseException)
        ]
        if not failed:
            return
        first = next(r for r in results if isinstance(r, BaseException))
        metrics.errors.labels(agent=agent, kind="send").inc(len(failed))
        log.warning("%s: %d of %d sends failed (%r); retrying in %.1fs", agent, len(failed),
                    len(pending), first, backoff)  # fmt: skip
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, max_backoff_s)
        pending = failed


async def _settle(item: Any) -> Any:
    if isinstance(item, BaseException):
        raise item
    return await item
