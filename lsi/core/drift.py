"""Online hit rate and its drift, as the refresh job watches it.

The refresh job reads ``lsi.recommendations`` and ``lsi.interactions``. Each interaction is
a Bernoulli trial against the newest list its user was shown *before* it (the newest list
built from events older than it): *hit* if its item is in the top ``k`` of that list. A
worker sends a batch's log records and the lists built from them together, so the job may
read a list before the interactions it was built from: the monitor keeps each user's last
two lists and judges an interaction by event time, not by read order. River's ADWIN keeps an adaptive
window over the hits and flags a change when two sub-windows' means differ by more than its
Hoeffding bound (confidence ``delta``), i.e. the model's online hit rate moved: a reason to
refresh before the schedule says so. The monitor is pure (no I/O); the job feeds it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from river.drift import ADWIN

__all__ = ["HitRateMonitor"]

#: a list shown to a user and the event time it was built until
_Shown = tuple[frozenset[str], float]


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
        # user -> (newest list, built until), (the one before, built until)
        self._lists: OrderedDict[str, tuple[_Shown, _Shown | None]] = OrderedDict()
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
        shown = (frozenset(items[: self.k]), float("-inf") if event_ts is None else event_ts)
        before = self._lists.get(user)
        self._lists[user] = (shown, None if before is None else before[0])
        self._lists.move_to_end(user)
        while len(self._lists) > self.max_users:
            self._lists.popitem(last=False)

    def interaction(self, user: str, item: str, ts: float | None = None) -> bool | None:
        """Judge one interaction against the newest of its user's last two lists that was
        built from older events only (``event_ts < ts``); ``None`` if there is none."""
        entry = self._lists.get(user)
        if entry is None:
            return None
        (shown, built_until), before = entry
        if ts is not None and ts <= built_until:
            if before is None or ts <= before[1]:
                return None
            shown = before[0]
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
