"""The model watcher: which long-term snapshot this worker scores with, swapped live.

The store's ``LIVE`` pointer (``LSI_MODELS_DIR``, a directory shared with the refresh job) is
the single source of truth. The worker loads it at start; a background task then follows
``lsi.models`` (one compacted partition, read without a consumer group, so *every* worker sees
every announcement) and, on each announcement, and every ``POLL_S`` seconds in any case,
re-reads ``LIVE`` in its own store. A version other than the current one is loaded in a thread
(with its candidate-retrieval indexes, for a large catalogue) and then replaces the reference. So an announcement only wakes workers up: a promote or rollback
made with ``--no-announce``, or whose announcement was lost, still reaches every worker within
``POLL_S``, and a worker never follows an announcement away from ``LIVE``.

The ``interest`` agent reads the reference once per micro-batch, so a batch scores with one
version from start to end, no event waits for a load, and none is dropped. A snapshot that
cannot be loaded is logged and counted; the worker keeps the previous one and tries again at the
next poll.

``LIVE`` also names the running experiment between snapshots, if any (``lsi models experiment
start``): the watcher loads its candidate the same way, in a thread, and then exposes it as
:attr:`ModelWatcher.experiment` (:class:`streams.experiments.ActiveExperiment`). A candidate
that cannot be loaded, a candidate that is the live version, or a malformed experiment is
logged and counted (``lsi_model_load_failures_total``, once per stored experiment), and the
worker runs no experiment until ``LIVE`` changes: every user stays on the live snapshot.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from typing import Any, Literal

from lsi.config import Settings
from lsi.core.experiment import BASELINE, Experiment
from lsi.errors import LsiError
from lsi.kafka.security import aiokafka_options
from lsi.monitoring.metrics import WorkerMetrics
from lsi.serving.snapshot import Snapshot
from lsi.serving.store import SnapshotStore
from streams.experiments import ActiveExperiment

__all__ = ["POLL_S", "ModelWatcher", "settle_heap"]

#: how often a worker re-reads ``LIVE`` without an announcement
POLL_S = 30.0

log = logging.getLogger(__name__)


def settle_heap(collect: bool = False) -> None:
    """Move every object alive now out of the collector's reach (:func:`gc.freeze`).

    A worker's heap is mostly long-lived: the modules of Faust, torch and the model code
    (~430k tracked objects once a snapshot is loaded), and the snapshot itself. Python's
    oldest-generation collection walks all of them, and did so every few seconds during a
    drain, 200-270 ms each time with the fused model, the event loop standing still. Frozen
    objects are still freed by reference counting when nothing refers to them (a replaced
    snapshot is); only a reference cycle among them outlives its use, which nothing here
    relies on. A worker process calls it at start (``collect``: after a collection, so no
    garbage is frozen) and after each model swap; an app built inside another program (the
    tests) leaves that program's heap alone.
    """
    if collect:
        gc.collect()
    gc.freeze()


def _candidate(store: SnapshotStore, experiment: Experiment) -> Snapshot | None:
    """The experiment's candidate snapshot, ready to score (``None`` for ``baseline``)."""
    if experiment.candidate == BASELINE:
        return None
    return _ready(store, experiment.candidate)


def _ready(store: SnapshotStore, version: str | None) -> Snapshot | None:
    """Load a snapshot (``None``: the live one) and, if it serves a large catalogue through
    candidate retrieval, build its indexes now, off the event loop and before the swap, so
    that no batch waits for the build (minutes at a million items)."""
    model = store.load(version)
    seq = model.sequence if model is not None else None
    if seq is not None and seq.uses_retrieval:
        seq.retriever(model)
    return model


