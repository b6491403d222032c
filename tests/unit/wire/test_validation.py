"""Event validation: every invalid case, and agreement with the committed JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from lsi.errors import InvalidEvent
from lsi.wire.validation import REASONS, Limits, validate_event

NOW = 1_700_000_000.0
SCHEMA = json.loads((Path(__file__).parents[3] / "lsi/wire/schemas/event.schema.json").read_text())


def good(**changes: Any) -> dict[str, Any]:
    event = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "view", "ts": NOW - 5}
    event.update(changes)
    return {k: v for k, v in event.items() if v is not ...}


DEFAULT_LIMITS = Limits()


def check(value: bytes, key: bytes | None = b"u1", limits: Limits = DEFAULT_LIMITS) -> Any:
    return validate_event(value, key, NOW, limits)


def test_valid_event_is_typed_and_normalised() -> None:
    event = check(
        json.dumps(good(user_id=42, item_id=7, weight=4, context={"a": 1})).encode(), b"42"
    )
    assert (event.user_id, event.item_id, event.type, event.weight) == ("42", "7", "view", 4.0)
    assert event.context == {"a": 1}
    assert event.ts == NOW - 5


CASES: list[tuple[str, bytes, bytes | None]] = [
    ("malformed_json", b"{not json", b"u1"),
    ("malformed_json", b"", b"u1"),
    ("malformed_json", b"\xff\xfe\x00", b"u1"),
    ("malformed_json", json.dumps(good()).encode().replace(b'"ts": ', b'"ts": NaN, "x": '), b"u1"),
    ("not_an_object", b"[1, 2]", b"u1"),
    ("not_an_object", b'"view"', b"u1"),
    ("missing_field", json.dumps(good(item_id=...)).encode(), b"u1"),
    ("missing_field", json.dumps(good(event_id=...)).encode(), b"u1"),
    ("unknown_field", json.dumps(good(price=3)).encode(), b"u1"),
    ("wrong_type", json.dumps(good(ts="yesterday")).encode(), b"u1"),
    ("wrong_type", json.dumps(good(user_id=True)).encode(), b"u1"),
    ("wrong_type", json.dumps(good(item_id=[1])).encode(), b"u1"),
    ("wrong_type", json.dumps(good(event_id=5)).encode(), b"u1"),
    ("wrong_type", json.dumps(good(context="x")).encode(), b"u1"),
    ("wrong_type", json.dumps(good(weight="heavy")).encode(), b"u1"),
    ("invalid_value", json.dumps(good(item_id="")).encode(), b"u1"),
    ("invalid_value", json.dumps(good(item_id="x" * 129)).encode(), b"u1"),
    ("invalid_value", json.dumps(good(ts=-1)).encode(), b"u1"),
    ("invalid_value", json.dumps(good(item_id=-3)).encode(), b"u1"),
    ("invalid_value", json.dumps(good(weight=1e9)).encode(), b"u1"),
    ("unknown_type", json.dumps(good(type="teleport")).encode(), b"u1"),
    ("key_mismatch", json.dumps(good()).encode(), b"u2"),
    ("key_mismatch", json.dumps(good()).encode(), None),
    ("future_timestamp", json.dumps(good(ts=NOW * 1000)).encode(), b"u1"),
    ("future_timestamp", json.dumps(good(ts=NOW + 301)).encode(), b"u1"),
    # what later stages could not hold: control characters, integers no id field can carry
    ("invalid_value", json.dumps(good(item_id="a\u0007b")).encode(), b"u1"),
    ("invalid_value", json.dumps(good(event_id="e\n1")).encode(), b"u1"),
    (
        "invalid_value",
        json.dumps(good(user_id="__faust\u0000offset__")).encode(),
        b"__faust\x00offset__",
    ),
    ("invalid_value", json.dumps(good(user_id=10**199)).encode(), str(10**199).encode()),
]

# cases JSON Schema cannot express (lone surrogates, number range, nesting depth)
BEYOND_SCHEMA: list[tuple[str, bytes, bytes | None]] = [
    ("invalid_value", json.dumps(good(user_id="\ud800")).encode(), b"u1"),
    ("invalid_value", json.dumps(good(item_id="x\udfff")).encode(), b"u1"),
    ("invalid_value", json.dumps(good(event_id="\ud800")).encode(), b"u1"),
    ("invalid_value", json.dumps(good(ts=0)).encode().replace(b'"ts": 0', b'"ts": 1e400'), b"u1"),
    (
        "invalid_value",
        json.dumps(good(weight=0)).encode().replace(b'"weight": 0', b'"weight": -1e999'),
        b"u1",
    ),
    (
        "invalid_value",
        json.dumps(good(ts=10**400 // 10**399))
        .encode()
        .replace(b'"ts": 10', b'"ts": 1' + b"0" * 400),
        b"u1",
    ),
    (
        "invalid_value",
        json.dumps(good(item_id=1)).encode().replace(b'"item_id": 1', b'"item_id": ' + b"7" * 5000),
        b"u1",
    ),
    (
        "invalid_value",
        json.dumps(good(context={"n": 1}))
        .encode()
        .replace(b'{"n": 1}', b'{"n": ' * 17 + b"1" + b"}" * 17),
        b"u1",
    ),
    ("malformed_json", b"[" * 2000 + b"]" * 2000, b"u1"),
    (
        "malformed_json",
        json.dumps(good(context={"n": 1}))
        .encode()
        .replace(b'{"n": 1}', b'{"n": ' * 2000 + b"1" + b"}" * 2000),
        b"u1",
    ),
]


@pytest.mark.parametrize(("reason", "value", "key"), CASES + BEYOND_SCHEMA)
def test_invalid_events_get_their_reason(reason: str, value: bytes, key: bytes | None) -> None:
    with pytest.raises(InvalidEvent) as info:
        check(value, key)
    assert info.value.reason == reason
    assert reason in REASONS
    assert info.value.detail  # a sentence for a person


def test_oversized_is_checked_before_parsing() -> None:
    big = json.dumps(good(context={"pad": "x" * 20_000})).encode()
    assert check(json.dumps(good(context={"n": [[[1]]]})).encode()).context == {"n": [[[1]]]}
    with pytest.raises(InvalidEvent) as info:
        check(big)
    assert info.value.reason == "oversized"
    assert "16384" in info.value.detail
    assert check(big, limits=Limits(max_bytes=64 * 1024)).event_id == "e1"


def test_every_reason_is_exercised() -> None:
    assert {r for r, _, _ in CASES} | {"oversized"} == set(REASONS)


def test_future_tolerance_is_configurable() -> None:
    value = json.dumps(good(ts=NOW + 100)).encode()
    assert check(value).ts == NOW + 100
    with pytest.raises(InvalidEvent):
        check(value, limits=Limits(max_future_s=10))


@pytest.mark.parametrize(("reason", "value", "key"), CASES)
def test_schema_rejects_what_the_validator_rejects(
    reason: str, value: bytes, key: bytes | None
) -> None:
    """The schema can't see keys, sizes or clocks; everything else must agree."""
    if reason in ("key_mismatch", "future_timestamp", "malformed_json"):
        return
    data = json.loads(value)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


def test_schema_accepts_what_the_validator_accepts() -> None:
    for event in (
        good(),
        good(user_id=3, item_id=9, weight=-1, context={"k": [1]}),
        good(type="purchase"),
    ):
        jsonschema.validate(event, SCHEMA)
        check(json.dumps(event).encode(), str(event["user_id"]).encode())


def test_ids_reach_the_limits_and_no_further() -> None:
    top = json.dumps(good(user_id=10**127, item_id="i" * 128)).encode()
    event = check(top, str(10**127).encode())
    assert (len(event.user_id), len(event.item_id)) == (128, 128)
    assert check(json.dumps(good(item_id="café ☕ 東京")).encode()).item_id == "café ☕ 東京"
    with pytest.raises(InvalidEvent, match="lone surrogate"):
        check(json.dumps(good(item_id="\ud83d")).encode())


def test_a_skip_never_counts_as_interest_whatever_its_weight() -> None:
    skip = check(json.dumps(good(type="skip", weight=-1000)).encode())
    assert skip.strength == -1000.0
    assert check(json.dumps(good(type="skip", weight=2)).encode()).strength == -2.0
    assert check(json.dumps(good(type="rate", weight=-2)).encode()).strength == -2.0
