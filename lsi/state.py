"""Per-user short-term state: the value of the ``user_state`` table.

Bounded by construction (:class:`StateConfig`): a ring of the last ``recent_n`` interactions,
the session, type counts decayed in event time, the last list shown (to measure the online
hit rate and avoid repeats), a ring of recent event-id hashes (client duplicates), and the
highest source offset applied per source partition, so that a re-delivery after a crash
never updates the state twice.

Derived vectors are never stored: the scorer computes them from this state with the live
model, so a model swap cannot leave stale vectors behind.

Decay. With half-life :math:`h`, a count :math:`c` stored at event time :math:`t_0` is worth
:math:`c \\cdot 2^{-(t - t_0)/h}` at time :math:`t`; :meth:`UserState.learn_one` applies the
factor once per event, so the state stays O(1) per update.
"""

from __future__ import annotations

import bisect
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from lsi.records import EVENT_TYPES, TYPE_CODES, Event

__all__ = ["LearnOutcome", "StateConfig", "UserState", "event_hash"]


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Bounds and clocks of the short-term state.

    Attributes:
        recent_n: interactions kept per user (the short-term sequence).
        seen_ids: event ids remembered for de-duplication.
        session_gap_s: a gap longer than this starts a new session.
        type_half_life_s: half-life of the decayed per-type counts.
        last_recs_n: length of the remembered last list (the online hit rate's K ceiling).
        applied_n: source offsets remembered per source partition (re-delivery detection).
    """

    recent_n: int = 200
    seen_ids: int = 32
    session_gap_s: float = 1800.0
    type_half_life_s: float = 86400.0
    last_recs_n: int = 20
    applied_n: int = 16


def event_hash(event_id: str) -> int:
    """A 32-bit fingerprint of an event id (CRC-32; collisions only cost a false duplicate
    among one user's last ``seen_ids`` events, odds ~ seen_ids / 2**32)."""
    return zlib.crc32(event_id.encode())


@dataclass(frozen=True, slots=True)
class LearnOutcome:
    """What :meth:`UserState.learn_one` observed.

    Attributes:
        duplicate: the event's id was seen before; it was not applied.
        redelivered: the event's source offset was already applied (a re-delivery after a
            crash); it was not applied.
        evaluated: a previous list existed, so the event counts for the online hit rate.
        hit_rank: 0-based position of the event's item in that list, or ``None``.
    """

    duplicate: bool
    evaluated: bool
    hit_rank: int | None
    redelivered: bool = False


@dataclass(slots=True)
class UserState:
    """Short-term state of one user (mutable; owned by one agent at a time)."""

    items: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    types: list[int] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    session_start: float = 0.0
    session_len: int = 0
    last_ts: float = 0.0
    n_events: int = 0
    type_counts: list[float] = field(default_factory=lambda: [0.0] * len(EVENT_TYPES))
    last_recs: list[str] = field(default_factory=list)
    last_emit: float = 0.0
    applied: dict[str, list[int]] = field(default_factory=dict)

    def learn_one(
        self, event: Event, cfg: StateConfig, source: tuple[int, int] | None = None
    ) -> LearnOutcome:
        """Apply one event: evaluate it against the last list, then learn from it.

        The order is the prequential one (test, then train), so the online hit rate is an
        honest measure of what the user was shown before acting.

        Args:
            event: the interaction.
            cfg: bounds and clocks.
            source: ``(partition, offset)`` of the event in ``lsi.events``; ``None``
                offline. Per source partition the state keeps the user's last
                ``applied_n`` applied offsets. An offset in that list, or older than all
                of a full list, was applied: a re-delivery after a crash is recognised
                exactly, however long the re-delivered span. Any other offset below the
                newest is a gap (a send retried after later ones landed) and is applied.
        """
        if source is not None and self._was_applied(source, cfg.applied_n):
            return LearnOutcome(duplicate=False, evaluated=False, hit_rank=None, redelivered=True)
        fingerprint = event_hash(event.event_id)
        if fingerprint in self.seen:
            return LearnOutcome(duplicate=True, evaluated=False, hit_rank=None)
        if source is not None:
            offsets = self.applied.setdefault(str(source[0]), [])
            bisect.insort(offsets, source[1])
            if len(offsets) > cfg.applied_n:
                del offsets[: len(offsets) - cfg.applied_n]
        evaluated = bool(self.last_recs)
        hit_rank = self.last_recs.index(event.item_id) if event.item_id in self.last_recs else None

        self.seen.append(fingerprint)
        if len(self.seen) > cfg.seen_ids:
            del self.seen[: len(self.seen) - cfg.seen_ids]

        ts = event.ts
        if self.n_events == 0 or ts - self.last_ts > cfg.session_gap_s:
            self.session_start = ts
            self.session_len = 0
        self.session_len += 1
        if self.n_events and ts > self.last_ts:
            factor = 0.5 ** ((ts - self.last_ts) / cfg.type_half_life_s)
            self.type_counts = [c * factor for c in self.type_counts]
        code = TYPE_CODES[event.type]
        self.type_counts[code] += 1.0
        self.last_ts = max(self.last_ts, ts)
        self.n_events += 1

        self.items.append(event.item_id)
        self.times.append(ts)
        self.types.append(code)
        if len(self.items) > cfg.recent_n:
            drop = len(self.items) - cfg.recent_n
            del self.items[:drop], self.times[:drop], self.types[:drop]
        return LearnOutcome(duplicate=False, evaluated=evaluated, hit_rank=hit_rank)

    def _was_applied(self, source: tuple[int, int], applied_n: int) -> bool:
        offsets = self.applied.get(str(source[0]))
        if not offsets:
            return False
        offset = source[1]
        if offset > offsets[-1]:
            return False
        if offset < offsets[0]:
            # a full list has forgotten older offsets, which were applied in order
            return len(offsets) >= applied_n
        i = bisect.bisect_left(offsets, offset)
        return i < len(offsets) and offsets[i] == offset

    def remember_recs(self, item_ids: list[str], emitted_at: float, cfg: StateConfig) -> None:
        """Record the list just emitted (the reference for the next online hit)."""
        self.last_recs = item_ids[: cfg.last_recs_n]
        self.last_emit = emitted_at

    def recent_distinct(self, n: int) -> list[tuple[str, int]]:
        """The last ``n`` distinct items, newest first, with their type codes."""
        out: list[tuple[str, int]] = []
        seen: set[str] = set()
        for item, code in zip(reversed(self.items), reversed(self.types), strict=True):
            if item in seen:
                continue
            seen.add(item)
            out.append((item, code))
            if len(out) == n:
                break
        return out

    # -- serialization: compact JSON, short keys (the table's raw value) ------------------
    def to_bytes(self) -> bytes:
        data: dict[str, Any] = {
            "i": self.items,
            # relative to the newest event, 0.1 s resolution: a third of the bytes
            "t": [round(self.last_ts - t, 1) for t in self.times],
            "y": self.types,
            "e": self.seen,
            "ss": self.session_start,
            "sl": self.session_len,
            "lt": self.last_ts,
            "n": self.n_events,
            "c": [round(c, 4) for c in self.type_counts],
            "r": self.last_recs,
            "le": round(self.last_emit, 3),
            "a": self.applied,
        }
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> UserState:
        d = json.loads(raw)
        counts = list(d["c"])
        counts += [0.0] * (len(EVENT_TYPES) - len(counts))
        return cls(
            items=d["i"],
            times=[d["lt"] - dt for dt in d["t"]],
            types=d["y"],
            seen=d["e"],
            session_start=d["ss"],
            session_len=d["sl"],
            last_ts=d["lt"],
            n_events=d["n"],
            type_counts=counts,
            last_recs=d["r"],
            last_emit=d["le"],
            applied=d.get("a", {}),
        )
