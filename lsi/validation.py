"""Event validation at the ingest boundary.

:func:`validate_event` turns the raw bytes and key of a Kafka message into an
:class:`~lsi.records.Event` or raises :class:`~lsi.errors.InvalidEvent` with a stable reason
code and a sentence that says what was expected and what arrived. It implements
``lsi/schemas/event.schema.json`` (a test checks the two agree) plus the checks a schema
cannot express: size, key, clock.

Reason codes (the ``lsi-dlq-reason`` header and the ``reason`` metric label):

===================  ==========================================================
``oversized``        the message is larger than ``max_bytes`` (16 KiB)
``malformed_json``   not UTF-8, not JSON, or JSON with NaN/Infinity
``not_an_object``    valid JSON that is not an object
``missing_field``    a required field is absent
``unknown_field``    a field the schema does not define
``wrong_type``       a field of the wrong JSON type
``invalid_value``    right type, value out of range (empty id, negative ts …)
``unknown_type``     ``type`` is not one of :data:`~lsi.records.EVENT_TYPES`
``key_mismatch``     the message key is missing or differs from ``user_id``
``future_timestamp`` ``ts`` is more than ``max_future_s`` ahead of the clock
===================  ==========================================================
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from lsi.errors import InvalidEvent
from lsi.records import EVENT_TYPES, Event

__all__ = ["REASONS", "Limits", "validate_event"]

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
_MAX_ID = 128


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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _describe(value: Any) -> str:
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
            f"{name} must be a string or a non-negative integer, got {_describe(value)}",
        )
    if isinstance(value, int):
        if value < 0:
            raise InvalidEvent("invalid_value", f"{name} must be non-negative, got {value}")
        return str(value)
    if not value or len(value) > _MAX_ID:
        raise InvalidEvent(
            "invalid_value", f"{name} must have 1 to {_MAX_ID} characters, got {len(value)}"
        )
    return value


def _number(data: dict[str, Any], name: str) -> float:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidEvent("wrong_type", f"{name} must be a number, got {_describe(value)}")
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
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise InvalidEvent("malformed_json", f"the message is not UTF-8 ({exc.reason})") from None
    except ValueError as exc:
        raise InvalidEvent("malformed_json", f"the message is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {_describe(data)}")
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
        raise InvalidEvent("wrong_type", f"event_id must be a string, got {_describe(event_id)}")
    if not event_id or len(event_id) > _MAX_ID:
        raise InvalidEvent("invalid_value", f"event_id must have 1 to {_MAX_ID} characters")
    user_id = _id(data, "user_id")
    item_id = _id(data, "item_id")

    etype = data["type"]
    if not isinstance(etype, str):
        raise InvalidEvent("wrong_type", f"type must be a string, got {_describe(etype)}")
    if etype not in _TYPES:
        raise InvalidEvent(
            "unknown_type", f"type {_describe(etype)} is not one of {', '.join(EVENT_TYPES)}"
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
        raise InvalidEvent("wrong_type", f"context must be an object, got {_describe(context)}")

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
