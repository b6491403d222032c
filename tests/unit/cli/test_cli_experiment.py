"""``lsi models experiment start|stop|status`` on a store of small snapshots (no broker:
``--no-announce``; the announcement is run in tests/integration/test_experiment_live.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lsi.cli.main import main
from lsi.monitoring.prometheus_api import PrometheusClient, Series
from lsi.serving.store import SnapshotStore
from tests.unit.serving.test_snapshots import arrays


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SnapshotStore:
    monkeypatch.delenv("LSI_PROMETHEUS_URL", raising=False)
    s = SnapshotStore(tmp_path / "models")
    for seed in range(3):
        s.publish(arrays(seed), {})
    s.promote("v000001")
    return s


def run(store: SnapshotStore, *argv: str) -> int:
    return main(["models", *argv, "--models-dir", str(store.root), "--no-announce"])


def test_experiment_start_status_stop(
    store: SnapshotStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(store, "experiment", "status") == 0
    assert "no experiment running" in capsys.readouterr().out
    assert run(store, "experiment", "start", "v000002", "--fraction", "0.25",
               "--name", "try-v2") == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "experiment try-v2 started: 25% of users on v000002, the others on v000001" in out
    exp = store.experiment()
    assert exp is not None and (exp.name, exp.candidate, exp.fraction) == (
        "try-v2",
        "v000002",
        0.25,
    )
    assert run(store, "experiment", "status") == 0
    out = capsys.readouterr().out
    assert "experiment try-v2: 25% of users on v000002, the others on v000001" in out
    assert "pass --prometheus URL" in out
    assert run(store, "experiment", "status", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["experiment"]["name"] == "try-v2" and report["arms"] is None
    assert run(store, "list") == 0  # list is unchanged by a running experiment
    assert "v000002" in capsys.readouterr().out
    assert run(store, "experiment", "stop") == 0
    assert "experiment try-v2 stopped: every user on v000001 again" in capsys.readouterr().out
    assert store.experiment() is None
    assert run(store, "experiment", "stop") == 0
    assert "no experiment was running" in capsys.readouterr().out


def test_promoting_the_candidate_says_the_experiment_stopped(
    store: SnapshotStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(store, "experiment", "start", "baseline", "--fraction", "0.5") == 0
    assert run(store, "promote", "v000003") == 0  # another version: it goes on
    assert "stopped" not in capsys.readouterr().out and store.experiment() is not None
    assert run(store, "experiment", "stop") == 0
    assert run(store, "experiment", "start", "v000002", "--fraction", "0.5", "--name", "p") == 0
    assert run(store, "promote", "v000002") == 0
    out = capsys.readouterr().out
    assert "experiment p stopped: its candidate v000002 is live now" in out
    assert run(store, "experiment", "start", "v000003", "--fraction", "0.5", "--name", "r") == 0
    assert run(store, "rollback") == 0
    assert "experiment r stopped: its candidate v000003 is live now" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["experiment"], "needs start, stop or status"),
        (["experiment", "begin"], "needs start, stop or status"),
        (["experiment", "start", "v000002"], "needs a CANDIDATE (a version, or baseline) and --fraction"),
        (["experiment", "start", "--fraction", "0.1"], "needs a CANDIDATE"),
        (["experiment", "start", "v000002", "--fraction", "1.5"], "fraction must be a number in (0, 1)"),
        (["experiment", "start", "v000001", "--fraction", "0.1"], "v000001 is what the workers serve already"),
        (["experiment", "start", "v000009", "--fraction", "0.1"], "no snapshot v000009"),
        (["experiment", "start", "v000002", "--fraction", "0.1", "--name", "a b"], "experiment name must be"),
        (["experiment", "stop", "v000002"], "takes no CANDIDATE, --fraction or --name"),
        (["promote", "v000002", "v000003"], "takes at most one VERSION"),
    ],
)  # fmt: skip
def test_mistakes_are_one_line_errors(
    store: SnapshotStore, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run(store, *argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert store.experiment() is None and store.live() == "v000001"


def test_status_reads_the_arms_from_prometheus(
    store: SnapshotStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def query(self: PrometheusClient, expr: str, at: float) -> list[Series]:
        asked.append(expr)
        judged = "judged" in expr
        values = {"control": 1000.0 if judged else 100.0, "candidate": 1000.0 if judged else 130.0}
        return [Series({"arm": arm}, (at,), (v,)) for arm, v in values.items()]

    monkeypatch.setattr(PrometheusClient, "query", query)
    assert run(store, "experiment", "start", "v000002", "--fraction", "0.5", "--name", "z") == 0
    capsys.readouterr()
    assert run(store, "experiment", "status", "--prometheus", "http://127.0.0.1:1") == 0
    out = capsys.readouterr().out
    assert 'experiment="z"' in asked[0] and "increase(lsi_experiment_judged_total" in asked[0]
    assert 'k="10"' in asked[1]
    assert "control        1,000      100  0.1000  [0.0829, 0.1202]" in out
    assert "candidate      1,000      130  0.1300" in out
    assert (
        "candidate - control: +0.0300 (z = 2.10, two-sided p = 0.0355: significant at 0.05)" in out
    )
    monkeypatch.setenv("LSI_PROMETHEUS_URL", "http://127.0.0.1:1")
    assert run(store, "experiment", "status", "--json") == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    arms = report["arms"]
    assert arms["candidate"]["judged"] == 1000 and arms["candidate"]["hits_at_10"] == 130
    assert arms["p_value"] == pytest.approx(0.0355, abs=1e-3)
