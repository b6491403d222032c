"""The sampled gauges: consumer lag per partition and table sizes."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import CollectorRegistry
from rocksdict import Rdict

from lsi.monitoring.metrics import ERROR_KINDS, WorkerMetrics
from streams.sampler import TopicPartition, partition_lags, table_keys

A0, A1, B0, B1 = (TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0),
                  TopicPartition("b", 1))  # fmt: skip


def test_lag_is_highwater_minus_the_committed_offset_else_the_read_position() -> None:
    high = {A0: 100, A1: 50, B0: 7, B1: None}
    lags = partition_lags(
        [A0, A1, B0, B1],
        high.get,
        committed={A0: 90, A1: None, B0: None},
        read={A1: 19},
    )
    # A0: committed 90 -> 10 behind; A1: nothing committed, read up to 19 -> 30;
    # B0: nothing read yet -> the whole partition; B1: never fetched -> not reported
    assert lags == {A0: 10, A1: 30, B0: 7}


def test_lag_never_goes_negative() -> None:
    # the high watermark comes from the last fetch and can trail a commit made since
    assert partition_lags([A0], {A0: 5}.get, {A0: 6}, {}) == {A0: 0}


def test_table_keys_sums_the_rocksdb_estimate_over_partitions(tmp_path: Path) -> None:
    dbs = {p: Rdict(str(tmp_path / f"p{p}")) for p in range(2)}
    try:
        for i in range(30):
            dbs[i % 2][f"k{i}".encode()] = b"v"
        table = SimpleNamespace(data=SimpleNamespace(_dbs=dbs))
        assert table_keys(table) == 30
    finally:
        for db in dbs.values():
            db.close()


def test_table_keys_of_an_in_memory_store() -> None:
    assert table_keys(SimpleNamespace(data={b"a": b"1", b"b": b"2"})) == 2


def test_error_series_exist_before_the_first_error() -> None:
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    for agent in ("ingest", "interest", "item_stats", "sampler"):
        for kind in ERROR_KINDS:
            assert (
                registry.get_sample_value("lsi_errors_total", {"agent": agent, "kind": kind}) == 0.0
            )


def test_model_age_is_zero_without_a_model_and_grows_with_one() -> None:
    registry = CollectorRegistry()
    m = WorkerMetrics(registry)
    assert registry.get_sample_value("lsi_model_age_seconds") == 0.0
    m.model_created.set(time.time() - 120)
    age = registry.get_sample_value("lsi_model_age_seconds")
    assert age is not None and 119 <= age < 130
