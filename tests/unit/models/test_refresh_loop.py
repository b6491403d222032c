"""`lsi refresh --every/--after-events/--drift`: which trigger fires when (the Kafka consumer is
replaced by a scripted one; the broker path is covered by the demo's integration test)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import TopicPartition
from prometheus_client import CollectorRegistry

import lsi.kafka.clients
from lsi.config import Settings
from lsi.monitoring.metrics import RefreshMetrics
from models.jobs.refresh import RefreshOutcome, run_forever


@dataclass
class Record:
    value: bytes


@dataclass
class ScriptedConsumer:
    """Serves one scripted batch per poll: lists of (topic, value dict)."""

    script: list[list[tuple[str, dict[str, Any]]]]
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    closed: bool = False

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def assign(self, tps: list[TopicPartition]) -> None:
        self.offsets = dict.fromkeys(tps, 0)

    def seek_to_end(self, *tps: TopicPartition) -> None:
        pass

    def position(self, tp: TopicPartition) -> int:
        return self.offsets[tp]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.offsets[tp] = offset

    def poll(self, timeout_ms: int = 0, max_records: int = 0) -> dict[TopicPartition, list[Record]]:
        if not self.script:
            return {}
        out: dict[TopicPartition, list[Record]] = {}
        for topic, value in self.script.pop(0):
            tp = TopicPartition(topic, 0)
            out.setdefault(tp, []).append(Record(json.dumps(value).encode()))
            self.offsets[tp] = self.offsets.get(tp, 0) + 1
        return out

    def close(self) -> None:
        self.closed = True


class FakeJob:
    def __init__(self, settings: Settings, stop: threading.Event, runs: int) -> None:
        self.settings = settings
        self.metrics = RefreshMetrics(CollectorRegistry())
        self.triggers: list[str] = []
        self.stop, self.runs = stop, runs
        self.consumer: ScriptedConsumer | None = None

    def run_once(self, trigger: str) -> RefreshOutcome:
        self.triggers.append(trigger)
        if len(self.triggers) >= self.runs:
            self.stop.set()
        assert self.consumer is not None
        pos = self.consumer.offsets.get(TopicPartition(self.settings.interactions_topic, 0), 0)
        return RefreshOutcome(trigger=trigger, outcome="promoted", version="v1",
                              watermark={self.settings.interactions_topic: {"0": pos}})  # fmt: skip


def run(monkeypatch: pytest.MonkeyPatch, script: list[list[tuple[str, dict[str, Any]]]],
        runs: int, **kwargs: Any) -> FakeJob:  # fmt: skip
    settings = Settings.from_env({})
    stop = threading.Event()
    job = FakeJob(settings, stop, runs)
    consumer = ScriptedConsumer(script)
    job.consumer = consumer
    monkeypatch.setattr(lsi.kafka.clients, "ensure_topics", lambda s: [])
    monkeypatch.setattr(lsi.kafka.clients, "consumer", lambda s, *a, **k: consumer)
    script.extend([[]] * 50)  # then idle polls until stopped (or a test failure below)
    run_forever(job, stop=stop, report=lambda _: None, **kwargs)  # type: ignore[arg-type]
    assert consumer.closed
    return job


def interaction(user: str, item: str) -> tuple[str, dict[str, Any]]:
    return ("lsi.interactions", {"user_id": user, "item_id": item})


def test_a_refresh_at_start_then_after_n_new_interactions(monkeypatch: pytest.MonkeyPatch) -> None:
    batches = [[interaction("u", f"i{n}") for n in range(k, k + 3)] for k in range(0, 12, 3)]
    job = run(monkeypatch, batches, runs=3, every_s=None, after_events=5, drift=False)
    assert job.triggers == ["start", "events", "events"]  # 12 events: after 6, after 12


def test_a_sharp_drop_of_the_online_hit_rate_triggers_a_refresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script: list[list[tuple[str, dict[str, Any]]]] = []
    for n in range(1600):
        hit = n < 800 or n % 10 == 0  # hit rate 1.0, then 0.1
        script.append([("lsi.recommendations", {"user_id": "u", "items": [{"item_id": "a"}]}),
                       interaction("u", "a" if hit else "z")])  # fmt: skip
    job = run(monkeypatch, script, runs=2, every_s=None, after_events=None, drift=True)
    assert job.triggers == ["start", "drift"]
    assert job.metrics.registry.get_sample_value("lsi_refresh_drift_total") == 1.0


def test_the_schedule_fires_without_any_event(monkeypatch: pytest.MonkeyPatch) -> None:
    job = run(monkeypatch, [], runs=2, every_s=0.01, after_events=None, drift=False)
    assert job.triggers == ["start", "schedule"]
