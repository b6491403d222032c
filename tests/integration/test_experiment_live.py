"""An experiment between snapshots on a real broker and worker: ``lsi models experiment
start`` (announced on the models topic) splits users by the configured fraction, every record
carries its user's arm and is scored by that arm's snapshot, the worker's ``/metrics`` has the
per-arm judged and hit counts for both arms, and ``stop`` returns every user to live."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from lsi.cli.main import main
from lsi.config import Settings
from lsi.core.experiment import Experiment, arm_of
from lsi.kafka.clients import producer
from lsi.serving.store import SnapshotArrays, SnapshotStore
from lsi.wire.records import Event
from tests.integration.conftest import WorkerProcess, consume, wait_until

pytestmark = pytest.mark.timeout(300)

USERS = [f"xu{n}" for n in range(240)]
ITEMS = [f"xi{n}" for n in range(60)]
FRACTION = 0.3
NAME = "live-split"


def snapshot(seed: int) -> SnapshotArrays:
    """Vectors for every test user and item (no history, no encoder): quick to publish and
    load, and each arm's records name the version that scored them."""
    rng = np.random.default_rng(seed)
    n_u, n_i, d = len(USERS), len(ITEMS), 8
    return SnapshotArrays(tuple(USERS), tuple(ITEMS),
                          rng.standard_normal((n_u, d)).astype(np.float32),
                          rng.standard_normal((n_i, d)).astype(np.float32),
                          rng.standard_normal((n_u + n_i, d)).astype(np.float32),
                          np.zeros(n_u + 1, np.int64), np.zeros(0, np.int32))  # fmt: skip


def send(s: Settings, events: list[Event]) -> None:
    prod = producer(s)
    try:
        for e in events:
            prod.send(s.events_topic, key=e.user_id.encode(), value=e.to_json())
        prod.flush(timeout=30)
    finally:
        prod.close()


def event(user: str, item: str) -> Event:
    return Event(uuid.uuid4().hex, user, item, "click", time.time())


def latest(records: list[Any]) -> dict[str, dict[str, Any]]:
    """The newest record of each user."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        rec = json.loads(r.value)
        out[rec["user_id"]] = rec
    return out


def test_an_experiment_splits_users_labels_records_and_counts_hits_per_arm(
    lsi_settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s = lsi_settings
    store = SnapshotStore(s.models_dir)
    v1, v2 = store.publish(snapshot(1), {}), store.publish(snapshot(2), {})
    store.promote(v1)
    worker = start_worker()
    worker.wait_metric(lambda m: m.value("lsi_model_version_info", version=v1) == 1.0)

    monkeypatch.setenv("LSI_MODELS_TOPIC", s.models_topic)
    monkeypatch.delenv("LSI_PROMETHEUS_URL", raising=False)
    cli = ["--brokers", s.brokers, "--models-dir", str(s.models_dir)]
    assert main(["models", "experiment", "start", v2, "--fraction", str(FRACTION),
                 "--name", NAME, *cli]) == 0  # fmt: skip
    assert "announced" in capsys.readouterr().out
    exp = store.experiment()
    assert exp is not None and exp == Experiment(NAME, v2, FRACTION, exp.started_at)
    # the announcement wakes the worker up (the 30 s poll would too: a loaded machine may need it)
    worker.wait_metric(
        lambda m: m.value("lsi_experiment_fraction", experiment=NAME, candidate=v2) == FRACTION,
        timeout_s=60,
    )

    # round 1: a list per user, scored by the user's arm
    send(s, [event(u, ITEMS[n % len(ITEMS)]) for n, u in enumerate(USERS)])
    first = latest(consume(s, s.recommendations_topic,
                           lambda rs: set(USERS) <= set(latest(rs)), timeout_s=120))  # fmt: skip
    arms = {u: arm_of(u, exp) for u in USERS}
    for user in USERS:
        rec = first[user]
        assert (rec.get("experiment"), rec.get("arm")) == (NAME, arms[user]), rec
        if rec["long_weight"] > 0:  # the snapshot took part: it names its version
            assert rec["model_version"] == (v2 if arms[user] == "candidate" else v1), rec
    scored = {first[u]["model_version"] for u in USERS}
    assert {v1, v2} <= scored, scored
    n_candidate = sum(arm == "candidate" for arm in arms.values())
    sd = math.sqrt(len(USERS) * FRACTION * (1 - FRACTION))
    assert abs(n_candidate - FRACTION * len(USERS)) < 4 * sd, n_candidate

    # round 2: each user takes the first item of their list: judged, a hit, per arm
    send(s, [event(u, first[u]["items"][0]["item_id"]) for u in USERS if first[u]["items"]])

    def both_arms(m: Any) -> bool:
        return all(m.total("lsi_experiment_judged_total", experiment=NAME, arm=arm) > 0
                   and m.total("lsi_experiment_hits_total", experiment=NAME, arm=arm, k="10") > 0
                   for arm in ("control", "candidate"))  # fmt: skip

    m = worker.wait_metric(both_arms, timeout_s=120)
    judged = {arm: m.total("lsi_experiment_judged_total", experiment=NAME, arm=arm)
              for arm in ("control", "candidate")}  # fmt: skip
    assert judged["candidate"] == sum(
        a == "candidate" for u, a in arms.items() if first[u]["items"]
    )
    assert judged["control"] == sum(a == "control" for u, a in arms.items() if first[u]["items"])
    assert sum(judged.values()) == m.total("lsi_online_evaluated_total")

    # stop: the worker ends it and the next lists carry no arm
    assert main(["models", "experiment", "stop", *cli]) == 0
    assert f"experiment {NAME} stopped" in capsys.readouterr().out
    worker.wait_metric(lambda m: m.value("lsi_experiment_fraction", experiment=NAME) is None,
                       timeout_s=60)  # fmt: skip
    marker = USERS[:5]
    send(s, [event(u, ITEMS[-1]) for u in marker])

    def after_stop(rs: list[Any]) -> bool:
        got = [json.loads(r.value) for r in rs]
        return all(any(g["user_id"] == u and "experiment" not in g for g in got) for u in marker)

    wait_until("lists without an arm after the stop",
               lambda: consume(s, s.recommendations_topic, after_stop, timeout_s=60), 90, worker)  # fmt: skip
