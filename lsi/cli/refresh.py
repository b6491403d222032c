"""``lsi refresh``: train the long-term model and publish a snapshot, once or in a loop."""

from __future__ import annotations

import argparse

from lsi.cli.common import (
    add_brokers,
    add_setting_flags,
    parse_duration,
    settings_from,
    train_config,
)
from lsi.errors import LsiError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rf = sub.add_parser("refresh", help="train the long-term model and publish a snapshot")
    add_brokers(rf)
    rf.add_argument("--every", help="keep running: refresh at start and then every DURATION "
                    "(e.g. 15m)")  # fmt: skip
    rf.add_argument("--after-events", type=int,
                    help="keep running: also refresh after this many new interactions")  # fmt: skip
    rf.add_argument("--drift", action="store_true",
                    help="keep running: also refresh when the online hit rate drifts (ADWIN)")  # fmt: skip
    add_setting_flags(rf, refresh_device="--device")
    rf.add_argument("--epochs", type=int, help="override the training epochs")
    add_setting_flags(rf, "models_dir")
    rf.add_argument("--quiet", action="store_true", help="no progress bars")
    rf.set_defaults(func=cmd_refresh)


def cmd_refresh(args: argparse.Namespace) -> int:
    import threading

    from models.jobs.refresh import RefreshJob, run_forever

    settings = settings_from(args)
    cfg = train_config(epochs=args.epochs, warm_epochs=args.epochs)
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
