"""``lsi replay``, ``lsi publish`` and ``lsi recs``: events into Kafka, recommendations out."""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from lsi.cli.common import add_brokers, add_setting_flags, at_least, settings_from
from lsi.errors import LsiError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("replay", help="publish a dataset as click events in time order")
    add_brokers(r)
    r.add_argument("dataset", help="ml-100k, ml-1m, amazon-beauty, taobao or yoochoose-clicks")
    r.add_argument("--limit", type=at_least(0), help="publish at most this many events")
    r.add_argument("--start", type=at_least(0), default=0, help="skip this many events first")
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
    add_brokers(pb)
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
    add_brokers(rc)
    rc.add_argument("--user", help="one user: ask the worker now (or filter --follow)")
    rc.add_argument("--follow", action="store_true", help="print records as they arrive")
    rc.add_argument("--dataset", help="show item titles from this dataset (MovieLens)")
    rc.add_argument("--users", type=at_least(1), default=5, help="how many users to show")
    rc.add_argument("--top", type=at_least(1), default=10, help="items per list")
    rc.add_argument("--json", action="store_true", help="raw JSON records")
    add_setting_flags(rc, "web_port", "web_host")
    rc.set_defaults(func=cmd_recs)


def cmd_replay(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lsi.evaluation.datasets import load
    from lsi.kafka.producer import replay

    settings = settings_from(args)
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

    settings = settings_from(args)
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


def cmd_recs(args: argparse.Namespace) -> int:
    from lsi.cli.present import format_recommendation

    settings = settings_from(args)
    titles: dict[str, str] = {}
    if args.dataset:
        from lsi.evaluation.datasets import item_titles

        titles = item_titles(args.dataset)
    if args.user is not None and not args.follow:
        from lsi.client import RecommendationsClient, WorkerUnavailable

        # the Python client: the id URL-quoted, a 503 (the group is forming) retried briefly
        try:
            found = RecommendationsClient(settings.web_url, retry_for_s=1.0).recommend(args.user)
        except WorkerUnavailable as exc:
            raise LsiError(f"cannot reach the worker at {settings.web_url} ({exc.message}): "
                           "start it with `lsi worker`, or set LSI_WEB_HOST/LSI_WEB_PORT") from None  # fmt: skip
        rec = found.to_dict()
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
