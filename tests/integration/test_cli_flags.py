"""Every flag of the commands that talk to Kafka, through the real entry point (issue 19).

``lsi worker`` and ``lsi kafka`` run as the user runs them (``python -m lsi``, a process of
their own); the short-lived commands run in-process through :func:`lsi.cli.main.main`. Each flag
is given a value that differs from the environment's and from its default, so a flag that is
dropped on the way to its setting fails the test. The list of flags and the tests that
cover them is checked by ``tests/unit/cli/test_cli_flags.py``.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest

from lsi.cli.main import main
from lsi.config import Settings
from lsi.kafka.clients import producer
from lsi.serving.store import SnapshotStore
from lsi.serving.worker_process import settings_env, stop_worker
from lsi.wire.records import Event
from tests.integration.conftest import ROOT, consume, free_port
from tests.integration.conftest import wait_until as wait_for

pytestmark = pytest.mark.timeout(300)

#: a Kafka address nothing listens on: the environment's, which every --brokers must beat
NOWHERE = "127.0.0.1:1"


def use_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """This process's ``LSI_*`` variables become exactly those of ``settings``."""
    for var in [v for v in os.environ if v.startswith("LSI_")]:
        monkeypatch.delenv(var)
    for var, value in settings_env(settings, base={}).items():
        if var.startswith("LSI_"):
            monkeypatch.setenv(var, value)


def get(url: str) -> str | None:
    """The body at ``url``; ``None`` while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


def send(settings: Settings, topic: str, records: list[tuple[str, dict[str, Any]]]) -> None:
    """Publish ``(key, JSON value)`` records to ``topic`` and wait until they are written."""
    prod = producer(settings)
    try:
        for key, value in records:
            prod.send(topic, key=key.encode(), value=json.dumps(value).encode())
        prod.flush(timeout=30)
    finally:
        prod.close()


# -- lsi worker ----------------------------------------------------------------------------
def test_worker_flags_beat_the_environment(
    lsi_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``lsi worker --brokers --data-dir --web-port --web-host --emit-policy --loglevel
    --parent-pid`` (the ``--data-dir`` crash of issue 19), then ``lsi recs --user --web-host
    --web-port --json --top`` against it."""
    s = lsi_settings
    data_dir, port, host = tmp_path / "flag-data", free_port(), "127.0.0.2"
    env = settings_env(s.with_(brokers=NOWHERE, web_port=free_port(), emit_policy="batch",
                               data_dir=tmp_path / "env-data"))  # fmt: skip
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lsi", "worker", "--brokers", s.brokers,
             "--data-dir", str(data_dir), "--web-port", str(port), "--web-host", host,
             "--emit-policy", "request", "--loglevel", "info", "--parent-pid", str(os.getpid())],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
    url = f"http://{host}:{port}"
    try:

        def healthy() -> bool:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            return get(f"{url}/healthz") is not None

        wait_for("the worker serves /healthz on --web-host:--web-port", healthy, 120)
        # bound to --web-host only
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        banner = log.read_text(errors="replace").splitlines()[0]
        assert banner.startswith(f"lsi worker: brokers {s.brokers}")
        assert banner.endswith(f", web {url}, tables in {data_dir}")

        # someone viewed i1..i3; user a views i1: with --emit-policy request nothing is
        # emitted, and a's list (asked for) holds the two others
        now = round(time.time(), 3)
        send(s, s.events_topic, [("b", Event(f"e{k}", "b", f"i{k}", "view", now).to_dict())
                                 for k in (1, 2, 3)])  # fmt: skip
        send(s, s.events_topic, [("a", Event("e4", "a", "i1", "view", now + 1).to_dict())])
        use_env(monkeypatch, s.with_(web_port=free_port()))
        recs = ["recs", "--user", "a", "--web-host", host, "--web-port", str(port)]

        def a_learned() -> dict[str, Any] | None:
            if main([*recs, "--json"]) != 0:
                return None
            rec: dict[str, Any] = json.loads(capsys.readouterr().out)
            return rec if rec["history_size"] == 1 and len(rec["items"]) == 2 else None

        rec = wait_for("the worker learned a's view", a_learned, 90)
        assert rec["user_id"] == "a" and rec["trigger"] == "request"
        assert main(recs) == 0
        assert len(re.findall(r"^ +\d+\. ", capsys.readouterr().out, re.M)) == 2
        assert main([*recs, "--top", "1"]) == 0
        shown = capsys.readouterr().out
        assert len(re.findall(r"^ +\d+\. ", shown, re.M)) == 1 and "user a" in shown

        metrics = get(f"{url}/metrics") or ""
        assert 'emit_policy="request"' in metrics
        assert 'lsi_recommendations_total{trigger="event"} 0.0' in metrics
        tables = data_dir / "v1" / "tables"
        assert any(p.name.startswith("user_state") for p in tables.iterdir()), list(
            tables.iterdir()
        )
        assert not (tmp_path / "env-data").exists()
        assert "[INFO]" in log.read_text(errors="replace")  # --loglevel info (default: warning)
    finally:
        stop_worker(proc)


