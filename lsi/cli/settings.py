"""``lsi settings``: every setting in effect, where it came from, and the configuration page."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from lsi.cli.common import settings_from


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    st = sub.add_parser(
        "settings", help="show every setting in effect (LSI_* variables and defaults)"
    )
    st.add_argument("--markdown", action="store_true",
                    help="print the settings' tables of docs/configuration.md instead")  # fmt: skip
    st.add_argument("--write", metavar="FILE",
                    help="rewrite the generated tables in FILE (docs/configuration.md)")  # fmt: skip
    st.set_defaults(func=cmd_settings)


def cmd_settings(args: argparse.Namespace) -> int:
    from lsi.config import SECTIONS, Settings, render_markdown, shown_default, write_markdown

    if args.write:
        changed = write_markdown(Path(args.write))
        print(f"{args.write}: {'rewritten' if changed else 'already up to date'}")
        return 0
    if args.markdown:
        print(render_markdown(), end="")
        return 0
    settings: Settings = settings_from(args)  # checks the environment as a worker would
    for key, title in SECTIONS.items():
        print(f"# {title}")
        for f in dataclasses.fields(Settings):
            if f.metadata["section"] != key:
                continue
            var = f"LSI_{f.name.upper()}"
            value = getattr(settings, f.name)
            shown = "(set)" if f.metadata["secret"] and value else shown_default(value)
            source = "environment" if var in os.environ else "default"
            print(f"{var}={shown}  # {source}")
        print()
    return 0
