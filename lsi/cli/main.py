"""The ``lsi`` command line: :func:`build_parser` and :func:`main`.

Each command group is a module of :mod:`lsi.cli` with its flags (``add_parser``) and its
handler (``cmd_*``): :mod:`~lsi.cli.broker` (``lsi kafka``), :mod:`~lsi.cli.worker`,
:mod:`~lsi.cli.events` (``replay``, ``publish``, ``recs``), :mod:`~lsi.cli.items`, :mod:`~lsi.cli.bench`,
:mod:`~lsi.cli.refresh`, :mod:`~lsi.cli.snapshots` (``lsi models``),
:mod:`~lsi.cli.monitoring` (``report``, ``monitoring``), :mod:`~lsi.cli.demo_command` and
:mod:`~lsi.cli.settings`;
what they share is in :mod:`lsi.cli.common`. The handlers import what they run (torch, Faust,
the Kafka clients) only when they run.

Every failure lsi anticipates (:class:`~lsi.errors.LsiError`) is printed as one line that says
what to do, with exit status 2; Ctrl-C exits with 130 after a clean shutdown.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lsi.cli import (
    bench,
    broker,
    demo_command,
    events,
    items,
    monitoring,
    refresh,
    settings,
    snapshots,
    worker,
)
from lsi.errors import LsiError

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lsi", description="lsi: streaming long/short-term interest recommender"
    )
    from lsi import __version__

    p.add_argument("--version", action="version", version=f"lsi {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    # in the order `lsi --help` lists them
    broker.add_parser(sub)  # kafka
    worker.add_parser(sub)
    events.add_parser(sub)  # replay, publish, recs
    items.add_parser(sub)
    bench.add_parser(sub)
    refresh.add_parser(sub)
    snapshots.add_parser(sub)  # models
    monitoring.add_parser(sub)  # report, monitoring
    demo_command.add_parser(sub)  # demo
    settings.add_parser(sub)
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
