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

Bytes (:meth:`UserState.to_bytes`, the table's value): format 1, little-endian. *uints* is
a list of non-negative ints written as UTF-8, one code point per value (1 byte below 128, 2
below 2048, 3 below 65536, else 4; the codecs make it C-speed): varint ``len << 1 | big``
then the text; with ``big``, values >= 0x10FFFF are the code point U+10FFFF in the text and
follow it as LEB128 varints of ``v - 0x10FFFF``. *zz* is zigzag (0, -1, 1, … → 0, 1, 2, …).

=========  ===============================================================================
part       layout
=========  ===============================================================================
fixed      ``0x01`` (the format tag, never ``{``), then doubles ``last_ts``,
           ``session_start``, ``round(last_emit, 3)``
head       uints: zz(n_events), zz(session_len), ``len(items) << 1 | indexed``,
           ``len(table) << 2 | mode``, ``len(last_recs)``, ``len(times) << 2 | mode``,
           ``len(types) << 2 | mode``, zz(the one type code, mode 0), ``len(seen) << 1 |
           mode``, ``len(type_counts) << 2 | mode``, ``len(applied)``
table      the distinct ids of ``items`` (first-seen order), then those of ``last_recs``
           not among them; mode 0 (all ASCII digits): digits as hex nibbles, ``a`` between
           ids, ``f`` pads (``"3952"`` → 2.5 bytes); 1: UTF-8 joined by NUL; 2 (an id
           holds NUL): uints of lengths then UTF-8; each as varint byte length + bytes
items      only if indexed (a repeated id): one byte per event (uints past 256 ids) into
           the table; otherwise ``items`` is the table's head
last_recs  indices into the table, likewise
times      ``q = round(last_ts - t, 1) * 10`` (0.1 s, as the JSON kept it): zz(q[0]) then
           uints of ``q[k] - q[k+1]`` (mode 0; zz of each in mode 1, a time going back);
           mode 2 (not finite / beyond 2**36 units): doubles of ``round(last_ts - t, 1)``
types      mode 0: all one code (in the head); 1: two codes per byte; 2: one byte; 3:
           uints of zz
seen       mode 0: 4 bytes each (the CRC-32 values); 1: uints of zz
counts     ``round(c, 4)``: mode 0 uints of ``c * 10**4`` (1: zz of them); 2: doubles
applied    per partition: key (varint length, UTF-8), varint ``n << 1 | unsorted``, zz of
           the first offset, uints of the gaps to the next (zz if unsorted)
crc        CRC-32 of all the bytes before it (4 bytes)
=========  ===============================================================================

:meth:`UserState.from_bytes` inverts it exactly (``to_bytes(from_bytes(b)) == b``) and
reads what the JSON format kept the same way the JSON reader did; a value that does not
start with the tag is read as that JSON (older changelog records). Truncated or corrupt
bytes raise :class:`ValueError`.
"""

from __future__ import annotations

import bisect
import codecs
import struct
import sys
import zlib
from array import array
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from math import copysign, floor
from operator import add, and_, lshift, mul, neg, or_, rshift, sub, xor
from typing import Any

import orjson

from lsi.wire.records import EVENT_TYPES, TYPE_CODES, Event

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

    # -- serialization: the table's raw value (see the module docstring) ------------------
    def to_bytes(self) -> bytes:
        """The compact binary value (format 1); :meth:`from_bytes` inverts it exactly."""
        body = bytearray()
        items, recs = self.items, self.last_recs
        present = dict.fromkeys(items)
        table = list(present)
        identity = len(table) == len(items)
        index: dict[str, int] = {}
        if not identity:
            index = dict(zip(table, range(len(table)), strict=True))
        rec_idx: list[int] = []
        if recs and present.keys().isdisjoint(recs) and len(set(recs)) == len(recs):
            rec_idx = list(range(len(table), len(table) + len(recs)))  # all new (the usual)
            table += recs
        else:
            built = not identity
            for item in recs:
                if not built and item in present:
                    index = dict(zip(table, range(len(table)), strict=True))
                    built = True
                i = index.get(item, -1)
                if i < 0:
                    i = index[item] = len(table)
                    table.append(item)
                rec_idx.append(i)
        wide = len(table) > 256
        table_mode = _put_table(body, table) if table else 0
        if not identity:
            _put_index(body, list(map(index.__getitem__, items)), wide)
        if recs:
            _put_index(body, rec_idx, wide)
        times_h = _put_times(body, self.times, self.last_ts)
        types_h, const = _put_types(body, self.types)
        seen_h = _put_seen(body, self.seen)
        counts_h = _put_counts(body, self.type_counts)
        _put_applied(body, self.applied)
        last_emit = round(self.last_emit, 3)
        out = bytearray(_FIXED.pack(_TAG, self.last_ts, self.session_start, last_emit))
        head = [
            _zz(self.n_events),
            _zz(self.session_len),
            len(items) << 1 | (not identity),
            len(table) << 2 | table_mode,
            len(recs),
            times_h,
            types_h,
            const,
            seen_h,
            counts_h,
            len(self.applied),
        ]
        _put_uints(out, head)
        out += body
        out += _CRC.pack(zlib.crc32(out))
        return bytes(out)

    @classmethod
    def from_bytes(cls, raw: bytes) -> UserState:
        """Read a value written by :meth:`to_bytes`, or by the JSON format that preceded it.

        Raises:
            ValueError: the bytes are truncated, corrupt or not a state.
        """
        if not isinstance(raw, bytes):
            raw = bytes(raw)
        if raw[:1] != _TAG_BYTE:
            return _from_json(raw)
        try:
            return _from_binary(raw)
        except (IndexError, KeyError, TypeError, OverflowError, struct.error) as exc:
            raise ValueError(f"corrupt user state: {exc}") from None


# -- format 1: helpers -------------------------------------------------------------------------
_TAG = 0x01
_TAG_BYTE = bytes([_TAG])
_FIXED = struct.Struct("<Bddd")  # tag, last_ts, session_start, last_emit
_CRC = struct.Struct("<I")
_HEAD_LEN = 11
#: code points below this are values; chr(_BIG) marks a value written after the text
_BIG = 0x10FFFF
_MARK = chr(_BIG)
_U64 = 1 << 64
#: safe range of a time in 0.1 s units for the integer path (exact, far from ties)
_TIME_RANGE = float(1 << 36)
_LT_RANGE = float(1 << 32)
_NEAR = 1e-4  # how close 10 x + 1/2 may come to an integer on the fast path
_ZZ_FAST = 1 << 62
_MAX_CONST = 1 << 20  # a constant run of type codes cannot claim more than this
_HI = bytes(b >> 4 for b in range(256))
_LO = bytes(b & 15 for b in range(256))
_UTF8 = "utf-8"
_UTF32 = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"
_U32 = "I" if array("I").itemsize == 4 else "L"  # native 4-byte unsigned
_SP = "surrogatepass"
_UINTS = "lsi.core.state.uints"  # the codec error handler of _put_uints


def _zz(v: int) -> int:
    """Zigzag: 0, -1, 1, -2, … → 0, 1, 2, 3, …"""
    return v << 1 if v >= 0 else (-v << 1) - 1


def _unzz(u: int) -> int:
    return -((u + 1) >> 1) if u & 1 else u >> 1


def _zz_list(vals: list[int]) -> list[int]:
    if min(vals) >= -_ZZ_FAST and max(vals) < _ZZ_FAST:  # (v << 1) ^ (v >> 63), in C
        return list(map(xor, map(lshift, vals, repeat(1)), map(rshift, vals, repeat(63))))
    return list(map(_zz, vals))


def _unzz_list(vals: list[int]) -> list[int]:
    return list(map(xor, map(rshift, vals, repeat(1)), map(neg, map(and_, vals, repeat(1)))))


def _put_varint(out: bytearray, v: int) -> None:
    """LEB128 of ``0 <= v < 2**64``."""
    if not 0 <= v < _U64:
        raise ValueError(f"value out of range for the state encoding: {v}")
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _get_varint(raw: bytes, pos: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        b = raw[pos]  # IndexError when truncated
        pos += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _uints_errors(exc: UnicodeError) -> tuple[str, int]:
    """UTF-32 decoding of :func:`_put_uints`' values: a surrogate is itself (as
    ``surrogatepass``), a value past the last code point is the marker."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    v = int.from_bytes(exc.object[exc.start : exc.start + 4], sys.byteorder)
    return (chr(v) if 0xD800 <= v < 0xE000 else _MARK), exc.start + 4


codecs.register_error(_UINTS, _uints_errors)


def _put_uints(out: bytearray, vals: list[int]) -> None:
    """Non-negative ints as the UTF-8 of one code point each (the codecs do it in C): varint
    ``len << 1 | big``, then the text; with ``big``, values >= 0x10FFFF are a marker code
    point in the text and follow it, in order, as varints of ``v - 0x10FFFF``."""
    try:
        units = array(_U32, vals).tobytes()
    except OverflowError:  # 2**32 or more, or negative
        if vals and min(vals) < 0:
            raise ValueError(f"negative value for the state encoding: {min(vals)}") from None
        units = array(_U32, map(min, vals, repeat(_BIG))).tobytes()
    text = units.decode(_UTF32, _UINTS)
    data = text.encode(_UTF8, _SP)
    big = _MARK in text
    _put_varint(out, len(data) << 1 | big)
    out += data
    if big:
        i = text.find(_MARK)
        while i >= 0:
            _put_varint(out, vals[i] - _BIG)
            i = text.find(_MARK, i + 1)


def _get_uints(raw: bytes, pos: int) -> tuple[list[int], int]:
    h, pos = _get_varint(raw, pos)
    end = pos + (h >> 1)
    if end > len(raw):
        raise ValueError("truncated")
    text = raw[pos:end].decode(_UTF8, _SP)
    vals = array(_U32, text.encode(_UTF32, _SP)).tolist()
    if h & 1:
        i = text.find(_MARK)
        while i >= 0:
            v, end = _get_varint(raw, end)
            vals[i] = v + _BIG
            i = text.find(_MARK, i + 1)
    return vals, end


def _take(raw: bytes, pos: int, n: int) -> tuple[bytes, int]:
    end = pos + n
    if end > len(raw):
        raise ValueError("truncated")
    return raw[pos:end], end


def _put_table(out: bytearray, table: list[str]) -> int:
    """Distinct ids; returns the mode: 0 digit strings packed as hex nibbles ('a' between
    ids, 'f' pads), 1 UTF-8 joined by NUL, 2 UTF-8 with code point lengths."""
    joined = "".join(table)
    if joined.isascii() and joined.isdigit():
        text = "a".join(table)
        data = bytes.fromhex(text + "f" if len(text) & 1 else text)
        mode = 0
    else:
        text = "\x00".join(table)
        if text.count("\x00") == len(table) - 1:
            mode = 1
        else:
            _put_uints(out, [len(item) for item in table])
            text = joined
            mode = 2
        data = text.encode(_UTF8, _SP)
    _put_varint(out, len(data))
    out += data
    return mode


def _get_table(raw: bytes, pos: int, n: int, mode: int) -> tuple[list[str], int]:
    lens: list[int] = []
    if mode == 2:
        lens, pos = _get_uints(raw, pos)
    size, pos = _get_varint(raw, pos)
    data, pos = _take(raw, pos, size)
    if mode == 0:
        text = data.hex()
        table = (text[:-1] if text.endswith("f") else text).split("a")
    elif mode == 1:
        table = data.decode(_UTF8, _SP).split("\x00")
    elif mode == 2:
        text = data.decode(_UTF8, _SP)
        if sum(lens) != len(text):
            raise ValueError("bad id lengths")
        table = [text[a - k : a] for a, k in zip(accumulate(lens), lens, strict=True)]
    else:
        raise ValueError(f"unknown id table mode {mode}")
    if len(table) != n:
        raise ValueError("bad id table")
    return table, pos


def _put_index(out: bytearray, idx: list[int], wide: bool) -> None:
    if wide:
        _put_uints(out, idx)
    else:
        out += bytes(idx)


def _get_index(raw: bytes, pos: int, n: int, wide: bool) -> tuple[list[int], int]:
    if wide:
        idx, pos = _get_uints(raw, pos)
        if len(idx) != n:
            raise ValueError("bad index")
        return idx, pos
    data, pos = _take(raw, pos, n)
    return list(data), pos


def _put_times(out: bytearray, times: list[float], last_ts: float) -> int:
    """``round(last_ts - t, 1)`` per event, as the JSON format kept it. Modes 0/1: integers
    ``q`` of 0.1 s, the first (zigzag varint), then ``q[k] - q[k+1]`` (the step from one
    event to the next; zigzag in mode 1, when a time goes back); mode 2: doubles.
    Returns ``n << 2 | mode``."""
    n = len(times)
    if not n:
        return 0
    try:
        # y = 10 x + 1/2, x = last_ts - t: q = floor(y) unless y is within _NEAR of an
        # integer, where float errors could flip a decimal tie (there round(x, 1) decides)
        if -_LT_RANGE < last_ts < _LT_RANGE:  # 10 (last_ts + 0.05 - t): errors < 3e-5
            ys = list(map(mul, map(sub, repeat(last_ts + 0.05), times), repeat(10.0)))
        else:
            ys = list(
                map(add, map(mul, map(sub, repeat(last_ts), times), repeat(10.0)), repeat(0.5))
            )
        qs = list(map(floor, ys))
        ok = max(ys) < _TIME_RANGE and min(ys) > -_TIME_RANGE
        frac = list(map(sub, ys, qs))
        if ok and (min(frac) < _NEAR or max(frac) > 1.0 - _NEAR):
            for k, f in enumerate(frac):
                if f < _NEAR or f > 1.0 - _NEAR:
                    qs[k] = round(round(last_ts - times[k], 1) * 10)
    except (ValueError, OverflowError):  # nan, inf
        ok = False
    if not ok:
        out += struct.pack(f"<{n}d", *[round(last_ts - t, 1) for t in times])
        return n << 2 | 2
    steps = list(map(sub, qs, qs[1:]))
    mode = 0
    if steps and min(steps) < 0:
        steps = _zz_list(steps)
        mode = 1
    _put_varint(out, _zz(qs[0]))
    _put_uints(out, steps)
    return n << 2 | mode


def _get_times(raw: bytes, pos: int, head: int, last_ts: float) -> tuple[list[float], int]:
    n, mode = head >> 2, head & 3
    if not n:
        return [], pos
    if mode == 2:
        data, pos = _take(raw, pos, 8 * n)
        return [last_ts - r for r in struct.unpack(f"<{n}d", data)], pos
    first, pos = _get_varint(raw, pos)
    steps, pos = _get_uints(raw, pos)
    if len(steps) != n - 1 or mode > 1:
        raise ValueError("bad times")
    if mode:
        steps = _unzz_list(steps)
    return [last_ts - q / 10 for q in accumulate(steps, sub, initial=_unzz(first))], pos


def _put_types(out: bytearray, types: list[int]) -> tuple[int, int]:
    """Mode 0 one code for all (in the head), 1 two per byte, 2 one byte each, 3 zigzag
    varints. Returns ``(n << 2 | mode, zigzag(code) for mode 0)``."""
    n = len(types)
    if not n:
        return 0, 0
    if types.count(types[0]) == n:
        return n << 2, _zz(types[0])
    lo, hi = min(types), max(types)
    if lo >= 0 and hi < 16:
        even = [*types, 0] if n & 1 else types
        out += bytes(map(or_, map(lshift, even[0::2], repeat(4)), even[1::2]))
        return n << 2 | 1, 0
    if lo >= 0 and hi < 256:
        out += bytes(types)
        return n << 2 | 2, 0
    _put_uints(out, _zz_list(types))
    return n << 2 | 3, 0


def _get_types(raw: bytes, pos: int, head: int, const: int) -> tuple[list[int], int]:
    n, mode = head >> 2, head & 3
    if mode == 0:
        if n > _MAX_CONST:
            raise ValueError("bad types")
        return [_unzz(const)] * n, pos
    if mode == 1:
        data, pos = _take(raw, pos, (n + 1) >> 1)
        codes = [0] * (2 * len(data))
        codes[0::2] = data.translate(_HI)
        codes[1::2] = data.translate(_LO)
        del codes[n:]
        return codes, pos
    if mode == 2:
        data, pos = _take(raw, pos, n)
        return list(data), pos
    codes, pos = _get_uints(raw, pos)
    if len(codes) != n:
        raise ValueError("bad types")
    return _unzz_list(codes), pos


def _put_seen(out: bytearray, seen: list[int]) -> int:
    """Mode 0: 4-byte little-endian (CRC-32 values); 1: zigzag varints."""
    n = len(seen)
    if not n or (min(seen) >= 0 and max(seen) < 1 << 32):
        out += struct.pack(f"<{n}I", *seen)
        return n << 1
    _put_uints(out, _zz_list(seen))
    return n << 1 | 1


def _get_seen(raw: bytes, pos: int, head: int) -> tuple[list[int], int]:
    n = head >> 1
    if head & 1:
        vals, pos = _get_uints(raw, pos)
        if len(vals) != n:
            raise ValueError("bad seen ids")
        return _unzz_list(vals), pos
    data, pos = _take(raw, pos, 4 * n)
    return list(struct.unpack(f"<{n}I", data)), pos


def _put_counts(out: bytearray, counts: list[float]) -> int:
    """``round(c, 4)`` as integers of 1e-4 (mode 0, or 1 zigzag), else doubles (mode 2)."""
    n = len(counts)
    rs = [round(c, 4) for c in counts]
    try:
        ks = [round(r * 10000) for r in rs]
        ok = all(
            k / 10000 == r and abs(k) < 1 << 53 and (k or copysign(1.0, r) > 0)
            for k, r in zip(ks, rs, strict=True)
        )
    except (ValueError, OverflowError):
        ok = False
    if not ok:
        out += struct.pack(f"<{n}d", *rs)
        return n << 2 | 2
    if ks and min(ks) < 0:
        _put_uints(out, _zz_list(ks))
        return n << 2 | 1
    _put_uints(out, ks)
    return n << 2


def _get_counts(raw: bytes, pos: int, head: int) -> tuple[list[float], int]:
    n, mode = head >> 2, head & 3
    if mode == 2:
        data, pos = _take(raw, pos, 8 * n)
        counts = list(struct.unpack(f"<{n}d", data))
    else:
        ks, pos = _get_uints(raw, pos)
        if len(ks) != n or mode > 2:
            raise ValueError("bad type counts")
        counts = [(_unzz(k) if mode else k) / 10000 for k in ks]
    counts += [0.0] * (len(EVENT_TYPES) - len(counts))
    return counts, pos


def _put_applied(out: bytearray, applied: dict[str, list[int]]) -> None:
    """Per partition: its key (varint length, UTF-8), ``n << 1 | unsorted``, the first offset
    (zigzag) and the gaps to the next ones (zigzag when unsorted)."""
    for key, offsets in applied.items():
        data = key.encode(_UTF8, _SP)
        _put_varint(out, len(data))
        out += data
        n = len(offsets)
        if not n:
            out.append(0)
            continue
        gaps = list(map(sub, offsets[1:], offsets))
        unsorted = bool(gaps) and min(gaps) < 0
        _put_varint(out, n << 1 | unsorted)
        _put_varint(out, _zz(offsets[0]))
        _put_uints(out, _zz_list(gaps) if unsorted else gaps)


def _get_applied(raw: bytes, pos: int, n: int) -> tuple[dict[str, list[int]], int]:
    applied: dict[str, list[int]] = {}
    for _ in range(n):
        size, pos = _get_varint(raw, pos)
        data, pos = _take(raw, pos, size)
        h, pos = _get_varint(raw, pos)
        offsets: list[int] = []
        if h >> 1:
            first, pos = _get_varint(raw, pos)
            gaps, pos = _get_uints(raw, pos)
            if len(gaps) != (h >> 1) - 1:
                raise ValueError("bad applied offsets")
            if h & 1:
                gaps = _unzz_list(gaps)
            offsets = list(accumulate(gaps, initial=_unzz(first)))
        applied[data.decode(_UTF8, _SP)] = offsets
    return applied, pos


def _from_binary(raw: bytes) -> UserState:
    if len(raw) < _FIXED.size + _CRC.size:
        raise ValueError("truncated user state")
    (crc,) = _CRC.unpack_from(raw, len(raw) - _CRC.size)
    raw = raw[: -_CRC.size]
    if zlib.crc32(raw) != crc:
        raise ValueError("user state checksum mismatch")
    _, last_ts, session_start, last_emit = _FIXED.unpack_from(raw)
    head, pos = _get_uints(raw, _FIXED.size)
    if len(head) != _HEAD_LEN:
        raise ValueError("bad user state header")
    n_events, session_len, items_h, table_h, n_recs, times_h = head[:6]
    types_h, const, seen_h, counts_h, n_applied = head[6:]
    n_table, n_items = table_h >> 2, items_h >> 1
    wide = n_table > 256
    table: list[str] = []
    if n_table:
        table, pos = _get_table(raw, pos, n_table, table_h & 3)
    if items_h & 1:
        idx, pos = _get_index(raw, pos, n_items, wide)
        items = list(map(table.__getitem__, idx))
    elif n_items <= n_table:
        items = table[:n_items]
    else:
        raise ValueError("bad items")
    recs: list[str] = []
    if n_recs:
        idx, pos = _get_index(raw, pos, n_recs, wide)
        recs = list(map(table.__getitem__, idx))
    times, pos = _get_times(raw, pos, times_h, last_ts)
    types, pos = _get_types(raw, pos, types_h, const)
    seen, pos = _get_seen(raw, pos, seen_h)
    counts, pos = _get_counts(raw, pos, counts_h)
    applied, pos = _get_applied(raw, pos, n_applied)
    if pos != len(raw):
        raise ValueError("trailing bytes in user state")
    return UserState(
        items=items,
        times=times,
        types=types,
        seen=seen,
        session_start=session_start,
        session_len=_unzz(session_len),
        last_ts=last_ts,
        n_events=_unzz(n_events),
        type_counts=counts,
        last_recs=recs,
        last_emit=last_emit,
        applied=applied,
    )


# -- the JSON format that preceded format 1 (still read from old changelogs) ---------------
def _to_json(state: UserState) -> bytes:
    """The JSON value (short keys) that :meth:`UserState.to_bytes` wrote before format 1."""
    data: dict[str, Any] = {
        "i": state.items,
        # relative to the newest event, 0.1 s resolution: a third of the bytes
        "t": [round(state.last_ts - t, 1) for t in state.times],
        "y": state.types,
        "e": state.seen,
        "ss": state.session_start,
        "sl": state.session_len,
        "lt": state.last_ts,
        "n": state.n_events,
        "c": [round(c, 4) for c in state.type_counts],
        "r": state.last_recs,
        "le": round(state.last_emit, 3),
        "a": state.applied,
    }
    return orjson.dumps(data)


def _from_json(raw: bytes) -> UserState:
    try:
        d = orjson.loads(raw)
        counts = list(d["c"])
        counts += [0.0] * (len(EVENT_TYPES) - len(counts))
        return UserState(
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
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"corrupt user state (JSON): {exc!r}") from None
