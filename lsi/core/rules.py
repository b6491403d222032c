"""Business rules: which of a user's own items may come back, and how a list is filtered.

A deployment sets the rules once (``LSI_RULE_*``, :class:`Rules`); a request may add a
category filter (``GET /recommendations/{user}/?category=c``). Both scorers and every
emitted or requested list follow them, and the offline evaluation runs the same functions
(``lsi bench rules``), so each rule's cost in NDCG is measured, not guessed.

**Own items.** The items of the user's own history no list offers again:

============  ====================================================================
``seen``      every item the user interacted with: the recent window and, for the
              fused scorer, the snapshot's history of the user (the default)
``purchased`` only the items of ``purchase`` events in the recent window; items the
              user viewed, carted or liked may be offered again
``recent``    only the items of the window's events within ``recent_days`` of the
              user's newest event (event time, so a replay and the live stream agree)
============  ====================================================================

:func:`own_items` returns ``None`` for ``seen`` (each scorer's own default) and the explicit
set otherwise; the scorers exclude exactly that set (with the catalogue's hidden items and a
request's ``exclude``).

**New items.** With ``new_slots`` > 0, up to that many of a list's places go to items the
catalogue created within ``new_days`` (exploration: a new item has no interactions, so no
scorer would offer it). :func:`explore` puts them at places 3, 6, 9 … (1-based: inside the
first page of a shop), shifting the scored items down and cutting the list back to ``k``.
Which new items a user gets is a rotation over the newest ones keyed by a hash of the user
id, so exposure spreads evenly over users and items and a user's pick is stable between
batches. A new item the user already had, one a filter or the cap rules out, or one already
in the list is skipped. The placed items carry ``explore`` in the record and no scores.

**Filter and cap.** :func:`select` walks a ranked list best first and keeps an item when (a)
a request's ``category`` is among its catalogue categories and (b) no category of the item
already has ``category_cap`` items in the list; it stops at ``k`` items. An item without
categories is never capped (and never passes a category filter). The engine asks the
scorer for more than ``k`` items (:func:`fetch_size`) and, for users whose list came back
short while the scorer had more, asks again with a larger size.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from lsi.core.state import UserState
from lsi.wire.records import TYPE_CODES

__all__ = [
    "MAX_FETCH",
    "OWN_ITEMS",
    "Categories",
    "Rules",
    "explore",
    "fetch_size",
    "only_category",
    "own_items",
    "select",
]

#: the values of :attr:`Rules.own_items`
OWN_ITEMS = ("seen", "purchased", "recent")
#: the longest list the engine asks a scorer for when filtering (see :func:`fetch_size`)
MAX_FETCH = 2048

#: an item's catalogue categories (empty when the catalogue does not know it)
Categories = Callable[[str], tuple[str, ...]]

_PURCHASE = TYPE_CODES["purchase"]
_DAY_S = 86400.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Rules:
    """The deployment's rules (``LSI_RULE_*``).

    Attributes:
        own_items: ``seen``, ``purchased`` or ``recent`` (see the module docstring).
        recent_days: the ``recent`` rule's horizon, in days of event time.
        category_cap: at most this many items of one category per list; 0: no cap.
        new_slots: places of each list for new items (exploration); 0: off.
        new_days: how long after its ``created_at`` an item counts as new.
    """

    own_items: str = "seen"
    recent_days: float = 30.0
    category_cap: int = 0
    new_slots: int = 0
    new_days: float = 7.0

    def __post_init__(self) -> None:
        if self.new_slots < 0 or not self.new_days > 0:
            raise ValueError("new_slots must be 0 (off) or more and new_days positive, got "
                             f"{self.new_slots} and {self.new_days}")  # fmt: skip
        if self.own_items not in OWN_ITEMS:
            raise ValueError(f"own_items must be one of {OWN_ITEMS}, got {self.own_items!r}")
        if not self.recent_days > 0:
            raise ValueError(f"recent_days must be positive, got {self.recent_days}")
        if self.category_cap < 0:
            raise ValueError(f"category_cap must be 0 (no cap) or more, got {self.category_cap}")


def own_items(state: UserState, rules: Rules) -> frozenset[str] | None:
    """The user's own items no list may offer under ``rules``; ``None`` for ``seen`` (every
    item, as each scorer defines it)."""
    if rules.own_items == "seen":
        return None
    if rules.own_items == "purchased":
        return frozenset(i for i, c in zip(state.items, state.types, strict=True) if c == _PURCHASE)
    since = state.last_ts - rules.recent_days * _DAY_S
    return frozenset(i for i, t in zip(state.items, state.times, strict=True) if t >= since)


def fetch_size(k: int, rules: Rules, category: str | None, categorised: bool) -> int:
    """How many items to ask a scorer for, to fill ``k`` after :func:`select`: ``k`` when
    nothing filters (no request ``category``; no cap, or no catalogue: ``categorised``
    false), else a few times ``k``."""
    if category is not None:
        return min(MAX_FETCH, max(4 * k, 100))
    if rules.category_cap > 0 and categorised:
        return min(MAX_FETCH, 3 * k)
    return k


def select(
    ranked: Iterable[T],
    item_id: Callable[[T], str],
    k: int,
    categories: Categories,
    *,
    cap: int = 0,
    category: str | None = None,
) -> list[T]:
    """The first ``k`` entries of ``ranked`` (best first) that pass the category filter
    and the per-category cap (see the module docstring)."""
    out: list[T] = []
    counts: Counter[str] = Counter()
    for entry in ranked:
        if len(out) >= k:
            break
        cats = categories(item_id(entry))
        if category is not None and category not in cats:
            continue
        if cap > 0:
            if any(counts[c] >= cap for c in cats):
                continue
            counts.update(set(cats))
        out.append(entry)
    return out


def only_category(
    ranked: Sequence[T], item_id: Callable[[T], str], k: int, categories: Categories,
    category: str | None,
) -> tuple[T, ...]:  # fmt: skip
    """The first ``k`` entries of ``ranked`` in ``category`` (all of them without one)."""
    return tuple(select(ranked, item_id, k, categories, category=category))


def explore(
    ranked: Sequence[T],
    k: int,
    user_id: str,
    new_items: Sequence[str],
    slots: int,
    allowed: Callable[[str], bool],
    make: Callable[[str], T],
    item_id: Callable[[T], str],
) -> list[T]:
    """``ranked`` with up to ``slots`` of ``new_items`` (newest first) placed at places 3, 6,
    9 … and cut to ``k`` (see the module docstring). ``allowed``: whether a new item may be
    offered to this user; ``make``: the list entry of a placed item."""
    if slots <= 0 or not new_items or k <= 0:
        return list(ranked[:k])
    have = {item_id(e) for e in ranked[:k]}
    n = len(new_items)
    start = zlib.crc32(user_id.encode()) % n
    picks: list[T] = []
    for j in range(n):
        if len(picks) >= slots:
            break
        item = new_items[(start + j) % n]
        if item not in have and allowed(item):
            picks.append(make(item))
            have.add(item)
    out = list(ranked[:k])
    for j, entry in enumerate(picks):
        out.insert(min(len(out), 3 * j + 2), entry)
    return out[:k]
