"""The refresh job: read the interaction log, train, validate, publish, announce.

One refresh (:meth:`RefreshJob.run_once`):

1. read ``lsi.interactions`` from the start up to its current end offsets (the *watermark*,
   recorded in the snapshot's manifest); the topic is the interaction log (kept forever);
2. hold out the newest interaction of up to ``refresh_valid_cases`` users
   (:func:`models.training.longterm.holdout_last`);
3. warm-start from the live snapshot (same ids keep their rows, new ids are appended) and
   train (:func:`models.training.longterm.train_long_term`), CUDA when present;
4. validate the candidate *and* the live snapshot on the same held-out cases;
5. publish the candidate as a new immutable version (always, so it can be inspected or
   promoted by hand), and promote it unless its NDCG@10 is below the live one's by more than
   ``promote_margin`` (relative); a promoted version is announced on ``lsi.models``.

:func:`run_forever` is ``lsi refresh --every``: it refreshes at start, then on the schedule,
after ``after_events`` new interactions, or when the online hit rate drifts
(:class:`lsi.core.drift.HitRateMonitor` over ``lsi.recommendations`` and ``lsi.interactions``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from lsi.config import Settings
from lsi.core.drift import HitRateMonitor
from lsi.errors import ConfigError, InvalidEvent, LsiError
from lsi.monitoring.metrics import RefreshMetrics
from lsi.serving.fusion import SequenceModel
from lsi.serving.snapshot import Snapshot
from lsi.serving.store import SnapshotArrays, SnapshotStore
from lsi.wire.records import SOURCE_HEADER, TYPE_CODES
from lsi.wire.validation import Limits, validate_event
from models.training.longterm import (
    Log,
    TrainConfig,
    WarmStart,
    holdout_last,
    pick_device,
    validate,
)
from models.training.recipe import Recipe, TrainedSnapshot, train_snapshot
from models.training.sequence import SequenceConfig

__all__ = ["RefreshJob", "RefreshOutcome", "announce", "read_log", "run_forever"]

log = logging.getLogger(__name__)

#: the encoder's shape and training choices a snapshot manifest records
MANIFEST_SEQUENCE_KEYS = ("dim", "layers", "heads", "max_len", "lr_schedule", "ema_decay",
                          "balanced_init")  # fmt: skip

Watermark = dict[str, dict[str, int]]  # topic -> partition -> next offset


@dataclass
class RefreshOutcome:
    """What one refresh did."""

    trigger: str
    outcome: str  # promoted | rejected | empty
    version: str | None = None
    live_before: str | None = None
    validation: dict[str, float] = field(default_factory=dict)
    live_validation: dict[str, float] | None = None
    watermark: Watermark = field(default_factory=dict)
    events: int = 0
    edges: int = 0
    seconds: float = 0.0
    train_seconds: float = 0.0
    device: str = ""
    warm_from: str = ""
    sequence: dict[str, Any] | None = None  # the encoder and gate's training and validation
    sequence_skipped: str = ""  # why no encoder was trained (too little data), if so

    def summary(self) -> str:
        if self.outcome == "empty":
            return "refresh: the interaction log is empty; nothing to train on yet"
        ndcg = self.validation.get("ndcg@10", 0.0)
        live = "" if self.live_validation is None else (
            f" (live {self.live_before}: {self.live_validation.get('ndcg@10', 0.0):.4f})")  # fmt: skip
        start = f"warm from {self.warm_from}" if self.warm_from else "cold start"
        line = (f"refresh [{self.trigger}]: {self.version} {self.outcome}; validation NDCG@10 "
                f"{ndcg:.4f}{live}; {self.events:,} events, {self.edges:,} edges, {start}, "
                f"trained {self.train_seconds:.1f} s on {self.device}, total {self.seconds:.1f} s")  # fmt: skip
        seq = self.sequence
        if seq:
            val = seq.get("validation", {})
            nd = {k: val.get(k, {}).get("ndcg@10") for k in ("fused", "short_only", "long_only")}
            w = val.get("long_weight", {}).get("mean")
            scores = ", ".join(f"{k} {v:.4f}" for k, v in nd.items() if v is not None)
            line += (f"\n  encoder ({seq['encoder']}): {seq['epochs']} epochs (best "
                     f"{seq['best_epoch']}) in {seq['seconds']:.1f} s; calibration NDCG@10 "
                     f"{scores}" + (f"; mean long_weight {w:.2f}" if w is not None else ""))  # fmt: skip
            if val.get("gate_choice", {}).get("serves") == "encoder alone":
                line += "; serves the encoder alone (the gate ranked the held-out cases lower)"
        elif self.sequence_skipped:
            line += f"\n  encoder: not trained yet: {self.sequence_skipped}"
        return line


@dataclass(frozen=True, slots=True)
class _Live:
    """The live snapshot a refresh starts from (all ``None`` before the first one)."""

    version: str | None = None
    model: Snapshot | None = None
    until: float | None = None  # newest interaction it trained on
    warm: WarmStart | None = None
    sequence: SequenceModel | None = None


#: the interaction log's records were events once; their age is not checked again
_LOG_LIMITS = Limits(max_future_s=float("inf"))


@dataclass
class LogStats:
    """What :func:`read_log` skipped."""

    duplicates: int = 0  # re-deliveries of one source event (same ``lsi-src`` / event id)
    undecodable: int = 0  # records that are not interactions (stray producers)


def read_log(settings: Settings, progress: Callable[[int], None] | None = None,
             stats: LogStats | None = None, timeout_s: float = 600.0
             ) -> tuple[Log, Watermark]:  # fmt: skip
    """Every interaction in ``lsi.interactions`` up to its end offsets now.

    ``lsi.interactions`` is written at least once: after a crash, a worker may log a source
    event again. Such copies carry the same ``lsi-src`` header (source partition and offset;
    the ``event_id`` when absent) and are learned once. Anyone with access can write the topic,
    so each record is validated as an event (:func:`lsi.wire.validation.validate_event`, without the
    clock check: the log is history); one that fails is skipped and counted in ``stats``. Raises :class:`~lsi.errors.BrokerError` if the log cannot be
    read to its end within ``timeout_s``.
    """
    from kafka import TopicPartition

    from lsi.errors import BrokerError
    from lsi.kafka.clients import client_errors, consumer

    stats = stats if stats is not None else LogStats()
    topic = settings.interactions_topic
    users: list[str] = []
    items: list[str] = []
    ts: list[float] = []
    strength: list[float] = []
    codes: list[int] = []
    seen: set[bytes | str] = set()
    now = time.time()
    deadline = time.monotonic() + timeout_s
    with client_errors(settings):
        c = consumer(settings, consumer_timeout_ms=2000, max_partition_fetch_bytes=8 << 20)
        try:
            parts = c.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            if not tps:
                return Log([], [], np.zeros(0), np.zeros(0, np.float32)), {topic: {}}
            c.assign(tps)
            end = c.end_offsets(tps)
            c.seek_to_beginning(*tps)
            pending = {tp for tp in tps if end[tp] > c.position(tp)}
            done = [tp for tp in tps if tp not in pending]
            if done:
                c.pause(*done)
            while pending:
                if time.monotonic() > deadline:
                    raise BrokerError(f"could not read {topic} to its end within {timeout_s:.0f} s "
                                      f"({len(users):,} events so far); is the broker up?")  # fmt: skip
                batch = c.poll(timeout_ms=1000, max_records=50_000)
                for tp, records in batch.items():
                    n = 0
                    for r in records:
                        if r.offset >= end[tp]:
                            break
                        n += 1
                        try:
                            e = validate_event(r.value, r.key, now, _LOG_LIMITS)
                        except InvalidEvent:
                            stats.undecodable += 1
                            continue
                        key = dict(r.headers or ()).get(SOURCE_HEADER) or e.event_id
                        if key in seen:
                            stats.duplicates += 1
                            continue
                        seen.add(key)
                        users.append(e.user_id)
                        items.append(e.item_id)
                        ts.append(e.ts)
                        strength.append(e.strength)
                        codes.append(TYPE_CODES[e.type])
                    if progress is not None:
                        progress(n)
                finished = {tp for tp in pending if c.position(tp) >= end[tp]}
                if finished:
                    c.pause(*finished)
                    pending -= finished
            mark = {topic: {str(tp.partition): int(end[tp]) for tp in tps}}
        finally:
            c.close()
    return Log(users, items, np.asarray(ts, dtype=np.float64),
               np.asarray(strength, dtype=np.float32), np.asarray(codes, dtype=np.int8)), mark  # fmt: skip


def announce(settings: Settings, store: SnapshotStore, version: str | None,
             extra: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Tell every worker that ``version`` is live (``lsi.models``, key ``live``); ``extra``
    fields join the record (``experiment``: the experiment started, or ``None`` when one
    stopped). Any record wakes the workers up to re-read ``LIVE``, the only truth."""
    from lsi.kafka.clients import client_errors, ensure_topics, producer

    m = store.manifest(version) if version is not None else {}
    record = {
        "version": version,
        "uri": store.uri(version) if version is not None else None,
        "created_at": m.get("created_at"),
        "data_watermark": m.get("data_watermark", {}),
        "metrics": m.get("validation", {}),
        "announced_at": time.time(),
        **(extra or {}),
    }
    ensure_topics(settings)
    prod = producer(settings)
    try:
        with client_errors(settings):
            prod.send(settings.models_topic, key=b"live",
                      value=json.dumps(record).encode()).get(30)  # fmt: skip
    finally:
        prod.close()


