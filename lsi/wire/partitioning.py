"""Kafka's default partitioner, for code that must agree with it without a Kafka client.

The workers re-key events that arrive on another user's partition and route item-statistics
bundles by the producer's murmur2 partitioner; the offline evaluation simulates the same
partitions. Both use these, and neither needs a Kafka client to import them: this module is
pure (the offline evaluation and the core never load aiokafka through it).

Kafka's ``Utils.murmur2`` (MurmurHash2, seed ``0x9747b28c``) over the key's bytes, as Java
computes it in signed 32-bit ints; the partition is ``(h & 0x7fffffff) % partitions``
(``Utils.toPositive``). ``tests/unit/wire/test_partitioning_pure.py`` checks both against the
Kafka clients' own implementations.
"""

from __future__ import annotations

__all__ = ["key_for_partition", "murmur2", "partition_of"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` as Kafka's Java client computes it, as an unsigned 32-bit int.

    ``h = seed ^ len``; each little-endian 4-byte word ``k`` is mixed in as
    ``k *= m; k ^= k >>> 24; k *= m; h *= m; h ^= k``; the 1–3 trailing bytes are xored in
    and multiplied by ``m``; then ``h ^= h >>> 13; h *= m; h ^= h >>> 15`` (all mod 2^32).
    """
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length - whole
    if tail:
        if tail >= 3:
            h ^= data[whole + 2] << 16
        if tail >= 2:
            h ^= data[whole + 1] << 8
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def key_for_partition(prefix: str, partition: int, partitions: int) -> bytes:
    """A stable key ``prefix:<partition>[:j]`` that murmur2 maps to ``partition``."""
    j = 0
    while True:
        key = f"{prefix}:{partition}".encode() if j == 0 else f"{prefix}:{partition}:{j}".encode()
        if partition_of(key, partitions) == partition:
            return key
        j += 1
