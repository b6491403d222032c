"""``lsi models``: list, promote or roll back model snapshots, and run experiments between
them (``lsi models experiment start|stop|status``, docs/experiments.md)."""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

from lsi.cli.common import add_brokers, add_setting_flags, settings_from
from lsi.errors import LsiError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    md = sub.add_parser(
        "models", help="list, promote or roll back model snapshots; run experiments",
        epilog="experiments: `lsi models experiment start VERSION|baseline --fraction 0.1 "
               "[--name NAME]`, `lsi models experiment stop`, `lsi models experiment status "
               "[--prometheus URL]` (docs/experiments.md)",
    )  # fmt: skip
    add_brokers(md)
    md.add_argument("action", choices=["list", "promote", "rollback", "experiment"])
    md.add_argument("version", nargs="?",
                    help="promote: the version (e.g. v000003); experiment: start, stop or "
                         "status")  # fmt: skip
    md.add_argument("candidate", nargs="?",
                    help="experiment start: the candidate, a version or `baseline` (the "
                         "statistics scorer)")  # fmt: skip
    add_setting_flags(md, "models_dir")
    md.add_argument("--json", action="store_true",
                    help="list: raw manifests; experiment status: one JSON document")  # fmt: skip
    md.add_argument("--no-announce", action="store_true",
                    help="change the store only (workers pick it up within 30 s, or at their "
                         "next start)")  # fmt: skip
    md.add_argument(
        "--fraction",
        type=float,
        help="experiment start: the share of users the candidate serves, in (0, 1)",
    )
    md.add_argument("--name",
                    help="experiment start: its name, the metrics' label and the salt of the "
                         "split (default: CANDIDATE-<UTC time>)")  # fmt: skip
    md.add_argument("--prometheus",
                    help="experiment status: the Prometheus that scrapes the workers, for the "
                         "per-arm hit rates (default $LSI_PROMETHEUS_URL; none: not queried)")  # fmt: skip
    md.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from lsi.serving.store import SnapshotStore

    settings = settings_from(args)
    store = SnapshotStore(settings.models_dir, keep=settings.models_keep)
    if args.action == "experiment":
        return cmd_experiment(args, settings, store)
    if args.candidate is not None:
        raise LsiError(f"`lsi models {args.action}` takes at most one VERSION, got "
                       f"{args.version} {args.candidate}")  # fmt: skip
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
        ended = store.promote(args.version)
        version = args.version
    else:
        try:
            before = store.experiment()
        except LsiError:  # a malformed one: any change of the live version drops it
            before = None
        version = store.rollback()
        ended = before if before is not None and before.candidate == version else None
    print(f"{version} is live in {settings.models_dir}")
    if ended is not None:
        print(f"experiment {ended.name} stopped: its candidate {ended.candidate} is live now")
    if not args.no_announce:
        _announce(settings, store, version)
        print(f"announced on {settings.models_topic}; workers swap to it")
    return 0


def _announce(settings: Any, store: Any, version: str | None,
              extra: dict[str, Any] | None = None) -> None:  # fmt: skip
    from models.jobs.refresh import announce  # loads the trainer (torch): only to announce

    announce(settings, store, version, extra)


def cmd_experiment(args: argparse.Namespace, settings: Any, store: Any) -> int:
    """``lsi models experiment start|stop|status``."""
    from lsi.core.experiment import BASELINE

    action = args.version
    if action not in ("start", "stop", "status"):
        raise LsiError("`lsi models experiment` needs start, stop or status, got "
                       f"{action!r}; e.g. `lsi models experiment start v000003 --fraction 0.1`")  # fmt: skip
    if action != "start" and (args.candidate or args.fraction is not None or args.name):
        raise LsiError(f"`lsi models experiment {action}` takes no CANDIDATE, --fraction or "
                       "--name")  # fmt: skip
    if action == "start":
        if not args.candidate or args.fraction is None:
            raise LsiError("`lsi models experiment start` needs a CANDIDATE (a version, or "
                           f"{BASELINE}) and --fraction; e.g. `lsi models experiment start "
                           "v000003 --fraction 0.1`")  # fmt: skip
        exp = store.start_experiment(args.candidate, args.fraction, args.name)
        live = store.live()
        print(f"experiment {exp.name} started: {_percent(exp.fraction)} of users on "
              f"{exp.candidate}, the others on {live or 'the statistics scorer'}")  # fmt: skip
        extra: dict[str, Any] = {"experiment": exp.to_dict()}
    elif action == "stop":
        ended = store.stop_experiment()
        if ended is None:
            print(f"no experiment was running in {settings.models_dir}")
            return 0
        print(f"experiment {ended.name} stopped: every user on "
              f"{store.live() or 'the statistics scorer'} again")  # fmt: skip
        extra = {"experiment": None}
    else:
        return _status(args, settings, store)
    if not args.no_announce:
        _announce(settings, store, store.live(), extra)
        print(f"announced on {settings.models_topic}; workers apply it")
    return 0


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.4g}%"


