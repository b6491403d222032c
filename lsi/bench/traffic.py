"""Good traffic for ``lsi bench faults``: the events whose every application is counted.

:func:`good_events` yields the stream of valid events the fault harness publishes: a
synthetic one (Zipf users and items, all seven event types; no dataset needed, so CI runs
it anywhere) or a dataset's events in time order (:func:`lsi.kafka.producer.events_of`). Each event
has a unique ``event_id`` (``<run>:<n>``), which is what ground truth counts; its ``ts`` is
re-stamped with the wall clock when it is sent (:func:`stamped`), as ``lsi replay`` does.

:func:`probe_users` names users that cover every partition, so a harness can tell that the
whole group, not just one partition, has recovered.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from lsi.wire.partitioning import partition_of
from lsi.wire.records import EVENT_TYPES, Event

__all__ = ["SYNTHETIC", "good_events", "probe_users", "stamped"]

#: the dataset name of the built-in generator
SYNTHETIC = "synthetic"

#: share of each event type in the synthetic stream (EVENT_TYPES order)
_TYPE_SHARE = (0.55, 0.22, 0.06, 0.05, 0.03, 0.05, 0.04)


def _zipf(n: int, exponent: float) -> npt.NDArray[np.float64]:
    p: npt.NDArray[np.float64] = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    out: npt.NDArray[np.float64] = p / p.sum()
    return out


def synthetic(n: int, run: str, seed: int = 0) -> Iterator[Event]:
    """``n`` events of ``max(50, n // 25)`` users on ``max(100, n // 10)`` items, Zipf
    popularity on both sides; ``rate`` events carry a weight of 1 to 5, a few ``skip``
    events the extreme weight −1000."""
    rng = np.random.default_rng(seed)
    n_users, n_items = max(50, n // 25), max(100, n // 10)
    users = rng.choice(n_users, n, p=_zipf(n_users, 0.6))
    items = rng.choice(n_items, n, p=_zipf(n_items, 0.9))
    types = rng.choice(len(EVENT_TYPES), n, p=_TYPE_SHARE)
    stars = rng.integers(1, 6, n)
    extreme = rng.random(n) < 0.2
    for k in range(n):
        etype = EVENT_TYPES[int(types[k])]
        weight: float | None = None
        if etype == "rate":
            weight = float(stars[k])
        elif etype == "skip" and extreme[k]:
            weight = -1000.0
        yield Event(
            f"{run}:{k}", f"u{int(users[k])}", f"i{int(items[k])}", etype, 0.0, weight, {"n": k}
        )


def good_events(dataset: str, n: int, run: str, seed: int = 0) -> Iterator[Event]:
    """The first ``n`` good events of ``dataset`` (:data:`SYNTHETIC` or a name
    :func:`lsi.evaluation.datasets.load` knows), ids unique to ``run``."""
    if dataset == SYNTHETIC:
        yield from synthetic(n, run, seed)
        return
    from lsi.evaluation.datasets import load
    from lsi.kafka.producer import events_of

    data = load(dataset)
    for k, (event, _) in enumerate(events_of(data, run, n)):
        yield Event(
            f"{run}:{k}", event.user_id, event.item_id, event.type, 0.0, event.weight, event.context
        )


def stamped(event: Event, now: float | None = None) -> Event:
    """``event`` with ``ts`` set to ``now`` (the wall clock by default)."""
    ts = round(time.time() if now is None else now, 3)
    return Event(
        event.event_id, event.user_id, event.item_id, event.type, ts, event.weight, event.context
    )


def probe_users(prefix: str, partitions: int) -> list[str]:
    """One user id per partition (murmur2 of the id, as producers key events), in
    partition order: ``<prefix>-<j>`` for the first ``j`` that lands on each."""
    found: dict[int, str] = {}
    j = 0
    while len(found) < partitions:
        user = f"{prefix}-{j}"
        found.setdefault(partition_of(user.encode(), partitions), user)
        j += 1
    return [found[p] for p in range(partitions)]
