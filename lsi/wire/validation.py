"""Event validation at the boundary (and again on every internal topic a worker reads).

:func:`validate_event` turns the raw bytes and key of a Kafka message into an
:class:`~lsi.wire.records.Event` or raises :class:`~lsi.errors.InvalidEvent` with a stable reason
code and a sentence that says what was expected and what arrived. It implements
``lsi/wire/schemas/event.schema.json`` (a test checks the two agree) plus the checks a schema
cannot express: size, key, clock.

Reason codes (the ``lsi-dlq-reason`` header and the ``reason`` metric label):

===================  ==========================================================
``oversized``        the message is larger than ``max_bytes`` (16 KiB)
``malformed_json``   not UTF-8, not JSON, JSON with NaN/Infinity, or nested too deeply to
                     parse
``not_an_object``    valid JSON that is not an object
``missing_field``    a required field is absent
``unknown_field``    a field the schema does not define
``wrong_type``       a field of the wrong JSON type
``invalid_value``    right type, value out of range: an empty or over-long id, an id with a
                     control character or a lone surrogate, an integer of more than 128
                     digits, a number beyond float range, ``context`` nested more than
                     16 levels, a malformed ``lsi-src`` header (``lsi.events.rekeyed``)
``unknown_type``     ``type`` is not one of :data:`~lsi.wire.records.EVENT_TYPES`
``key_mismatch``     the message key is missing or differs from ``user_id`` (on
                     ``lsi.events.rekeyed`` also: the record is not on the user's partition)
``future_timestamp`` ``ts`` is more than ``max_future_s`` ahead of the clock
===================  ==========================================================
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from lsi.errors import InvalidEvent
from lsi.wire.partitioning import partition_of
from lsi.wire.records import EVENT_TYPES, SOURCE_HEADER, Event, ItemDelta

__all__ = [
    "MAX_DEPTH",
    "MAX_DIGITS",
    "MAX_ID",
    "REASONS",
    "Limits",
    "describe",
    "id_problem",
    "parse_json",
    "validate_bundle",
    "validate_event",
    "validate_interaction",
]

REASONS: tuple[str, ...] = (
    "oversized",
    "malformed_json",
    "not_an_object",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "invalid_value",
    "unknown_type",
    "key_mismatch",
    "future_timestamp",
)

_REQUIRED = ("event_id", "user_id", "item_id", "type", "ts")
_ALLOWED = frozenset((*_REQUIRED, "weight", "context"))
_TYPES = frozenset(EVENT_TYPES)
#: longest id, in characters
MAX_ID = 128
#: most digits of an integer anywhere in a record (an id of more could never be queried)
MAX_DIGITS = 128
#: deepest nesting of ``context`` (objects and arrays)
MAX_DEPTH = 16
# control characters (C0, DEL, C1) and UTF-16 surrogates: a string holding one cannot be
# encoded as UTF-8, logged safely or used as a table key (Faust keeps its own offset under
# ``__faust\x00offset__`` in the same key space)
_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds enforced on every event.

    Attributes:
        max_bytes: largest accepted message value, in bytes.
        max_future_s: how far ahead of the worker's clock ``ts`` may be (clock skew).
        max_weight: largest absolute ``weight``.
    """

    max_bytes: int = 16 * 1024
    max_future_s: float = 300.0
    max_weight: float = 1000.0


