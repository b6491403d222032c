"""The ``lsi`` command line.

Every failure lsi anticipates (:class:`~lsi.errors.LsiError`) is printed as one line that says
what to do, with exit status 2; Ctrl-C exits with 130 after a clean shutdown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lsi.errors import LsiError

__all__ = ["main"]


def _settings(args: argparse.Namespace) -> Any:
    from lsi.config import Settings

    overrides = {
        "brokers": getattr(args, "brokers", None),
        "web_port": getattr(args, "web_port", None),
        "web_host": getattr(args, "web_host", None),
        "data_dir": getattr(args, "data_dir", None),
        "emit_policy": getattr(args, "emit_policy", None),
        "models_dir": getattr(args, "models_dir", None),
        "refresh_device": getattr(args, "device", None),
    }
    return Settings.from_env(**overrides)


# -- kafka ---------------------------------------------------------------------------------
def cmd_kafka(args: argparse.Namespace) -> int:
    from lsi.kafka.broker import BrokerSettings, KafkaBroker

    broker = KafkaBroker(BrokerSettings.from_env())
    if args.action == "up":
        st = broker.up()
        print(f"Kafka {st.version} is up at {st.bootstrap} (pid {st.pid}, data {st.data_dir})")
    elif args.action == "down":
        stopped = broker.down()
        print("Kafka stopped" if stopped else "Kafka was not running")
    elif args.action == "status":
        st = broker.status()
        state = "running" if st.running else "stopped"
        answer = ", answering" if st.answering else (", not answering" if st.running else "")
        print(f"Kafka {st.version}: {state}{answer} at {st.bootstrap} (pid {st.pid}); "
              f"log {st.log_file}")  # fmt: skip
        return 0 if st.running and st.answering else 1
    elif args.action == "logs":
        for line in broker.tail_logs(args.lines):
            print(line)
    return 0


# -- worker --------------------------------------------------------------------------------
def cmd_worker(args: argparse.Namespace) -> int:
    from lsi.kafka.clients import ensure_topics, wait_for_group_coordinator
    from lsi.kafka.security import describe
    from lsi.serving.worker_process import die_with_parent
    from streams.app import run_worker

    if args.parent_pid is not None and not die_with_parent(args.parent_pid):
        raise LsiError(f"the process that started this worker (pid {args.parent_pid}) has "
                       "already exited; start the worker again, or drop --parent-pid")  # fmt: skip
    settings = _settings(args)
    _check_web_port(settings.web_bind or settings.advertised_host, settings.web_port)
    ensure_topics(settings, changelogs=True)
    wait_for_group_coordinator(settings)
    print(f"lsi worker: brokers {settings.brokers} ({describe(settings)}), "
          f"web {settings.web_url}, tables in {settings.data_dir}", flush=True)  # fmt: skip
    run_worker(settings, loglevel=args.loglevel)
    return 0


def _check_web_port(host: str, port: int) -> None:
    """Fail before joining the group if the web port is taken (Faust would log a traceback
    later, after the worker had already started)."""
    import socket

    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise LsiError(f"cannot serve HTTP on {host}:{port} ({exc.strerror}): another "
                           "worker may be using it; give this one --web-port (or LSI_WEB_PORT)"
                           " a free port") from None  # fmt: skip


# -- replay / publish ----------------------------------------------------------------------
def cmd_replay(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lsi.evaluation.datasets import load
    from lsi.kafka.producer import replay

    settings = _settings(args)
    data = load(args.dataset)
    total = max(0, len(data) - args.start)
    if args.limit is not None:
        total = min(total, args.limit)
    with tqdm(total=total, unit="ev", desc=f"replay {args.dataset}", disable=args.quiet) as bar:
        report = replay(settings, data, limit=args.limit, start=args.start,
                        rate=args.rate, speedup=args.speedup, keep_ts=args.keep_ts,
                        run_id=args.run_id, on_sent=bar.update)  # fmt: skip
    print(f"sent {report.sent} events of {report.dataset} to {settings.events_topic} in "
          f"{report.seconds:.1f} s ({report.rate:,.0f} ev/s), run id {report.run_id}")  # fmt: skip
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from lsi.kafka.clients import client_errors, ensure_topics, producer
    from lsi.wire.records import Event

    settings = _settings(args)
    if args.json is not None:
        value = args.json.encode()
        key = args.key.encode() if args.key is not None else None
    else:
        if args.user is None or args.item is None:
            raise LsiError("publish needs --user and --item (or --json with a raw event)")
        event = Event(args.event_id or uuid.uuid4().hex, args.user, args.item, args.type,
                      args.ts if args.ts is not None else round(time.time(), 3),
                      args.weight)  # fmt: skip
        value, key = event.to_json(), event.user_id.encode()
        _check_event(value, key, settings)
    ensure_topics(settings)
    prod = producer(settings)
    with client_errors(settings):
        meta = prod.send(settings.events_topic, key=key, value=value).get(timeout=30)
        prod.close()
    print(
        f"published to {meta.topic}[{meta.partition}]@{meta.offset}: {value.decode(errors='replace')}"
    )
    return 0


def _check_event(value: bytes, key: bytes, settings: Any) -> None:
    """Ingest's own rules (:func:`lsi.wire.validation.validate_event`), before anything is sent:
    an event the workers would dead-letter is refused here with their reason."""
    from lsi.errors import InvalidEvent
    from lsi.wire.validation import validate_event

    try:
        validate_event(value, key, time.time(), settings.limits())
    except InvalidEvent as exc:
        raise LsiError(f"not published: the workers would dead-letter it as {exc.reason}: "
                       f"{exc.detail} (--json sends a raw value unchecked)") from None  # fmt: skip


# -- recs ----------------------------------------------------------------------------------
def cmd_recs(args: argparse.Namespace) -> int:
    from lsi.cli.present import format_recommendation

    settings = _settings(args)
    titles: dict[str, str] = {}
    if args.dataset:
        from lsi.evaluation.datasets import item_titles

        titles = item_titles(args.dataset)
    if args.user is not None and not args.follow:
        import urllib.error
        import urllib.request

        url = f"{settings.web_url}/recommendations/{args.user}/"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                rec = json.loads(resp.read())
        except (urllib.error.URLError, OSError) as exc:
            raise LsiError(f"cannot reach the worker at {settings.web_url} ({exc}): start it "
                           "with `lsi worker`, or set LSI_WEB_HOST/LSI_WEB_PORT") from None  # fmt: skip
        print(json.dumps(rec) if args.json else format_recommendation(rec, titles, args.top))
        return 0

    from lsi.kafka.clients import client_errors, consumer

    cons = consumer(settings, settings.recommendations_topic,
                    consumer_timeout_ms=(10**9 if args.follow else 3000),
                    auto_offset_reset="latest" if args.follow else "earliest")  # fmt: skip
    latest: dict[str, dict[str, Any]] = {}
    with client_errors(settings):
        try:
            for msg in cons:
                rec = json.loads(msg.value)
                if args.user is not None and rec["user_id"] != args.user:
                    continue
                if args.follow:
                    print(
                        json.dumps(rec)
                        if args.json
                        else format_recommendation(rec, titles, args.top)
                    )
                    print(flush=True)
                else:
                    latest[rec["user_id"]] = rec
        finally:
            cons.close()
    shown = sorted(latest.values(), key=lambda r: r["emitted_at"])[-args.users :]
    for rec in shown:
        print(json.dumps(rec) if args.json else format_recommendation(rec, titles, args.top) + "\n")
    if not shown:
        print(f"no recommendations on {settings.recommendations_topic} yet")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import threading

    from lsi.cli.demo import DemoOptions, run_demo

    try:
        code = run_demo(DemoOptions(dataset=args.dataset, limit=args.limit, rate=args.rate,
                                    users=args.users, exit_when_done=args.exit_when_done,
                                    keep_broker=args.keep_broker,
                                    refresh_after=args.refresh_after,
                                    prometheus=not args.no_prometheus))  # fmt: skip
    except LsiError as exc:
        print(f"lsi demo: error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (lsi.cli.demo.Stopped)
        signum = getattr(exc, "signum", 2)
        print(f"stopped ({exc or 'SIGINT'}); everything the demo started is stopped",
              file=sys.stderr)  # fmt: skip
        code = 128 + signum
    if any(t.name == "refresh" and t.is_alive() for t in threading.enumerate()):
        # the refresh thread is still training (torch): interpreter shutdown would tear
        # torch's worker threads down under it (std::terminate); the worker and the broker
        # are already stopped, so leave at once
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lsi.bench import PipelineBenchOptions, run_pipeline_bench

    if args.bench == "accuracy":
        from lsi.bench.accuracy import DEFAULT_MODELS, AccuracyOptions, run_accuracy_bench
        from models.training.sequence import SequenceConfig

        models = (
            tuple(m.strip() for m in args.models.split(",") if m.strip())
            if args.models
            else DEFAULT_MODELS
        )
        # a flag left out takes SequenceConfig's default, the refresh job's too
        optional = {"balanced_init": args.balanced_init} if args.balanced_init is not None else {}
        try:
            seq = SequenceConfig(max_len=args.max_len, windows=args.windows,
                                 dropout=args.dropout, epochs=args.epochs,
                                 max_train_s=args.train_budget, device=args.device,
                                 negatives=args.negatives,
                                 precision=args.precision, dim=args.dim,
                                 layers=args.layers, heads=args.heads,
                                 patience=args.patience,
                                 lr_schedule=args.lr_schedule,
                                 ema_decay=args.ema_decay, **optional)  # fmt: skip
        except ValueError as exc:
            raise LsiError(f"{exc}; see `lsi bench accuracy --help`") from None
        opts = AccuracyOptions(dataset=args.dataset, protocol=args.protocol, models=models,
                               seeds=args.seeds, out=Path(args.out or "benchmarks/results"),
                               filter_seen=args.filter_seen, limit=args.limit,
                               phase=args.phase, refresh_every=args.refresh_every,
                               merge=args.merge, sequence=seq, jobs=args.jobs)  # fmt: skip
        run_accuracy_bench(opts)
        suffix = "-valid" if opts.phase == "valid" else ""
        stem = opts.out / f"{Path(opts.dataset).name.split('.')[0]}-{opts.protocol}{suffix}"
        print(stem.with_suffix(".md").read_text())
        print(f"report: {stem}.json, {stem}.md, {stem}.png")
    if args.bench == "refresh":
        from lsi.bench.refresh import RefreshBenchOptions, run_refresh_bench

        cfg = _train_config(epochs=args.epochs, warm_epochs=args.warm_epochs, dim=args.dim)
        try:
            edges = tuple(int(e) for e in args.scaling_edges.split(",") if e.strip())
        except ValueError:
            raise LsiError("--scaling-edges takes comma-separated integers, e.g. "
                           "1000000,2000000") from None  # fmt: skip
        ropts = RefreshBenchOptions(dataset=args.dataset, out=Path(args.out or "benchmarks/results"),
                                    device=args.device, scaling_edges=edges,
                                    scaling_epochs=args.scaling_epochs,
                                    new_fraction=args.new_fraction, valid_cases=args.valid_cases,
                                    cfg=cfg, seed=args.seed)  # fmt: skip
        run_refresh_bench(ropts)
        stem = ropts.out / f"refresh-{Path(args.dataset).name.split('.')[0]}"
        print(stem.with_suffix(".md").read_text())
        print(f"report: {stem}.json, {stem}.md, {stem}-scaling.png")
    if args.bench == "catalogue":
        return _bench_catalogue(args)
    if args.bench == "pipeline":
        from lsi.bench.pipeline import QUICK

        given = {"dataset": args.dataset, "events": args.events, "live_events": args.live_events,
                 "rate": args.rate, "train_budget_s": args.train_budget, "max_len": args.max_len,
                 "out": None if args.out is None else Path(args.out),
                 "catalogue": None if args.catalogue is None else Path(args.catalogue)}  # fmt: skip
        chosen = {k: v for k, v in given.items() if v is not None}
        popts = PipelineBenchOptions(**{**(QUICK if args.quick else {}), **chosen},
                                     model=not args.skip_model)  # fmt: skip
        report = run_pipeline_bench(popts)
        out = popts.out
        print((out / "report.md").read_text())
        print(f"report: {out}/report.json, {out}/report.md, {out}/report.png")
        if report.get("failed"):
            return 1
    if args.bench == "faults":
        from lsi.bench.faults import FaultBenchOptions, run_fault_bench

        fopts = FaultBenchOptions(events=args.events, kills=args.kills, dataset=args.dataset,
                                  rate=args.rate, out=Path(args.out), name=args.name,
                                  seed=args.seed, partitions=args.partitions,
                                  broker_restart=not args.no_broker_restart,
                                  rebalance=not args.no_rebalance, corpus=not args.no_corpus,
                                  restore_users=args.restore_users, wait_s=args.wait)  # fmt: skip
        report = run_fault_bench(fopts)
        stem = fopts.out / fopts.name
        print(stem.with_suffix(".md").read_text())
        print(f"report: {stem}.json, {stem}.md, {stem}.png")
        if not report["passed"]:
            print(f"worker logs kept in {report['work_dir']}")
            return 1
    return 0


def _bench_catalogue(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lsi.bench.catalogue import DEFAULT_OUT, QUICK, CatalogueBenchOptions
    from lsi.serving.retrieval import RetrievalConfig

    try:
        sizes = tuple(int(n) for n in args.sizes.split(",") if n.strip()) if args.sizes else None
    except ValueError:
        raise LsiError("--sizes takes comma-separated integers, e.g. 10000,100000") from None
    given = {"sizes": sizes, "batch": args.batch, "batches": args.batches}
    chosen = {k: v for k, v in given.items() if v is not None}
    opts = CatalogueBenchOptions(
        **{**(QUICK if args.quick else {}), **chosen}, seed=args.seed, ml1m=args.ml1m,
        ml1m_budget_s=args.ml1m_budget, phase=args.phase,
        out=Path(args.out) if args.out else DEFAULT_OUT,
        retrieval=RetrievalConfig(candidates=args.candidates, nprobe=args.nprobe,
                                  storage=args.storage),
    )  # fmt: skip
    import lsi.bench.catalogue as bench  # through the module, so tests can replace a part

    bench.run_catalogue_bench(opts)
    print((opts.out / "catalogue.md").read_text())
    print(f"report: {opts.out}/catalogue.json, {opts.out}/catalogue.md, {opts.out}/catalogue.png")
    return 0


# -- refresh / models ----------------------------------------------------------------------
def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d`` → seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    raw = text.strip().lower()
    try:
        value = float(raw[:-1]) * units[raw[-1]] if raw and raw[-1] in units else float(raw)
    except ValueError:
        raise LsiError(f"cannot read {text!r} as a duration; use e.g. 90s, 15m, 2h") from None
    if value <= 0:
        raise LsiError(f"duration must be positive, got {text!r}")
    return value


def _train_config(**changes: Any) -> Any:
    """The refresh job's training configuration with ``changes`` (``None`` = keep)."""
    from dataclasses import replace

    from models.training.longterm import TrainConfig

    try:
        return replace(TrainConfig(), **{k: v for k, v in changes.items() if v is not None})
    except ValueError as exc:
        raise LsiError(f"{exc}; see `lsi refresh --help`") from None


