"""The offline replay is the worker: for the same events, :class:`lsi.evaluation.replay.
StreamingModel` (what ``lsi bench accuracy --protocol prequential`` drives for the statistics
scorer, and the offline evaluation's replay of the live path) emits exactly the lists the
``interest`` agent publishes, batch by batch, with and without a fused snapshot.

The worker runs here as in ``tests/unit/streams/test_agents.py``: the real agents of the Faust app,
their tables in memory, a producer that records what is sent, each batch followed by the
item-stats agent folding its deltas (as the replay folds them before the next batch). The
two clocks are made one: a batch's ``now`` is its newest event time in both. A scorer built
again from the same seed gives the same lists again.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import streams.interest
from lsi.evaluation.replay import StreamingModel
from lsi.serving.snapshot import Snapshot
from lsi.wire.records import Event
from streams.app import Pipeline
from tests.threads import one_thread  # noqa: F401  (an autouse fixture)
from tests.unit.serving.test_fusion import ITEMS, long_model, seq_model
from tests.unit.streams.test_agents import (
    EVENTS,
    PARTITIONS,
    RECOMMENDATIONS,
    MemoryProducer,
    Source,
    close_pipeline,
    make_pipeline,
    run_through,
)

USERS = ("a", "b", "c", "k", "d")
#: items the encoder knows, plus two it does not (their users fall back to statistics)
CATALOGUE = (*ITEMS, "new1", "new2")


@pytest.fixture
async def pipeline(tmp_path: Path) -> AsyncIterator[Pipeline]:
    built = make_pipeline(tmp_path, "memory://")
    yield built
    close_pipeline(built)


def stream_of_batches(seed: int, batches: int = 12) -> list[list[Event]]:
    """Users walking a ring of items (mostly the next one), in time order, cut into batches
    of 1-6 events; now and then an item the encoder has never seen."""
    rng = random.Random(seed)
    at = {u: rng.randrange(len(ITEMS)) for u in USERS}
    ts, n, out = 1_700_000_000.0, 0, []
    for _ in range(batches):
        batch = []
        for _ in range(rng.randrange(1, 7)):
            user = rng.choice(USERS)
            at[user] = (at[user] + (1 if rng.random() < 0.8 else rng.randrange(5))) % len(ITEMS)
            item = ITEMS[at[user]] if rng.random() < 0.9 else rng.choice(CATALOGUE[-2:])
            ts += rng.uniform(1.0, 90.0)
            n += 1
            batch.append(Event(f"e{n}", user, item, rng.choice(("view", "click", "cart")), ts))
        out.append(batch)
    return out


def listed(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a consumer acts on, per record: the user, the source, the gate, and each item
    with its score and attribution (floats to 6 significant digits: the agent's records are
    JSON, the replay's are objects)."""

    def r(x: float | None) -> float | None:
        return None if x is None else float(f"{x:.6g}")

    return [
        (
            rec["user_id"],
            rec["source"],
            rec.get("model_version"),
            r(rec.get("long_weight")),
            tuple(
                (i["item_id"], r(i["score"]), r(i.get("long_score")), r(i.get("short_score")))
                for i in rec["items"]
            ),
        )
        for rec in records
    ]


async def worker_lists(pipeline: Pipeline, batches: list[list[Event]],
                       monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[Any, ...]]]:  # fmt: skip
    producer: MemoryProducer = pipeline.app.producer
    source = Source(pipeline.app, EVENTS)
    out = []
    for batch in batches:
        newest = max(e.ts for e in batch)
        monkeypatch.setattr(streams.interest.time, "time", lambda newest=newest: newest)
        start = len(producer.records)
        await run_through(pipeline, producer,
                          [source(e.to_json(), e.user_id.encode()) for e in batch])  # fmt: skip
        sent = [json.loads(r.value or b"") for r in producer.records[start:]
                if r.topic == RECOMMENDATIONS]  # fmt: skip
        out.append(listed(sent))
    return out


def replay_lists(pipeline: Pipeline, batches: list[list[Event]],
                 model: Snapshot | None) -> list[list[tuple[Any, ...]]]:  # fmt: skip
    replay = StreamingModel(pipeline.settings.engine(), PARTITIONS, wire=True)
    replay.long_model = model
    return [listed([rec.to_dict() for rec in replay.step(batch).recommendations])
            for batch in batches]  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("scorer", ["statistics", "fused"])
async def test_the_replay_emits_exactly_the_lists_the_worker_publishes(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, scorer: str, seed: int
) -> None:
    model = long_model(seq_model(seed)) if scorer == "fused" else None
    if model is not None:
        pipeline.models.swap(model)
    batches = stream_of_batches(seed)
    live = await worker_lists(pipeline, batches, monkeypatch)
    offline = replay_lists(pipeline, batches, model)
    assert sum(len(b) for b in live) >= len(batches)  # every batch emitted something
    if model is not None:  # the fused scorer served, and the statistics fallback too
        sources = {rec[1] for b in live for rec in b}
        assert "fused" in sources, sources
    assert offline == live
    # seeded: a scorer built again from the same seed gives the same lists again
    again = long_model(seq_model(seed)) if scorer == "fused" else None
    assert replay_lists(pipeline, batches, again) == offline