class _OutOfRange(Exception):
    """A number literal lsi cannot hold (raised from inside the JSON parser)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > MAX_DIGITS:
        raise _OutOfRange(f"an integer of {digits} digits (at most {MAX_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _OutOfRange(f"the number {text[:40]}, beyond the range of a double")
    return value


#: a run of digits too long for orjson to keep as an exact integer
_LONG_NUMBER = re.compile(rb"[0-9]{19}")
#: records with this many brackets or more are parsed by the stdlib (its depth limit)
_FAST_BRACKETS = 64


def parse_json(raw: bytes, *, deep_ok: bool = False) -> Any:
    """Decode a record's JSON value strictly.

    ``deep_ok``: the caller checks the structure level by level itself (item-delta
    bundles), so nesting up to orjson's limit (1,024) need not take the stdlib's path.

    Raises:
        InvalidEvent: ``malformed_json`` (not UTF-8, not JSON, NaN/Infinity, nested beyond
            the parser's recursion limit) or ``invalid_value`` (an integer of more than
            :data:`MAX_DIGITS` digits, a number beyond float range).
    """
    shallow = deep_ok or raw.count(b"[") + raw.count(b"{") < _FAST_BRACKETS
    if shallow and _LONG_NUMBER.search(raw) is None:
        # the fast path; orjson refuses all that the stdlib refuses below, but reads an
        # integer beyond 64 bits as a float and nests deeper than the stdlib, so a 19-digit
        # run or many brackets take the precise path
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the stdlib says why, with the same reason codes as always
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant,
                          parse_int=_parse_int, parse_float=_parse_float)  # fmt: skip
    except UnicodeDecodeError as exc:
        raise InvalidEvent("malformed_json", f"the message is not UTF-8 ({exc.reason})") from None
    except _OutOfRange as exc:
        raise InvalidEvent("invalid_value", f"the message holds {exc}") from None
    except RecursionError:
        raise InvalidEvent("malformed_json", "the JSON is nested too deeply to parse") from None
    except ValueError as exc:
        raise InvalidEvent("malformed_json", f"the message is not valid JSON: {exc}") from None


def id_problem(value: str, name: str = "id") -> str | None:
    """Why ``value`` cannot be an id (``None`` if it can): 1 to :data:`MAX_ID` characters,
    no control character, no lone surrogate (ids must be valid UTF-8)."""
    if not value or len(value) > MAX_ID:
        return f"{name} must have 1 to {MAX_ID} characters, got {len(value)}"
    if value.isascii() and value.isprintable():  # the common case, without the regex
        return None
    bad = _BAD_CHARS.search(value)
    if bad is not None:
        char = bad.group()
        kind = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
        return (f"{name} must be valid UTF-8 text without control characters; it holds "
                f"{kind} (U+{ord(char):04X}) at position {bad.start()}")  # fmt: skip
    return None


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects/arrays deeper than ``limit`` (iterative)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def describe(value: Any) -> str:
    """A value as an error message names it: its JSON type, or a short quote of it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _id(data: dict[str, Any], name: str) -> str:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidEvent(
            "wrong_type",
            f"{name} must be a string or a non-negative integer, got {describe(value)}",
        )
    if isinstance(value, int):
        if value < 0:
            raise InvalidEvent("invalid_value", f"{name} must be non-negative, got {value}")
        value = str(value)
    problem = id_problem(value, name)
    if problem is not None:
        raise InvalidEvent("invalid_value", problem)
    return value


def _number(data: dict[str, Any], name: str) -> float:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidEvent("wrong_type", f"{name} must be a number, got {describe(value)}")
    return float(value)