class RefreshJob:
    """Refreshes against one snapshot store.

    Args:
        settings: topics, store location, margin, device.
        cfg: training hyper-parameters (``device`` is taken from ``settings``).
        metrics: where to count (a private registry if omitted).
        announce_to_workers: publish promoted versions on ``lsi.models``.
        progress: show a progress bar (tqdm) while reading and training.
    """

    def __init__(self, settings: Settings, cfg: TrainConfig | None = None,
                 metrics: RefreshMetrics | None = None, *, announce_to_workers: bool = True,
                 progress: bool = False) -> None:  # fmt: skip
        from prometheus_client import CollectorRegistry

        self.settings = settings
        try:
            self.cfg = replace(cfg or TrainConfig(), device=settings.refresh_device,
                               half_life_days=settings.refresh_half_life_days)  # fmt: skip
            pick_device(self.cfg.device)  # fail now, not after reading the whole log
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(str(exc)) from None
        self.store = SnapshotStore(settings.models_dir, keep=settings.models_keep)
        self.metrics = metrics or RefreshMetrics(CollectorRegistry())
        self.announce_to_workers = announce_to_workers
        self.progress = progress
        self._sync_live_metric()

    def _sync_live_metric(self) -> None:
        live = self.store.live()
        created = self.store.manifest(live).get("created_at", 0.0) if live else 0.0
        self.metrics.snapshot_created.set(float(created or 0.0))

    def run_once(self, trigger: str = "manual", data: tuple[Log, Watermark] | None = None
                 ) -> RefreshOutcome:  # fmt: skip
        """One refresh; ``data`` replaces reading the topic (tests, benchmarks)."""
        m = self.metrics
        t0 = time.perf_counter()
        try:
            out = self._run(trigger, data)
        except BaseException:
            m.failures.inc()
            m.runs.labels(trigger=trigger, outcome="failed").inc()
            raise
        out.seconds = time.perf_counter() - t0
        m.runs.labels(trigger=trigger, outcome=out.outcome).inc()
        if out.outcome != "empty":
            m.duration.observe(out.seconds)
            m.last_success.set(time.time())
            m.edges.set(out.edges)
        m.events.set(out.events)
        self._sync_live_metric()
        return out

    def _run(self, trigger: str, data: tuple[Log, Watermark] | None) -> RefreshOutcome:
        s = self.settings
        full, watermark = data if data is not None else self._read()
        out = RefreshOutcome(trigger=trigger, outcome="empty", watermark=watermark,
                             events=len(full))  # fmt: skip
        if len(full) == 0 or not (full.strength > 0).any():
            return out
        live = self._live()
        # Validation cases: the newest interaction of random users (a different draw each
        # refresh). To compare with the live snapshot fairly they must be newer than anything
        # it trained on; with too few such cases the candidate is validated alone.
        seed = len(full)
        train_rows, valid_rows = holdout_last(full, s.refresh_valid_cases, seed, live.until)
        compare = live.model is not None and live.until is not None and len(valid_rows) >= 30
        if not compare:
            train_rows, valid_rows = holdout_last(full, s.refresh_valid_cases, seed)
        # the held-out cases calibrate the gate: neither source has seen them
        made = train_snapshot(full, train_rows, valid_rows, self._recipe(), warm=live.warm,
                              warm_sequence=live.sequence, warm_version=live.version or "",
                              progress=self._bar)  # fmt: skip
        if made.sequence_skipped:
            out.sequence_skipped = made.sequence_skipped
            log.warning("refresh: encoder not trained: %s", made.sequence_skipped)
        val = validate(made.candidate, full, valid_rows)
        # both rank the same candidates: everything but the candidate's training history
        live_val = (validate(live.model, full, valid_rows, exclude=made.candidate)
                    if compare and live.model is not None else None)  # fmt: skip
        trained = made.long_term
        finite = bool(np.isfinite(trained.user_vec).all() and np.isfinite(trained.item_vec).all())
        worse = not finite or (
            live_val is not None and val["ndcg@10"] < live_val["ndcg@10"] * (1.0 - s.promote_margin)
        )
        manifest = self._manifest(trigger, watermark, full, train_rows, made, val, live.version,
                                  live_val, {"promoted": not worse, "finite": finite})  # fmt: skip
        arrays_out = SnapshotArrays(trained.user_ids, trained.item_ids, trained.user_vec,
                                    trained.item_vec, trained.base, trained.hist_indptr,
                                    trained.hist_items, made.scorer)  # fmt: skip
        version = self.store.publish(arrays_out, manifest)
        self.metrics.validation_ndcg.labels(model="candidate").set(val["ndcg@10"])
        if live_val is not None:
            self.metrics.validation_ndcg.labels(model="live").set(live_val["ndcg@10"])
        out.version, out.live_before = version, live.version
        out.validation, out.live_validation = val, live_val
        out.edges, out.train_seconds = trained.n_edges, trained.seconds
        out.device, out.warm_from = trained.device, trained.warm_from
        out.sequence = manifest["sequence"]
        if worse:
            out.outcome = "rejected"
            self.metrics.rejected.inc()
            log.warning("refresh: %s not promoted: validation NDCG@10 %.4f < live %s %.4f "
                        "by more than %.0f%%", version, val["ndcg@10"], live.version,
                        live_val["ndcg@10"] if live_val else 0.0, s.promote_margin * 100)  # fmt: skip
            return out
        self.store.promote(version)
        if self.announce_to_workers:
            announce(s, self.store, version)
        out.outcome = "promoted"
        return out

    def _live(self) -> _Live:
        """The live snapshot, read once, and what the candidate continues from: its layer-0
        rows when the dimension still fits, its encoder when the encoder's shape does."""
        version = self.store.live()
        if version is None:
            return _Live()
        manifest, arrays = self.store.load_arrays(version)
        model = arrays.model(version, manifest)
        warm = (WarmStart(arrays.user_ids, arrays.item_ids, arrays.base, version)
                if arrays.base.shape[1] == self.cfg.dim else None)  # fmt: skip
        seq = model.sequence
        s = self.settings
        if seq is not None and (seq.config.get("encoder") != s.sequence_encoder
                                or seq.config.get("max_len") != s.sequence_max_len):  # fmt: skip
            seq = None  # the shape changed: train from scratch
        return _Live(version, model, manifest.get("data_max_ts"), warm, seq)

    def _recipe(self) -> Recipe:
        return Recipe(self.cfg, self._seq_cfg() if self.settings.refresh_sequence else None)

    def _manifest(self, trigger: str, watermark: Watermark, full: Log,
                  train_rows: npt.NDArray[np.int64], made: TrainedSnapshot,
                  val: dict[str, float], live_version: str | None,
                  live_val: dict[str, float] | None,
                  promotion: dict[str, bool]) -> dict[str, Any]:  # fmt: skip
        """The snapshot's manifest: where its data ends, how it was trained, how it
        validated against the live one, and whether it is promoted."""
        trained, seq = made.long_term, made.sequence
        seq_info: dict[str, Any] | None = None
        if seq is not None:
            seq_info = {
                "encoder": seq.model.config["encoder"],
                **{k: seq.model.config[k] for k in MANIFEST_SEQUENCE_KEYS},
                "seconds": round(seq.seconds, 3),
                "gate_seconds": round(seq.gate_seconds, 3),
                "device": seq.device,
                "epochs": seq.epochs,
                "best_epoch": seq.best_epoch,
                "warm_from": seq.warm_from,
                "validation": seq.validation,
            }
        return {
            "created_at": time.time(),
            "model": "weighted-lightgcn",
            "trigger": trigger,
            "data_watermark": watermark,
            "data_max_ts": float(full.ts[train_rows].max()) if len(train_rows) else None,
            "events": len(full),
            "edges": trained.n_edges,
            "warm_from": trained.warm_from,
            "new_users": trained.new_users,
            "new_items": trained.new_items,
            "training": {
                "seconds": round(trained.seconds, 3),
                "device": trained.device,
                "epochs": trained.epochs,
                "final_loss": trained.losses[-1] if trained.losses else None,
                "peak_memory_bytes": trained.peak_memory_bytes,
                "config": trained.config,
            },
            "validation": val,
            "live_validation": {"version": live_version, **live_val} if live_val else None,
            "sequence": seq_info,
            "promotion": {
                "promoted": promotion["promoted"],
                "margin": self.settings.promote_margin,
                "compared_with_live": live_val is not None,
                "finite": promotion["finite"],
            },
        }

    def _seq_cfg(self) -> SequenceConfig:
        s = self.settings
        return SequenceConfig(encoder=s.sequence_encoder, max_len=s.sequence_max_len,
                              windows=s.sequence_windows, precision=s.sequence_precision,
                              epochs=s.sequence_epochs, session_gap_s=s.session_gap_s,
                              max_train_s=s.sequence_budget_s, negatives=s.sequence_negatives,
                              dim=s.sequence_dim, layers=s.sequence_layers,
                              heads=s.sequence_heads, lr_schedule=s.sequence_lr_schedule,
                              ema_decay=s.sequence_ema_decay,
                              balanced_init=s.sequence_balanced_init,
                              device=self.cfg.device)  # fmt: skip

    def _read(self) -> tuple[Log, Watermark]:
        if not self.progress:
            return read_log(self.settings)
        from tqdm import tqdm

        with tqdm(unit="ev", desc="read interaction log", leave=False) as bar:
            return read_log(self.settings, bar.update)

    def _bar(self, desc: str = "train") -> Callable[[int, int, float], None] | None:
        if not self.progress:
            return None
        from tqdm import tqdm

        state: dict[str, Any] = {}

        def step(epoch: int, epochs: int, loss: float) -> None:
            bar = state.get("bar")
            if bar is None:
                bar = state["bar"] = tqdm(total=epochs, unit="epoch", desc=desc, leave=False)
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.update(1)
            if epoch == epochs:
                bar.close()

        return step


