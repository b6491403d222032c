"""The whole path on a real broker: events → ingest → interactions → interest → recommendations."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from lsi.config import Settings
from lsi.evaluation.datasets import load
from lsi.kafka.clients import producer
from lsi.kafka.producer import events_of, replay
from lsi.serving.worker_process import scrape_metrics, settings_env
from streams.context import partition_of
from tests.integration.conftest import ROOT, WorkerProcess, consume
from tests.processes import kill_and_watch, running

pytestmark = pytest.mark.timeout(420)

SCHEMA = json.loads(
    (Path(__file__).parents[2] / "lsi/wire/schemas/recommendation.schema.json").read_text()
)
N = 5000


def slice_users(n: int, run_id: str, start: int = 0) -> Counter[str]:
    return Counter(e.user_id for e, _ in events_of(load("ml-100k"), run_id, n, start))


def accepted(m: object) -> float:
    return m.total("lsi_events_total", agent="interest", outcome="accepted")  # type: ignore[attr-defined]


def test_replay_becomes_one_interaction_each_and_a_valid_record_per_user(
    lsi_settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    s = lsi_settings
    worker = start_worker()
    report = replay(s, "ml-100k", limit=N, run_id="it")
    assert report.sent == N
    expected_ids = {e.event_id for e, _ in events_of(load("ml-100k"), "it", N)}

    records = consume(s, s.interactions_topic, lambda r: len(r) >= N, timeout_s=120)
    time.sleep(2)  # anything beyond N would be a duplicate; give it time to show up
    records = consume(s, s.interactions_topic, lambda r: len(r) >= N, timeout_s=30)
    ids = [json.loads(r.value)["event_id"] for r in records]
    assert len(ids) == N and set(ids) == expected_ids, "every valid event exactly once"
    for r in records[:500]:
        user = json.loads(r.value)["user_id"]
        assert r.key == user.encode()
        assert r.partition == partition_of(r.key, s.partitions), "re-keyed with murmur2"

    worker.wait_metric(lambda m: accepted(m) >= N, timeout_s=120)
    users = set(slice_users(N, "it"))
    recs = consume(s, s.recommendations_topic,
                   lambda r: users <= {json.loads(x.value)["user_id"] for x in r}, timeout_s=60)  # fmt: skip
    for r in recs:
        rec = json.loads(r.value)
        jsonschema.validate(rec, SCHEMA)
        assert r.key == rec["user_id"].encode()
        assert rec["trigger"] == "event" and rec["long_weight"] == 0.0
    assert any(json.loads(r.value)["source"] == "covisit" for r in recs)

    m = worker.metrics()
    assert m.total("lsi_events_total", agent="ingest", outcome="forwarded") == N
    assert m.total("lsi_dlq_total") == 0
    assert m.quantile("lsi_end_to_end_latency_seconds", 0.5) is not None


BAD: list[tuple[bytes | None, bytes, str]] = [
    (b"u1", b"{not json", "malformed_json"),
    (b"u1", b"[1,2,3]", "not_an_object"),
    (b"u1", b'{"event_id":"b1","user_id":"u1","item_id":"i","ts":1}', "missing_field"),
    (
        b"u1",
        b'{"event_id":"b2","user_id":"u1","item_id":"i","type":"teleport","ts":1}',
        "unknown_type",
    ),
    (
        b"u1",
        b'{"event_id":"b3","user_id":"u1","item_id":"i","type":"view","ts":"now"}',
        "wrong_type",
    ),
    (b"u2", b'{"event_id":"b4","user_id":"u1","item_id":"i","type":"view","ts":1}', "key_mismatch"),
    (
        b"u1",
        b'{"event_id":"b5","user_id":"u1","item_id":"i","type":"view","ts":99999999999}',
        "future_timestamp",
    ),
    (
        b"u1",
        b'{"event_id":"b6","user_id":"u1","item_id":"i","type":"view","ts":1,"x":1}',
        "unknown_field",
    ),
    (
        b"u1",
        b'{"event_id":"b7","user_id":"u1","item_id":"i","type":"view","ts":1,"context":{"p":"'
        + b"x" * 17000
        + b'"}}',
        "oversized",
    ),
]


def test_bad_events_are_dead_lettered_with_reasons_and_duplicates_dropped(
    lsi_settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    s = lsi_settings
    worker = start_worker()
    prod = producer(s)
    good = b'{"event_id":"ok-1","user_id":"u1","item_id":"i9","type":"click","ts":%d}' % int(
        time.time()
    )
    sent_offsets = {}
    for key, value, reason in BAD:
        meta = prod.send(s.events_topic, key=key, value=value, headers=[("client", b"test")]).get(
            30
        )
        sent_offsets[reason] = (meta.partition, meta.offset)
    prod.send(s.events_topic, key=b"u1", value=good).get(30)
    prod.send(s.events_topic, key=b"u1", value=good).get(30)  # the same event_id again
    prod.close()

    dlq = consume(s, s.dlq_topic, lambda r: len(r) >= len(BAD))
    by_reason = {dict(r.headers)["lsi-dlq-reason"].decode(): r for r in dlq}
    assert set(by_reason) == {reason for _, _, reason in BAD}
    for key, value, reason in BAD:
        r = by_reason[reason]
        h = dict(r.headers)
        assert r.value == value and r.key == key, "original bytes are kept"
        assert h["client"] == b"test", "original headers are kept"
        assert h["lsi-source-topic"].decode() == s.events_topic
        assert (int(h["lsi-source-partition"]), int(h["lsi-source-offset"])) == sent_offsets[reason]
        assert h["lsi-dlq-detail"]

    worker.wait_metric(lambda m: accepted(m) >= 1)
    m = worker.wait_metric(
        lambda m: m.total("lsi_events_total", agent="ingest", outcome="duplicate") >= 1
    )
    for _, _, reason in BAD:
        assert m.total("lsi_dlq_total", reason=reason) == 1
    interactions = consume(s, s.interactions_topic, lambda r: len(r) >= 1)
    time.sleep(1)
    assert len(consume(s, s.interactions_topic, lambda r: len(r) >= 1)) == 1
    assert json.loads(interactions[0].value)["event_id"] == "ok-1"
    rec = worker.get("/recommendations/u1/")
    jsonschema.validate(rec, SCHEMA)
    assert rec["history_size"] == 1 and rec["trigger"] == "request"


def test_sigkill_mid_stream_restores_state_from_the_changelog_and_loses_nothing(
    lsi_settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    s = lsi_settings
    expected = slice_users(N, "kill")
    first = start_worker("w1")
    done = threading.Event()

    def feed() -> None:
        replay(s, "ml-100k", limit=N, rate=1500, run_id="kill")
        done.set()

    threading.Thread(target=feed, daemon=True).start()
    first.wait_metric(lambda m: accepted(m) >= 1000, timeout_s=60)
    first.kill()  # SIGKILL, mid-stream, offsets and tables not flushed on purpose
    in_flight = accepted(first.metrics()) if first.proc.poll() is None else None
    assert in_flight is None

    # A fresh data dir: the state can only come back from the changelog.
    second = start_worker("w2")
    assert done.wait(60), "replay finished"
    deadline = time.time() + 180
    mismatched: dict[str, tuple[int, int]] = {}
    while time.time() < deadline:
        mismatched = {}
        for user, n in expected.items():
            try:
                got = second.get(f"/recommendations/{user}/")["history_size"]
            except urllib.error.HTTPError as exc:  # 503 while partitions are assigned/restored
                assert exc.code == 503
                got = -1
            if got != n:
                mismatched[user] = (got, n)
        if not mismatched:
            break
        time.sleep(2)
    assert not mismatched, (
        f"users whose event count differs (got, expected): {list(mismatched.items())[:10]}"
    )
    m = second.metrics()
    restored = m.total("lsi_events_total", agent="interest", outcome="accepted")
    assert restored < N, "the second worker resumed; it did not reprocess everything"


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_stops_when_the_tool_that_started_it_is_killed(
    lsi_settings: Settings, tmp_path: Path
) -> None:
    """A demo or benchmark killed with SIGKILL (no cleanup runs) leaves no worker behind."""
    s = lsi_settings.with_(data_dir=tmp_path / "orphan")
    tool = tmp_path / "tool.py"
    tool.write_text(
        textwrap.dedent(f"""
        import time
        from pathlib import Path
        from lsi.config import Settings
        from lsi.serving.worker_process import start_worker

        proc = start_worker(Settings.from_env(), Path({str(tmp_path / "orphan.log")!r}))
        print(proc.pid, flush=True)
        time.sleep(600)
    """)
    )
    with subprocess.Popen([sys.executable, str(tool)], stdout=subprocess.PIPE, text=True,
                          env=settings_env(s), cwd=ROOT) as parent:  # fmt: skip
        try:
            assert parent.stdout is not None
            worker = int(parent.stdout.readline())
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and scrape_metrics(s, timeout_s=1) is None:
                assert running(worker), (tmp_path / "orphan.log").read_text()
                time.sleep(0.5)
            assert scrape_metrics(s) is not None, "the worker came up"
            assert kill_and_watch(parent, worker, 60), "the worker outlived the killed tool"
        finally:
            parent.kill()
            if running(worker):
                os.killpg(worker, signal.SIGKILL)
