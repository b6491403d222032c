"""Build the Faust application: topics, tables, agents and views from :class:`Settings`.

Nothing happens at import time: :func:`build_app` creates the app, and :func:`run_worker`
starts it (``lsi worker``). Faust defaults we change: RocksDB tables (rocksdict), table
browsing off, the web server on 127.0.0.1, the settings' replication factor (1 by default,
for a single broker) and Kafka credentials (:mod:`lsi.kafka.security`), the earliest offset for a
new consumer group, and ``acks=all`` for every send.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics

import lsi
from lsi.config import Settings
from lsi.kafka.logs import quiet_repeats
from lsi.kafka.security import faust_credentials
from lsi.monitoring.metrics import WorkerMetrics
from streams.catalogue import CatalogueAgent, CatalogueView
from streams.interest import Interest
from streams.item_stats import ItemStatsAgent
from streams.models import ModelWatcher, settle_heap
from streams.sampler import register_sampler
from streams.tables import Tables
from streams.topics import Topics
from streams.web import register_views

__all__ = ["Pipeline", "build_app", "rewind_uncommitted", "run_worker"]

#: keys per table store whose partition is remembered (~100 bytes each)
TABLE_KEY_INDEX = 1 << 17

#: most bytes fetched per partition per request (~800 events of 160 bytes; a larger record
#: still comes back whole, as the first of its fetch)
CONSUMER_FETCH_BYTES = 128 * 1024


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A built app and its parts (for tests and the CLI)."""

    app: Any
    settings: Settings
    topics: Topics
    tables: Tables
    metrics: WorkerMetrics
    interest: Interest
    item_stats: ItemStatsAgent
    models: ModelWatcher
    catalogue: CatalogueAgent


