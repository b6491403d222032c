"""Gauges sampled every few seconds: consumer lag per partition and table sizes.

Both are read from the worker's own view, not from the broker: the lag of an assigned partition
is its high watermark (from the consumer's last fetch) minus the offset this worker last
committed there, i.e. the records Kafka would hand to a replacement worker again. Before the
first commit the offset after the last record read stands in, and before the first read the
partition's start (0). Table sizes are RocksDB's ``rocksdb.estimate-num-keys`` summed over the
partitions this worker holds (exact counting would scan every key).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from lsi.monitoring.metrics import WorkerMetrics

__all__ = ["SAMPLE_EVERY_S", "TopicPartition", "partition_lags", "register_sampler", "table_keys"]

#: how often the gauges are refreshed (Prometheus scrapes every 15 s by default)
SAMPLE_EVERY_S = 5.0

log = logging.getLogger(__name__)


class TopicPartition(NamedTuple):
    topic: str
    partition: int


def partition_lags(
    assigned: Iterable[TopicPartition],
    highwater: Callable[[TopicPartition], int | None],
    committed: Mapping[Any, int | None],
    read: Mapping[Any, int | None],
) -> dict[TopicPartition, int]:
    """Records not yet committed in each assigned partition that has been fetched.

    ``lag = highwater − position`` where position is the committed offset (the next offset to
    read), else ``last read + 1``, else 0; never negative. Partitions without a high watermark
    yet (nothing fetched) are left out rather than reported as 0.
    """
    lags: dict[TopicPartition, int] = {}
    for tp in assigned:
        high = highwater(tp)
        if high is None:
            continue
        position = committed.get(tp)
        if position is None:
            last = read.get(tp)
            position = last + 1 if last is not None else 0
        lags[TopicPartition(tp.topic, tp.partition)] = max(0, int(high) - int(position))
    return lags


def table_keys(table: Any) -> int:
    """Estimated number of keys ``table`` holds on this worker (RocksDB or in-memory store)."""
    store = table.data
    dbs = getattr(store, "_dbs", None)
    if dbs is None:  # the in-memory store of tests
        return len(store)
    total = 0
    for db in list(dbs.values()):
        value = db.property_int_value("rocksdb.estimate-num-keys")
        total += int(value or 0)
    return total


def register_sampler(
    app: Any, tables: Mapping[str, Any], topics: set[str], metrics: WorkerMetrics
) -> None:
    """Refresh ``lsi_consumer_lag`` (for ``topics``) and ``lsi_table_keys`` every few seconds."""
    reported: set[TopicPartition] = set()

    @app.timer(interval=SAMPLE_EVERY_S)
    async def sample_gauges() -> None:
        try:
            consumer = app.consumer
            assigned = [tp for tp in consumer.assignment() if tp.topic in topics]
            lags = partition_lags(assigned, consumer.highwater, consumer._committed_offset,
                                  consumer._read_offset)  # fmt: skip
            for tp, lag in lags.items():
                metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
            for gone in reported - set(lags):  # revoked: its new owner reports it
                metrics.consumer_lag.remove(gone.topic, str(gone.partition))
            reported.clear()
            reported.update(lags)
            for name, table in tables.items():
                metrics.table_keys.labels(table=name).set(table_keys(table))
        except Exception as exc:  # a gauge must never stop the worker
            log.warning("sampler: could not sample lag/table sizes: %r", exc)
            metrics.errors.labels(agent="sampler", kind="internal").inc()
