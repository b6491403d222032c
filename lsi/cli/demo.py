"""``lsi demo``: a local broker, a worker, a dataset replay, live recommendations and metrics.

Runs everything on this machine: starts (or reuses) the Kafka broker and clears what an earlier
demo left in it (topics, changelogs, consumer group; the local tables and snapshots), starts one
worker as a child process and the model refresh job (in this process: it trains the model from
the interaction log after every ``refresh_after`` new interactions and announces each snapshot,
which the worker swaps in), publishes a few invalid events (to show the dead-letter path) and
then the dataset in time order, and every two seconds prints a metrics line and the latest
lists of a few users, with their short-/long-term attribution. Where Debian's ``prometheus`` is
installed, it also runs a Prometheus server on loopback with the shipped rules, scraping the
worker and the refresh job, and at the end checks every dashboard panel against it
(``lsi monitoring check``) and renders the charts of ``lsi report metrics`` into
``var/demo/metrics``. Ctrl-C, SIGTERM or SIGHUP (or the end of the replay with
``--exit-when-done``) stops what the demo started: Prometheus, the refresh, the worker and,
unless ``--keep-broker`` or it was already running, the broker. The first signal starts that
cleanup; later ones are ignored until it is done (``uv run`` forwards the terminal's Ctrl-C, so
the demo gets two, and the second used to abort the cleanup half-way).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsi.cli.present import format_recommendation
from lsi.config import Settings
from lsi.errors import LsiError
from lsi.evaluation.datasets import item_titles
from lsi.kafka.broker import BrokerSettings, KafkaBroker
from lsi.kafka.broker.process import port_in_use
from lsi.kafka.clients import consumer, ensure_topics, producer, reset_stream
from lsi.kafka.producer import ReplayReport, replay
from lsi.monitoring.prometheus_local import LocalPrometheus, find_prometheus
from lsi.monitoring.scrape import MetricsSnapshot
from lsi.serving.worker_process import scrape_metrics, start_worker, stop_worker

__all__ = ["DemoOptions", "Stopped", "run_demo"]

#: the signals that stop the demo (and its cleanup then ignores)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """The demo was asked to stop by a signal (``signum``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def _stop_on_signals() -> Iterator[Any]:
    """The first stop signal raises :class:`Stopped` in the main thread; the ``shield``
    it yields makes every later one ignored (call it when the cleanup starts). The previous
    handlers come back on exit. Outside the main thread (tests) signals are left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    fired: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        if not fired:
            fired.append(signum)
            raise Stopped(signum)

    def shield() -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield shield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_BAD_EVENTS: list[tuple[bytes | None, bytes]] = [
    (b"u-demo", b"{not json"),
    (b"u-demo", b'{"event_id":"bad-1","user_id":"u-demo","item_id":"1","type":"teleport","ts":1}'),
    (
        b"someone-else",
        b'{"event_id":"bad-2","user_id":"u-demo","item_id":"1","type":"view","ts":1}',
    ),
]


@dataclass(frozen=True, slots=True)
class DemoOptions:
    dataset: str = "ml-100k"
    limit: int | None = 20000
    rate: float = 1000.0
    users: int = 3
    exit_when_done: bool = False
    keep_broker: bool = False
    workdir: Path = Path("var/demo")
    refresh_after: int = 5000
    prometheus: bool = True


def _wait_worker(
    settings: Settings, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 90
) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            raise LsiError("the worker exited during start-up:\n" + "\n".join(tail))
        if scrape_metrics(settings) is not None:
            return
        time.sleep(0.5)
    raise LsiError(
        f"the worker did not answer on {settings.web_url} within {timeout_s:.0f} s; see {log}"
    )


def _summary(m: MetricsSnapshot, prev: MetricsSnapshot | None, dt: float) -> str:
    def rate(name: str, **match: str) -> float:
        now = m.total(name, **match)
        before = prev.total(name, **match) if prev else 0.0
        return (now - before) / dt if dt > 0 else 0.0

    evaluated = m.total("lsi_online_evaluated_total")
    hits10 = m.total("lsi_online_hits_total", k="10")
    p50 = m.quantile("lsi_end_to_end_latency_seconds", 0.5)
    p99 = m.quantile("lsi_end_to_end_latency_seconds", 0.99)
    proc99 = m.quantile("lsi_processing_latency_seconds", 0.99, agent="interest")

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:.0f} ms"

    return (
        f"[metrics] in {rate('lsi_events_total', agent='ingest'):6.0f} ev/s · "
        f"learned {m.total('lsi_events_total', agent='interest', outcome='accepted'):7.0f} · "
        f"dlq {m.total('lsi_dlq_total'):3.0f} · dup {m.total('lsi_events_total', outcome='duplicate'):3.0f} · "
        f"recs {m.total('lsi_recommendations_total'):7.0f} · e2e p50 {ms(p50)} p99 {ms(p99)} · "
        f"interest p99 {ms(proc99)} · online HR@10 "
        + (f"{hits10 / evaluated:.3f}" if evaluated else "-")
    )


def run_demo(opts: DemoOptions) -> int:
    with _stop_on_signals() as shield:
        broker = KafkaBroker(BrokerSettings.from_env())
        was_running = broker.status().running
        workers: list[subprocess.Popen[bytes]] = []
        proms: list[LocalPrometheus] = []
        stop_refresh = threading.Event()
        try:
            return _run(opts, broker, workers, stop_refresh, proms)
        finally:
            shield()  # a second Ctrl-C (uv forwards the first) must not cut the cleanup short
            for prom in proms:
                prom.stop()
            stop_refresh.set()
            for proc in workers:
                print("\n[demo] stopping the worker ...", flush=True)
                stop_worker(proc)
            if not (opts.keep_broker or was_running):
                print("[demo] stopping Kafka ...", flush=True)
                broker.down()


def _run(opts: DemoOptions, broker: KafkaBroker, proc_out: list[subprocess.Popen[bytes]],
         stop_refresh: threading.Event, prom_out: list[LocalPrometheus]) -> int:  # fmt: skip
    """The demo itself; what it starts goes into ``proc_out`` / ``prom_out`` at once, so that
    :func:`run_demo` stops it whatever happens next."""
    print("[demo] starting Kafka (the first run downloads it with Maven) ...", flush=True)
    st = broker.up()
    print(f"[demo] Kafka {st.version} at {st.bootstrap}", flush=True)
    workdir = opts.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    # the demo's refreshes keep the encoder's training short (LSI_SEQUENCE_BUDGET_S)
    budget = float(os.environ.get("LSI_SEQUENCE_BUDGET_S", "60"))
    settings = Settings.from_env(brokers=st.bootstrap, data_dir=workdir / "worker",
                                 models_dir=workdir / "models", sequence_budget_s=budget)  # fmt: skip
    # the demo replays the dataset from its start: into a clean stream, so that users' state,
    # the interaction log, the online hit rate and the snapshots are this run's alone
    if reset_stream(settings):
        print("[demo] cleared the topics, tables and consumer group of an earlier demo", flush=True)
    for stale in (settings.data_dir, settings.models_dir):
        if stale.exists():
            shutil.rmtree(stale)
    ensure_topics(settings)
    log = workdir / "worker.log"
    proc = start_worker(settings, log)
    proc_out.append(proc)
    started = time.time()
    print(f"[demo] worker pid {proc.pid}, web {settings.web_url}, log {log}", flush=True)
    _wait_worker(settings, proc, log)
    prod = producer(settings)
    for key, value in _BAD_EVENTS:
        prod.send(settings.events_topic, key=key, value=value)
    prod.flush()
    prod.close()
    print(f"[demo] sent {len(_BAD_EVENTS)} invalid events (see {settings.dlq_topic})", flush=True)

    registry = _serve_refresh_metrics(settings)
    refresh_thread = _start_refresh(settings, opts, stop_refresh, registry)
    prom = _start_prometheus(settings, workdir, registry is not None) if opts.prometheus else None
    if prom is not None:
        prom_out.append(prom)
    result: list[ReplayReport] = []

    def run_replay() -> None:
        result.append(_replay_in_two_phases(settings, opts))

    replay_thread = threading.Thread(target=run_replay, name="replay", daemon=True)
    replay_thread.start()
    print(f"[demo] replaying {opts.dataset} ({opts.limit or 'all'} events at {opts.rate:.0f}/s); "
          "Ctrl-C stops everything", flush=True)  # fmt: skip
    _watch(settings, opts, proc, replay_thread, result, refresh_thread)
    if prom is not None:
        _monitoring_report(prom, workdir / "metrics", started)
    return 0


def _serve_refresh_metrics(settings: Settings) -> Any:
    """The refresh job's ``/metrics`` on ``LSI_REFRESH_METRICS_PORT`` (``None`` if taken)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    try:
        start_http_server(settings.refresh_metrics_port, addr="127.0.0.1", registry=registry)
    except OSError as exc:
        print(f"[demo] refresh metrics off: port {settings.refresh_metrics_port} ({exc}); set "
              "LSI_REFRESH_METRICS_PORT to a free port", flush=True)  # fmt: skip
        return None
    return registry


def _start_prometheus(settings: Settings, workdir: Path, refresh: bool) -> LocalPrometheus | None:
    """Debian's Prometheus on loopback, scraping the worker (and the refresh job)."""
    if find_prometheus() is None:
        print("[demo] Prometheus not installed (apt-get install prometheus): no dashboards "
              "check or charts this time", flush=True)  # fmt: skip
        return None
    targets = {"lsi-worker": [f"127.0.0.1:{settings.web_port}"]}
    if refresh:
        targets["lsi-refresh"] = [f"127.0.0.1:{settings.refresh_metrics_port}"]
    prom = LocalPrometheus(workdir / "prometheus", _free_port(9090), targets)
    shutil.rmtree(prom.data_dir, ignore_errors=True)  # this run's series only
    try:
        prom.start()
    except LsiError as exc:
        print(f"[demo] Prometheus did not start: {exc}", flush=True)
        return None
    print(f"[demo] Prometheus at {prom.url} (the shipped rules and alerts loaded)", flush=True)
    return prom


def _free_port(preferred: int) -> int:
    """``preferred`` unless something listens there, else a port the OS picks."""
    import socket

    if not port_in_use("127.0.0.1", preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _monitoring_report(prom: LocalPrometheus, out: Path, started: float) -> None:
    """Every dashboard panel and recording rule against the live server, and the charts."""
    from lsi.monitoring.charts import ReportOptions, render_report
    from lsi.monitoring.dashboards import check, recording_rules, server_queries
    from lsi.monitoring.prometheus_api import PrometheusClient

    client = PrometheusClient(prom.url)
    panels, loaded = server_queries(client)
    queries = [*panels, *recording_rules(loaded)]
    time.sleep(16)  # one more round of the recording rules (every 15 s) over the last data
    answers = check(client, queries)
    # the experiment panels show data only while an experiment runs (the demo runs none)
    idle = [a for a in answers if not a.ok and a.query.panel.startswith("Experiment:")]
    empty = [f"{a.query.source} / {a.query.panel}" for a in answers
             if not a.ok and a not in idle]  # fmt: skip
    print(f"[demo] dashboards: {len(answers) - len(empty) - len(idle)} of {len(answers)} panel "
          "queries and recording rules have data"
          + (f"; {len(idle)} experiment panel queries idle (no experiment runs, see "
             "docs/experiments.md)" if idle else "")
          + (f"; without: {', '.join(empty)}" if empty else ""), flush=True)  # fmt: skip
    result = render_report(ReportOptions(prometheus=prom.url, out=out,
                                         since_s=max(60.0, time.time() - started)))  # fmt: skip
    print(f"[demo] charts of this run: {result.readme} ({len(result.charts)} PNGs"
          + (f"; no data for {', '.join(result.empty)}" if result.empty else "") + ")",
          flush=True)  # fmt: skip


def _start_refresh(settings: Settings, opts: DemoOptions, stop: threading.Event,
                   registry: Any = None) -> threading.Thread:  # fmt: skip
    """The refresh job in a thread: at start, then after every ``refresh_after`` events."""
    import torch

    from lsi.monitoring.metrics import RefreshMetrics
    from models.jobs.refresh import RefreshJob, run_forever

    # training shares this machine with the worker: leave it half of the cores, so the stream
    # keeps flowing while a refresh runs (the compose stack runs them on separate containers)
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    job = RefreshJob(settings, metrics=RefreshMetrics(registry) if registry is not None else None)
    # a short replay still gets a snapshot or two to show
    after = min(opts.refresh_after, max(1, opts.limit // 3)) if opts.limit else opts.refresh_after

    def loop() -> None:
        try:
            run_forever(job, every_s=None, after_events=after, drift=False, stop=stop,
                        report=lambda line: print(f"[refresh] {line}", flush=True))  # fmt: skip
        except LsiError as exc:
            print(f"[refresh] stopped: {exc}", flush=True)

    thread = threading.Thread(target=loop, name="refresh", daemon=True)
    thread.start()
    print(f"[demo] model refresh: after every {after} new interactions; snapshots "
          f"in {settings.models_dir}", flush=True)  # fmt: skip
    return thread


def _request(settings: Settings, user: str) -> dict[str, Any] | None:
    """``GET /recommendations/{user}/`` from the worker (``None`` if it does not answer)."""
    import urllib.parse
    import urllib.request

    url = f"{settings.web_url}/recommendations/{urllib.parse.quote(user, safe='')}/"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return dict(json.loads(resp.read()))
    except (OSError, ValueError):
        return None


#: longest wait for the first snapshot between the two phases of the replay
FIRST_MODEL_WAIT_S = 600.0


def _replay_in_two_phases(settings: Settings, opts: DemoOptions) -> ReplayReport:
    """The first ``refresh_after`` events (they trigger the first refresh), then, once the
    worker scores with that snapshot, the rest: so the lists of the second phase are the
    fused model's, live, and not only the statistics scorer's of a replay that ended before
    the first model was trained."""
    run_id = uuid.uuid4().hex[:8]
    first = opts.refresh_after if opts.limit is None else min(opts.refresh_after, opts.limit)
    one = replay(settings, opts.dataset, limit=first, rate=opts.rate, run_id=run_id)
    rest = None if opts.limit is None else opts.limit - one.sent
    if rest is not None and rest <= 0:
        return one
    print(f"[demo] {one.sent:,} events sent; the rest follows once the worker scores with the "
          "first snapshot (the refresh is training it)", flush=True)  # fmt: skip
    deadline = time.time() + FIRST_MODEL_WAIT_S
    model = _live_model(scrape_metrics(settings))
    while model is None and time.time() < deadline:
        time.sleep(1.0)
        model = _live_model(scrape_metrics(settings))
    print(f"[demo] {'scoring with ' + model if model else 'still no snapshot'}; replaying the "
          "rest", flush=True)  # fmt: skip
    two = replay(settings, opts.dataset, limit=rest, start=one.sent, rate=opts.rate,
                 run_id=run_id)  # fmt: skip
    return ReplayReport(one.dataset, one.sent + two.sent, one.seconds + two.seconds, run_id)


def _current(latest: dict[str, dict[str, Any]], fresh: set[str], n: int) -> list[dict[str, Any]]:
    """The lists to show this round: users whose list arrived since the last round, those
    the fused scorer made first, the newest first; ``n`` at most."""
    recs = [latest[u] for u in fresh if u in latest and latest[u].get("items")]
    recs.sort(key=lambda r: (r.get("source") != "fused", -float(r.get("emitted_at") or 0.0)))
    return recs[:n]


def _live_model(m: MetricsSnapshot | None) -> str | None:
    """The snapshot version the worker scores with, from its metrics (``None``: none yet)."""
    if m is None:
        return None
    for (name, labels), value in m.gauges.items():
        if name == "lsi_model_version_info" and value == 1.0:
            version = dict(labels).get("version")
            if version and version != "none":
                return version
    return None


def _watch(settings: Settings, opts: DemoOptions, proc: subprocess.Popen[bytes],
           replay_thread: threading.Thread, result: list[ReplayReport],
           refresh_thread: threading.Thread) -> None:  # fmt: skip
    titles = item_titles(opts.dataset)
    cons = consumer(settings, settings.recommendations_topic, consumer_timeout_ms=200)
    latest: dict[str, dict[str, Any]] = {}
    shown: list[str] = []  # the users whose lists the demo asks for after a swap
    prev: MetricsSnapshot | None = None
    t_prev = time.time()
    idle_rounds = 0
    seen_model: str | None = None
    try:
        while True:
            deadline = time.time() + 2.0
            fresh: set[str] = set()
            while time.time() < deadline:
                for msg in cons.poll(timeout_ms=200).values():
                    for record in msg:
                        rec = json.loads(record.value)
                        latest[rec["user_id"]] = rec
                        fresh.add(rec["user_id"])
                        if len(shown) < opts.users and rec["user_id"] not in shown and rec["items"]:
                            shown.append(rec["user_id"])
            if proc.poll() is not None:
                raise LsiError(f"the worker stopped (exit {proc.returncode}); see its log")
            m = scrape_metrics(settings)
            now = time.time()
            if m is not None:
                print(_summary(m, prev, now - t_prev), flush=True)
                prev, t_prev = m, now
            for rec in _current(latest, fresh, opts.users):  # what the worker emits now
                print(format_recommendation(rec, titles, limit=5), flush=True)
            model = _live_model(prev)
            if model is not None and model != seen_model:
                seen_model = model
                print(f"[demo] the worker swapped to snapshot {model}; lists on request:",
                      flush=True)  # fmt: skip
                for user in shown:
                    rec = _request(settings, user)
                    if rec is not None:
                        print(format_recommendation(rec, titles, limit=5), flush=True)
            if not replay_thread.is_alive():
                if result:
                    r = result[0]
                    print(f"[demo] replay done: {r.sent} events in {r.seconds:.1f} s", flush=True)
                learned = (
                    prev.total("lsi_events_total", agent="interest", outcome="accepted")
                    if prev
                    else 0
                )
                model = _live_model(prev)
                if opts.exit_when_done and result and learned >= result[0].sent and model:
                    print(f"[demo] all {result[0].sent} events processed; the worker scores "
                          f"with snapshot {model}", flush=True)  # fmt: skip
                    return
                if not refresh_thread.is_alive():
                    raise LsiError("the model refresh stopped; see the [refresh] lines above")
                idle_rounds += 1
                if opts.exit_when_done and idle_rounds > 60:
                    raise LsiError("the worker did not process every replayed event (or load a "
                                   "snapshot) within 120 s; see var/demo/worker.log")  # fmt: skip
    finally:
        cons.close()