def cmd_refresh(args: argparse.Namespace) -> int:
    import threading

    from models.jobs.refresh import RefreshJob, run_forever

    settings = _settings(args)
    cfg = _train_config(epochs=args.epochs, warm_epochs=args.epochs)
    loop = args.every is not None or args.after_events is not None or args.drift
    if not loop:
        job = RefreshJob(settings, cfg, progress=not args.quiet)
        print(job.run_once("manual").summary())
        return 0
    from prometheus_client import CollectorRegistry, start_http_server

    from lsi.monitoring.metrics import RefreshMetrics

    registry = CollectorRegistry()
    host = settings.web_bind or "127.0.0.1"
    try:
        start_http_server(settings.refresh_metrics_port, addr=host, registry=registry)
    except OSError as exc:
        raise LsiError(f"cannot serve metrics on {host}:{settings.refresh_metrics_port} ({exc}); "
                       "set LSI_REFRESH_METRICS_PORT to a free port") from None  # fmt: skip
    job = RefreshJob(settings, cfg, RefreshMetrics(registry), progress=not args.quiet)
    every = parse_duration(args.every) if args.every is not None else None
    print(f"lsi refresh: every {args.every or '-'}, after {args.after_events or '-'} events, "
          f"drift {'on' if args.drift else 'off'}; store {settings.models_dir}; metrics "
          f"http://{host}:{settings.refresh_metrics_port}/metrics", flush=True)  # fmt: skip
    stop = threading.Event()
    try:
        run_forever(job, every_s=every, after_events=args.after_events, drift=args.drift,
                    stop=stop, report=lambda line: print(line, flush=True))  # fmt: skip
    except KeyboardInterrupt:
        stop.set()
        print("lsi refresh: stopped")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from lsi.serving.store import SnapshotStore

    settings = _settings(args)
    store = SnapshotStore(settings.models_dir, keep=settings.models_keep)
    if args.action == "list":
        rows = list(store.describe())
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        if not rows:
            print(f"no snapshots in {settings.models_dir} yet; run `lsi refresh`")
            return 0
        print(f"{'version':<9} {'live':<4} {'created (UTC)':<19} {'events':>10} {'edges':>10} "
              f"{'NDCG@10':>8} {'gate':<8} device")  # fmt: skip
        for r in rows:
            if "error" in r:
                print(f"{r['version']:<9} {'*' if r['live'] else '':<4} unreadable: {r['error']}")
                continue
            created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.get("created_at", 0)))
            ndcg = r.get("validation", {}).get("ndcg@10", float("nan"))
            promoted = "passed" if r.get("promotion", {}).get("promoted") else "failed"
            print(f"{r['version']:<9} {'*' if r['live'] else '':<4} {created:<19} "
                  f"{r.get('events', 0):>10,} {r.get('edges', 0):>10,} {ndcg:>8.4f} "
                  f"{promoted:<8} {r.get('training', {}).get('device', '')}")  # fmt: skip
        return 0
    if args.action == "promote":
        if not args.version:
            raise LsiError("promote needs a VERSION; `lsi models list` shows them")
        store.promote(args.version)
        version = args.version
    else:
        version = store.rollback()
    print(f"{version} is live in {settings.models_dir}")
    if not args.no_announce:
        from models.jobs.refresh import announce  # loads the trainer (torch): only to announce

        announce(settings, store, version)
        print(f"announced on {settings.models_topic}; workers swap to it")
    return 0


