"""``lsi items``: load an item catalogue into ``lsi.items``."""

from __future__ import annotations

import argparse
from pathlib import Path

from lsi.cli.common import add_brokers, at_least, settings_from
from lsi.errors import LsiError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    it = sub.add_parser("items", help="load the item catalogue (titles, categories, "
                        "availability) into lsi.items")  # fmt: skip
    it.add_argument("action", choices=["publish"])
    source = it.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", metavar="FILE", help="a catalogue CSV (docs/catalogue.md): "
                        "item_id,title,categories,labels,available,created_at,expires_at")  # fmt: skip
    source.add_argument("--dataset", help="a dataset's own catalogue: ml-100k, ml-1m (titles "
                        "and genres) or taobao (categories)")  # fmt: skip
    it.add_argument("--limit", type=at_least(1), help="publish at most this many records")
    add_brokers(it)
    it.set_defaults(func=cmd_items)


def cmd_items(args: argparse.Namespace) -> int:
    from lsi.kafka.catalogue import from_csv, from_dataset, publish_catalogue

    settings = settings_from(args)
    records = from_csv(Path(args.csv)) if args.csv else from_dataset(args.dataset)
    done = publish_catalogue(settings, records, limit=args.limit)
    for row, item, why in done.refused[:10]:
        print(f"  row {row} ({item or 'no item_id'}): not published: {why}")
    if len(done.refused) > 10:
        print(f"  … and {len(done.refused) - 10} more")
    print(f"published {done.sent:,} catalogue records to {settings.items_topic}"
          + (f"; {len(done.refused):,} refused" if done.refused else ""))  # fmt: skip
    if done.refused and not done.sent:
        raise LsiError("no record was published: fix the rows above (docs/catalogue.md)")
    return 0
