"""lsi's own murmur2 partitioner agrees with the Kafka clients'."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from lsi.wire.partitioning import key_for_partition, murmur2, partition_of


def test_murmur2_equals_the_kafka_clients_on_every_tail_length_and_random_keys() -> None:
    rng = random.Random(7)
    keys = [b"", b"a", b"ab", b"abc", b"abcd", b"abcde", "ünïcødé-user".encode(), b"\xff" * 9]
    keys += [rng.randbytes(rng.randrange(0, 64)) for _ in range(2000)]
    for key in keys:
        assert murmur2(key) == aiokafka_murmur2(key) == kafka_python_murmur2(key) & 0xFFFFFFFF


def test_partition_of_is_kafkas_default_partitioner() -> None:
    rng = random.Random(11)
    for n in (1, 3, 8, 12, 64):
        parts = list(range(n))
        for _ in range(300):
            key = f"user-{rng.randrange(10**9)}".encode()
            assert partition_of(key, n) == DefaultPartitioner()(key, parts, parts)
    # a key that maps to a given partition, found by suffixing
    for p in range(8):
        assert partition_of(key_for_partition("deltas", p, 8), 8) == p