def validate_event(raw: bytes | None, key: bytes | None, now: float, limits: Limits) -> Event:
    """Validate one message of ``lsi.events``.

    Args:
        raw: the message value as received.
        key: the message key as received (must be ``user_id`` in UTF-8).
        now: the worker's clock, seconds since the epoch.
        limits: size, clock-skew and weight bounds.

    Returns:
        The typed event, ids normalised to strings and ``ts`` to float.

    Raises:
        InvalidEvent: with the reason codes listed in the module docstring.

    >>> validate_event(b'{"event_id":"e1","user_id":7,"item_id":"i9","type":"view","ts":10}',
    ...                b"7", now=100.0, limits=Limits()).user_id
    '7'
    """
    if raw is None or len(raw) == 0:
        raise InvalidEvent("malformed_json", "the message has no value; expected a JSON object")
    if len(raw) > limits.max_bytes:
        raise InvalidEvent(
            "oversized", f"the message is {len(raw)} bytes; the limit is {limits.max_bytes}"
        )
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {describe(data)}")
    for name in _REQUIRED:
        if name not in data:
            raise InvalidEvent("missing_field", f"the required field {name!r} is missing")
    unknown = sorted(set(data) - _ALLOWED)
    if unknown:
        raise InvalidEvent(
            "unknown_field",
            f"unknown field(s) {', '.join(map(repr, unknown))}; put extra data in 'context'",
        )

    event_id = data["event_id"]
    if not isinstance(event_id, str):
        raise InvalidEvent("wrong_type", f"event_id must be a string, got {describe(event_id)}")
    problem = id_problem(event_id, "event_id")
    if problem is not None:
        raise InvalidEvent("invalid_value", problem)
    user_id = _id(data, "user_id")
    item_id = _id(data, "item_id")

    etype = data["type"]
    if not isinstance(etype, str):
        raise InvalidEvent("wrong_type", f"type must be a string, got {describe(etype)}")
    if etype not in _TYPES:
        raise InvalidEvent(
            "unknown_type", f"type {describe(etype)} is not one of {', '.join(EVENT_TYPES)}"
        )

    ts = _number(data, "ts")
    if not math.isfinite(ts) or ts < 0:
        raise InvalidEvent("invalid_value", f"ts must be seconds since the epoch, got {ts!r}")
    if ts > now + limits.max_future_s:
        raise InvalidEvent(
            "future_timestamp",
            f"ts is {ts - now:.0f} s ahead of the worker clock (limit {limits.max_future_s:.0f} s);"
            " send event time in seconds, not milliseconds",
        )

    weight: float | None = None
    if "weight" in data:
        weight = _number(data, "weight")
        if not math.isfinite(weight) or abs(weight) > limits.max_weight:
            raise InvalidEvent(
                "invalid_value", f"weight must be within ±{limits.max_weight:g}, got {weight!r}"
            )
    context = data.get("context")
    if context is not None and not isinstance(context, dict):
        raise InvalidEvent("wrong_type", f"context must be an object, got {describe(context)}")
    if context is not None and _depth_exceeds(context, MAX_DEPTH):
        raise InvalidEvent("invalid_value", f"context is nested more than {MAX_DEPTH} levels")

    if key is None:
        raise InvalidEvent("key_mismatch", f"the message has no key; expected {user_id!r}")
    try:
        key_text = key.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent("key_mismatch", "the message key is not UTF-8") from None
    if key_text != user_id:
        raise InvalidEvent(
            "key_mismatch", f"the message key {key_text!r} differs from user_id {user_id!r}"
        )
    return Event(event_id, user_id, item_id, etype, ts, weight, context)


def _origin(headers: Any) -> tuple[int, int] | None:
    """``(partition, offset)`` from an ``lsi-src`` header; ``None`` without one."""
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    for key, value in items:
        if key != SOURCE_HEADER:
            continue
        text = bytes(value or b"").decode("ascii", "replace")
        partition, sep, offset = text.partition(":")
        if not (sep and partition.isdecimal() and offset.isdecimal()
                and len(partition) <= 10 and len(offset) <= 19):  # fmt: skip
            raise InvalidEvent("invalid_value", f"the {SOURCE_HEADER} header must be "
                               f"<partition>:<offset>, got {text[:40]!r}")  # fmt: skip
        return int(partition), int(offset)
    return None


def validate_interaction(
    raw: bytes | None,
    key: bytes | None,
    headers: Any,
    partition: int,
    partitions: int,
    now: float,
    limits: Limits,
) -> tuple[Event, tuple[int, int] | None]:
    """Validate one record of ``lsi.events.rekeyed`` (written by the workers, but writable
    by anyone with access to the topic, so checked like an event).

    On top of :func:`validate_event`: the record must sit on the partition murmur2 gives its
    key (the user's state lives there), and an ``lsi-src`` header, if present, must be
    ``<partition>:<offset>``.

    Returns:
        The event and its source coordinates in ``lsi.events`` (``None`` without a header).
    """
    event = validate_event(raw, key, now, limits)
    home = partition_of(event.user_id.encode(), partitions)
    if home != partition:
        raise InvalidEvent("key_mismatch", f"the record is on partition {partition}, but user "
                           f"{event.user_id!r} belongs to partition {home}")  # fmt: skip
    return event, _origin(headers)


