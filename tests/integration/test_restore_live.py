"""A restore from the changelog alone gives exactly the state the live worker had.

The fault: a table write reaches the local RocksDB at once and its changelog record leaves
later, so a crash in between leaves local state ahead of the changelog, with the batch's
offsets uncommitted. The worker restarted on the same data directory recognises the
re-delivered events as applied and skips them; unless it then writes those users' state
again, nothing ever brings the changelog up to date, and a later restore on an empty data
directory silently loses their events. ``LSI_TEST_CRASH_AFTER_STATE_WRITES`` makes the crash
deterministic: the worker exits right after its first batch's state writes, before any await
could let a changelog record leave. Each user sends one event, so a user of the crashed batch
sends nothing more: nothing but the repair can bring their changelog record back.
"""

from __future__ import annotations

import json
import time
import urllib.error
from collections.abc import Callable

import pytest

from lsi.config import Settings
from lsi.kafka.clients import producer
from streams.interest import CRASH_AFTER_STATE_WRITES
from tests.integration.conftest import WorkerProcess

pytestmark = pytest.mark.timeout(360)


def counts(worker: WorkerProcess, users: list[str]) -> dict[str, int]:
    """``history_size`` of each user as ``worker`` serves it; -1 while it answers 503."""
    out: dict[str, int] = {}
    for user in users:
        try:
            out[user] = int(worker.get(f"/recommendations/{user}/")["history_size"])
        except urllib.error.HTTPError as exc:  # partitions being assigned or restored
            assert exc.code == 503, exc.read()
            out[user] = -1
    return out


def wait_counts(worker: WorkerProcess, expected: dict[str, int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    got: dict[str, int] = {}
    while time.monotonic() < deadline:
        assert worker.proc.poll() is None, f"worker exited:\n{worker.tail()}"
        got = counts(worker, list(expected))
        if got == expected:
            return
        time.sleep(1.0)
    wrong = {u: (got.get(u), n) for u, n in expected.items() if got.get(u) != n}
    raise AssertionError(f"(served, sent) per user still differ: {wrong}\n{worker.tail()}")


def publish(settings: Settings, users: list[str]) -> None:
    now = time.time()
    prod = producer(settings)
    try:
        for i, user in enumerate(users):
            event = {"event_id": f"{user}-0", "user_id": user, "item_id": f"i{i % 7}",
                     "type": "view", "ts": round(now - 100, 3)}  # fmt: skip
            prod.send(settings.events_topic, key=user.encode(), value=json.dumps(event).encode())
        prod.flush(timeout=30)
    finally:
        prod.close()


def test_a_crash_between_a_state_write_and_its_changelog_record_is_repaired(
    lsi_settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = lsi_settings
    expected: dict[str, int] = {}
    for attempt in range(3):  # until a crash leaves the local store ahead (almost always once)
        users = [f"r{attempt}-{i}" for i in range(40)]
        publish(s, users)  # before the worker starts: its first batch holds many of them
        expected.update(dict.fromkeys(users, 1))
        monkeypatch.setenv(CRASH_AFTER_STATE_WRITES, "1")
        crashing = start_worker("w1")
        monkeypatch.delenv(CRASH_AFTER_STATE_WRITES)
        deadline = time.monotonic() + 120
        while crashing.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert crashing.proc.returncode == 137, f"the hook did not fire:\n{crashing.tail()}"

        same_dir = start_worker("w1")  # the local store is ahead of the changelog
        wait_counts(same_dir, expected, timeout_s=150)
        skipped = same_dir.metrics().total(
            "lsi_events_total", agent="interest", outcome="redelivered"
        )
        same_dir.kill(sig=15)  # SIGTERM: a clean stop, offsets and changelog flushed
        if skipped > 0:
            break
    assert skipped > 0, "no restarted worker saw a re-delivered event: nothing was tested"

    restored = start_worker("w3")  # an empty data dir: state only from the changelog
    wait_counts(restored, expected, timeout_s=150)
