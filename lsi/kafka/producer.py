"""Replay a dataset as click events into ``lsi.events``, in time order.

Pacing: ``rate`` events per second, or ``speedup`` times the dataset's own pace, or as fast
as possible (both 0). Time: by default each event's ``ts`` is re-based onto the wall clock
(``rate``: the moment it is sent; ``speedup``: start + elapsed dataset time / speedup), and
the original time is kept in ``context.orig_ts``, so end-to-end latency is meaningful;
``keep_ts`` sends the dataset's own timestamps (for offline-style experiments).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lsi.config import Settings
from lsi.evaluation.datasets import Interactions, load
from lsi.kafka.clients import client_errors, ensure_topics, producer
from lsi.wire.records import EVENT_TYPES, Event

__all__ = ["ReplayReport", "events_of", "replay"]


@dataclass(frozen=True, slots=True)
class ReplayReport:
    dataset: str
    sent: int
    seconds: float
    run_id: str

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def events_of(
    data: Interactions, run_id: str, limit: int | None = None, start: int = 0
) -> Iterator[tuple[Event, float]]:
    """The dataset's rows as events in time order, with their original timestamps."""
    order = data.time_order()[start:]
    if limit is not None:
        order = order[:limit]
    weights = data.weights
    for row in order.tolist():
        orig = float(data.ts[row])
        yield (
            Event(
                event_id=f"{data.name}:{run_id}:{row}",
                user_id=str(int(data.users[row])),
                item_id=str(int(data.items[row])),
                type=EVENT_TYPES[int(data.types[row])],
                ts=orig,
                weight=None if weights is None else float(weights[row]),
                context={"orig_ts": orig, "dataset": data.name},
            ),
            orig,
        )


def replay(
    settings: Settings,
    dataset: str | Interactions,
    *,
    limit: int | None = None,
    start: int = 0,
    rate: float = 0.0,
    speedup: float = 0.0,
    keep_ts: bool = False,
    run_id: str | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Publish ``dataset`` (a name, or a log already loaded) to the events topic; returns
    what was sent and how fast."""
    run = run_id or uuid.uuid4().hex[:8]
    data = load(dataset) if isinstance(dataset, str) else dataset
    ensure_topics(settings)
    prod = producer(settings)
    sent = 0
    t_start = time.time()
    t0: float | None = None
    with client_errors(settings):
        try:
            for event, orig in events_of(data, run, limit, start):
                if t0 is None:
                    t0 = orig
                if speedup > 0:
                    due = t_start + (orig - t0) / speedup
                    _sleep_until(due)
                elif rate > 0:
                    _sleep_until(t_start + sent / rate)
                if not keep_ts:
                    ts = t_start + (orig - t0) / speedup if speedup > 0 else time.time()
                    event = Event(event.event_id, event.user_id, event.item_id, event.type,
                                  round(ts, 3), event.weight, event.context)  # fmt: skip
                prod.send(settings.events_topic, key=event.user_id.encode(), value=event.to_json())
                sent += 1
                if on_sent is not None and sent % 500 == 0:
                    on_sent(500)
            prod.flush()
        finally:
            prod.close()
    if on_sent is not None and sent % 500:
        on_sent(sent % 500)
    return ReplayReport(data.name, sent, time.time() - t_start, run)


def _sleep_until(due: float) -> None:
    delay = due - time.time()
    if delay > 0.001:
        time.sleep(delay)
