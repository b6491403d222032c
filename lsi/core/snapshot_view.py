"""What the pure core reads of a model snapshot, and what it hands the fused scorer.

The engine (:mod:`lsi.core.engine`) and the statistics scorer (:mod:`lsi.core.scoring`)
never import the snapshot's class (:class:`lsi.serving.snapshot.Snapshot`) or the fused
scorer (:class:`lsi.serving.fusion.SequenceModel`, which needs torch): they see them through
the protocols here, and the engine builds each user's :class:`SeqRequest` and receives a
:class:`SeqLists` back. So the core loads no torch, whichever snapshot a worker serves.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lsi.core.state import UserState
from lsi.wire.records import RecItem, ScoredItem

__all__ = ["SeqLists", "SeqRequest", "SequenceScorer", "SnapshotView"]


@dataclass(frozen=True, slots=True)
class SeqRequest:
    """One user to score: their recent events, oldest first, and which of their own items
    no list may offer (``own``; ``None``: all of them, the window's and the snapshot's
    history of the user; see :func:`lsi.core.rules.own_items`)."""

    user_id: str
    items: Sequence[str]
    types: Sequence[int]
    times: Sequence[float]
    n_events: int
    own: Collection[str] | None = None

    @classmethod
    def from_state(cls, user_id: str, state: UserState,
                   own: Collection[str] | None = None) -> SeqRequest:  # fmt: skip
        return cls(user_id, state.items, state.types, state.times, state.n_events, own)


@dataclass(frozen=True, slots=True)
class SeqLists:
    """The lists of one record (see :class:`lsi.wire.records.Recommendation`)."""

    items: tuple[RecItem, ...]
    short_term: tuple[ScoredItem, ...]
    long_term: tuple[ScoredItem, ...]
    long_weight: float
    source: str


class SequenceScorer(Protocol):
    """A snapshot's fused scorer (:class:`lsi.serving.fusion.SequenceModel`)."""

    def recommend(
        self, reqs: Sequence[SeqRequest], long: Any, k: int, mode: str = "fused",
        exclude: Collection[str] = frozenset(),
    ) -> list[SeqLists | None]:  # fmt: skip
        """The lists of each request's record, ``None`` for one it cannot score; ``long`` is
        the snapshot the scorer belongs to; no list holds an item of ``exclude``."""
        ...


class SnapshotView(Protocol):
    """The read-only face of a snapshot (:class:`lsi.serving.snapshot.Snapshot`) the core
    scores with: its version, its item rows, the long-term scores
    :math:`s_L(u, \\cdot)` (float32 ``[I]``) and, when it has one, its fused scorer."""

    @property
    def version(self) -> str: ...

    @property
    def item_ids(self) -> tuple[str, ...]: ...

    @property
    def item_index(self) -> dict[str, int]: ...

    @property
    def sequence(self) -> SequenceScorer | None: ...

    def scores(
        self, user_id: str, *, exclude_history: bool = True
    ) -> npt.NDArray[np.float32] | None: ...