def _partitions(c: Any, topics: tuple[str, ...], timeout_s: float = 30.0) -> list[Any]:
    """All partitions of ``topics`` (metadata of a just-created topic may lag a little)."""
    from kafka import TopicPartition

    deadline = time.monotonic() + timeout_s
    while True:
        parts = {t: c.partitions_for_topic(t) or set() for t in topics}
        if all(parts.values()):
            return [TopicPartition(t, p) for t in topics for p in sorted(parts[t])]
        if time.monotonic() > deadline:
            missing = ", ".join(t for t, p in parts.items() if not p)
            raise LsiError(f"topic(s) {missing} have no partitions after {timeout_s:.0f} s; "
                           "is the broker healthy (`lsi kafka status`)?")  # fmt: skip
        time.sleep(0.5)


def run_forever(
    job: RefreshJob,
    *,
    every_s: float | None,
    after_events: int | None,
    drift: bool,
    stop: threading.Event,
    report: Callable[[str], None] = print,
) -> None:
    """Refresh now, then whenever the schedule, the new-interaction count or drift says so,
    until ``stop`` is set. A failed refresh is reported and counted; the loop goes on."""

    from lsi.kafka.clients import client_errors, consumer, ensure_topics
    from lsi.kafka.logs import quiet_repeats

    quiet_repeats()  # a lost broker: one line per error every 10 s, not a flood
    s = job.settings
    ensure_topics(s)
    monitor = HitRateMonitor()
    # the recommendations are read only to judge hits for the drift detector
    topics = (s.interactions_topic, *((s.recommendations_topic,) if drift else ()))
    with client_errors(s):
        c = consumer(s, consumer_timeout_ms=1000)
    try:
        with client_errors(s):
            tps = _partitions(c, topics)
            c.assign(tps)
            c.seek_to_end(*tps)
            for tp in tps:
                c.position(tp)  # resolve "end" now: events arriving during the start refresh count
        log_tps = [tp for tp in tps if tp.topic == s.interactions_topic]
        trigger: str | None = "start"
        last = time.monotonic()
        new = 0
        while not stop.is_set():
            if trigger is not None:
                new = 0
                try:
                    out = job.run_once(trigger)
                    report(out.summary())
                    # what the refresh learned is not new: count from its watermark on
                    mark = out.watermark.get(s.interactions_topic, {})
                    with client_errors(s):
                        for tp in log_tps:
                            done = mark.get(str(tp.partition))
                            if done is not None and c.position(tp) < done:
                                c.seek(tp, done)
                            new += max(0, c.position(tp) - (done or c.position(tp)))
                except LsiError as exc:
                    report(f"refresh [{trigger}] failed: {exc}")
                except Exception as exc:  # keep the loop alive; the metric counts it
                    log.exception("refresh failed")
                    report(f"refresh [{trigger}] failed: {exc!r}")
                last, trigger = time.monotonic(), None
                monitor.reset()
                job.metrics.new_interactions.set(new)
            with client_errors(s):
                batch = c.poll(timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                for r in records:
                    try:
                        data = json.loads(r.value)
                        if tp.topic == s.interactions_topic:
                            new += 1
                            monitor.interaction(data["user_id"], data["item_id"], data.get("ts"))
                        else:
                            monitor.recommendation(data["user_id"],
                                                   [i["item_id"] for i in data["items"]],
                                                   data.get("event_ts"))  # fmt: skip
                    except (ValueError, KeyError, TypeError):
                        continue  # not ours to validate; the workers own these topics
            job.metrics.new_interactions.set(new)
            job.metrics.online_hit_rate.set(monitor.hit_rate)
            if drift and monitor.drifted:
                job.metrics.drifts.inc()
                trigger = "drift"
            elif after_events is not None and new >= after_events:
                trigger = "events"
            elif every_s is not None and time.monotonic() - last >= every_s:
                trigger = "schedule"
    finally:
        c.close()