def build_app(settings: Settings, registry: CollectorRegistry | None = None, *,
              freeze_heap: bool = False) -> Pipeline:  # fmt: skip
    """Create the lsi Faust app for ``settings``; metrics go to ``registry`` (a new one
    by default). ``freeze_heap``: the app is the process's whole purpose (a worker), so each
    loaded snapshot is moved out of the collector's reach (:func:`streams.models.settle_heap`)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_credentials=faust_credentials(settings),
        web_enabled=True,
        web_bind=settings.web_bind or settings.advertised_host,
        web_host=settings.advertised_host,
        web_port=settings.web_port,
        web_tables_enabled=False,
        consumer_auto_offset_reset="earliest",
        # aiokafka hands fetched records out in the order the fetches came back: with 1 MiB
        # a partition, a backlog of events fetched at once held the item-delta bundles
        # behind thousands of events, and statistics stopped following the stream
        consumer_max_fetch_size=CONSUMER_FETCH_BYTES,
        producer_acks=-1,
        processing_guarantee="at_least_once",
        table_standby_replicas=0,
        # the store's key -> partition cache; a key it lacks is looked for in every
        # partition's RocksDB in turn. Faust's 1,000 thrashed on a catalogue of a few
        # thousand items read from the global item_stats table every batch
        table_key_index_size=TABLE_KEY_INDEX,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        autodiscover=False,
    )
    metrics = WorkerMetrics(registry if registry is not None else CollectorRegistry())
    # the standard process series (resident memory, CPU seconds, open files) for operators;
    # on the worker's registry, not in WorkerMetrics: they are no lsi metric to chart
    ProcessCollector(registry=metrics.registry)
    metrics.info.info({"version": lsi.__version__, "emit_policy": settings.emit_policy,
                       "partitions": str(settings.partitions)})  # fmt: skip
    topics = Topics.declare(app, settings)
    view = CatalogueView()
    tables = Tables.declare(app, settings, on_catalogue_change=view.on_changelog_event)
    view.table = tables.catalogue
    reread_after_rebalance(app, view)

    models = ModelWatcher(settings, metrics, freeze_heap=freeze_heap)
    models.load_initial()
    models.register(app)
    interest = Interest(settings, topics, tables, metrics, models, view)
    item_stats = ItemStatsAgent(settings, topics, tables, metrics)
    catalogue = CatalogueAgent(settings, topics, tables, metrics, view)
    for part in (interest, item_stats, catalogue):
        part.register(app)
    register_views(app, tables, interest, metrics)
    register_sampler(app, {"user_state": tables.user_state, "item_stats": tables.item_stats,
                           "trending": tables.trending, "catalogue": tables.catalogue},
                     {settings.events_topic, settings.rekey_topic, settings.item_deltas_topic,
                      settings.items_topic},
                     metrics)  # fmt: skip
    _widen_producer_buffer(app, settings)
    rewind_uncommitted(app, {settings.events_topic, settings.rekey_topic,
                              settings.item_deltas_topic}, sparse={settings.items_topic})  # fmt: skip
    return Pipeline(app, settings, topics, tables, metrics, interest, item_stats, models,
                    catalogue)  # fmt: skip


def _widen_producer_buffer(app: Any, settings: Settings) -> None:
    """Let a batch's table writes queue up without throttling.

    Faust pauses an agent whenever more than 100 changelog records wait to be sent and then
    drains them one acknowledgement (or 0.1 s) at a time. A micro-batch legitimately writes
    hundreds of keys (one per user, one per item), so that limit turned every large batch
    into a stall of seconds. The bound here still applies back-pressure, at batch scale.
    """

    @app.task
    async def widen() -> None:
        app.producer.buffer.max_messages = max(10_000, settings.batch_max * 40)


def reread_after_rebalance(app: Any, view: CatalogueView) -> None:
    """After each rebalance the catalogue view reads its whole table again (before the next
    batch that needs it), as a restore may have replayed records it did not see."""

    @app.on_rebalance_complete.connect
    async def reread(sender: Any, **kwargs: Any) -> None:
        view.invalidate()


def rewind_uncommitted(app: Any, source_topics: set[str], sparse: set[str] | None = None) -> None:
    """After each rebalance, seek partitions the group never committed to their start.

    aiokafka's ``seek_to_committed`` skips partitions whose committed offset is missing or 0,
    so they keep whatever position the fetcher reached while Faust restored tables with the
    stream paused, and records fetched then are never delivered: a worker killed before its
    first commit was replaced by one that skipped part of the stream. Seeking them
    explicitly to their earliest offset (what ``auto_offset_reset="earliest"`` means) closes
    that gap; partitions with a real committed offset are left to Faust.

    ``sparse``: topics whose partitions are mostly empty and never committed (the catalogue:
    a partition with no record has no offset to commit); only those that hold records are
    sought, so an empty one costs no seek at every rebalance.
    """
    sparse = sparse or set()

    @app.on_rebalance_complete.connect
    async def rewind(sender: Any, **kwargs: Any) -> None:
        consumer = app.consumer
        tps = {tp for tp in consumer.assignment() if tp.topic in source_topics | sparse}
        if not tps:
            return
        committed = await consumer.seek_to_committed()
        fresh = [tp for tp in tps if not committed.get(tp)]
        maybe_empty = [tp for tp in fresh if tp.topic in sparse]
        if maybe_empty:
            high = await consumer.highwaters(*maybe_empty)
            fresh = [tp for tp in fresh if tp.topic not in sparse or high.get(tp, 0) > 0]
        if fresh:
            earliest = await consumer.earliest_offsets(*fresh)
            await consumer.seek_wait({tp: earliest[tp] for tp in fresh})


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    """Run a worker in the foreground until SIGINT/SIGTERM."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
    pipeline = build_app(settings, freeze_heap=True)
    logging.getLogger("lsi").setLevel(loglevel.upper())
    quiet_repeats()  # a lost broker: one line per error every 10 s, not thousands a second
    worker = _Worker(pipeline.app, loglevel=loglevel, quiet=True)
    settle_heap(collect=True)
    worker.execute_from_commandline()


#: seconds a worker may take to stop after SIGTERM/SIGINT before it exits without finishing
SHUTDOWN_GRACE_S = 15.0


class _Worker(faust.Worker):
    """Faust's worker, with a bounded shutdown.

    On a signal Faust stops its agents after waiting for the batches in flight to be
    acknowledged (``stream_wait_empty``); a batch whose output cannot reach a broker that is
    down would hold that wait, and the worker, forever. After :data:`SHUTDOWN_GRACE_S` the
    process exits at once, without committing: nothing is lost, since the batch's offsets are
    not committed and its events are delivered again to whichever worker takes over.
    """

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """No progress spinner. Faust's sets the root logger to DEBUG so that it turns on
        every record: each debug call of aiokafka and Faust then built a record that the
        handler dropped (7.6 % of a drain's CPU, measured with py-spy). The root logger
        keeps the level asked for."""
        self.spinner = None
        logger.setLevel(level)

    def _schedule_shutdown(self, signal: Any) -> None:
        if not self._signal_stop_time:
            _arm_shutdown_watchdog(SHUTDOWN_GRACE_S)
        super()._schedule_shutdown(signal)


def _arm_shutdown_watchdog(grace_s: float) -> threading.Timer:
    def expire() -> None:
        sys.stderr.write(f"lsi worker: still stopping after {grace_s:.0f} s (a batch in flight "
                         "could not be delivered); exiting without committing it\n")  # fmt: skip
        sys.stderr.flush()
        os._exit(1)

    timer = threading.Timer(grace_s, expire)
    timer.daemon = True
    timer.start()
    return timer
