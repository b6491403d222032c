"""Bytes per user in the ``user_state`` table: the binary format against the JSON it replaced.

:func:`measure_state_bytes` replays a dataset in time order through
:func:`lsi.core.engine.process_batch` (pure, offline, as :class:`lsi.evaluation.replay.
StreamingModel` drives it), keeps every user's final state and measures
``len(state.to_bytes())`` and the old JSON value's length, over all users and over users
with at least ``recent_n`` events (a full ring: the sizes the issue's budget is about).

Events carry ``(partition, offset)`` sources as in ``lsi.events`` (keyed by user, so each
state holds one partition's ``applied`` offsets, as live). By default the statistics stay
empty and nothing is scored (``last_recs`` empty); ``stats=True`` runs the live scorer with
the item statistics folded after each batch, so every state also holds its last list (20
ids): slower, and the sizes a worker would really store.

``python -m lsi.bench.state_size [dataset] [recent_n] [limit]`` prints the result as JSON.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from itertools import islice
from typing import Any

from lsi.core.engine import EngineConfig, process_batch
from lsi.core.state import StateConfig, UserState, _to_json
from lsi.core.stats import ItemStats, Trending
from lsi.evaluation.datasets import Interactions, load
from lsi.evaluation.replay import StreamingModel
from lsi.kafka.producer import events_of
from lsi.wire.partitioning import partition_of

__all__ = ["measure_state_bytes", "summarize"]

_PERCENTILES = (50, 90, 99)


def summarize(sizes: Sequence[int]) -> dict[str, float | int]:
    """Count, nearest-rank p50/p90/p99, max and mean of ``sizes`` (zeros when empty)."""
    ordered = sorted(sizes)
    n = len(ordered)
    out: dict[str, float | int] = {"count": n}
    for p in _PERCENTILES:
        out[f"p{p}"] = ordered[max(0, math.ceil(p / 100 * n) - 1)] if n else 0
    out["max"] = ordered[-1] if n else 0
    out["mean"] = round(sum(ordered) / n, 1) if n else 0.0
    return out


def _timing(states: Sequence[UserState], repeat: int = 3) -> dict[str, float]:
    """Mean µs per state of encode and decode, binary and JSON (best of ``repeat``)."""
    if not states:
        return {}
    raws = [s.to_bytes() for s in states]
    olds = [_to_json(s) for s in states]

    def best(fn: Any, args: Sequence[Any]) -> float:
        runs = []
        for _ in range(repeat):
            started = time.perf_counter()
            for a in args:
                fn(a)
            runs.append(time.perf_counter() - started)
        return round(min(runs) / len(args) * 1e6, 1)

    return {
        "binary_encode_us": best(UserState.to_bytes, states),
        "binary_decode_us": best(UserState.from_bytes, raws),
        "json_encode_us": best(_to_json, states),
        "json_decode_us": best(UserState.from_bytes, olds),
    }


def measure_state_bytes(
    dataset: str | Interactions = "ml-1m",
    recent_n: int = 200,
    limit: int | None = None,
    *,
    batch_size: int = 500,
    partitions: int = 8,
    stats: bool = False,
    timing: bool = True,
) -> dict[str, Any]:
    """Replay ``dataset`` and measure the final per-user state values.

    Args:
        dataset: a name for :func:`lsi.evaluation.datasets.load` (or a CSV path), or the interactions.
        recent_n: :attr:`StateConfig.recent_n`, the interactions kept per user.
        limit: replay only the first ``limit`` events (time order).
        batch_size: events per ``process_batch`` call.
        partitions: partitions of ``lsi.events`` the sources are spread over (by user, as
            the topic is keyed); 0: no sources, no ``applied`` offsets.
        stats: fold the item statistics and score lists (see the module docstring).
        timing: also time encode/decode of the states with at least ``recent_n`` events.

    Returns:
        ``binary`` and ``json``, each ``{"all": summary, "full": summary}`` (see
        :func:`summarize`; ``full``: users with ``n_events >= recent_n``), ``saved`` (1 -
        binary / JSON bytes over all users), the run's settings, ``events``, ``users``,
        ``seconds`` and, with ``timing``, mean µs per state of each encode and decode.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    data = load(dataset) if isinstance(dataset, str) else dataset
    engine = EngineConfig(
        state=StateConfig(recent_n=recent_n), emit_policy="batch" if stats else "request"
    )
    model = StreamingModel(engine, partitions=max(partitions, 1))
    empty = Trending(ts=0.0, items=())
    no_stats: dict[str, ItemStats] = {}
    next_offset = [0] * max(partitions, 1)
    partition: dict[str, int] = {}
    n_events = 0
    started = time.perf_counter()
    it = (event for event, _ in events_of(data, "state-size", limit))
    while batch := list(islice(it, batch_size)):
        sources: list[tuple[int, int] | None] | None = None
        if partitions > 0:
            sources = []
            for e in batch:
                p = partition.get(e.user_id)
                if p is None:
                    p = partition[e.user_id] = partition_of(e.user_id.encode(), partitions)
                sources.append((p, next_offset[p]))
                next_offset[p] += 1
        now = max(e.ts for e in batch)
        trending = model.trending if stats else empty
        lookup = (model.stats if stats else no_stats).get
        result = process_batch(batch, model.states.get, lookup, trending, engine, now, sources)
        model.states.update(result.states)
        if stats:
            model.fold(result.deltas)
        n_events += len(batch)
    seconds = time.perf_counter() - started

    states = list(model.states.values())
    full = [s for s in states if s.n_events >= recent_n]
    new = [len(s.to_bytes()) for s in states]
    old = [len(_to_json(s)) for s in states]
    new_full = [len(s.to_bytes()) for s in full]
    old_full = [len(_to_json(s)) for s in full]
    out: dict[str, Any] = {
        "dataset": data.name,
        "recent_n": recent_n,
        "limit": limit,
        "batch_size": batch_size,
        "partitions": partitions,
        "stats": stats,
        "events": n_events,
        "users": len(states),
        "seconds": round(seconds, 2),
        "binary": {"all": summarize(new), "full": summarize(new_full)},
        "json": {"all": summarize(old), "full": summarize(old_full)},
        "saved": round(1 - sum(new) / sum(old), 4) if old else 0.0,
    }
    if timing:
        out["timing"] = _timing(full)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    dataset = args[0] if args else "ml-1m"
    recent_n = int(args[1]) if len(args) > 1 else 200
    limit = int(args[2]) if len(args) > 2 else None
    print(json.dumps(measure_state_bytes(dataset, recent_n, limit), indent=2))


if __name__ == "__main__":
    main()
