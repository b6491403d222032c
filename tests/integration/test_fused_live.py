"""The fused scorer on a real broker: a refresh trains the long-term vectors, the sequence
encoder and the gate into one snapshot; the worker swaps to it while events flow and every
record carries the fused list, both source lists, the gate and per-item attribution."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from lsi.cli.main import main
from lsi.config import Settings
from lsi.evaluation.datasets import load
from lsi.kafka.producer import events_of, replay
from lsi.serving.store import SnapshotStore
from models.jobs.refresh import RefreshJob
from models.training.longterm import TrainConfig
from tests.integration.conftest import WorkerProcess, consume

pytestmark = pytest.mark.timeout(420)

SCHEMA = json.loads(
    (Path(__file__).parents[2] / "lsi/wire/schemas/recommendation.schema.json").read_text()
)
FIRST, SECOND = 4000, 1500
SMALL = TrainConfig(dim=16, epochs=3, warm_epochs=2, device="cpu")


def accepted(m: object) -> float:
    return m.total("lsi_events_total", agent="interest", outcome="accepted")  # type: ignore[attr-defined]


def test_records_carry_the_fused_list_both_sources_and_the_gate(
    lsi_settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    s = lsi_settings.with_(sequence_max_len=20, sequence_epochs=4, sequence_budget_s=60.0)
    data = load("ml-100k")
    worker = start_worker()
    replay(s, data, limit=FIRST, run_id="f")
    worker.wait_metric(lambda m: accepted(m) >= FIRST, timeout_s=120)

    outcome = RefreshJob(s, SMALL).run_once("manual")
    assert outcome.outcome == "promoted" and outcome.sequence is not None
    assert set(outcome.sequence["validation"]) >= {"fused", "short_only", "long_only"}
    assert "encoder (attention)" in outcome.summary()
    snapshot = SnapshotStore(s.models_dir).load("v000001")
    assert snapshot is not None and snapshot.sequence is not None
    worker.wait_metric(lambda m: m.value("lsi_model_version_info", version="v000001") == 1.0,
                       timeout_s=60)  # fmt: skip

    replay(s, data, limit=SECOND, start=FIRST, run_id="f")
    m = worker.wait_metric(lambda m: accepted(m) >= FIRST + SECOND, timeout_s=180)
    assert accepted(m) == FIRST + SECOND and m.total("lsi_model_load_failures_total") == 0
    users = {e.user_id for e, _ in events_of(data, "f", SECOND, FIRST)}
    known = {u for u in users if snapshot.knows(u)}
    assert known, "the second slice has users the snapshot learned"

    def fused_for_known(records: list[object]) -> bool:
        got = {json.loads(r.value)["user_id"] for r in records  # type: ignore[attr-defined]
               if json.loads(r.value)["source"] == "fused"}  # type: ignore[attr-defined]  # fmt: skip
        return known <= got

    recs = [json.loads(r.value) for r in
            consume(s, s.recommendations_topic, fused_for_known, timeout_s=120)]  # fmt: skip
    fused = [r for r in recs if r["source"] == "fused"]
    for rec in recs:
        jsonschema.validate(rec, SCHEMA)
    checked = 0
    for rec in fused:
        assert rec["model_version"] == "v000001"
        assert 0.0 < rec["long_weight"] < 1.0
        assert rec["items"] and rec["short_term"] and rec["long_term"]
        probs = [i["score"] for i in rec["items"]]
        assert probs == sorted(probs, reverse=True) and all(0 < p <= 1 for p in probs)
        for item in rec["items"]:
            # the geometric mixture: p ∝ p_L^w · p_S^(1-w); so the ratio of two items'
            # fused probabilities is fixed by their per-source probabilities and w
            assert 0 <= item["long_score"] <= 1 and 0 <= item["short_score"] <= 1
        a, b = rec["items"][0], rec["items"][1]
        w = rec["long_weight"]
        values = [a[k] for k in ("score", "long_score", "short_score")] + [
            b[k] for k in ("score", "long_score", "short_score")]  # fmt: skip
        if min(values) > 1e-4:
            want = w * math.log(a["long_score"] / b["long_score"]) + (1 - w) * math.log(
                a["short_score"] / b["short_score"])  # fmt: skip
            # the record rounds each number to 6 decimals: d log x = 5e-7 / x at most
            tol = sum(5e-7 / v for v in values) + 5e-7 * 20
            assert math.log(a["score"] / b["score"]) == pytest.approx(want, abs=tol)
            checked += 1
    assert checked >= len(fused) // 2, "the mixture identity was checked on most records"
    # the lists a person reads: the gate, the attribution, each source's own picks
    user = sorted(known)[0]
    capsys.readouterr()
    assert main(["recs", "--user", user, "--web-port", str(s.web_port),
                 "--brokers", s.brokers]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert f"user {user}" in text and "model v000001" in text and "·  fused  ·" in text
    assert "short-term picks:" in text and "long-term picks :" in text
