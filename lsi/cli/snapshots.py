"""``lsi models``: list, promote or roll back model snapshots."""

from __future__ import annotations

import argparse
import json
import time

from lsi.cli.common import add_brokers, add_setting_flags, settings_from
from lsi.errors import LsiError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    md = sub.add_parser("models", help="list, promote or roll back model snapshots")
    add_brokers(md)
    md.add_argument("action", choices=["list", "promote", "rollback"])
    md.add_argument("version", nargs="?", help="the version to promote (e.g. v000003)")
    add_setting_flags(md, "models_dir")
    md.add_argument("--json", action="store_true", help="list: raw manifests")
    md.add_argument("--no-announce", action="store_true",
                    help="change the store only (workers pick it up at their next start)")  # fmt: skip
    md.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from lsi.serving.store import SnapshotStore

    settings = settings_from(args)
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