# -- lsi publish ---------------------------------------------------------------------------
def test_publish_flags_make_the_record(
    lsi_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s = lsi_settings
    use_env(monkeypatch, s.with_(brokers=NOWHERE))
    assert main(["publish", "--brokers", s.brokers, "--user", "u1", "--item", "i9",
                 "--type", "cart", "--ts", "1700000000.5", "--weight", "2.5",
                 "--event-id", "ev-flags"]) == 0  # fmt: skip
    assert main(["publish", "--brokers", s.brokers, "--json", '{"raw": 1}', "--key", "k1"]) == 0
    assert main(["publish", "--brokers", s.brokers, "--json", "no key"]) == 0
    assert main(["publish", "--brokers", s.brokers, "--user", "u2", "--item", "i3"]) == 0
    out = capsys.readouterr().out
    assert out.count(f"published to {s.events_topic}[") == 4

    records = consume(s, s.events_topic, lambda rs: len(rs) >= 4)
    by_value = {r.value: r for r in records}
    first = json.loads(next(v for v in by_value if b"ev-flags" in v))
    assert first == {"event_id": "ev-flags", "user_id": "u1", "item_id": "i9", "type": "cart",
                     "ts": 1700000000.5, "weight": 2.5}  # fmt: skip
    assert by_value[json.dumps(first, separators=(",", ":")).encode()].key == b"u1"
    assert by_value[b'{"raw": 1}'].key == b"k1"
    assert by_value[b"no key"].key is None
    default = json.loads(next(v for v in by_value if b'"u2"' in v))
    assert default["type"] == "view" and "weight" not in default
    assert abs(default["ts"] - time.time()) < 120 and len(default["event_id"]) == 32


# -- lsi replay ----------------------------------------------------------------------------
def write_clicks(path: Path, rows: int = 10) -> Path:
    """``rows`` clicks one second apart (written newest first: replay sorts by time)."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "item_id", "timestamp"])
        writer.writerows([[r % 3, 100 + r, 1_000_000 + r] for r in reversed(range(rows))])
    return path


def test_replay_flags_choose_pace_slice_ids_and_time(
    lsi_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s = lsi_settings
    use_env(monkeypatch, s.with_(brokers=NOWHERE))
    clicks = str(write_clicks(tmp_path / "clicks.csv"))
    base = ["replay", clicks, "--brokers", s.brokers]

    # --start / --limit / --keep-ts / --run-id / --quiet: file rows 7..4 hold times 2..5
    assert main([*base, "--start", "2", "--limit", "4", "--keep-ts", "--run-id", "kept",
                 "--quiet"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    assert "sent 4 events of clicks" in out and "run id kept" in out
    assert err == ""  # --quiet: no progress bar
    # --speedup 10: 2 s of dataset time in 0.2 s, timestamps on the wall clock
    started = time.time()
    assert main([*base, "--limit", "3", "--speedup", "10", "--run-id", "fast"]) == 0
    fast_s = time.time() - started
    bar = capsys.readouterr().err  # without --quiet: the progress bar
    assert bar.startswith(f"\rreplay {clicks}:") and "3/3" in bar
    # --rate 20: 5 events in 4 gaps of 50 ms
    assert main([*base, "--limit", "5", "--rate", "20", "--run-id", "paced", "--quiet"]) == 0
    paced = re.search(r"sent 5 events of clicks to \S+ in ([\d.]+) s", capsys.readouterr().out)
    assert paced is not None and float(paced.group(1)) >= 0.19

    events = [json.loads(r.value) for r in consume(s, s.events_topic, lambda rs: len(rs) >= 12)]
    run = {e["event_id"]: e for e in events}
    kept = sorted((e for e in events if ":kept:" in e["event_id"]), key=lambda e: e["ts"])
    assert [e["event_id"] for e in kept] == [f"clicks:kept:{r}" for r in (7, 6, 5, 4)]
    assert [e["ts"] for e in kept] == [1_000_002.0, 1_000_003.0, 1_000_004.0, 1_000_005.0]
    fast = sorted((e for e in events if ":fast:" in e["event_id"]), key=lambda e: e["ts"])
    assert [e["event_id"] for e in fast] == ["clicks:fast:9", "clicks:fast:8", "clicks:fast:7"]
    assert [e["context"]["orig_ts"] for e in fast] == [1_000_000.0, 1_000_001.0, 1_000_002.0]
    assert fast[2]["ts"] - fast[0]["ts"] == pytest.approx(0.2, abs=0.002)
    assert abs(fast[0]["ts"] - started) < 60 and fast_s >= 0.2
    assert len([k for k in run if ":paced:" in k]) == 5


# -- lsi recs (from the topic) -------------------------------------------------------------
def recommendation(user: str, emitted_at: float, items: list[str]) -> dict[str, Any]:
    """A recommendation record as a worker writes it."""
    return {"user_id": user, "ts": emitted_at, "model_version": "baseline-covisit",
            "long_weight": 0.0, "source": "covisit", "event_ts": emitted_at,
            "emitted_at": emitted_at, "trigger": "event", "history_size": 3,
            "items": [{"item_id": i, "score": 1.0 / (k + 1), "long_score": 0.0,
                       "short_score": 1.0 / (k + 1)} for k, i in enumerate(items)],
            "short_term": [], "long_term": []}  # fmt: skip


def test_recs_from_the_topic_users_top_json_and_titles(
    lsi_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s = lsi_settings
    titles = tmp_path / "datasets" / "ml-100k" / "items.csv.gz"
    titles.parent.mkdir(parents=True)
    with gzip.open(titles, "wt", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([["item_id", "title"], ["10", "Heat (1995)"],
                                  ["20", "Toy Story (1995)"]])  # fmt: skip
    use_env(monkeypatch, s.with_(brokers=NOWHERE))
    monkeypatch.setenv("LSI_DATASETS_DIR", str(tmp_path / "datasets"))
    t = time.time()
    send(s, s.recommendations_topic, [
        ("u1", recommendation("u1", t, ["30", "40"])),
        ("u2", recommendation("u2", t + 1, ["10", "30"])),
        ("u3", recommendation("u3", t + 2, ["20", "10"])),
        ("u1", recommendation("u1", t + 3, ["20", "40"])),
    ])  # fmt: skip
    recs = ["recs", "--brokers", s.brokers]

    assert main([*recs, "--users", "2", "--top", "1", "--dataset", "ml-100k"]) == 0
    shown = capsys.readouterr().out
    headers = re.findall(r"^user (\S+) ", shown, re.M)
    assert headers == ["u3", "u1"]  # the two latest, oldest first; u1 by its newest list
    rows = re.findall(r"^ +\d+\. (.*?) +score", shown, re.M)
    assert rows == ["20 Toy Story (1995)", "20 Toy Story (1995)"]  # --top 1, titled

    assert main([*recs, "--json", "--users", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert [(r["user_id"], r["emitted_at"]) for r in lines] == [("u2", t + 1), ("u3", t + 2),
                                                                ("u1", t + 3)]  # fmt: skip


def test_recs_follow_prints_new_records_of_one_user(lsi_settings: Settings, tmp_path: Path) -> None:
    s = lsi_settings
    send(s, s.recommendations_topic, [("u1", recommendation("u1", 1.0, ["old"]))])
    errors = tmp_path / "recs.err"
    with errors.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lsi", "recs", "--follow", "--user", "u1", "--json",
             "--brokers", s.brokers],
            stdout=subprocess.PIPE, stderr=err, text=True,
            env=settings_env(s.with_(brokers=NOWHERE)), cwd=ROOT,
        )  # fmt: skip
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    try:
        # --follow starts at the end: records sent before it was assigned its partitions are
        # never shown, so keep sending until one is
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while not seen and time.monotonic() < deadline:
            assert proc.poll() is None, errors.read_text()
            t = time.time()
            send(s, s.recommendations_topic, [("u2", recommendation("u2", t, ["x"])),
                                              ("u1", recommendation("u1", t, ["new"]))])  # fmt: skip
            try:
                while True:
                    line = lines.get(timeout=1)
                    if line.strip():
                        seen.append(json.loads(line))
            except queue.Empty:
                pass
        assert seen, "lsi recs --follow printed nothing in 60 s"
        assert {r["user_id"] for r in seen} == {"u1"}
        assert all(r["items"][0]["item_id"] == "new" for r in seen)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


# -- lsi refresh (one run) -----------------------------------------------------------------
def test_refresh_once_with_flags(
    lsi_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``lsi refresh --brokers --models-dir --epochs --device --quiet`` trains one snapshot
    from the interaction log into the store named, and announces it through the broker."""
    s = lsi_settings
    rng = np.random.default_rng(0)
    events = [Event(f"e{n}", f"u{n % 40}", f"i{(n % 2) * 20 + int(rng.integers(0, 20))}", "view",
                    1_700_000_000.0 + n) for n in range(480)]  # fmt: skip
    send(s, s.interactions_topic, [(e.user_id, e.to_dict()) for e in events])
    use_env(monkeypatch, s.with_(brokers=NOWHERE, models_dir=tmp_path / "env-models",
                                 refresh_sequence=False, refresh_valid_cases=20,
                                 refresh_device="cuda"))  # fmt: skip
    store = tmp_path / "flag-models"
    assert main(["refresh", "--brokers", s.brokers, "--models-dir", str(store), "--epochs", "2",
                 "--device", "cpu", "--quiet"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    assert "v000001" in out and "promoted" in out, out
    assert "it/s" not in err and "%|" not in err  # --quiet: no progress bars
    manifest = SnapshotStore(store).manifest("v000001")
    assert manifest["events"] == 480
    assert manifest["training"]["epochs"] == 2 and manifest["training"]["device"] == "cpu"
    assert not (tmp_path / "env-models").exists()
    announced = consume(s, s.models_topic, lambda rs: len(rs) >= 1)
    assert json.loads(announced[-1].value)["version"] == "v000001"


# -- lsi kafka -----------------------------------------------------------------------------
def test_kafka_up_status_logs_down(tmp_path: Path) -> None:
    """``lsi kafka up|status|logs [--lines N]|down`` on a broker of the test's own."""
    port, controller = free_port(), free_port()
    while controller == port:
        controller = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LSI_")}
    env.update({"LSI_KAFKA_PORT": str(port), "LSI_KAFKA_CONTROLLER_PORT": str(controller),
                "LSI_KAFKA_DATA_DIR": str(tmp_path / "kafka"), "LSI_KAFKA_HEAP": "256m"})  # fmt: skip

    def kafka(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lsi", "kafka", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=180, check=False)  # fmt: skip

    try:
        up = kafka("up")
        assert up.returncode == 0, up.stderr
        assert f"is up at 127.0.0.1:{port}" in up.stdout and str(tmp_path / "kafka") in up.stdout
        status = kafka("status")
        assert status.returncode == 0 and "running, answering" in status.stdout
        log = tmp_path / "kafka" / "logs" / "server.log"
        assert str(log) in status.stdout
        three = kafka("logs", "--lines", "3").stdout.splitlines()
        assert len(three) == 3  # consecutive lines of the log, its last when they were read
        assert "\n".join(three) in log.read_text(errors="replace")
        default = kafka("logs").stdout.splitlines()
        assert len(default) == min(50, len(log.read_text(errors="replace").splitlines()))
        down = kafka("down")
        assert down.returncode == 0 and down.stdout.strip() == "Kafka stopped"
        after = kafka("status")
        assert after.returncode == 1 and "stopped" in after.stdout
        assert kafka("down").stdout.strip() == "Kafka was not running"
    finally:
        kafka("down")


# -- lsi models list --json (live announce is tested in test_models_live) ---------------------
def test_models_list_json_and_announce_through_brokers(
    lsi_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.unit.serving.test_snapshots import arrays

    s = lsi_settings
    use_env(monkeypatch, s.with_(brokers=NOWHERE, models_dir=tmp_path / "env-models"))
    store = SnapshotStore(tmp_path / "models")
    store.publish(arrays(0), {"events": 7})
    store.publish(arrays(1), {"events": 9})
    store.promote("v000001")
    args = ["--models-dir", str(store.root), "--brokers", s.brokers]
    assert main(["models", "list", "--json", *args]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["version"], r["live"], r["events"]) for r in rows] == [("v000001", True, 7),
                                                                      ("v000002", False, 9)]  # fmt: skip
    assert main(["models", "promote", "v000002", *args]) == 0
    assert "announced on" in capsys.readouterr().out
    announced = consume(s, s.models_topic, lambda rs: len(rs) >= 1)
    assert json.loads(announced[-1].value)["version"] == "v000002"
