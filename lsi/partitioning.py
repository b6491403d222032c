"""Kafka's default partitioner, for code that must agree with it without a Kafka client.

The workers re-key ``lsi.interactions`` and route item-statistics bundles with the producer's
murmur2 partitioner; the offline evaluation simulates the same partitions. Both use these.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

__all__ = ["key_for_partition", "partition_of"]


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner picks for ``key``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def key_for_partition(prefix: str, partition: int, partitions: int) -> bytes:
    """A stable key ``prefix:<partition>[:j]`` that murmur2 maps to ``partition``."""
    j = 0
    while True:
        key = f"{prefix}:{partition}".encode() if j == 0 else f"{prefix}:{partition}:{j}".encode()
        if partition_of(key, partitions) == partition:
            return key
        j += 1
