"""The long-term model on a real broker: refresh from the interaction log, publish, announce,
and a worker that swaps to the new snapshot while events flow, losing none."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from lsi.cli.main import main
from lsi.config import Settings
from lsi.evaluation.datasets import load
from lsi.kafka.clients import producer
from lsi.kafka.producer import events_of, replay
from lsi.serving.store import SnapshotStore
from lsi.wire.records import Event
from models.jobs.refresh import LogStats, RefreshJob, read_log
from models.training.longterm import TrainConfig
from tests.integration.conftest import WorkerProcess, consume

pytestmark = pytest.mark.timeout(420)

SCHEMA = json.loads(
    (Path(__file__).parents[2] / "lsi/wire/schemas/recommendation.schema.json").read_text()
)
FIRST, SECOND, THIRD = 3000, 3000, 1000
SMALL = TrainConfig(dim=16, epochs=3, warm_epochs=2, device="cpu")


def accepted(m: object) -> float:
    return m.total("lsi_events_total", agent="interest", outcome="accepted")  # type: ignore[attr-defined]


def test_a_snapshot_published_while_events_flow_is_swapped_in_and_nothing_is_lost(
    lsi_settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = lsi_settings
    data = load("ml-100k")
    worker = start_worker()
    replay(s, data, limit=FIRST, run_id="m")
    worker.wait_metric(lambda m: accepted(m) >= FIRST, timeout_s=120)

    # the second slice flows while the refresh reads, trains, publishes and announces
    flowing = threading.Thread(
        target=replay, args=(s, data), daemon=True,
        kwargs={"limit": SECOND, "start": FIRST, "run_id": "m", "rate": 300.0},
    )  # fmt: skip
    flowing.start()
    # this test follows the statistics scorer over long-term vectors (test_fused_live.py
    # follows the snapshot's encoder and gate)
    vectors_only = s.with_(refresh_sequence=False)
    outcome = RefreshJob(vectors_only, SMALL).run_once("manual")
    flowing.join(timeout=120)
    assert outcome.outcome == "promoted" and outcome.version == "v000001"
    assert outcome.events >= FIRST, "the refresh read the interaction log"
    store = SnapshotStore(s.models_dir)
    manifest = store.manifest("v000001")
    marks = manifest["data_watermark"][s.interactions_topic]
    assert sum(marks.values()) == outcome.events, "the watermark is what it trained on"
    assert store.live() == "v000001"

    worker.wait_metric(lambda m: accepted(m) >= FIRST + SECOND, timeout_s=180)
    worker.wait_metric(lambda m: m.value("lsi_model_version_info", version="v000001") == 1.0,
                       timeout_s=60)  # fmt: skip
    # a third slice, all of it scored after the swap
    replay(s, data, limit=THIRD, start=FIRST + SECOND, run_id="m")
    m = worker.wait_metric(lambda m: accepted(m) >= FIRST + SECOND + THIRD, timeout_s=180)
    assert accepted(m) == FIRST + SECOND + THIRD, "every event learned exactly once"
    assert m.total("lsi_model_load_failures_total") == 0

    snapshot = store.load("v000001")
    assert snapshot is not None
    users = {e.user_id for e, _ in events_of(data, "m", THIRD, FIRST + SECOND)}
    known = {u for u in users if snapshot.knows(u)}
    assert known, "the second slice has users the snapshot learned"
    recs = consume(s, s.recommendations_topic,
                   lambda r: users <= {json.loads(x.value)["user_id"] for x in r}
                   and known <= {json.loads(x.value)["user_id"] for x in r
                                 if json.loads(x.value)["model_version"] == "v000001"},
                   timeout_s=120)  # fmt: skip
    versions = set()
    for r in recs:
        rec = json.loads(r.value)
        jsonschema.validate(rec, SCHEMA)
        versions.add(rec["model_version"])
        # the snapshot's version exactly on the lists it took part in
        assert (rec["model_version"] == "v000001") == (rec["long_weight"] > 0)
        if rec["model_version"] == "v000001" and rec["source"] == "fused":
            assert rec["long_weight"] == 0.5 and rec["long_term"]
            for item in rec["items"]:
                assert item["score"] == pytest.approx(
                    0.5 * item["long_score"] + 0.5 * item["short_score"], abs=2e-6
                )
    assert versions <= {"baseline-covisit", "v000001"}
    assert "v000001" in versions
    fused = [json.loads(r.value) for r in recs if json.loads(r.value)["source"] == "fused"]
    assert fused, "users the snapshot knows get fused lists"
    asked = worker.get(f"/recommendations/{sorted(known)[0]}/")  # on request, the same scorer
    assert asked["model_version"] == "v000001" and asked["trigger"] == "request"
    assert asked["long_term"] and asked["long_weight"] == 0.5

    # a second refresh warm-starts from the live one; promote (if the margin held it back) and
    # roll back by hand, each announced to the worker
    second = RefreshJob(vectors_only, SMALL).run_once("manual")
    assert second.warm_from == "v000001" and second.version == "v000002"
    monkeypatch.setenv("LSI_MODELS_TOPIC", s.models_topic)
    cli = ["--brokers", s.brokers, "--models-dir", str(s.models_dir)]
    if second.outcome == "rejected":
        assert main(["models", "promote", "v000002", *cli]) == 0
    worker.wait_metric(lambda m: m.value("lsi_model_version_info", version="v000002") == 1.0,
                       timeout_s=60)  # fmt: skip
    capsys.readouterr()
    assert main(["models", "rollback", *cli]) == 0
    assert "v000001 is live" in capsys.readouterr().out
    m = worker.wait_metric(
        lambda m: m.value("lsi_model_version_info", version="v000001") == 1.0, timeout_s=60
    )
    assert m.total("lsi_model_swaps_total") == 2
    assert main(["models", "rollback", *cli]) == 2, "nothing left to roll back to"
    assert "nothing to roll back to" in capsys.readouterr().err


def test_the_refresh_job_skips_stray_records_on_the_interaction_log(
    lsi_settings: Settings,
) -> None:
    """Anyone with access can write ``lsi.interactions``; a record that is no valid event (an
    unknown type crashed the job's reader before) is counted and skipped."""
    s = lsi_settings
    good = [Event(f"g{i}", f"u{i % 3}", f"i{i}", "view", 1_000.0 + i) for i in range(5)]
    stray: list[tuple[bytes | None, bytes]] = [
        (b"u0", b'{"event_id":"x1","user_id":"u0","item_id":"i1","type":"hover","ts":1}'),
        (b"u0", b'{"event_id":"x2","user_id":7,"item_id":"i1","type":"view","ts":1}'),
        (b"u0", b'{"event_id":"x3","user_id":"u0","item_id":"i1","type":"view","ts":NaN}'),
        (b"u0", b"not json"),
        (None, b"[1, 2]"),
    ]
    prod = producer(s)
    try:
        for e in good[:2]:
            prod.send(s.interactions_topic, key=e.user_id.encode(), value=e.to_json())
        for key, value in stray:
            prod.send(s.interactions_topic, key=key, value=value)
        for e in good[2:]:
            prod.send(s.interactions_topic, key=e.user_id.encode(), value=e.to_json())
        prod.flush(timeout=30)
    finally:
        prod.close()
    stats = LogStats()
    log, _ = read_log(s, stats=stats, timeout_s=60)
    assert sorted(log.items) == sorted(e.item_id for e in good)
    assert stats.undecodable == len(stray)
