"""``lsi bench faults``: the fault suite, end to end against a broker of its own.

One run, on a broker the harness starts itself (free ports, its own data dir; so it can be
restarted) and real ``lsi worker`` processes (``--parent-pid``: they die with the harness):

1. A feeder thread publishes ``events`` good events at ``rate`` per second (a share of them
   sent twice: client duplicates), with the bad-input corpus (:mod:`lsi.bench.corpus`)
   interleaved over the first 60 % of the stream, stray writes to the internal topics
   included.
2. Meanwhile, at seeded random points of the stream, one after another: ``kills`` SIGKILLs of
   the worker, restarted alternately on the same and on an empty data dir; a broker restart
   (down, up on the same data dir); a 1 → 2 → 1 rebalance (a second worker joins, later
   leaves). After each, a probe event per partition is sent and the harness times the first
   new recommendation record and the moment every partition has answered.
3. An HTTP poller asks the live workers for ``/recommendations/{user}/`` all along (one ask in
   ten with an over-long id, which must get a 400) and counts the statuses.
4. When the stream has drained, every worker is stopped and a fresh one starts on an empty
   data dir: it can only restore from the changelogs. One more event per sampled user, then
   its record and its HTTP answer must count exactly one more than before.

Invariants come from the topics, not from the workers' counters: per user, the distinct good
``event_id`` values in ``lsi.events`` against the ``history_size`` of the user's records in
``lsi.recommendations`` (:func:`lsi.bench.fault_report.tally`); each corpus case against the
dead letters that name its offsets (:func:`lsi.bench.fault_report.judge`). Worker crashes
are exits the harness did not cause and tracebacks in the worker logs. Writes
``<name>.json``, ``<name>.md`` and ``<name>.png`` under ``out``.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from lsi.bench.corpus import Case, build_corpus
from lsi.bench.fault_report import DeadLetter, http_key, judge, tally, tracebacks, verdict
from lsi.bench.fault_report import markdown as report_markdown
from lsi.bench.provenance import git_commit
from lsi.bench.traffic import SYNTHETIC, good_events, probe_users, stamped
from lsi.config import Settings
from lsi.kafka.broker import BrokerSettings, KafkaBroker
from lsi.kafka.clients import consumer, ensure_topics, producer, wait_for_group_coordinator
from lsi.serving.worker_process import scrape_metrics, start_worker, stop_worker
from lsi.wire.records import Event

__all__ = ["FaultBenchOptions", "run_fault_bench"]

_MAX_GOOD_BYTES = 16 * 1024  # a good event is never larger; larger values are corpus cases
_AFTER_FAILURE_S = 20.0  # the deadline of waits on the workers once one wait has timed out


@dataclass(frozen=True, slots=True)
class FaultBenchOptions:
    """What to run. The CI version: a few thousand events, 2 kills; the committed report:
    ``events >= 200_000``, ``kills = 10``."""

    events: int = 200_000
    kills: int = 10
    dataset: str = SYNTHETIC
    rate: float = 500.0
    out: Path = Path("benchmarks/results/current")
    name: str = "faults"
    seed: int = 0
    partitions: int = 4
    broker_restart: bool = True
    rebalance: bool = True
    corpus: bool = True
    duplicate_rate: float = 0.02
    session_timeout_s: float = 10.0
    restore_users: int = 300
    wait_s: float = 180.0  # the deadline of each wait on a condition
    quiet_s: float = 20.0  # a drain is over when nothing new appears for this long
    broker_down_s: float = 3.0
    rebalance_hold_s: float = 10.0
    work_dir: Path | None = None  # default: a temporary dir, kept only if the run fails


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Worker:
    name: str
    settings: Settings
    proc: subprocess.Popen[bytes]
    log: Path
    expected_exit: bool = False


class _Reader:
    """Reads one topic from the beginning, all partitions, without a group."""

    def __init__(self, settings: Settings, topic: str, partitions: int) -> None:
        self.consumer = consumer(
            settings, reconnect_backoff_max_ms=1000, max_partition_fetch_bytes=2 * 1024 * 1024
        )
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.consumer.assign(self.tps)
        self.consumer.seek_to_beginning(*self.tps)

    def poll(self, timeout_ms: int = 100) -> list[Any]:
        try:
            batches = self.consumer.poll(timeout_ms=timeout_ms, max_records=5000)
        except KafkaError:
            return []
        return [r for batch in batches.values() for r in batch]

    def ends(self) -> dict[Any, int] | None:
        try:
            return dict(self.consumer.end_offsets(self.tps, timeout_ms=3000))
        except (KafkaError, AssertionError):
            return None

    def end(self) -> int | None:
        ends = self.ends()
        return None if ends is None else sum(ends.values())

    def caught_up(self) -> bool:
        ends = self.ends()
        try:
            return ends is not None and all(
                self.consumer.position(tp, timeout_ms=3000) >= n for tp, n in ends.items()
            )
        except KafkaError:
            return False

    def close(self) -> None:
        self.consumer.close()


class _Harness:
    def __init__(self, opts: FaultBenchOptions, work: Path) -> None:
        self.opts = opts
        self.measured = git_commit()  # the checkout the run starts from, not the one at its end
        self.work = work
        self.rng = random.Random(opts.seed)
        self.run_id = f"f{uuid.uuid4().hex[:6]}"
        self.t0 = time.time()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.workers: list[_Worker] = []  # every incarnation, for the logs
        self.live: list[_Worker] = []
        self.crashes: list[dict[str, Any]] = []
        self.timeouts: list[str] = []
        self.markers: list[tuple[float, str]] = []
        self.timeline: list[tuple[float, int, int]] = []
        self.good_ids: dict[str, str] = {}  # event id -> canonical user
        self.users: list[str] = []
        self._user_set: set[str] = set()
        self.case_offsets: dict[str, list[tuple[str, int, int]]] = {}
        self.retry: list[tuple[str, bytes | None, bytes | None, list[Any], int | None, str]] = []
        self.http: Counter[str] = Counter()
        self.http_500: list[str] = []
        self.produced = 0
        self.duplicates = 0
        self.truth: dict[str, set[str]] = {}
        self.last: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.records = 0
        self.last_record_at = time.time()
        self._sampled = 0.0

    # -- sending ------------------------------------------------------------------------------
    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[Any],
        partition: int | None,
        case: str = "",
    ) -> None:
        def done(md: Any) -> None:
            if case:
                with self.lock:
                    self.case_offsets.setdefault(case, []).append(
                        (md.topic, md.partition, md.offset)
                    )

        def failed(exc: Exception) -> None:
            with self.lock:
                self.retry.append((topic, key, value, headers, partition, case))

        fut = self.producer.send(
            topic, key=key, value=value, headers=headers or None, partition=partition
        )
        fut.add_callback(done)
        fut.add_errback(failed)

    def send_good(self, event: Event, twice: bool = False) -> None:
        with self.lock:
            if event.user_id not in self._user_set:
                self._user_set.add(event.user_id)
                self.users.append(event.user_id)
            self.good_ids[event.event_id] = event.user_id
        value = event.to_json()
        for _ in range(2 if twice else 1):
            self._send(self.settings.events_topic, event.user_id.encode(), value, [], None)

    def send_case(self, case: Case) -> None:
        if case.accepted and case.event_id is not None and case.user is not None:
            with self.lock:
                self.good_ids[case.event_id] = case.user
        topic = {
            "events": self.settings.events_topic,
            "rekeyed": self.settings.rekey_topic,
            "item-deltas": self.settings.item_deltas_topic,
        }[case.target]
        self._send(topic, case.key, case.value, list(case.headers), case.partition, case.name)

    def resend_failed(self) -> None:
        with self.lock:
            todo, self.retry = self.retry, []
        for topic, key, value, headers, partition, case in todo:
            self._send(topic, key, value, headers, partition, case)

    def probe(self, prefix: str) -> list[str]:
        """One event for a fresh user on every partition; returns the users."""
        users = probe_users(f"{self.run_id}-{prefix}", self.opts.partitions)
        for j, user in enumerate(users):
            self.send_good(
                stamped(Event(f"{self.run_id}:{prefix}:{j}", user, "probe-item", "view", 0.0))
            )
        self.producer.flush(timeout=30)
        return users

    def feed(self) -> None:
        """The feeder thread: good events at the offered rate, the corpus interleaved."""
        opts = self.opts
        cases = self.corpus
        slots: dict[int, list[Case]] = {}
        for i, case in enumerate(cases):
            at = int(opts.events * (0.05 + 0.55 * i / max(1, len(cases))))
            slots.setdefault(min(at, max(0, opts.events - 1)), []).append(case)
        rng = random.Random(opts.seed + 1)
        start = time.time()
        try:
            for k, event in enumerate(
                good_events(opts.dataset, opts.events, self.run_id, opts.seed)
            ):
                if self.stop.is_set():
                    return
                for case in slots.pop(k, ()):
                    self.send_case(case)
                delay = start + k / opts.rate - time.time() if opts.rate > 0 else 0.0
                if delay > 0.001:
                    time.sleep(delay)
                twice = rng.random() < opts.duplicate_rate
                self.send_good(stamped(event), twice=twice)
                self.duplicates += twice
                self.produced = k + 1
                if self.retry:
                    self.resend_failed()
            for rest in slots.values():
                for case in rest:
                    self.send_case(case)
            self.producer.flush(timeout=120)
        finally:
            self.fed.set()

    # -- HTTP ---------------------------------------------------------------------------------
    def poll_http(self) -> None:
        """The HTTP poller thread: a random live worker, a random user, every 0.2 s."""
        rng = random.Random(self.opts.seed + 2)
        n = 0
        while not self.stop.wait(0.2):
            live, users = list(self.live), self.users
            if not live or not users:
                continue
            n += 1
            user = "x" * 129 if n % 10 == 0 else users[rng.randrange(len(users))]
            url = (
                f"{rng.choice(live).settings.web_url}/recommendations/"
                f"{urllib.parse.quote(user, safe='')}/"
            )
            status: int | None
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    status = resp.status
                    resp.read()
            except urllib.error.HTTPError as exc:
                status = exc.code
                if status == 500 and len(self.http_500) < 5:
                    self.http_500.append(f"{url}: {exc.read()[:300]!r}")
            except (OSError, ValueError):
                status = None
            self.http[http_key(status)] += 1

    # -- workers ------------------------------------------------------------------------------
    def spawn(self, name: str, data_dir: Path) -> _Worker:
        """Start a worker (from the main thread: the kernel ties ``--parent-pid`` to it)."""
        settings = self.settings.with_(data_dir=data_dir, web_port=free_port())
        log = self.work / "logs" / f"{name}.log"
        proc = start_worker(settings, log, "--loglevel", "warning")
        worker = _Worker(name, settings, proc, log)
        self.workers.append(worker)
        self.live.append(worker)
        self.mark(f"start {name}")
        return worker

    def healthy(self, worker: _Worker) -> bool:
        try:
            with urllib.request.urlopen(f"{worker.settings.web_url}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except (OSError, ValueError):
            return False

    def await_http(self, worker: _Worker) -> float | None:
        t = self.wait(
            lambda: worker.proc.poll() is not None or self.healthy(worker),
            f"{worker.name} serves HTTP",
        )
        return None if t is None or worker.proc.poll() is not None else t

    def retire(self, worker: _Worker, kill: bool = False) -> None:
        worker.expected_exit = True
        if kill:
            if worker.proc.poll() is None:
                os.killpg(worker.proc.pid, signal.SIGKILL)
            worker.proc.wait(timeout=30)
        else:
            stop_worker(worker.proc)
        if worker in self.live:
            self.live.remove(worker)

    def check_workers(self) -> None:
        for worker in list(self.live):
            rc = worker.proc.poll()
            if rc is None or worker.expected_exit:
                continue
            self.live.remove(worker)
            self.crashes.append(
                {
                    "worker": worker.name,
                    "exit_code": rc,
                    "at_seconds": round(time.time() - self.t0, 1),
                    "log": str(worker.log),
                }
            )
            self.mark(f"crash {worker.name}")
            if len(self.crashes) <= 5:  # keep the run going on a fresh incarnation
                self.spawn(f"{worker.name}-c{len(self.crashes)}", worker.settings.data_dir)

    # -- reading the topics -------------------------------------------------------------------
    def read(self) -> None:
        for r in self.recs.poll():
            try:
                rec = json.loads(r.value)
                user, size = str(rec["user_id"]), int(rec["history_size"])
            except (ValueError, KeyError, TypeError):
                continue
            self.records += 1
            self.last_record_at = time.time()
            self.last[user] = size
            self.peak[user] = max(size, self.peak.get(user, 0))
        for r in self.events.poll():
            if r.value is None or len(r.value) > _MAX_GOOD_BYTES:
                continue
            try:
                event_id = json.loads(r.value).get("event_id")
            except (ValueError, AttributeError, RecursionError):
                continue
            owner = self.good_ids.get(event_id) if isinstance(event_id, str) else None
            if owner is not None:
                self.truth.setdefault(owner, set()).add(event_id)

    def drained(self, users: list[str] | None = None) -> bool:
        return all(
            self.last.get(u, 0) >= len(self.truth.get(u, ()))
            for u in (self.truth if users is None else users)
        )

    # -- the clock ----------------------------------------------------------------------------
    def mark(self, label: str) -> None:
        self.markers.append((round(time.time() - self.t0, 2), label))

    def tick(self) -> None:
        self.check_workers()
        self.read()
        now = time.time()
        if now - self._sampled >= 1.0:
            self._sampled = now
            end = self.recs.end()
            if end is not None:
                self.timeline.append((round(now - self.t0, 2), self.produced, end))

    def wait(
        self, cond: Callable[[], bool], what: str, timeout_s: float | None = None
    ) -> float | None:
        """Tick until ``cond()``; the time it held, or ``None`` (recorded) at the deadline.

        Once a wait has timed out the run has failed: later waits on the workers get at most
        :data:`_AFTER_FAILURE_S`, so a stalled pipeline costs minutes, not a quarter hour."""
        limit = self.opts.wait_s if timeout_s is None else timeout_s
        if self.timeouts and what != "sleep" and not what.startswith("the stream reaches"):
            limit = min(limit, _AFTER_FAILURE_S)
        deadline = time.time() + limit
        while True:
            self.tick()
            if cond():
                return time.time()
            if time.time() > deadline:
                self.timeouts.append(what)
                return None
            time.sleep(0.1)

    def sleep(self, seconds: float) -> None:
        end = time.time() + seconds
        self.wait(lambda: time.time() >= end, "sleep", seconds + 60)

    def progress(self, t_ref: float, base: int, probes: list[str], what: str) -> dict[str, Any]:
        """Seconds from ``t_ref`` to the first new recommendation record and to every
        probe's record."""
        first = self.wait(lambda: (self.recs.end() or -1) > base, f"first progress after {what}")
        full = self.wait(
            lambda: all(u in self.last for u in probes), f"every partition progresses after {what}"
        )
        return {
            "seconds_to_first_progress": None if first is None else round(first - t_ref, 2),
            "seconds_to_all_partitions": None if full is None else round(full - t_ref, 2),
        }

    def base(self) -> int:
        """The recommendation topic's end offsets (summed), once the broker answers."""
        deadline = time.time() + self.opts.wait_s
        while time.time() < deadline:
            end = self.recs.end()
            if end is not None:
                return end
            self.tick()
            time.sleep(0.5)
        self.timeouts.append("reading the recommendation offsets")
        return 0

    # -- the scenarios ------------------------------------------------------------------------
    def kill(self, k: int) -> dict[str, Any]:
        victim = self.rng.choice(self.live)
        at = self.produced
        t_kill = time.time()
        self.retire(victim, kill=True)
        self.mark(f"SIGKILL {victim.name}")
        base = self.base()
        probes = self.probe(f"kill{k}")
        empty = k % 2 == 1
        data_dir = self.work / f"w-k{k}-empty" if empty else victim.settings.data_dir
        worker = self.spawn(f"w-k{k}", data_dir)
        up = self.await_http(worker)
        out = {
            "index": k + 1,
            "worker": victim.name,
            "at_events": at,
            "restart": "empty-dir" if empty else "same-dir",
            "seconds_to_http": None if up is None else round(up - t_kill, 2),
        }
        return out | self.progress(t_kill, base, probes, f"kill {k + 1}")

    def broker_restart(self) -> dict[str, Any]:
        at = self.produced
        t_down = time.time()
        self.mark("broker down")
        self.broker.down()
        self.sleep(self.opts.broker_down_s)
        self.broker.up()
        t_up = time.time()
        self.mark("broker up")
        base = self.base()
        probes = self.probe("broker")
        return {"at_events": at, "seconds_down": round(t_up - t_down, 2)} | self.progress(
            t_up, base, probes, "the broker restart"
        )

    def rebalance(self) -> dict[str, Any]:
        at = self.produced
        t_join = time.time()
        second = self.spawn("w-second", self.work / "w-second")
        self.await_http(second)
        probes = self.probe("join0")
        rounds = [time.time()]

        def shared() -> bool:
            """The second worker has handled events (its own counter says so: a liveness
            check, not an invariant) and every partition answers; probe again every 3 s
            (the stream may be idle)."""
            nonlocal probes
            if all(u in self.last for u in probes):
                m = scrape_metrics(second.settings, timeout_s=2)
                if m is not None and m.total("lsi_events_total", agent="ingest") > 0:
                    return True
            if time.time() - rounds[-1] > 3.0:
                rounds.append(time.time())
                probes = self.probe(f"join{len(rounds)}")
            return False

        joined = self.wait(shared, "the second worker takes partitions")
        self.sleep(self.opts.rebalance_hold_s)
        t_leave = time.time()
        self.retire(second)
        self.mark("second worker leaves")
        base = self.base()
        probes = self.probe("leave")
        out = {
            "at_events": at,
            "seconds_to_share_the_work": None if joined is None else round(joined - t_join, 2),
            "seconds_to_stop_the_second": round(time.time() - t_leave, 2),
        }
        return out | self.progress(t_leave, base, probes, "the second worker left")

    def restore(self) -> dict[str, Any]:
        """Every worker stopped; a fresh one on an empty dir; one more event per sampled user."""
        for worker in list(self.live):
            self.retire(worker)
        worker = self.spawn("w-restore", self.work / "w-restore")
        self.await_http(worker)
        users = sorted(u for u in self.truth if not u.startswith(f"{self.run_id}-"))
        sample = self.rng.sample(users, min(self.opts.restore_users, len(users)))
        ids = {user: f"{self.run_id}:restore:{j}" for j, user in enumerate(sample)}
        for user, event_id in ids.items():
            self.send_good(stamped(Event(event_id, user, "restore-item", "view", 0.0)))
        self.producer.flush(timeout=60)
        sent = time.time()

        def counted() -> bool:
            """Every sampled user is counted in full, or (some are short) the restored
            worker has emitted and then been quiet for ``quiet_s``."""
            if not all(ids[u] in self.truth.get(u, ()) for u in sample):
                return False
            quiet = time.time() - self.last_record_at > self.opts.quiet_s
            return self.drained(sample) or (self.last_record_at > sent and quiet)

        self.wait(counted, "the restored worker counts every sampled user")
        mismatched = [u for u in sample if self.last.get(u) != len(self.truth.get(u, ()))]
        http_bad: list[str] = []
        for user in sample[:50]:
            url = f"{worker.settings.web_url}/recommendations/{urllib.parse.quote(user, safe='')}/"
            try:
                with urllib.request.urlopen(url, timeout=10) as resp:
                    size = json.loads(resp.read()).get("history_size")
                    self.http[http_key(resp.status)] += 1
            except urllib.error.HTTPError as exc:
                self.http[http_key(exc.code)] += 1
                size = None
            except (OSError, ValueError):
                self.http[http_key(None)] += 1
                size = None
            if size != len(self.truth.get(user, ())):
                http_bad.append(user)
        self.retire(worker)
        return {
            "users_checked": len(sample),
            "mismatched": len(mismatched),
            "examples": [
                (u, len(self.truth.get(u, ())), self.last.get(u)) for u in mismatched[:10]
            ],
            "http_checked": min(50, len(sample)),
            "http_mismatched": len(http_bad),
        }

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        opts = self.opts
        port, controller = free_port(), free_port()
        while controller == port:
            controller = free_port()
        self.broker = KafkaBroker(
            dataclasses.replace(
                BrokerSettings.from_env(),
                port=port,
                controller_port=controller,
                data_dir=self.work / "kafka",
                heap="512m",
            )
        )
        status = self.broker.up()
        prefix = self.run_id
        self.settings = Settings.from_env(
            {},
            brokers=status.bootstrap,
            partitions=opts.partitions,
            data_dir=self.work / "w1",
            web_port=free_port(),
            models_dir=self.work / "models",
            session_timeout_s=opts.session_timeout_s,
            emit_policy="batch",
        ).isolated(prefix)
        try:
            return self._run(status.version)
        finally:
            self.stop.set()
            for thread in self.threads:
                thread.join(timeout=30)
            for worker in list(self.live):
                self.retire(worker)
            for client in ("producer", "recs", "events"):
                if hasattr(self, client):
                    getattr(self, client).close()
            self.broker.down()

    def _run(self, kafka_version: str) -> dict[str, Any]:
        opts, s = self.opts, self.settings
        ensure_topics(s, changelogs=True)
        wait_for_group_coordinator(s)
        self.corpus = build_corpus(self.run_id, time.time(), opts.partitions) if opts.corpus else []
        self.producer = producer(s, reconnect_backoff_max_ms=1000, linger_ms=5)
        self.recs = _Reader(s, s.recommendations_topic, opts.partitions)
        self.events = _Reader(s, s.events_topic, opts.partitions)
        self.fed = threading.Event()
        first = self.spawn("w1", s.data_dir)
        self.await_http(first)
        for body, name in ((self.feed, "faults-feeder"), (self.poll_http, "faults-http")):
            thread = threading.Thread(target=body, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)

        kinds = ["kill"] * opts.kills + ["broker"] * opts.broker_restart
        kinds += ["rebalance"] * opts.rebalance
        self.rng.shuffle(kinds)
        points = sorted(self.rng.uniform(0.05, 0.9) for _ in kinds)
        kills: list[dict[str, Any]] = []
        broker: dict[str, Any] | None = None
        rebalance: dict[str, Any] | None = None
        stream_s = opts.events / max(opts.rate, 1.0) + opts.wait_s
        for kind, point in zip(kinds, points, strict=True):
            target = point * opts.events
            self.wait(
                lambda: self.fed.is_set() or self.produced >= target,  # noqa: B023
                f"the stream reaches {point:.0%}",
                stream_s,
            )
            if not self.live:
                self.spawn(f"w-again{len(kills)}", s.data_dir)
            if kind == "kill":
                kills.append(self.kill(len(kills)))
            elif kind == "broker":
                broker = self.broker_restart()
            else:
                rebalance = self.rebalance()
        self.wait(self.fed.is_set, "the feeder finishes", stream_s)
        self.resend_failed()
        self.producer.flush(timeout=60)
        self.wait(
            lambda: self.drained() or time.time() - self.last_record_at > opts.quiet_s,
            "the stream drains",
        )
        restore = self.restore()
        return self.report(kafka_version, kills, broker, rebalance, restore)

    def report(
        self,
        kafka_version: str,
        kills: list[dict[str, Any]],
        broker: dict[str, Any] | None,
        rebalance: dict[str, Any] | None,
        restore: dict[str, Any],
    ) -> dict[str, Any]:
        opts, s = self.opts, self.settings
        self.wait(
            lambda: self.events.caught_up() and self.recs.caught_up(),
            "reading the topics to their end",
            120,
        )
        self.tick()
        dlq = _Reader(s, s.dlq_topic, opts.partitions)
        letters: list[DeadLetter] = []
        deadline = time.time() + 120
        while time.time() < deadline:
            letters += [DeadLetter(r.key, r.value, tuple(r.headers or ())) for r in dlq.poll(500)]
            if dlq.caught_up():
                break
        dlq.close()
        results = [judge(c, self.case_offsets.get(c.name, []), letters) for c in self.corpus]
        known = {at for offsets in self.case_offsets.values() for at in offsets}
        stray = [d for d in letters if d.source not in known]
        truth = {u: len(ids) for u, ids in self.truth.items()}
        t = tally(truth, self.last, self.peak)
        logs = {
            w.name: tracebacks(w.log.read_text(errors="replace"))
            for w in self.workers
            if w.log.exists()
        }
        report: dict[str, Any] = {
            "benchmark": "faults",
            **self.measured,
            "dataset": opts.dataset,
            "seed": opts.seed,
            "options": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in dataclasses.asdict(opts).items()
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "kafka": kafka_version,
            },
            "settings": {
                "partitions": s.partitions,
                "emit_policy": s.emit_policy,
                "session_timeout_s": s.session_timeout_s,
                "batch_max": s.batch_max,
            },
            "events": {
                "good_sent": self.produced,
                "duplicates_sent": self.duplicates,
                "good_in_topic": t.events,
                "users": t.users,
                "corpus_cases": len(self.corpus),
                "recommendation_records": self.records,
            },
            "invariants": {
                "lost_events": t.lost_events,
                "users_short": t.users_short,
                "double_applied_users": t.double_applied_users,
                "double_applied_events": t.double_applied_events,
                "users_without_record": t.users_without_record,
                "unexpected_dead_letters": len(stray),
                "unexpected_dead_letter_reasons": dict(
                    Counter((d.reasons or ["?"])[0] for d in stray)
                ),
                "examples": [list(e) for e in t.examples],
            },
            "kills": kills,
            "broker_restart": broker,
            "rebalance": rebalance,
            "restore": restore,
            "corpus": {
                "cases": [r.to_dict() for r in results],
                "passed": sum(r.ok for r in results),
                "failed": sum(not r.ok for r in results),
                "dlq_reasons": dict(Counter(g for r in results for g in set(r.got))),
            },
            "crashes": {
                "unexpected_exits": self.crashes,
                "tracebacks": sum(len(v) for v in logs.values()),
                "traceback_lines": {k: dict(Counter(v)) for k, v in logs.items() if v},
            },
            "http": {
                k: self.http.get(k, 0)
                for k in ("200", "400", "404", "500", "503", "other", "connection_error")
            },
            "http_500_examples": self.http_500,
            "timeouts": [w for w in self.timeouts if w != "sleep"],
            "markers": self.markers,
            "seconds": round(time.time() - self.t0, 1),
        }
        v = verdict(report)
        report["passed"], report["failures"] = v.passed, v.failures
        return report


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def run_fault_bench(opts: FaultBenchOptions) -> dict[str, Any]:
    """Run the suite; write ``<name>.json``, ``<name>.md`` and ``<name>.png`` under
    ``opts.out``; return the report (``report["passed"]``, ``report["failures"]``)."""
    opts.out.mkdir(parents=True, exist_ok=True)
    own = opts.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="lsi-faults-")) if own else opts.work_dir
    assert work is not None
    work.mkdir(parents=True, exist_ok=True)
    quiet = logging.getLogger("kafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # the broker restart makes kafka-python shout
    harness: _Harness | None = _Harness(opts, work)
    timeline: list[tuple[float, int, int]] = []
    # a SIGTERM (``timeout``, CI) must still stop the broker, which outlives its parent
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_signal) if main else None
    try:
        # kafka-python leaves the sockets of the connects refused while the broker is down to
        # the garbage collector (an upstream leak): their ResourceWarnings, raised inside its
        # IO loop, are not ours to report, and are collected here rather than anywhere later
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            try:
                assert harness is not None
                report = harness.run()
                timeline = harness.timeline
            finally:
                harness = None
                gc.collect()
    finally:
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        quiet.setLevel(level)
    report["work_dir"] = str(work)
    _write(opts, report, timeline)
    if own and report["passed"]:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _write(
    opts: FaultBenchOptions, report: dict[str, Any], timeline: list[tuple[float, int, int]]
) -> None:
    stem = opts.out / opts.name
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(report_markdown(report))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.plot([t for t, _, _ in timeline], [p for _, p, _ in timeline], label="good events sent")
    ax.plot(
        [t for t, _, _ in timeline], [r for _, _, r in timeline], label="recommendation records"
    )
    colours = {
        "SIGKILL": "tab:red",
        "broker": "tab:purple",
        "second": "tab:green",
        "crash": "black",
    }
    for t, label in report["markers"]:
        colour = next((c for k, c in colours.items() if k in label), None)
        if colour is not None:
            ax.axvline(t, color=colour, alpha=0.5, lw=1)
    ax.set_xlabel(
        "seconds since the harness started (red: SIGKILL, purple: broker, green: rebalance)"
    )
    ax.set_ylabel("count")
    ax.set_title(f"lsi fault suite: {report['dataset']}, {len(report['kills'])} kills")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    plt.close(fig)