class ModelWatcher:
    """Holds the live :class:`~lsi.serving.snapshot.Snapshot` (or ``None``) of one worker."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics, *,
                 freeze_heap: bool = False) -> None:  # fmt: skip
        self.settings = settings
        self.metrics = metrics
        self.freeze_heap = freeze_heap  # settle_heap() after each swap (a worker process)
        self.current: Snapshot | None = None
        #: the running experiment with its candidate loaded (``None``: every user on live)
        self.experiment: ActiveExperiment | None = None
        self._failed_version: str | None = None
        self._failed_experiment: Experiment | str | None = None

    def load_initial(self) -> None:
        """Load the store's live version, if any (at worker start)."""
        store = SnapshotStore(self.settings.models_dir)
        try:
            model = _ready(store, None)
        except (LsiError, OSError) as exc:
            self.metrics.model_load_failures.inc()
            log.error("models: cannot load the live snapshot from %s: %s",
                      self.settings.models_dir, exc)  # fmt: skip
            return
        if model is not None:
            self.swap(model)
        wanted = self._experiment_to_load(store)
        if wanted is None:
            return
        try:
            candidate = _candidate(store, wanted)
        except (LsiError, OSError, ValueError) as exc:
            self._experiment_failed(wanted, f"cannot load its candidate: {exc}")
            return
        self._begin_experiment(wanted, candidate)

    def swap(self, model: Snapshot) -> None:
        old = self.current
        self.current = model
        m = self.metrics
        m.model_version.clear()
        m.model_version.labels(version=model.version).set(1)
        m.model_created.set(float(model.manifest.get("created_at", 0.0) or 0.0))
        if old is not None:
            m.model_swaps.inc()
        if self.freeze_heap:
            settle_heap()
        log.warning("models: scoring with %s (%d users, %d items)%s", model.version,
                    model.n_users, model.n_items, f", was {old.version}" if old else "")  # fmt: skip

    async def apply(self, value: bytes) -> None:
        """Handle one ``lsi.models`` record: a wake-up to re-read ``LIVE``."""
        try:
            version = str(json.loads(value)["version"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning(
                "models: malformed announcement (%r): %s; re-reading LIVE", value[:200], exc
            )
            version = "?"
        log.info("models: %s announced", version)
        await self.refresh()

    async def refresh(self) -> None:
        """Load the store's live version if it is not the one in use, then apply the
        experiment ``LIVE`` names (or end the one running)."""
        store = SnapshotStore(self.settings.models_dir)
        await self._refresh_live(store)
        wanted = self._experiment_to_load(store)
        if wanted is None:
            return
        candidate = self._reusable(wanted)
        if candidate is None:
            try:
                candidate = await asyncio.get_running_loop().run_in_executor(
                    None, _candidate, store, wanted
                )
            except (LsiError, OSError, ValueError) as exc:
                self._experiment_failed(wanted, f"cannot load its candidate: {exc}")
                return
        self._begin_experiment(wanted, candidate)

    async def _refresh_live(self, store: SnapshotStore) -> None:
        try:
            live = store.live()
        except (LsiError, OSError) as exc:
            self._failed(f"cannot read LIVE in {self.settings.models_dir}: {exc}")
            return
        if live is None or (self.current is not None and self.current.version == live):
            return
        if live == self._failed_version:
            return  # counted once; retried when LIVE changes or after a restart
        try:
            model = await asyncio.get_running_loop().run_in_executor(None, _ready, store, live)
        except (LsiError, OSError, ValueError) as exc:
            self._failed_version = live
            self._failed(f"cannot load {live}: {exc}")
            return
        if model is not None:
            self.swap(model)

    # -- the experiment ------------------------------------------------------------------
    def _next_experiment(self, store: SnapshotStore) -> Experiment | Literal[False] | None:
        """The experiment to apply now, ``None`` to run none, ``False`` to change nothing
        (it runs already, or it failed before and ``LIVE`` has not changed since)."""
        try:
            wanted = store.experiment()
        except (LsiError, OSError) as exc:
            self._experiment_failed(str(exc), f"cannot read it: {exc}")
            return False
        if wanted is None:
            self._failed_experiment = None
            return None
        if self.experiment is not None and self.experiment.experiment == wanted:
            return False
        if wanted == self._failed_experiment:
            return False  # counted once; retried when LIVE changes or after a restart
        if self.current is not None and wanted.candidate == self.current.version:
            self._experiment_failed(wanted, "its candidate is the live version")
            return False
        return wanted

    def _experiment_to_load(self, store: SnapshotStore) -> Experiment | None:
        """The experiment whose candidate to load and apply now; ``None`` when there is
        nothing to do (the running experiment is ended first if ``LIVE`` names none)."""
        wanted = self._next_experiment(store)
        if wanted is None:
            self._end_experiment()
        return wanted or None

    def _reusable(self, wanted: Experiment) -> Snapshot | None:
        """The candidate already loaded, if the new experiment has the same one."""
        running = self.experiment
        if running is None or running.candidate is None or wanted.candidate == BASELINE:
            return None
        return running.candidate if running.candidate.version == wanted.candidate else None

    def _begin_experiment(self, wanted: Experiment, candidate: Snapshot | None) -> None:
        old = self.experiment
        self.experiment = ActiveExperiment(wanted, candidate, time.time())
        self._failed_experiment = None
        self.metrics.experiment_started(wanted.name, wanted.candidate, wanted.fraction)
        if self.freeze_heap and candidate is not None:
            settle_heap()
        log.warning("models: experiment %s: %.4g of users on %s, the others on %s%s",
                    wanted.name, wanted.fraction, wanted.candidate,
                    self.current.version if self.current else "the short-term path",
                    f" (was {old.name})" if old else "")  # fmt: skip

    def _end_experiment(self) -> None:
        if self.experiment is None:
            return
        log.warning("models: experiment %s ended; every user on %s", self.experiment.name,
                    self.current.version if self.current else "the short-term path")  # fmt: skip
        self.experiment = None
        self.metrics.experiment_stopped()

    def _experiment_failed(self, wanted: Experiment | str, why: str) -> None:
        """Run no experiment; count and log the failure once per stored experiment."""
        self._end_experiment()
        if wanted == self._failed_experiment:
            return
        self._failed_experiment = wanted
        self.metrics.model_load_failures.inc()
        name = wanted.name if isinstance(wanted, Experiment) else "in LIVE"
        log.error("models: experiment %s not applied, %s; every user stays on %s", name, why,
                  self.current.version if self.current else "the short-term path")  # fmt: skip

    def _failed(self, why: str) -> None:
        self.metrics.model_load_failures.inc()
        log.error("models: %s; keeping %s", why,
                  self.current.version if self.current else "the short-term path")  # fmt: skip

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
                                    enable_auto_commit=False, auto_offset_reset="latest",
                                    **aiokafka_options(settings))  # fmt: skip
        try:
            await consumer.start()
            consumer.assign([TopicPartition(settings.models_topic, 0)])
            next_poll = time.monotonic() + POLL_S
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                records = [r for rs in batch.values() for r in rs]
                if records:  # one re-read of LIVE answers any number of announcements
                    await self.apply(records[-1].value)
                    next_poll = time.monotonic() + POLL_S
                elif time.monotonic() >= next_poll:
                    await self.refresh()
                    next_poll = time.monotonic() + POLL_S
        finally:
            await consumer.stop()
