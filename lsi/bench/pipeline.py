"""``lsi bench pipeline``: lsi against its anchors, on one broker, one topic, one run.

``events`` events of the dataset are published once to a topic of the bench's own; then,
one after the other, each in a process (or two) of its own with a consumer group of its own,
these programs drain all of them (:mod:`lsi.bench.anchors` for the first three):

a. a raw aiokafka consumer with ``json.loads``;
b. a bare Faust agent (``stream.take``);
c. a Faust agent writing one RocksDB table entry per event;
f. two lsi worker processes in one consumer group (own data dirs and web ports), no model;
d. one lsi worker, no model;
e. one lsi worker serving a snapshot with the fused scorer (long-term model, encoder and gate
   trained on the same events by :func:`lsi.evaluation.fused.train_bundle`, the refresh
   job's training, encoder time capped by ``train_budget_s``), unless ``model`` is off.

Latency at ``rate`` events/s offered, ``live_events`` events each (the slice after the
backlog), by the same aiokafka producer process (``acks=all``, each event stamped with the
wall clock as it is sent), read by the same aiokafka consumer process:

g. the bare hop: produce to a topic of its own, consume; delay = arrival − the event's ``ts``;
h. lsi's event → recommendation: offered to the events topic after (e)'s drain (after (d)'s
   without a model) and the item statistics have settled; delay = arrival of each record on
   the recommendations topic − its ``event_ts`` (the newest event behind the list). The
   worker's own ``lsi_end_to_end_latency_seconds`` over the phase is reported beside it.

Rates and the clock: :mod:`lsi.bench.pipeline_report`. The load average is recorded before
each step; lsi's workers get ``OMP_NUM_THREADS=1`` unless the environment sets it (torch's
thread pool fights the event loop on small machines). The report (``report.json``,
``report.md``, ``report.png``) goes to ``out``, with the commit (``git rev-parse HEAD``) and,
when ``lsi bench catalogue`` has written one, the catalogue-size report.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lsi.bench.pipeline_report import Drain, Latency, crossing, markdown, plot, ratios
from lsi.bench.provenance import git_commit
from lsi.config import Settings
from lsi.errors import LsiError
from lsi.kafka.broker import BrokerSettings, KafkaBroker
from lsi.kafka.clients import ensure_topics
from lsi.kafka.producer import replay
from lsi.monitoring.scrape import MetricsSnapshot, histogram_quantile
from lsi.serving.worker_process import scrape_metrics, start_worker, stop_worker

__all__ = ["QUICK", "PipelineBenchOptions", "group_assigned", "run_pipeline_bench"]

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class PipelineBenchOptions:
    """What ``lsi bench pipeline`` runs (see the module docstring).

    ``brokers``: use this running broker; by default the local one (``lsi kafka up``), started
    and stopped again if it was not running. ``wait_s``: the deadline of each step (default
    ``120 + events / 400`` s). ``catalogue``: the folder (or ``.md`` file) of the
    ``lsi bench catalogue`` report to include.
    """

    dataset: str = "ml-1m"
    events: int = 200_000
    live_events: int = 20_000
    rate: float = 1000.0
    out: Path = Path("benchmarks/results/current/pipeline")
    model: bool = True
    train_budget_s: float = 30.0
    max_len: int = 200
    web_port: int = 6099
    brokers: str | None = None
    wait_s: float | None = None
    catalogue: Path | None = Path("benchmarks/results/current/catalogue")

    @property
    def deadline_s(self) -> float:
        return self.wait_s if self.wait_s is not None else 120.0 + self.events / 400.0


#: ``--quick``: a run of a minute or two that exercises every step (for tests and smoke runs)
QUICK: dict[str, Any] = {"events": 3000, "live_events": 600, "rate": 200.0,
                         "train_budget_s": 5.0, "max_len": 50}  # fmt: skip


def group_assigned(info: dict[str, Any], topic: str, members: int) -> bool:
    """Whether a ``describe_groups`` answer shows the group Stable with at least ``members``
    members, each assigned partitions of ``topic`` (when its assignment can be decoded)."""
    if info.get("group_state") != "Stable" or len(info.get("members") or []) < members:
        return False
    for member in info["members"]:
        assignment = member.get("member_assignment")
        if isinstance(assignment, dict):
            topics = {a.get("topic") for a in assignment.get("assigned_partitions") or []}
            if topic not in topics:
                return False
    return True


def _describe(info: dict[str, Any]) -> str:
    members = info.get("members") or []
    topics = [sorted({a.get("topic") for a in (m.get("member_assignment") or {}).get(
        "assigned_partitions") or []}) if isinstance(m.get("member_assignment"), dict) else "?"
              for m in members]  # fmt: skip
    return f"state {info.get('group_state')}, {len(members)} member(s), topics {topics}"


class _GroupWatch:
    """Notes when a consumer group first has its partitions (``first``: Stable, its members
    on ``topic``) and when it first has them with all ``members`` (``at``); polled every
    0.1 s from a thread of its own, with an admin client made before the programs start."""

    def __init__(self, settings: Settings, group: str, topic: str, members: int = 1) -> None:
        from kafka import KafkaAdminClient

        from lsi.kafka.security import kafka_python_options

        self.first: float | None = None
        self.at: float | None = None
        self.last = ""  # what the group looked like the last time, for a note when never seen
        self._admin = KafkaAdminClient(bootstrap_servers=settings.brokers,
                                       **kafka_python_options(settings))  # fmt: skip
        self._args = (group, topic, members)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{group}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        group, topic, members = self._args
        while not self._stop.is_set():
            try:
                info = self._admin.describe_groups([group]).get(group) or {}
            except Exception as exc:  # no coordinator yet, or an odd answer: keep looking
                self.last = f"{type(exc).__name__}: {exc}"[:200]
                info = {}
            else:
                self.last = _describe(info)
            if self.first is None and group_assigned(info, topic, 1):
                self.first = time.time()
            if group_assigned(info, topic, members):
                self.at = time.time()
                return
            self._stop.wait(0.1)

    def close(self) -> float | None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._admin.close()
        return self.at


@dataclass
class _Bench:
    """One run's shared state: options, topics, where files go, the steps so far."""

    opts: PipelineBenchOptions
    base: Settings
    prefix: str
    work: Path
    steps: list[dict[str, Any]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def topic(self) -> str:
        return self.base.events_topic

    def step(self, name: str) -> tuple[float, float, float]:
        load = os.getloadavg()
        self.steps.append({"step": name, "load_average": [round(x, 2) for x in load],
                           "at": round(time.time(), 3)})  # fmt: skip
        print(f"[bench] {name} (load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})",
              flush=True)  # fmt: skip
        return load

    def settings_for(self, name: str, port: int = 0, models: bool = False) -> Settings:
        """An lsi worker's settings: the shared events topic, everything else its own."""
        return self.base.isolated(f"{self.prefix}-{name}").with_(
            events_topic=self.topic, data_dir=self.work / name, web_port=port or self.opts.web_port,
            models_dir=self.work / ("models" if models else f"{name}-models"),
        )  # fmt: skip

    def spawn(self, kind: str, log: str, *args: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "lsi.bench.anchors", kind, "--brokers", self.base.brokers,
                "--parent-pid", str(os.getpid()), *args]  # fmt: skip
        with (self.work / log).open("wb") as fh:
            return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                                    start_new_session=True)  # fmt: skip

    def worker_env(self) -> dict[str, str]:
        return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        stop_worker(proc, timeout_s=20)


