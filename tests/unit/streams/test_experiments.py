"""Experiments in the worker: the watcher loads the candidate named in ``LIVE`` (and refuses
what it cannot serve, counted once), the batch's users are split by arm, records are labelled
and judgements counted per arm."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry

from lsi.core.experiment import Experiment, arm_of
from lsi.core.state import UserState
from lsi.monitoring.metrics import WorkerMetrics
from lsi.serving.store import SnapshotStore
from lsi.wire.records import Recommendation
from streams.experiments import (
    ActiveExperiment,
    count_judged,
    labelled,
    model_for,
    split_pending,
)
from tests.unit.streams.test_model_watcher import announcement, publish, watcher

USERS = [f"u{n}" for n in range(400)]


async def test_the_watcher_loads_the_candidate_and_follows_start_and_stop(tmp_path: Path) -> None:
    w, store, reg = watcher(tmp_path)
    v1, v2 = publish(store, 1), publish(store, 2)
    store.promote(v1)
    w.load_initial()
    assert w.experiment is None
    exp = store.start_experiment(v2, 0.25, "e1", now=50.0)
    await w.apply(announcement(store, v1))
    active = w.experiment
    assert active is not None and active.experiment == exp
    assert active.candidate is not None and active.candidate.version == v2
    assert (active.name, active.fraction, active.started_at, active.candidate_version) == (
        "e1", 0.25, 50.0, v2)  # fmt: skip
    assert active.since == active.applied_at > 50.0
    assert w.current is not None and w.current.version == v1  # control unchanged
    assert reg.get_sample_value("lsi_experiment_fraction", {"experiment": "e1", "candidate": v2}) == 0.25  # fmt: skip
    for arm in ("control", "candidate"):  # both arms exist at 0 from the start
        assert reg.get_sample_value("lsi_experiment_judged_total", {"experiment": "e1", "arm": arm}) == 0  # fmt: skip
    await w.refresh()  # nothing changed: the same object
    assert w.experiment is active
    store.stop_experiment()
    await w.refresh()  # a stop announced with --no-announce: the next poll sees it
    assert w.experiment is None
    assert reg.get_sample_value("lsi_experiment_fraction", {"experiment": "e1", "candidate": v2}) is None  # fmt: skip
    store.start_experiment("baseline", 0.5, "vs-stats")
    w.load_initial()  # a worker that starts while an experiment runs
    assert w.experiment is not None and w.experiment.candidate is None
    assert w.experiment.candidate_version == "baseline"
    assert reg.get_sample_value("lsi_model_load_failures_total") == 0


async def test_promoting_the_candidate_swaps_live_and_ends_the_experiment(tmp_path: Path) -> None:
    w, store, _ = watcher(tmp_path)
    v1, v2 = publish(store, 1), publish(store, 2)
    store.promote(v1)
    store.start_experiment(v2, 0.5, "e")
    w.load_initial()
    assert w.experiment is not None
    store.promote(v2)
    await w.refresh()
    assert w.current is not None and w.current.version == v2 and w.experiment is None


async def test_a_candidate_that_cannot_load_is_counted_once_and_nothing_is_split(
    tmp_path: Path,
) -> None:
    w, store, reg = watcher(tmp_path)
    v1, v2 = publish(store, 1), publish(store, 2)
    store.promote(v1)
    w.load_initial()
    store.start_experiment(v2, 0.5, "broken")
    (tmp_path / "models" / v2 / "arrays.npz").write_bytes(b"PK\x03\x04 truncated")
    await w.refresh()
    await w.refresh()  # the next poll does not count it again
    assert w.experiment is None and w.current is not None and w.current.version == v1
    assert reg.get_sample_value("lsi_model_load_failures_total") == 1.0
    store.stop_experiment()
    store.start_experiment("baseline", 0.5, "fine")  # LIVE changed: tried again
    await w.refresh()
    assert w.experiment is not None and w.experiment.name == "fine"


async def test_a_malformed_experiment_is_no_experiment_and_counted_once(tmp_path: Path) -> None:
    w, store, reg = watcher(tmp_path)
    v1, v2 = publish(store, 1), publish(store, 2)
    store.promote(v1)
    store.start_experiment(v2, 0.5, "ok")
    w.load_initial()
    assert w.experiment is not None
    live = tmp_path / "models" / "LIVE"
    data = json.loads(live.read_text())
    data["experiment"]["fraction"] = "half"
    live.write_text(json.dumps(data))
    await w.refresh()
    await w.refresh()
    assert w.experiment is None and w.current is not None and w.current.version == v1
    assert reg.get_sample_value("lsi_model_load_failures_total") == 1.0
    # a candidate that is the live version (a LIVE edited by hand) is refused the same way
    data["experiment"] = {"name": "self", "candidate": v1, "fraction": 0.5, "started_at": 1.0}
    live.write_text(json.dumps(data))
    await w.refresh()
    assert w.experiment is None and reg.get_sample_value("lsi_model_load_failures_total") == 2.0


def active(tmp_path: Path, candidate: str = "baseline") -> tuple[ActiveExperiment, object]:
    store = SnapshotStore(tmp_path / "models")
    v1 = publish(store, 1)
    snapshot = store.load(v1)
    return ActiveExperiment(Experiment("split", candidate, 0.5, 10.0), None, 20.0), snapshot


def test_split_pending_groups_users_by_the_snapshot_of_their_arm(tmp_path: Path) -> None:
    exp, control = active(tmp_path)
    pending = [(u, UserState(), 1.0) for u in USERS]
    (only,) = split_pending(pending, control, None)  # type: ignore[arg-type]
    assert only.arm is None and only.model is control and only.pending == pending
    assert split_pending([], None, None) == [(None, None, [])]
    groups = split_pending(pending, control, exp)  # type: ignore[arg-type]
    assert [g.arm for g in groups] == ["control", "candidate"]
    assert groups[0].model is control and groups[1].model is None  # baseline: statistics
    for g in groups:
        assert all(arm_of(u, exp.experiment) == g.arm for u, _, _ in g.pending)
    assert sorted(u for g in groups for u, _, _ in g.pending) == sorted(USERS)
    assert 150 < len(groups[1].pending) < 250
    one_arm = [p for p in pending if arm_of(p[0], exp.experiment) == "control"]
    assert [g.arm for g in split_pending(one_arm, control, exp)] == ["control"]  # type: ignore[arg-type]
    user = groups[1].pending[0][0]
    assert model_for(user, control, exp) == ("candidate", None)  # type: ignore[arg-type]
    assert model_for(user, control, None) == (None, control)  # type: ignore[arg-type]


def test_records_are_labelled_with_the_experiment_and_arm() -> None:
    exp = ActiveExperiment(Experiment("lab", "baseline", 0.5, 10.0), None, 20.0)
    rec = Recommendation("u1", 1.0, "baseline-covisit", 0.0, ())
    assert labelled(rec, None, None) is rec and labelled(rec, exp, None) is rec
    out = labelled(rec, exp, "candidate")
    assert (out.experiment, out.arm, out.user_id) == ("lab", "candidate", "u1")
    assert json.loads(out.to_json())["arm"] == "candidate"


def test_judgements_are_counted_per_arm_from_when_the_worker_applied_it() -> None:
    reg = CollectorRegistry()
    metrics = WorkerMetrics(reg)
    exp = ActiveExperiment(Experiment("cnt", "baseline", 0.5, 10.0), None, applied_at=20.0)
    cand = next(u for u in USERS if exp.arm(u) == "candidate")
    ctrl = next(u for u in USERS if exp.arm(u) == "control")
    judged = [(cand, 20.0, 3), (cand, 15.0, 0), (ctrl, 25.0, None), (ctrl, 30.0, 0)]
    count_judged(metrics, judged, None)  # no experiment: nothing
    assert reg.get_sample_value("lsi_experiment_judged_total", {"experiment": "cnt", "arm": "candidate"}) is None  # fmt: skip
    count_judged(metrics, judged, exp)

    def value(name: str, **labels: str) -> float | None:
        return reg.get_sample_value(name, {"experiment": "cnt", **labels})

    assert value("lsi_experiment_judged_total", arm="candidate") == 1.0  # 15.0: before it applied
    assert value("lsi_experiment_judged_total", arm="control") == 2.0
    assert value("lsi_experiment_hits_total", arm="candidate", k="5") == 1.0
    assert value("lsi_experiment_hits_total", arm="candidate", k="1") is None
    assert value("lsi_experiment_hits_total", arm="control", k="1") == 1.0
