"""``lsi demo``: its flags and the handler that runs :func:`lsi.cli.demo.run_demo`."""

from __future__ import annotations

import argparse
import os
import sys

from lsi.errors import LsiError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