# -- the drains ---------------------------------------------------------------------------
def _anchor_drain(b: _Bench, name: str, kind: str) -> Drain:
    load = b.step(f"{name}: {kind} drains {b.opts.events:,} events")
    group = f"{b.prefix}-{name}"
    result = b.work / f"{name}.json"
    watch = _GroupWatch(b.base, group, b.topic)
    started = time.time()
    proc = b.spawn(kind, f"{name}.log", "--topic", b.topic, "--group", group,
                   "--events", str(b.opts.events), "--result", str(result),
                   "--data-dir", str(b.work / name), "--partitions", str(b.base.partitions),
                   "--batch", str(b.base.batch_max), "--within", str(b.base.batch_within_s))  # fmt: skip
    note = ""
    try:
        proc.wait(timeout=b.opts.deadline_s)
    except subprocess.TimeoutExpired:
        note = f"did not finish in {b.opts.deadline_s:.0f} s"
    finally:
        _stop(proc)
        assigned = watch.close()
    got = json.loads(result.read_text()) if result.exists() else {}
    done = got.get("done")
    # the program's own note of its assignment, when it has one: a short drain can end
    # before the watcher's next look at the group
    assigned = got.get("assigned") or assigned
    if done is None and not note:
        note = f"exited with {proc.returncode}; see {b.work / (name + '.log')}"
    return _finish(b, Drain(name, b.opts.events, 1, started, assigned, done, load, note))


