"""Online hit rate and its drift, as the refresh job watches it.

The refresh job reads ``lsi.recommendations`` and ``lsi.interactions``. Each recommendation
record replaces its user's last list; each later interaction of that user is a Bernoulli
trial: *hit* if its item is in the top ``k`` of that list. River's ADWIN keeps an adaptive
window over the hits and flags a change when two sub-windows' means differ by more than its
Hoeffding bound (confidence ``delta``), i.e. the model's online hit rate moved: a reason to
refresh before the schedule says so. The monitor is pure (no I/O); the job feeds it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from river.drift import ADWIN

__all__ = ["HitRateMonitor"]


class HitRateMonitor:
    """Online hit rate @k over a bounded set of users, with ADWIN drift detection.

    Args:
        k: list depth that counts as a hit.
        delta: ADWIN confidence (smaller: fewer, surer alarms).
        max_users: users whose last list is remembered (least recently updated dropped).
        min_trials: trials before an alarm may be raised (the window must fill first).
    """

    def __init__(
        self, k: int = 10, delta: float = 0.002, max_users: int = 200_000, min_trials: int = 500
    ) -> None:
        self.k = k
        self.delta = delta
        self.max_users = max_users
        self.min_trials = min_trials
        self._lists: OrderedDict[str, tuple[frozenset[str], float]] = OrderedDict()
        self.reset()

    def reset(self) -> None:
        """Start a new window (after a refresh: the new model is a new process to watch)."""
        self._adwin = ADWIN(delta=self.delta)  # type: ignore[no-untyped-call]
        self.trials = 0
        self.hits = 0
        self.drifted = False

    def recommendation(self, user: str, items: Sequence[str], event_ts: float | None = None
                       ) -> None:  # fmt: skip
        """The list last shown to ``user``, built from their events up to ``event_ts``."""
        self._lists[user] = (frozenset(items[: self.k]),
                             float("-inf") if event_ts is None else event_ts)  # fmt: skip
        self._lists.move_to_end(user)
        while len(self._lists) > self.max_users:
            self._lists.popitem(last=False)

    def interaction(self, user: str, item: str, ts: float | None = None) -> bool | None:
        """Judge one interaction; ``None`` if its user has no list yet, or if the list was
        built from this very event or a later one (``ts <= event_ts``: read out of order)."""
        entry = self._lists.get(user)
        if entry is None:
            return None
        shown, built_until = entry
        if ts is not None and ts <= built_until:
            return None
        hit = item in shown
        self.trials += 1
        self.hits += hit
        self._adwin.update(1.0 if hit else 0.0)  # type: ignore[no-untyped-call]
        if self._adwin.drift_detected and self.trials >= self.min_trials:
            self.drifted = True
        return hit

    @property
    def hit_rate(self) -> float:
        """ADWIN's current window mean (0 before any trial)."""
        return float(self._adwin.estimation) if self.trials else 0.0
