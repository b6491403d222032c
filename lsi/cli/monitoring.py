"""``lsi report`` and ``lsi monitoring``: charts of a running system, and the dashboards
and recording rules checked against Prometheus."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lsi.cli.common import parse_duration


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
