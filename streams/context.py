"""Partitioning helpers and the "current event" that Faust's table stores key off.

Faust's RocksDB store files a table write under the partition of the *current event* (a
context variable the stream sets while an agent handles one message). ``take_events``
batches leave it unset, so before writing a key the agents say which event the write
belongs to (:func:`acting_for`): an event from the partition the key's changelog uses, so
the local RocksDB partition, the changelog partition and the source partition agree.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from faust.streams import _current_event  # no public setter; see the module docstring

from lsi.wire.partitioning import key_for_partition, partition_of  # re-exported for the agents

__all__ = ["acting_for", "key_for_partition", "partition_of"]


@contextmanager
def acting_for(event: Any) -> Iterator[None]:
    """Make ``event`` the current event while table writes inside the block happen."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