def _finish(b: _Bench, drain: Drain) -> Drain:
    if not drain.ok:
        b.failed.append(f"{drain.name}: {drain.note}")
    d = drain.to_dict()
    print(f"[bench]   {d['label']}: {d['events_per_second'] or 0:,.0f} events/s from the "
          f"assignment ({d['events_per_second_from_start'] or 0:,.0f} from process start)"
          f"{' — ' + drain.note if drain.note else ''}", flush=True)  # fmt: skip
    return drain


def _learned(m: MetricsSnapshot) -> float:
    return m.total("lsi_events_total", agent="interest", outcome="accepted")


@dataclass
class _Workers:
    procs: list[subprocess.Popen[bytes]]
    settings: list[Settings]
    logs: list[Path]

    def learned(self) -> float | None:
        total = 0.0
        for s in self.settings:
            m = scrape_metrics(s, timeout_s=2.0)
            if m is None:
                return None
            total += _learned(m)
        return total

    def check(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                raise LsiError(f"a worker exited with {proc.returncode}; see {log}")

    def stop(self) -> None:
        for proc in self.procs:
            _stop(proc)


def _lsi_drain(b: _Bench, name: str, count: int, models: bool,
               timelines: dict[str, list[tuple[float, float]]]) -> tuple[Drain, _Workers]:  # fmt: skip
    """Start ``count`` workers of one group on the backlog; time them until they have learned
    every event (summed over their metrics). The workers are left running."""
    load = b.step(f"{name}: {count} lsi worker(s) drain {b.opts.events:,} events"
                  f"{' with the fused model' if models else ''}")  # fmt: skip
    settings = [b.settings_for(name, b.opts.web_port + i, models).with_(data_dir=b.work / f"{name}-{i}")
                for i in range(count)]  # fmt: skip
    ensure_topics(settings[0], changelogs=True)  # no worker creates them while another joins
    watch = _GroupWatch(b.base, settings[0].app_id, b.topic, members=count)
    started = time.time()
    logs = [b.work / f"{name}-{i}.log" for i in range(count)]
    workers = _Workers([start_worker(s, log, "--loglevel", "warning", cwd=ROOT, env=b.worker_env())
                        for s, log in zip(settings, logs, strict=True)], settings, logs)  # fmt: skip
    timeline: list[tuple[float, float]] = [(0.0, 0.0)]
    note = ""
    try:
        deadline = started + b.opts.deadline_s
        while True:
            workers.check()
            learned = workers.learned()
            now = time.time()
            if learned is not None:
                timeline.append((now - started, learned))
                if learned >= b.opts.events:
                    break
            if now > deadline:
                note = f"learned {timeline[-1][1]:,.0f} of {b.opts.events:,} in {b.opts.deadline_s:.0f} s"
                break
            time.sleep(0.5)
    except LsiError as exc:
        note = str(exc)
    all_assigned = watch.close()
    if all_assigned is None and not note:
        note = (
            f"the group was never seen with {count} member(s) assigned (last: {watch.last[:120]})"
        )
    timelines[name] = [(round(t, 2), n) for t, n in timeline]
    t_done = crossing(timeline, b.opts.events)
    done = None if t_done is None else started + t_done
    # several workers: the clock starts when the group first has its partitions (the first
    # to join starts on all of them; the rebalance when the next joins is part of the cost)
    drain = Drain(name, b.opts.events, count, started, watch.first, done, load, note,
                  all_assigned=all_assigned if count > 1 else None)  # fmt: skip
    return _finish(b, drain), workers


# -- latency ------------------------------------------------------------------------------
def _latency_consumer(b: _Bench, name: str, topic: str, stamp: str,
                      expect: int = 0) -> tuple[subprocess.Popen[bytes], Path]:  # fmt: skip
    """Start the aiokafka latency consumer on ``topic``; return once it is positioned."""
    result, ready = b.work / f"{name}-latency.json", b.work / f"{name}-latency.ready"
    proc = b.spawn("latency", f"{name}-latency.log", "--topic", topic, "--field", stamp,
                   "--partitions", str(b.base.partitions),
                   "--events", str(expect), "--result", str(result), "--ready", str(ready))  # fmt: skip
    deadline = time.time() + 60
    while not ready.exists():
        if proc.poll() is not None or time.time() > deadline:
            _stop(proc)
            raise LsiError(
                f"the latency consumer did not start; see {b.work / (name + '-latency.log')}"
            )
        time.sleep(0.1)
    return proc, result


def _latency_result(proc: subprocess.Popen[bytes], result: Path, wait_s: float) -> list[float]:
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # it writes what it has and exits
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            _stop(proc)
    if not result.exists():
        return []
    samples: list[float] = json.loads(result.read_text())["latencies"]
    return samples


def _offer(b: _Bench, name: str, topic: str) -> int:
    """Offer the live slice (the ``live_events`` after the backlog) to ``topic`` at ``rate``
    from a producer process; returns how many were sent."""
    result = b.work / f"{name}-produce.json"
    proc = b.spawn("produce", f"{name}-produce.log", "--topic", topic, "--dataset",
                   b.opts.dataset, "--start", str(b.opts.events), "--events",
                   str(b.opts.live_events), "--rate", f"{b.opts.rate:g}", "--run-id", name,
                   "--result", str(result))  # fmt: skip
    try:
        proc.wait(timeout=60 + 2 * b.opts.live_events / b.opts.rate)
    except subprocess.TimeoutExpired:
        _stop(proc)
    if not result.exists():
        raise LsiError(f"the producer did not finish; see {b.work / (name + '-produce.log')}")
    sent: int = json.loads(result.read_text())["sent"]
    return sent


_FAUST_HOP = ("bare Faust agent: micro-batches as lsi's, each user's newest event sent on, "
              "acknowledged")  # fmt: skip
_ARRIVAL = "arrival − the event's ts"


def _hop(b: _Bench) -> Latency:
    load = b.step(f"hop: bare produce→consume at {b.opts.rate:,.0f} events/s")
    hop = b.base.with_(events_topic=f"{b.prefix}.hop")
    ensure_topics(hop)
    proc, result = _latency_consumer(b, "hop", hop.events_topic, "ts", b.opts.live_events)
    sent = _offer(b, "hop", hop.events_topic)
    samples = _latency_result(proc, result, wait_s=30)
    if len(samples) < sent:
        b.failed.append(f"hop: {len(samples)} of {sent} records arrived")
    return Latency("hop", "bare hop: aiokafka producer → aiokafka consumer", b.opts.rate,
                   sent, samples, load, _ARRIVAL)  # fmt: skip


def _faust_hop(b: _Bench) -> Latency:
    """Faust's own event → output latency at the offered rate: a bare agent that takes
    micro-batches as lsi's worker does and sends each batch's newest event per user on."""
    load = b.step(f"faust hop: a bare Faust agent relays micro-batches at {b.opts.rate:,.0f} "
                  "events/s")  # fmt: skip
    src = b.base.with_(events_topic=f"{b.prefix}.relay-in")
    dst = b.base.with_(events_topic=f"{b.prefix}.relay-out")
    ensure_topics(src)
    ensure_topics(dst)
    ready = b.work / "relay.ready"
    relay = b.spawn("faust-relay", "relay.log", "--topic", src.events_topic,
                    "--out-topic", dst.events_topic, "--group", f"{b.prefix}-relay",
                    "--data-dir", str(b.work / "relay"), "--partitions", str(b.base.partitions),
                    "--batch", str(b.base.batch_max), "--within", str(b.base.batch_within_s),
                    "--ready", str(ready), "--result", str(b.work / "relay.json"))  # fmt: skip
    try:
        deadline = time.time() + 120
        while not ready.exists():
            if relay.poll() is not None or time.time() > deadline:
                b.failed.append(f"faust hop: the relay did not start; see {b.work / 'relay.log'}")
                return Latency("faust_hop", _FAUST_HOP, b.opts.rate, 0, [], load, _ARRIVAL)
            time.sleep(0.1)
        proc, result = _latency_consumer(b, "faust_hop", dst.events_topic, "ts")
        sent = _offer(b, "faust_hop", src.events_topic)
        time.sleep(1.0)  # the last batch's records reach the topic after the last send
        samples = _latency_result(proc, result, wait_s=0)
    finally:
        _stop(relay)
    if not samples:
        b.failed.append("faust hop: no relayed record arrived")
    return Latency("faust_hop", _FAUST_HOP, b.opts.rate, sent, samples, load, _ARRIVAL)


def _settle(settings: Settings, limit_s: float = 120.0) -> tuple[MetricsSnapshot | None, float]:
    """Wait until the item-stats agent has folded the backlog's deltas (its batch count stops
    changing), so the live phase measures live traffic, not the tail of the backlog."""
    start, seen, snap = time.time(), -1.0, None
    while time.time() - start < limit_s:
        time.sleep(1.0)
        snap = scrape_metrics(settings) or snap
        if snap is None:
            continue
        handled = sum(buckets[-1][1] for (metric, labels), buckets in snap.histograms.items()
                      if metric == "lsi_batch_size" and ("agent", "item_stats") in labels)  # fmt: skip
        if handled == seen:
            break
        seen = handled
    return snap, time.time() - start


def _phase_quantiles(before: MetricsSnapshot | None, after: MetricsSnapshot | None,
                     name: str) -> dict[str, float | None]:  # fmt: skip
    def buckets(m: MetricsSnapshot | None) -> dict[float, float]:
        out: dict[float, float] = {}
        for (metric, _), pairs in m.histograms.items() if m else []:
            if metric == name:
                for bound, count in pairs:
                    out[bound] = out.get(bound, 0.0) + count
        return out

    b0, b1 = buckets(before), buckets(after)
    delta = [(bound, b1[bound] - b0.get(bound, 0.0)) for bound in b1]
    return {f"p{int(q * 100)}": histogram_quantile(q, delta) for q in (0.5, 0.99)}


def _live(b: _Bench, workers: _Workers, model: bool) -> Latency:
    settings = workers.settings[0]
    before, settle_s = _settle(settings)
    load = b.step(f"live: lsi event→recommendation at {b.opts.rate:,.0f} events/s"
                  f"{' with the fused model' if model else ''}")  # fmt: skip
    proc, result = _latency_consumer(b, "lsi", settings.recommendations_topic, "event_ts")
    sent = _offer(b, "live", settings.events_topic)
    deadline, after = time.time() + b.opts.deadline_s, before
    while time.time() < deadline:
        snap = scrape_metrics(settings)
        if snap is not None:
            after = snap
            if _learned(snap) >= b.opts.events + sent:
                break
        time.sleep(0.5)
    else:
        b.failed.append(f"live: not every event was learned in {b.opts.deadline_s:.0f} s")
    time.sleep(1.0)  # the last batch's records reach the topic after the count
    samples = _latency_result(proc, result, wait_s=0)
    if not samples:
        b.failed.append("live: no recommendation record arrived")
    served = "fused model" if model else "no model"
    return Latency("lsi", f"lsi: event → recommendation record, one worker, {served}",
                   b.opts.rate, sent, samples, load,
                   "arrival of the record − its event_ts",
                   {"histogram_seconds": _phase_quantiles(before, after, "lsi_end_to_end_latency_seconds"),
                    "processing_seconds": _phase_quantiles(before, after, "lsi_processing_latency_seconds"),
                    "item_stats_settle_seconds": round(settle_s, 1)})  # fmt: skip


# -- the model ----------------------------------------------------------------------------
def _publish_model(b: _Bench, models_dir: Path) -> dict[str, Any]:
    """Train a snapshot with the fused scorer on the backlog's events; make it live."""
    from lsi.evaluation.datasets import load
    from lsi.evaluation.fused import train_bundle
    from lsi.serving.store import SnapshotArrays, SnapshotStore
    from models.training.longterm import Log
    from models.training.sequence import SequenceConfig

    b.step(f"train: the fused model on the {b.opts.events:,} events")
    data = load(b.opts.dataset)
    log = Log.from_interactions(data, data.time_order()[: b.opts.events])
    cfg = SequenceConfig(max_len=b.opts.max_len, max_train_s=b.opts.train_budget_s, device="cpu")
    t0 = time.perf_counter()
    bundle = train_bundle(log, 0, cfg, version="bench")
    lt = bundle.served
    store = SnapshotStore(models_dir)
    version = store.publish(
        SnapshotArrays(lt.user_ids, lt.item_ids, lt.user_vec, lt.item_vec, bundle.warm.base,
                       lt.hist_indptr, lt.hist_items, lt.sequence),
        {"model": "weighted-lightgcn", "trigger": "bench", "events": len(log)},
    )  # fmt: skip
    store.promote(version)
    return {"version": version, "events": len(log),
            "train_seconds": round(time.perf_counter() - t0, 1),
            "max_len": b.opts.max_len, **bundle.info()}  # fmt: skip


# -- the run ------------------------------------------------------------------------------
def run_pipeline_bench(opts: PipelineBenchOptions) -> dict[str, Any]:
    """Run every step; write ``report.json``, ``report.md`` and ``report.png`` to
    ``opts.out``; return the report (``failed`` lists the steps that did not complete)."""
    opts.out.mkdir(parents=True, exist_ok=True)
    measured = git_commit()  # the checkout the run starts from, not the one at its end
    load_start = os.getloadavg()
    broker, was_running, kafka_version = None, True, "?"
    brokers = opts.brokers
    if brokers is None:
        broker = KafkaBroker(BrokerSettings.from_env())
        was_running = broker.status().running
        status = broker.up()
        brokers, kafka_version = status.bootstrap, status.version
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix=f"lsi-{prefix}-"))
    # LSI_* tuning from the environment applies; names, ports and dirs are the bench's own
    base = Settings.from_env(None, brokers=brokers).isolated(prefix)
    b = _Bench(opts, base, prefix, work)
    drains: dict[str, Drain] = {}
    latency: dict[str, Latency] = {}
    timelines: dict[str, list[tuple[float, float]]] = {}
    model_info: dict[str, Any] | None = None
    try:
        ensure_topics(base)
        b.step(f"publish: {opts.events:,} {opts.dataset} events to {b.topic}")
        backlog = replay(base, opts.dataset, limit=opts.events, run_id="backlog")
        if backlog.sent < opts.events:
            raise LsiError(f"{opts.dataset} has only {backlog.sent} events; lower --events")
        for name, kind in (("aiokafka", "aiokafka"), ("faust", "faust"),
                           ("faust_table", "faust-table")):  # fmt: skip
            drains[name] = _anchor_drain(b, name, kind)
        latency["hop"] = _hop(b)
        latency["faust_hop"] = _faust_hop(b)
        drains["lsi_x2"], pair = _lsi_drain(b, "lsi_x2", 2, False, timelines)
        pair.stop()
        drains["lsi"], one = _lsi_drain(b, "lsi", 1, False, timelines)
        try:
            if not opts.model and drains["lsi"].ok:
                latency["lsi"] = _live(b, one, model=False)
        finally:
            one.stop()
        if opts.model:
            model_info = _publish_model(b, work / "models")
            drains["lsi_model"], fused = _lsi_drain(b, "lsi_model", 1, True, timelines)
            try:
                if drains["lsi_model"].ok:
                    latency["lsi"] = _live(b, fused, model=True)
            finally:
                fused.stop()
    finally:
        _delete_topics(base, prefix)
        if broker is not None and not was_running:
            broker.down()
    report = _report(b, drains, latency, timelines, model_info, kafka_version, load_start,
                     measured)  # fmt: skip
    _write(opts.out, report)
    if b.failed:
        print(f"[bench] incomplete: {'; '.join(b.failed)}; logs kept in {work}", flush=True)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _report(b: _Bench, drains: dict[str, Drain], latency: dict[str, Latency],
            timelines: dict[str, list[tuple[float, float]]], model_info: dict[str, Any] | None,
            kafka_version: str, load_start: tuple[float, float, float],
            provenance: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    opts, s = b.opts, b.base
    commit, dirty = provenance["commit"], provenance["dirty"]
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    return {
        "benchmark": "pipeline",
        "commit": commit,
        "dirty": dirty,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "dataset": opts.dataset,
        "events": opts.events,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "kafka": kafka_version,
        },
        "load_average": {
            "start": [round(x, 2) for x in load_start],
            "end": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {
            "partitions": s.partitions,
            "batch_max": s.batch_max,
            "batch_within_s": s.batch_within_s,
            "emit_policy": s.emit_policy,
            "scorer": s.scorer,
            "omp_num_threads": b.worker_env()["OMP_NUM_THREADS"],
        },
        "options": options,
        "clock": "rates: events ÷ (last event handled − the consumer group's assignment); "
        "events_per_second_from_start: ÷ (last event − process start)",
        "model": model_info,
        "drains": {name: d.to_dict() for name, d in drains.items()},
        "latency": {name: lat.to_dict() for name, lat in latency.items()},
        "ratios": [r.to_dict() for r in ratios(drains, latency, model=opts.model)],
        "timelines": timelines,
        "catalogue": _catalogue(opts.catalogue),
        "state": _state_sizes(opts.dataset, s.recent_n),
        "steps": b.steps,
        "failed": b.failed,
        "command": _command(opts),
    }


def _state_sizes(dataset: str, recent_n: int) -> dict[str, Any]:
    """Per-user state bytes after the whole dataset (:mod:`lsi.bench.state_size`: the
    worker's state code, replayed offline; a few seconds)."""
    from lsi.bench.state_size import measure_state_bytes

    return measure_state_bytes(dataset, recent_n=recent_n, timing=False)


def _command(opts: PipelineBenchOptions) -> str:
    d = PipelineBenchOptions()
    parts = ["lsi bench pipeline"]
    for flag, value, default in (("--dataset", opts.dataset, d.dataset),
                                 ("--events", opts.events, d.events),
                                 ("--live-events", opts.live_events, d.live_events),
                                 ("--rate", opts.rate, d.rate),
                                 ("--train-budget", opts.train_budget_s, d.train_budget_s),
                                 ("--max-len", opts.max_len, d.max_len)):  # fmt: skip
        if value != default:
            parts.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    if not opts.model:
        parts.append("--skip-model")
    return " ".join(parts)


def _catalogue(path: Path | None) -> dict[str, Any] | None:
    """The ``lsi bench catalogue`` report to include: ``path`` itself (a ``.md``), or the
    ``report.md`` (else the first ``*.md``) in that folder."""
    if path is None:
        return None
    found = path if path.is_file() else None
    if path.is_dir():
        found = path / "report.md" if (path / "report.md").is_file() else next(
            iter(sorted(path.glob("*.md"))), None)  # fmt: skip
    if found is None:
        return {"path": str(path), "markdown": None}
    return {"path": str(found), "markdown": found.read_text()}


def _delete_topics(base: Settings, prefix: str) -> None:
    """Best effort: the bench's topics (events, per-run topics, changelogs) go."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from lsi.kafka.security import kafka_python_options

    try:
        admin = KafkaAdminClient(bootstrap_servers=base.brokers, **kafka_python_options(base))
        try:
            doomed = [t for t in admin.list_topics() if t.startswith((prefix, f"lsi-{prefix}"))]
            if doomed:
                admin.delete_topics(doomed, timeout_ms=30_000)
        finally:
            admin.close()
    except KafkaError as exc:
        print(f"[bench] could not delete the bench's topics: {exc}", flush=True)


def _write(out: Path, report: dict[str, Any]) -> None:
    cat = report.get("catalogue")
    if cat and cat.get("path"):
        cat["link"] = os.path.relpath(Path(cat["path"]).resolve(), out.resolve())
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    plot(report, out / "report.png")
