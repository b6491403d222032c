"""The model watcher: which long-term snapshot this worker scores with, swapped live.

At start the worker loads the store's live version (``LSI_MODELS_DIR``, a directory shared
with the refresh job). A background task then follows ``lsi.models`` (one compacted
partition, read from the start without a consumer group, so *every* worker sees every
announcement): for a version other than the current one it loads the snapshot in a thread
and replaces the reference. The ``interest`` agent reads the reference once per micro-batch,
so a batch scores with one version from start to end, no event waits for a load, and none is
dropped. A snapshot that cannot be loaded is logged and counted; the worker keeps the
previous one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from lsi.config import Settings
from lsi.errors import LsiError
from lsi.longterm import LongTermModel
from lsi.metrics import WorkerMetrics
from lsi.snapshots import SnapshotStore

__all__ = ["ModelWatcher", "load_uri"]

log = logging.getLogger(__name__)


def load_uri(uri: str) -> LongTermModel:
    """Load the snapshot at ``uri`` (its version directory)."""
    path = Path(uri)
    model = SnapshotStore(path.parent).load(path.name)
    if model is None:  # pragma: no cover - load(version) with a version never returns None
        raise LsiError(f"no snapshot at {uri}")
    return model


class ModelWatcher:
    """Holds the live :class:`~lsi.longterm.LongTermModel` (or ``None``) of one worker."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.current: LongTermModel | None = None

    def load_initial(self) -> None:
        """Load the store's live version, if any (at worker start)."""
        store = SnapshotStore(self.settings.models_dir)
        try:
            model = store.load()
        except (LsiError, OSError) as exc:
            self.metrics.model_load_failures.inc()
            log.error("models: cannot load the live snapshot from %s: %s",
                      self.settings.models_dir, exc)  # fmt: skip
            return
        if model is not None:
            self.swap(model)

    def swap(self, model: LongTermModel) -> None:
        old = self.current
        self.current = model
        m = self.metrics
        m.model_version.clear()
        m.model_version.labels(version=model.version).set(1)
        m.model_created.set(float(model.manifest.get("created_at", 0.0) or 0.0))
        if old is not None:
            m.model_swaps.inc()
        log.warning("models: scoring with %s (%d users, %d items)%s", model.version,
                    model.n_users, model.n_items, f", was {old.version}" if old else "")  # fmt: skip

    async def apply(self, value: bytes) -> None:
        """Handle one ``lsi.models`` record."""
        try:
            record = json.loads(value)
            version, uri = str(record["version"]), str(record["uri"])
        except (ValueError, KeyError, TypeError) as exc:
            self.metrics.model_load_failures.inc()
            log.error("models: ignoring a malformed announcement (%r): %s", value[:200], exc)
            return
        if self.current is not None and self.current.version == version:
            return
        try:
            model = await asyncio.get_running_loop().run_in_executor(None, load_uri, uri)
        except (LsiError, OSError, ValueError) as exc:
            self.metrics.model_load_failures.inc()
            log.error("models: cannot load announced %s from %s: %s", version, uri, exc)
            return
        self.swap(model)

    def register(self, app: Any) -> None:
        settings = self.settings

        @app.task
        async def follow_models() -> None:
            while True:  # a broker hiccup must not end the watch: reconnect and re-read
                try:
                    await self._follow(settings)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.error("models: following %s failed (%r); retrying in 5 s",
                              settings.models_topic, exc)  # fmt: skip
                    await asyncio.sleep(5.0)

    async def _follow(self, settings: Settings) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=settings.brokers, group_id=None,
                                    enable_auto_commit=False,
                                    auto_offset_reset="earliest")  # fmt: skip
        await consumer.start()
        try:
            tp = TopicPartition(settings.models_topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                records = [r for rs in batch.values() for r in rs]
                if records:  # only the newest announcement matters
                    await self.apply(records[-1].value)
        finally:
            await consumer.stop()