def _status(args: argparse.Namespace, settings: Any, store: Any) -> int:
    exp = store.experiment()
    live = store.live()
    url = args.prometheus or os.environ.get("LSI_PROMETHEUS_URL")
    if exp is None:
        if args.json:
            print(json.dumps({"experiment": None, "live": live}))
        else:
            print(f"no experiment running in {settings.models_dir}; start one with `lsi models "
                  "experiment start VERSION|baseline --fraction 0.1`")  # fmt: skip
        return 0
    age = max(0.0, time.time() - exp.started_at)
    report: dict[str, Any] = {"experiment": exp.to_dict(), "live": live, "arms": None}
    if url:
        report["arms"] = _arm_results(url, exp.name, age)
    if args.json:
        print(json.dumps(report, indent=2, allow_nan=False, default=str))
        return 0
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(exp.started_at))
    print(f"experiment {exp.name}: {_percent(exp.fraction)} of users on {exp.candidate}, the "
          f"others on {live or 'the statistics scorer'}; started {started} UTC "
          f"({age / 60:.0f} min ago)")  # fmt: skip
    if not url:
        print("per-arm hit rates: pass --prometheus URL (or set LSI_PROMETHEUS_URL)")
        return 0
    _print_arms(report["arms"])
    return 0


def _arm_results(url: str, name: str, age_s: float) -> dict[str, Any]:
    """Per arm since the start (every worker, counter resets included): judged events, hits
    at 10, the hit rate with its 95 % Wilson interval; and the candidate-vs-control z-test."""
    from lsi.core.experiment import ARMS, hit_rate_interval, two_proportion_test
    from lsi.monitoring.prometheus_api import PrometheusClient

    client = PrometheusClient(url)
    window = f"{math.ceil(age_s) + 60}s"
    sel = f'experiment="{name}"'
    now = time.time()

    def per_arm(expr: str) -> dict[str, float]:
        out = dict.fromkeys(ARMS, 0.0)
        for series in client.query(expr, now):
            value = series.last()
            if series.labels.get("arm") in out and value is not None and math.isfinite(value):
                out[series.labels["arm"]] = value
        return out

    judged = per_arm(f"sum by (arm) (increase(lsi_experiment_judged_total{{{sel}}}[{window}]))")
    hits = per_arm(f'sum by (arm) (increase(lsi_experiment_hits_total{{{sel}, k="10"}}[{window}]))')
    arms: dict[str, Any] = {}
    for arm in ARMS:
        n, h = round(judged[arm]), min(round(hits[arm]), round(judged[arm]))
        p, lo, hi = hit_rate_interval(h, n)
        arms[arm] = {"judged": n, "hits_at_10": h, "hit_rate_at_10": _finite(p),
                     "interval_95": [_finite(lo), _finite(hi)]}  # fmt: skip
    z, p_value = two_proportion_test(arms["control"]["hits_at_10"], arms["control"]["judged"],
                                     arms["candidate"]["hits_at_10"], arms["candidate"]["judged"])  # fmt: skip
    return {"prometheus": url, **arms, "z": _finite(z), "p_value": _finite(p_value)}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _print_arms(arms: dict[str, Any]) -> None:
    print(f"{'arm':<10} {'judged':>9} {'hits@10':>8} {'HR@10':>7}  95% interval")
    for arm in ("control", "candidate"):
        a = arms[arm]
        if a["hit_rate_at_10"] is None:
            print(f"{arm:<10} {a['judged']:>9,} {a['hits_at_10']:>8,} {'-':>7}  -")
            continue
        lo, hi = a["interval_95"]
        print(f"{arm:<10} {a['judged']:>9,} {a['hits_at_10']:>8,} {a['hit_rate_at_10']:>7.4f}  "
              f"[{lo:.4f}, {hi:.4f}]")  # fmt: skip
    if arms["p_value"] is None:
        print("difference: not enough judged events in both arms yet")
        return
    diff = arms["candidate"]["hit_rate_at_10"] - arms["control"]["hit_rate_at_10"]
    verdict = "significant" if arms["p_value"] < 0.05 else "not significant"
    print(f"candidate - control: {diff:+.4f} (z = {arms['z']:.2f}, two-sided p = "
          f"{arms['p_value']:.3g}: {verdict} at 0.05)")  # fmt: skip