_DELTA_FIELDS = ("p", "t", "c")


def _amount(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidEvent("wrong_type", f"{what} must be a number, got {describe(value)}")
    if value < 0:
        raise InvalidEvent("invalid_value", f"{what} must be >= 0, got {value!r}")
    return float(value)


def _plain_neighbours(co: dict[str, Any]) -> bool:
    """Whether every neighbour of a delta is certainly valid, checked in bulk: printable
    ASCII ids of 1 to :data:`MAX_ID` characters, non-negative numbers (finite: the parser
    refuses NaN and infinities). ``False`` means "look closer", not "invalid"."""
    if not co:
        return True
    ids = "".join(co)
    if not (ids.isascii() and ids.isprintable()) or len(ids) > MAX_ID * len(co):
        return False
    if min(map(len, co)) < 1 or max(map(len, co)) > MAX_ID:
        return False
    weights = co.values()
    return set(map(type, weights)) <= {float, int} and min(weights) >= 0


def validate_bundle(raw: bytes | None, partition: int, partitions: int) -> dict[str, ItemDelta]:
    """Validate one record of ``lsi.item-deltas``: ``{item: {"p": pop, "t": ts, "c":
    {item: weight}}}`` as :func:`lsi.wire.records.encode_bundle` writes it.

    Written by the interest agent, but writable by anyone with access to the topic: a bad
    bundle must not crash the stats agent or poison an item's statistics for good. Every
    number is finite and non-negative, every item id is a valid id, and every item of the
    bundle belongs to the record's partition (its statistics live there).

    Raises:
        InvalidEvent: ``malformed_json``, ``not_an_object``, ``missing_field``,
            ``unknown_field``, ``wrong_type``, ``invalid_value`` or ``key_mismatch``.
    """
    if raw is None or len(raw) == 0:
        raise InvalidEvent("malformed_json", "the record has no value; expected a JSON object")
    data = parse_json(raw, deep_ok=True)
    if not isinstance(data, dict):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {describe(data)}")
    out: dict[str, ItemDelta] = {}
    for item, delta in data.items():
        problem = id_problem(item, "an item id")
        if problem is not None:
            raise InvalidEvent("invalid_value", problem)
        home = partition_of(item.encode(), partitions)
        if home != partition:
            raise InvalidEvent("key_mismatch", f"item {item[:40]!r} belongs to partition {home}, "
                               f"not {partition}")  # fmt: skip
        if not isinstance(delta, dict):
            raise InvalidEvent("wrong_type", f"the delta of {item[:40]!r} must be an object, "
                               f"got {describe(delta)}")  # fmt: skip
        missing = [f for f in _DELTA_FIELDS if f not in delta]
        if missing:
            raise InvalidEvent("missing_field", f"the delta of {item[:40]!r} lacks {missing}")
        unknown = sorted(set(delta) - set(_DELTA_FIELDS))
        if unknown:
            raise InvalidEvent("unknown_field", f"the delta of {item[:40]!r} has {unknown}")
        co = delta["c"]
        if not isinstance(co, dict):
            raise InvalidEvent("wrong_type", f"c must be an object, got {describe(co)}")
        if not _plain_neighbours(co):  # find the first problem, in order
            for other, weight in co.items():
                problem = id_problem(other, "a neighbour id")
                if problem is not None:
                    raise InvalidEvent("invalid_value", problem)
                _amount(weight, "a co-visitation weight")
        out[item] = ItemDelta(
            pop=_amount(delta["p"], "p"),
            ts=_amount(delta["t"], "t"),
            co={k: float(v) for k, v in co.items()},
        )
    return out