def _prometheus_url(args: argparse.Namespace) -> str:
    return str(args.prometheus or os.environ.get("LSI_PROMETHEUS_URL") or "http://127.0.0.1:9090")


def cmd_report(args: argparse.Namespace) -> int:
    from lsi.monitoring.charts import ReportOptions, render_report

    opts = ReportOptions(
        prometheus=_prometheus_url(args),
        out=Path(args.out),
        since_s=parse_duration(args.since),
        step_s=parse_duration(args.step) if args.step else 0.0,
    )
    result = render_report(opts)
    for chart in result.charts:
        print(f"wrote {chart.path}  ({chart.title})")
    if result.empty:
        print(f"no data in the last {args.since} for: {', '.join(result.empty)} (is the worker "
              "scraped, and have events flowed?)")  # fmt: skip
    print(f"summary: {result.summary}")
    return 0


def cmd_monitoring(args: argparse.Namespace) -> int:
    from lsi.monitoring.dashboards import (
        DASHBOARDS_DIR,
        check,
        coverage,
        recording_rules,
        server_queries,
    )
    from lsi.monitoring.prometheus_api import PrometheusClient

    client = PrometheusClient(_prometheus_url(args), timeout_s=10.0)
    panels, loaded = server_queries(client, Path(args.dashboards) if args.dashboards
                                    else DASHBOARDS_DIR)  # fmt: skip
    rules = recording_rules(loaded)
    unshown, blind = coverage(panels, loaded)
    answers = check(client, [*panels, *rules], rate_interval=args.rate_interval)
    if args.json:
        print(json.dumps({
            "answers": [{"source": a.query.source, "panel": a.query.panel, "ref": a.query.ref,
                         "promql": a.promql, "series": a.series, "error": a.error}
                        for a in answers],
            "unshown_metrics": unshown, "panels_without_metric": blind,
        }, indent=2))  # fmt: skip
    else:
        for a in answers:
            state = "ok" if a.ok else ("ERROR" if a.error else "EMPTY")
            print(f"{state:<5} {a.series:>4} series  {a.query.source} / {a.query.panel} "
                  f"[{a.query.ref}]" + (f"  {a.error}" if a.error else ""))  # fmt: skip
        bad = [a for a in answers if not a.ok]
        print(f"{len(panels)} panel queries, {len(rules)} recording rules: "
              f"{len(answers) - len(bad)} answered with data, {len(bad)} without")  # fmt: skip
        for name in unshown:
            print(f"metric on no panel: {name}")
        for name in blind:
            print(f"panel with no known metric: {name}")
    if any(not a.ok for a in answers) or unshown or blind:
        print("lsi monitoring check: some panels would show no data; see the lines above",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


# -- parser --------------------------------------------------------------------------------
def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than ``minimum`` (a count, an offset).

    ``--users 0`` showed every user and ``--start -2`` replayed the last two events: Python's
    slices take such values without complaint, so they are refused here, as usage errors.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lsi", description="lsi: streaming long/short-term interest recommender"
    )
    from lsi import __version__

    p.add_argument("--version", action="version", version=f"lsi {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--brokers", help="Kafka bootstrap servers (default $LSI_BROKERS or 127.0.0.1:9092)"
        )

    k = sub.add_parser("kafka", help="run a local single-node Kafka broker (KRaft)")
    k.add_argument("action", choices=["up", "down", "status", "logs"])
    k.add_argument("--lines", type=_at_least(0), default=50, help="log lines to show (logs)")
    k.set_defaults(func=cmd_kafka)

    w = sub.add_parser(
        "worker", help="run a stream worker (events -> state, scores, log; item statistics)"
    )
    common(w)
    w.add_argument("--web-port", type=int)
    w.add_argument("--web-host")
    w.add_argument("--data-dir")
    w.add_argument("--emit-policy", choices=["event", "batch", "interval", "request"])
    w.add_argument("--loglevel", default="warning", choices=["debug", "info", "warning", "error"])
    w.add_argument("--parent-pid", type=int, metavar="PID",
                   help="stop when process PID (the tool that started this worker) exits; "
                        "Linux only")  # fmt: skip
    w.set_defaults(func=cmd_worker)

    r = sub.add_parser("replay", help="publish a dataset as click events in time order")
    common(r)
    r.add_argument("dataset", help="ml-100k, ml-1m, amazon-beauty, taobao or yoochoose-clicks")
    r.add_argument("--limit", type=_at_least(0), help="publish at most this many events")
    r.add_argument("--start", type=_at_least(0), default=0, help="skip this many events first")
    pace = r.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate", type=float, default=0.0, help="events per second (0: as fast as possible)"
    )
    pace.add_argument("--speedup", type=float, default=0.0, help="times the dataset's own pace")
    r.add_argument(
        "--keep-ts", action="store_true", help="send the dataset's timestamps, not re-based ones"
    )
    r.add_argument("--run-id", help="part of every event_id (same id twice = duplicates)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_replay)

    pb = sub.add_parser("publish", help="send one event")
    common(pb)
    pb.add_argument("--user")
    pb.add_argument("--item")
    pb.add_argument("--type", default="view")
    pb.add_argument("--ts", type=float)
    pb.add_argument("--weight", type=float)
    pb.add_argument("--event-id")
    pb.add_argument("--json", help="send this raw value instead (tests the dead-letter path)")
    pb.add_argument("--key", help="message key for --json")
    pb.set_defaults(func=cmd_publish)

    rc = sub.add_parser("recs", help="show recommendations")
    common(rc)
    rc.add_argument("--user", help="one user: ask the worker now (or filter --follow)")
    rc.add_argument("--follow", action="store_true", help="print records as they arrive")
    rc.add_argument("--dataset", help="show item titles from this dataset (MovieLens)")
    rc.add_argument("--users", type=_at_least(1), default=5, help="how many users to show")
    rc.add_argument("--top", type=_at_least(1), default=10, help="items per list")
    rc.add_argument("--json", action="store_true", help="raw JSON records")
    rc.add_argument("--web-port", type=int)
    rc.add_argument("--web-host")
    rc.set_defaults(func=cmd_recs)

    b = sub.add_parser("bench", help="benchmarks that write report.json, report.md and plots")
    bsub = b.add_subparsers(dest="bench", required=True)
    bp = bsub.add_parser("pipeline", help="lsi against its anchors (aiokafka, Faust, Faust + "
                         "table) on one topic and broker: rates, latency, 1 vs 2 workers")  # fmt: skip
    bp.add_argument("--dataset", help="default ml-1m")
    bp.add_argument("--events", type=_at_least(1),
                    help="the backlog every program drains (default 200000; --quick 3000)")  # fmt: skip
    bp.add_argument("--live-events", type=_at_least(1),
                    help="events offered at --rate for each latency (default 20000; --quick 600)")  # fmt: skip
    bp.add_argument("--rate", type=float, help="offered rate, events/s (default 1000; --quick 200)")
    bp.add_argument("--out", help="report folder (default benchmarks/results/pipeline)")
    bp.add_argument("--skip-model", action="store_true",
                    help="no fused-model worker: no training, latency measured without a model")  # fmt: skip
    bp.add_argument("--quick", action="store_true",
                    help="a run of a minute or two: small defaults for every size above")  # fmt: skip
    bp.add_argument("--train-budget", type=float,
                    help="seconds of encoder training for the fused model (default 30)")  # fmt: skip
    bp.add_argument("--max-len", type=int, help="the encoder's window (default 200)")
    bp.add_argument("--catalogue",
                    help="the `lsi bench catalogue` report to include (default "
                         "benchmarks/results/catalogue)")  # fmt: skip
    bf = bsub.add_parser("faults", help="the fault suite: SIGKILLs, broker restart, rebalance, "
                         "bad-input corpus; exit 1 on any lost or double-applied event")  # fmt: skip
    bf.add_argument("--events", type=int, default=200_000, help="good events to send")
    bf.add_argument("--kills", type=int, default=10, help="SIGKILLs of a worker")
    bf.add_argument("--dataset", default="synthetic",
                    help="synthetic (built in), or a dataset lsi.evaluation.datasets loads, e.g. ml-1m")  # fmt: skip
    bf.add_argument("--rate", type=float, default=500.0, help="offered rate, events/s")
    bf.add_argument("--seed", type=int, default=0, help="the disruption points and the data")
    bf.add_argument("--partitions", type=int, default=4)
    bf.add_argument("--no-broker-restart", action="store_true")
    bf.add_argument("--no-rebalance", action="store_true")
    bf.add_argument("--no-corpus", action="store_true", help="good traffic only")
    bf.add_argument("--restore-users", type=int, default=300,
                    help="users checked after the restore from the changelog alone")  # fmt: skip
    bf.add_argument("--wait", type=float, default=180.0,
                    help="deadline of each wait on a condition, seconds")  # fmt: skip
    bf.add_argument("--out", default="benchmarks/results", help="report folder")
    bf.add_argument("--name", default="faults", help="report file stem")
    ba = bsub.add_parser(
        "accuracy", help="quality under loo / prequential, full ranking, baselines"
    )
    ba.add_argument("--dataset", default="ml-1m")
    ba.add_argument("--protocol", default="loo", choices=["loo", "temporal", "prequential"])
    ba.add_argument(
        "--models",
        help="comma-separated, from mostpop,recent_pop,covisit,biased_mf,streaming,fused,"
        "short_only,long_only and the ablations fixed_weight,fused_gru,short_only_gru,"
        "fused_contrastive (default: all but the ablations)",
    )
    ba.add_argument("--seeds", type=int, default=3, help="runs of each seeded model")
    ba.add_argument(
        "--filter-seen", action="store_true", help="remove the user's history from candidates"
    )
    ba.add_argument("--limit", type=int, help="prequential: only the first N events")
    ba.add_argument(
        "--phase",
        default="test",
        choices=["test", "valid"],
        help="valid: learn training only and rank the validation items (for tuning)",
    )
    ba.add_argument("--out", help="report folder (default benchmarks/results)")
    ba.add_argument("--refresh-every", type=int, default=100_000,
                    help="prequential fused/short_only/long_only: warm refresh every N events")  # fmt: skip
    ba.add_argument("--max-len", type=int, default=200, help="the encoder's window")
    ba.add_argument("--windows", choices=("last", "all"), default="last",
                    help="train the encoder on each user's last window, or on all of their "
                         "history in consecutive windows")  # fmt: skip
    ba.add_argument("--dropout", type=float, default=0.2, help="the encoder's dropout")
    ba.add_argument("--dim", type=int, default=64,
                    help="the encoder's width (item rows start from the long-term vectors "
                         "when it equals theirs, 64)")  # fmt: skip
    ba.add_argument("--layers", type=int, default=2, help="the encoder's blocks")
    ba.add_argument("--heads", type=int, default=2, help="attention heads per block")
    ba.add_argument("--negatives", type=int, default=0,
                    help="sampled-softmax negatives per batch (0: full softmax)")  # fmt: skip
    ba.add_argument("--epochs", type=int, default=200, help="most encoder epochs (early stopping)")
    ba.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                    help="the encoder's learning rate: constant, or falling to 0 along half a "
                         "cosine over --epochs")  # fmt: skip
    ba.add_argument("--ema-decay", type=float, default=0.0,
                    help="evaluate and keep a moving average of the encoder's weights with this "
                         "decay per step (0: off)")  # fmt: skip
    ba.add_argument("--balanced-init", action=argparse.BooleanOptionalAction, default=None,
                    help="start the position, event-type and time-gap embeddings at the item "
                         "rows' scale (std dim**-0.5) instead of N(0, 1); on by default, as in "
                         "`lsi refresh` (LSI_SEQUENCE_BALANCED_INIT): one recipe, one default")  # fmt: skip
    ba.add_argument("--patience", type=int, default=3,
                    help="early stopping: evaluations (every 5 epochs) without a gain before "
                         "the encoder stops")  # fmt: skip
    ba.add_argument("--train-budget", type=float,
                    help="stop each encoder training after this many seconds")  # fmt: skip
    ba.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ba.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16: train the encoder under bfloat16 autocast (faster on CPUs "
                         "with AMX and on recent GPUs)")  # fmt: skip
    ba.add_argument("--jobs", type=int, default=1,
                    help="seeds of the fused scorer trained in parallel processes")  # fmt: skip
    ba.add_argument("--merge", action="store_true",
                    help="keep rows of models not run from the report already in --out")  # fmt: skip
    br = bsub.add_parser("refresh", help="long-term model refresh: cold, warm, scaling curve")
    br.add_argument("--dataset", default="ml-1m")
    br.add_argument("--out", help="report folder (default benchmarks/results)")
    br.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    br.add_argument("--scaling-edges", default="1000000,2000000,5000000,10000000",
                    help="synthetic graph sizes (comma-separated edges)")  # fmt: skip
    br.add_argument("--scaling-epochs", type=int, default=1, help="epochs timed per size")
    br.add_argument("--new-fraction", type=float, default=0.01,
                    help="newest share of the log that arrives before the warm refresh")  # fmt: skip
    br.add_argument("--valid-cases", type=int, default=1000)
    br.add_argument("--epochs", type=int, help="cold epochs (default: the refresh job's)")
    br.add_argument("--warm-epochs", type=int, help="warm epochs (default: the refresh job's)")
    br.add_argument("--dim", type=int, help="embedding size (default: the refresh job's)")
    br.add_argument("--seed", type=int, default=0)
    bc = bsub.add_parser("catalogue", help="serving cost per event against the catalogue size: "
                         "exact scoring vs candidate retrieval")  # fmt: skip
    bc.add_argument("--sizes", help="catalogue sizes, comma-separated (default "
                    "10000,100000,1000000; --quick: 1000,5000)")  # fmt: skip
    bc.add_argument("--batch", type=_at_least(1), help="requests per micro-batch (default 64)")
    bc.add_argument("--batches", type=_at_least(1), help="timed micro-batches (default 20)")
    bc.add_argument("--candidates", type=_at_least(1), default=300,
                    help="items retrieved per source")  # fmt: skip
    bc.add_argument("--nprobe", type=_at_least(1), default=32, help="inverted lists scanned")
    bc.add_argument("--storage", choices=["flat", "sq8"], default="flat",
                    help="index codes: float32 or 8-bit")  # fmt: skip
    bc.add_argument("--seed", type=int, default=0, help="seed of the synthetic catalogues")
    bc.add_argument("--ml1m", action="store_true",
                    help="also train an ML-1M snapshot and measure the NDCG@10 lost and the "
                         "recall@100 of the indexes")  # fmt: skip
    bc.add_argument("--ml1m-budget", type=float, default=120.0,
                    help="--ml1m: seconds of encoder training")  # fmt: skip
    bc.add_argument("--phase", choices=["test", "valid"], default="test",
                    help="--ml1m: judge the test items, or the validation items (tuning)")  # fmt: skip
    bc.add_argument("--quick", action="store_true", help="small catalogues, few batches")
    bc.add_argument("--out", help="report folder (default benchmarks/results/catalogue)")
    b.set_defaults(func=cmd_bench)

    rf = sub.add_parser("refresh", help="train the long-term model and publish a snapshot")
    common(rf)
    rf.add_argument("--every", help="keep running: refresh at start and then every DURATION "
                    "(e.g. 15m)")  # fmt: skip
    rf.add_argument("--after-events", type=int,
                    help="keep running: also refresh after this many new interactions")  # fmt: skip
    rf.add_argument("--drift", action="store_true",
                    help="keep running: also refresh when the online hit rate drifts (ADWIN)")  # fmt: skip
    rf.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: auto")
    rf.add_argument("--epochs", type=int, help="override the training epochs")
    rf.add_argument("--models-dir", help="snapshot store (default $LSI_MODELS_DIR or var/models)")
    rf.add_argument("--quiet", action="store_true", help="no progress bars")
    rf.set_defaults(func=cmd_refresh)

    md = sub.add_parser("models", help="list, promote or roll back model snapshots")
    common(md)
    md.add_argument("action", choices=["list", "promote", "rollback"])
    md.add_argument("version", nargs="?", help="the version to promote (e.g. v000003)")
    md.add_argument("--models-dir", help="snapshot store (default $LSI_MODELS_DIR or var/models)")
    md.add_argument("--json", action="store_true", help="list: raw manifests")
    md.add_argument("--no-announce", action="store_true",
                    help="change the store only (workers pick it up at their next start)")  # fmt: skip
    md.set_defaults(func=cmd_models)

    rp = sub.add_parser("report", help="render charts of a running system")
    rp.add_argument("what", choices=["metrics"], help="metrics: PNGs of the key series")
    rp.add_argument("--prometheus", help="Prometheus base URL (default $LSI_PROMETHEUS_URL or "
                    "http://127.0.0.1:9090)")  # fmt: skip
    rp.add_argument("--out", required=True, help="directory for the PNGs, summary.json, README.md")
    rp.add_argument("--since", default="15m", help="window ending now (default 15m)")
    rp.add_argument("--step", help="resolution (default: about 240 points over the window)")
    rp.set_defaults(func=cmd_report)

    mo = sub.add_parser("monitoring", help="check the dashboards and rules against Prometheus")
    mo.add_argument("action", choices=["check"],
                    help="check: run every panel query and recording rule; all must have data")  # fmt: skip
    mo.add_argument("--prometheus", help="Prometheus base URL (default $LSI_PROMETHEUS_URL or "
                    "http://127.0.0.1:9090)")  # fmt: skip
    mo.add_argument("--rate-interval", default="1m",
                    help="what $__rate_interval and $__range become (default 1m)")  # fmt: skip
    mo.add_argument("--dashboards", help="dashboard JSON directory (default: the repository's)")
    mo.add_argument("--json", action="store_true", help="one JSON document instead of lines")
    mo.set_defaults(func=cmd_monitoring)

    d = sub.add_parser(
        "demo", help="broker + worker + dataset replay, with live recommendations and metrics"
    )
    d.add_argument("--dataset", default="ml-100k")
    d.add_argument("--limit", type=int, default=20000)
    d.add_argument("--rate", type=float, default=1000.0)
    d.add_argument(
        "--users",
        type=int,
        default=3,
        help="lists shown every 2 s: those that just arrived, the fused model's first",
    )
    d.add_argument(
        "--exit-when-done", action="store_true", help="stop after the replay is processed"
    )
    d.add_argument("--keep-broker", action="store_true", help="leave the broker running at the end")
    d.add_argument("--refresh-after", type=int, default=5000,
                   help="retrain the long-term model after this many new interactions")  # fmt: skip
    d.add_argument("--no-prometheus", action="store_true",
                   help="do not start Prometheus (by default it runs when installed, and the demo "
                   "ends with the dashboards check and charts in var/demo/metrics)")  # fmt: skip
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    # PyTorch Geometric calls torch.jit.script at import, which torch 2.15 deprecates: noise
    # for a user of the command line, not something they can act on
    warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated",
                            category=FutureWarning)  # fmt: skip
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except LsiError as exc:
        print(f"lsi {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
