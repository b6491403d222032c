"""What the command groups share: the settings their flags override, ``--brokers``, the
argparse type of counts, durations, the refresh job's training configuration, and help texts
that name a dataclass default known only by importing a heavy module."""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable
from typing import Any

from lsi.errors import LsiError


def settings_from(args: argparse.Namespace) -> Any:
    """:class:`~lsi.config.Settings` from the environment, with the setting flags ``args``
    has given (:func:`add_setting_flags`; their values are coerced as the environment's)."""
    from lsi.config import Settings

    overrides = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(Settings)}
    return Settings.from_env(**overrides)


def _plain(markdown: str) -> str:
    """A setting's help as a flag shows it: its first sentence, without Markdown."""
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", markdown).replace("`", "")
    return re.split(r"(?<=[.;])\s", text, maxsplit=1)[0].rstrip(".;")


def add_setting_flags(sp: argparse.ArgumentParser, *names: str, **spelt: str) -> None:
    """Flags that override the settings ``names`` (``web_port`` → ``--web-port``; ``spelt``
    gives a flag another spelling: ``refresh_device="--device"``), each with the help, the
    choices and the default the setting declares (:mod:`lsi.config`). Values are read as
    strings and coerced by :meth:`~lsi.config.Settings.from_env`, as the environment's are."""
    from lsi.config import Settings, shown_default

    declared = {f.name: f for f in dataclasses.fields(Settings)}
    for name in (*names, *spelt):
        meta = declared[name].metadata
        if meta["secret"]:
            raise ValueError(f"{name} is read from the environment only")
        shown = meta["shown"] or shown_default(declared[name].default)
        sp.add_argument(spelt.get(name, "--" + name.replace("_", "-")), dest=name,
                        choices=meta["choices"],
                        help=f"{_plain(meta['help'])} (default $LSI_{name.upper()} or {shown})")  # fmt: skip


def add_brokers(sp: argparse.ArgumentParser) -> None:
    """``--brokers``, of every command that talks to Kafka."""
    add_setting_flags(sp, "brokers")


def at_least(minimum: int) -> Callable[[str], int]:
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


def train_config(**changes: Any) -> Any:
    """The refresh job's training configuration with ``changes`` (``None`` = keep)."""
    from dataclasses import replace

    from models.training.longterm import TrainConfig

    try:
        return replace(TrainConfig(), **{k: v for k, v in changes.items() if v is not None})
    except ValueError as exc:
        raise LsiError(f"{exc}; see `lsi refresh --help`") from None


def field_default(cls: type[Any], name: str) -> Any:
    """The default of the dataclass field ``name`` of ``cls`` (its factory's value, if any)."""
    (found,) = (f for f in dataclasses.fields(cls) if f.name == name)
    if found.default_factory is not dataclasses.MISSING:
        return found.default_factory()
    if found.default is dataclasses.MISSING:
        raise TypeError(f"{cls.__name__}.{name} has no default")
    return found.default


class LateHelp(argparse.ArgumentParser):
    """An argument parser whose help texts may hold a ``{}`` filled when the help is printed.

    A benchmark's default report folder is a field of its options dataclass, in a module that
    imports torch or a Kafka client: reading it when the parser is built would load those for
    every command (``lsi models list`` must not load torch), so :meth:`fill_later` registers a
    reader that runs only when this parser's ``--help`` is printed.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._later: list[tuple[argparse.Action, Callable[[], object]]] = []

    def fill_later(self, action: argparse.Action, read: Callable[[], object]) -> None:
        """Replace the ``{}`` of ``action``'s help with ``read()`` when the help is printed."""
        self._later.append((action, read))

    def format_help(self) -> str:
        for action, read in self._later:
            action.help = (action.help or "").replace("{}", str(read()))
        self._later.clear()
        return super().format_help()
