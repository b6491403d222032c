"""The bad-input corpus of ``lsi bench faults``: raw records and the dead-letter reason each earns.

Every :class:`Case` is the exact bytes a producer sends (key, value, headers; to
``lsi.events`` or, as a stray write, to one of the internal topics the workers consume,
``lsi.events.rekeyed`` and ``lsi.item-deltas``) and the ``lsi-dlq-reason`` the workers must give it. A case whose
``expect`` is empty is an *edge that must be accepted* (a ``skip`` with weight −1000, an id
of exactly 128 characters, emoji ids …): it raises its own user's count by one and must not
be dead-lettered. Each case breaks one rule of an otherwise valid record, so its reason is
unambiguous; where the contract allows two readings (an integer ``user_id`` on
``lsi.events.rekeyed`` that differs from the key) ``expect`` lists both.

The reasons follow docs/clients.md, "Dead letters", and the stray-write rules of the agents:
``internal_error`` is never right for any case. The harness (:mod:`lsi.bench.faults`)
matches a case to its dead letters by the ``lsi-source-topic`` / ``-partition`` / ``-offset``
headers against the offsets it produced at, never by parsing the copied value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lsi.wire.partitioning import key_for_partition, partition_of

__all__ = ["CASE_HEADER", "TARGETS", "Case", "build_corpus"]

#: topics a case can be written to (resolved to the run's topic names by the harness)
TARGETS = ("events", "rekeyed", "item-deltas")

#: a plain client header every case carries (its name): the DLQ copy must keep it
CASE_HEADER = "fault-case"

#: the worker's event size limit (docs/configuration.md: ``LSI_MAX_EVENT_BYTES``)
MAX_EVENT_BYTES = 16 * 1024

#: just under what the broker and Faust's producer take (1,048,588 / 1,000,000 bytes)
NEAR_BROKER_LIMIT = 1_000_000


@dataclass(frozen=True, slots=True)
class Case:
    """One record of the corpus.

    Attributes:
        name: unique, stable, ``[a-z0-9_-]``.
        category: the family it belongs to (``malformed_json``, ``internal`` …, ``accepted``).
        target: one of :data:`TARGETS`.
        key: the message key as sent (``None``: no key).
        value: the message value as sent (``None``: a tombstone).
        expect: reason codes, any of which is right; empty: the record must be accepted.
        headers: client headers, sent in this order (:data:`CASE_HEADER` comes first).
        partition: an explicit partition (``None``: the producer's murmur2 partitioner).
        user: accepted cases: the canonical user whose count it raises.
        event_id: accepted cases: its event id.
        note: what it probes, for the report.
    """

    name: str
    category: str
    target: str
    key: bytes | None
    value: bytes | None
    expect: tuple[str, ...]
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None
    user: str | None = None
    event_id: str | None = None
    note: str = ""

    @property
    def accepted(self) -> bool:
        return not self.expect

    @property
    def size(self) -> int:
        return 0 if self.value is None else len(self.value)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.value or b"").hexdigest()


@dataclass
class _Builder:
    """Collects cases; ``run`` keeps ids unique per run, ``now`` keeps timestamps valid."""

    run: str
    now: float
    partitions: int
    cases: list[Case] = field(default_factory=list)

    def event(self, name: str, **fields: Any) -> dict[str, Any]:
        """A valid event of user ``c-<name>``; ``fields`` replace or (``...``) drop fields."""
        base: dict[str, Any] = {
            "event_id": f"{self.run}:{name}",
            "user_id": f"c-{name}",
            "item_id": f"fault-item-{name}",
            "type": "click",
            "ts": round(self.now - 60.0, 3),
        }
        base.update(fields)
        return {k: v for k, v in base.items() if v is not ...}

    def add(
        self,
        name: str,
        category: str,
        value: bytes | None,
        expect: tuple[str, ...],
        key: bytes | str | None = "",
        target: str = "events",
        note: str = "",
        headers: tuple[tuple[str, bytes], ...] = (),
        partition: int | None = None,
        user: str | None = None,
        event_id: str | None = None,
    ) -> None:
        """``key=""`` (the default) means the key of user ``c-<name>``."""
        raw_key = f"c-{name}".encode() if key == "" else key
        if isinstance(raw_key, str):
            raw_key = raw_key.encode()
        self.cases.append(
            Case(
                name,
                category,
                target,
                raw_key,
                value,
                expect,
                ((CASE_HEADER, name.encode()), *headers),
                partition,
                user,
                event_id,
                note,
            )
        )

    def bad(self, name: str, reason: str, note: str, **fields: Any) -> None:
        """An event with ``fields`` changed (JSON-encoded), expected to fail with ``reason``."""
        self.add(name, reason, dumps(self.event(name, **fields)), (reason,), note=note)

    def raw(
        self, name: str, reason: str, note: str, key: bytes | str | None = "", **raw: str
    ) -> None:
        """An event whose fields ``raw`` are spliced in as raw JSON text (1e400, NaN …)."""
        self.add(name, reason, splice(self.event(name), **raw), (reason,), key=key, note=note)

    def good(
        self,
        name: str,
        note: str,
        user: str,
        value: bytes | None = None,
        **fields: Any,
    ) -> None:
        """An edge that must be accepted: one event of ``user`` (canonical id)."""
        data = self.event(name, **fields)
        raw = value if value is not None else dumps(data, ascii_only=False)
        self.add(
            name,
            "accepted",
            raw,
            (),
            key=user.encode(),
            note=note,
            user=user,
            event_id=data["event_id"],
        )


def dumps(data: Any, ascii_only: bool = True) -> bytes:
    """Compact JSON; ``ascii_only`` escapes non-ASCII (so lone surrogates survive as text)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=ascii_only).encode(
        "utf-8", "surrogatepass"
    )


def splice(data: dict[str, Any], **raw: str) -> bytes:
    """``data`` as JSON with the fields of ``raw`` set to raw JSON text (not valid Python
    values: ``NaN``, ``1e400``, 5,000-digit integers)."""
    marked = {**data, **{k: f"@@{k}@@" for k in raw}}
    text = dumps(marked).decode()
    for k, v in raw.items():
        text = text.replace(f'"@@{k}@@"', v)
    return text.encode()


def nested(depth: int, leaf: str = "1") -> str:
    """``depth`` nested JSON arrays around ``leaf``."""
    return "[" * depth + leaf + "]" * depth


def build_corpus(run: str, now: float, partitions: int) -> list[Case]:
    """The whole corpus for one run.

    Args:
        run: a token unique to the run, part of every event id.
        now: the harness clock (timestamps are ``now - 60`` unless a case is about them).
        partitions: partitions of the run's topics (item-delta cases route by murmur2).
    """
    b = _Builder(run, now, partitions)
    for add in _FAMILIES:
        add(b)
    names = [c.name for c in b.cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return b.cases


def _oversized(b: _Builder) -> None:
    pad = MAX_EVENT_BYTES  # context padding that pushes a valid event over the limit

    def padded(name: str, size: int) -> bytes:
        body = dumps(b.event(name, context={"pad": ""}))
        return body.replace(b'"pad":""', b'"pad":"' + b"x" * (size - len(body)) + b'"')

    note = "checked before parsing; the DLQ copy is a bounded prefix with size and sha256"
    b.add(
        "oversized-by-one",
        "oversized",
        padded("oversized-by-one", pad + 1),
        ("oversized",),
        note="a valid event one byte over 16 KiB; " + note,
    )
    b.add(
        "oversized-100k",
        "oversized",
        padded("oversized-100k", 100_000),
        ("oversized",),
        note="a valid event of 100 kB; " + note,
    )
    b.add(
        "oversized-near-broker-limit",
        "oversized",
        padded("oversized-near-broker-limit", NEAR_BROKER_LIMIT),
        ("oversized",),
        note="1,000,000 bytes, just under the broker's message limit; a full copy could "
        "not be produced; " + note,
    )
    b.add(
        "oversized-not-json",
        "oversized",
        b"\xff" * (pad * 2),
        ("oversized",),
        note="32 KiB of non-UTF-8 bytes: size is judged before the content",
    )


def _malformed(b: _Builder) -> None:
    def m(name: str, value: bytes | None, note: str) -> None:
        b.add(name, "malformed_json", value, ("malformed_json",), note=note)

    ok = dumps(b.event("malformed-x"))
    m("empty-value", b"", "an empty value")
    m("tombstone", None, "a null value (tombstone)")
    m("not-utf8", b"\xff\xfe\xfd{}", "bytes that are not UTF-8")
    m("utf8-overlong", ok.replace(b'"click"', b'"cl\xc0\xafick"'), "an overlong UTF-8 sequence")
    m(
        "utf8-encoded-surrogate",
        ok.replace(b'"click"', b'"cl\xed\xa0\x80ick"'),
        "a surrogate encoded as UTF-8 bytes (CESU), which UTF-8 forbids",
    )
    m("utf8-bom", b"\xef\xbb\xbf" + ok, "a UTF-8 byte-order mark before the object")
    m("utf16", json.dumps(b.event("utf16")).encode("utf-16"), "the event encoded as UTF-16")
    m("not-json", b"{not json", "not JSON")
    m("truncated", ok[: len(ok) // 2], "an object cut in half")
    m("trailing-garbage", ok + b" x", "a valid object followed by garbage")
    m("two-objects", ok + ok, "two objects back to back")
    m("single-quotes", ok.replace(b'"', b"'"), "single-quoted strings")
    m("ts-nan", splice(b.event("ts-nan"), ts="NaN"), "ts = NaN (not JSON)")
    m("weight-infinity", splice(b.event("weight-infinity"), weight="Infinity"), "weight = Infinity")
    m(
        "weight-minus-infinity",
        splice(b.event("weight-minus-infinity"), weight="-Infinity"),
        "weight = -Infinity",
    )
    m("nested-1000-top", nested(1000).encode(), "1,000 nested arrays as the whole value")
    m(
        "nested-2000-context",
        splice(b.event("nested-2000-context"), context='{"deep":' + nested(2000) + "}"),
        "a context object nesting 2,000 arrays",
    )


def _not_an_object(b: _Builder) -> None:
    for name, value in (
        ("array", b"[1,2,3]"),
        ("string", b'"click"'),
        ("number", b"42"),
        ("null", b"null"),
        ("bool", b"true"),
    ):
        b.add(
            f"json-{name}", "not_an_object", value, ("not_an_object",), note=f"valid JSON, a {name}"
        )


def _missing_and_unknown(b: _Builder) -> None:
    for f in ("event_id", "user_id", "item_id", "type", "ts"):
        b.bad(f"missing-{f.replace('_', '-')}", "missing_field", f"no {f}", **{f: ...})
    b.bad("unknown-field", "unknown_field", "an extra top-level field", extra=1)
    b.bad("unknown-field-case", "unknown_field", "User_id beside user_id", User_id="x")
    b.bad(
        "unknown-field-reserved",
        "unknown_field",
        "a top-level field named lsi-src",
        **{"lsi-src": "0:0"},
    )


def _wrong_type(b: _Builder) -> None:
    w = "wrong_type"
    b.bad("ts-string", w, "ts as a string", ts="now")
    b.bad("ts-bool", w, "ts as a boolean", ts=True)
    b.bad("ts-null", w, "ts = null", ts=None)
    b.bad("ts-array", w, "ts as an array", ts=[1])
    b.raw("user-id-bool", w, "user_id as a boolean", key=b"true", user_id="true")
    b.raw("user-id-float", w, "user_id as a float", key=b"1.5", user_id="1.5")
    b.raw("user-id-list", w, "user_id as a list", key=b"[1]", user_id="[1]")
    b.bad("item-id-object", w, "item_id as an object", item_id={"id": 1})
    b.bad("event-id-number", w, "event_id as a number", event_id=42)
    b.bad("type-number", w, "type as a number", type=1)
    b.bad("type-null", w, "type = null", type=None)
    b.bad("context-array", w, "context as an array", context=[1])
    b.bad("context-string", w, "context as a string", context="web")
    b.bad("weight-string", w, "weight as a string", weight="1")


def _invalid_value(b: _Builder) -> None:
    v = "invalid_value"
    long = "x" * 129
    b.bad("event-id-empty", v, "an empty event_id", event_id="")
    b.raw("user-id-empty", v, "an empty user_id", key=b"", user_id='""')
    b.bad("item-id-empty", v, "an empty item_id", item_id="")
    b.bad("event-id-129", v, "a 129-character event_id", event_id=long)
    b.raw("user-id-129", v, "a 129-character user_id", key=long.encode(), user_id=f'"{long}"')
    b.bad("item-id-129", v, "a 129-character item_id", item_id=long)
    b.raw("user-id-negative", v, "a negative integer user_id", key=b"-1", user_id="-1")
    b.bad("item-id-negative", v, "a negative integer item_id", item_id=-5)
    digits129, digits5000 = "9" * 129, "7" * 5000
    b.raw(
        "user-id-129-digits",
        v,
        "an integer user_id of 129 digits",
        key=digits129.encode(),
        user_id=digits129,
    )
    b.raw(
        "user-id-5000-digits",
        v,
        "an integer user_id of 5,000 digits (past Python's 4,300-digit int parsing limit)",
        key=digits5000.encode(),
        user_id=digits5000,
    )
    b.raw("item-id-5000-digits", v, "an integer item_id of 5,000 digits", item_id=digits5000)
    for name, field_, text in (
        ("user-id-nul", "user_id", "a\u0000b"),
        ("user-id-bel", "user_id", "a\u0007b"),
        ("user-id-del", "user_id", "a\u007fb"),
        ("item-id-nul", "item_id", "\u0000"),
        ("event-id-esc", "event_id", f"{b.run}:\u001b[31m"),
    ):
        key = text.encode() if field_ == "user_id" else f"c-{name}".encode()
        b.add(
            name,
            v,
            dumps(b.event(name, **{field_: text})),
            (v,),
            key=key,
            note=f"{field_} with a control character",
        )
    for name, field_, text in (
        ("user-id-lone-surrogate", "user_id", "\ud800"),
        ("item-id-lone-surrogate", "item_id", "i\udfff"),
        ("event-id-lone-surrogate", "event_id", f"{b.run}:\ud800x"),
    ):
        key = text.encode("utf-8", "surrogatepass") if field_ == "user_id" else f"c-{name}".encode()
        b.add(
            name,
            v,
            dumps(b.event(name, **{field_: text})),
            (v,),
            key=key,
            note=f"{field_} with a lone surrogate (\\ud800 escape): no UTF-8 encoding",
        )
    reserved = "__faust\u0000offset__"
    b.add(
        "user-id-reserved",
        v,
        dumps(b.event("user-id-reserved", user_id=reserved)),
        (v,),
        key=reserved.encode(),
        note="Faust's RocksDB offset key as user_id",
    )
    b.bad("item-id-reserved", v, "Faust's RocksDB offset key as item_id", item_id=reserved)
    b.bad("ts-negative", v, "a negative ts", ts=-1)
    b.raw("ts-1e400", v, "ts = 1e400 (parses as infinity)", ts="1e400")
    b.raw("ts-400-digits", v, "ts as a 400-digit integer (overflows a float)", ts="9" * 400)
    b.raw("weight-1e400", v, "weight = 1e400", weight="1e400")
    b.raw("weight-400-digits", v, "weight as a 400-digit integer", weight="9" * 400)
    b.bad("weight-too-big", v, "weight 1000.5 (limit ±1000)", weight=1000.5)
    b.bad("weight-too-small", v, "weight -1001", weight=-1001)


def _type_key_clock(b: _Builder) -> None:
    for name, t in (
        ("teleport", "teleport"),
        ("upper-case", "VIEW"),
        ("empty", ""),
        ("trailing-space", "view "),
    ):
        b.bad(f"type-{name}", "unknown_type", f"type {t!r}", type=t)
    k = "key_mismatch"
    b.add("key-none", k, dumps(b.event("key-none")), (k,), key=None, note="no key")
    b.add(
        "key-not-utf8",
        k,
        dumps(b.event("key-not-utf8")),
        (k,),
        key=b"\xff\xfe",
        note="a key that is not UTF-8",
    )
    b.add(
        "key-other-user",
        k,
        dumps(b.event("key-other-user")),
        (k,),
        key=b"c-someone-else",
        note="the key names another user",
    )
    b.add(
        "key-nfd",
        k,
        dumps(b.event("key-nfd", user_id="c-\u00e9"), ascii_only=False),
        (k,),
        key="c-e\u0301".encode(),
        note="user_id é precomposed (NFC), key decomposed (NFD)",
    )
    b.raw("key-leading-zero", k, "integer user_id 7, key '07'", key=b"07", user_id="7")
    b.add(
        "key-trailing-newline",
        k,
        dumps(b.event("key-trailing-newline")),
        (k,),
        key=b"c-key-trailing-newline\n",
        note="the key with a trailing newline",
    )
    f = "future_timestamp"
    b.bad("ts-milliseconds", f, "ts in milliseconds", ts=round(b.now * 1000))
    b.bad("ts-microseconds", f, "ts in microseconds", ts=round(b.now * 1_000_000))
    b.bad("ts-one-hour-ahead", f, "ts one hour ahead (limit 300 s)", ts=round(b.now + 3600))


def _spoofed_headers(b: _Builder) -> None:
    forged = (
        ("lsi-dlq-reason", b"forged"),
        ("lsi-source-offset", b"0"),
        ("lsi-source-topic", b"forged"),
    )
    b.add(
        "spoofed-dlq-headers",
        "malformed_json",
        b"{not json",
        ("malformed_json",),
        headers=forged,
        note="client-sent lsi-dlq-reason / lsi-source-* headers must not reach the DLQ copy",
    )
    b.add(
        "spoofed-dlq-reason-only",
        "key_mismatch",
        dumps(b.event("spoofed-dlq-reason-only")),
        ("key_mismatch",),
        key=b"c-other",
        headers=(("lsi-dlq-reason", b"oversized"),),
        note="a forged reason on an event that fails for another reason",
    )


def _rekeyed(b: _Builder) -> None:
    """Stray writes to ``lsi.events.rekeyed`` (only the workers should write it)."""
    n = b.partitions

    def stray(
        name: str,
        expect: tuple[str, ...],
        value: bytes | None,
        note: str,
        key: bytes | str | None = "",
        src: bytes | None = None,
    ) -> None:
        user_key = f"c-{name}".encode() if key == "" else key
        part = partition_of(user_key, n) if isinstance(user_key, bytes) else 0
        header = src if src is not None else f"{part}:{len(b.cases)}".encode()
        b.add(
            f"rekeyed-{name}",
            "internal",
            value,
            expect,
            key=user_key,
            target="rekeyed",
            headers=(("lsi-src", header),),
            note=note,
        )

    ev = b.event
    stray(
        "unknown-type",
        ("unknown_type",),
        dumps(ev("rekeyed-unknown-type", user_id="c-unknown-type", type="teleport")),
        "type 'teleport'",
    )
    stray(
        "int-user-mismatch",
        ("wrong_type", "key_mismatch"),
        dumps(ev("rekeyed-int-user-mismatch", user_id=7)),
        "an integer user_id that differs from the key",
    )
    stray(
        "missing-item",
        ("missing_field",),
        dumps(ev("rekeyed-missing-item", user_id="c-missing-item", item_id=...)),
        "no item_id",
    )
    stray("not-json", ("malformed_json",), b"{not json", "not JSON")
    stray("empty", ("malformed_json",), b"", "an empty value")
    stray(
        "nan",
        ("malformed_json",),
        splice(ev("rekeyed-nan", user_id="c-nan"), ts="NaN"),
        "ts = NaN",
    )
    stray("not-object", ("not_an_object",), b"[1]", "a JSON array")
    stray(
        "ts-string",
        ("wrong_type",),
        dumps(ev("rekeyed-ts-string", user_id="c-ts-string", ts="now")),
        "ts as a string",
    )
    stray(
        "key-mismatch",
        ("key_mismatch",),
        dumps(ev("rekeyed-key-mismatch", user_id="c-someone")),
        "user_id differs from the key",
    )
    stray(
        "bad-src-header",
        ("invalid_value",),
        dumps(ev("rekeyed-bad-src-header", user_id="c-bad-src-header")),
        "a valid record with lsi-src 'x:y'",
        src=b"x:y",
    )


def _item_deltas(b: _Builder) -> None:
    """Stray writes to ``lsi.item-deltas``: bundles ``{item: {"p", "t", "c"}}``."""
    n = b.partitions
    ts = round(b.now - 60.0, 3)

    def delta(
        name: str,
        expect: tuple[str, ...],
        value: bytes,
        note: str,
        item: str | None = None,
        partition: int | None = None,
    ) -> None:
        part = (
            partition
            if partition is not None
            else (partition_of(item.encode("utf-8", "surrogatepass"), n) if item is not None else 0)
        )
        b.add(
            f"deltas-{name}",
            "internal",
            value,
            expect,
            target="item-deltas",
            key=key_for_partition("deltas", part, n),
            partition=part,
            note=note,
        )

    def bundle(item: str, d: dict[str, Any] | str) -> bytes:
        inner = d if isinstance(d, str) else dumps(d).decode()
        return ("{" + dumps(item).decode() + ":" + inner + "}").encode()

    item = "fault-item-delta"

    def ok(**kw: Any) -> dict[str, Any]:
        return {"p": 1.0, "t": ts, "c": {}, **kw}

    delta("not-json", ("malformed_json",), b"{not json", "not JSON")
    delta(
        "nan",
        ("malformed_json",),
        bundle(item, f'{{"p":NaN,"t":{ts},"c":{{}}}}'),
        "p = NaN",
        item=item,
    )
    delta("not-object", ("not_an_object",), b"[1,2]", "a JSON array")
    delta("pop-string", ("wrong_type",), bundle(item, ok(p="1")), "a string popularity", item=item)
    delta(
        "pop-negative",
        ("invalid_value",),
        bundle(item, ok(p=-5.0)),
        "a negative popularity",
        item=item,
    )
    delta(
        "pop-infinite",
        ("invalid_value",),
        bundle(item, f'{{"p":1e400,"t":{ts},"c":{{}}}}'),
        "p = 1e400",
        item=item,
    )
    delta(
        "ts-infinite",
        ("invalid_value",),
        bundle(item, '{"p":1,"t":1e400,"c":{}}'),
        "t = 1e400",
        item=item,
    )
    delta(
        "covis-negative",
        ("invalid_value",),
        bundle(item, ok(c={"fault-item-other": -3.0})),
        "a negative co-visitation weight",
        item=item,
    )
    for name, bad_item in (("empty", ""), ("nul", "a\u0000b"), ("129", "y" * 129)):
        delta(
            f"item-{name}",
            ("invalid_value",),
            bundle(bad_item, ok()),
            f"item id {name}",
            item=bad_item,
        )
    delta(
        "neighbour-129",
        ("invalid_value",),
        bundle(item, ok(c={"z" * 129: 1.0})),
        "a 129-character neighbour id",
        item=item,
    )
    home = partition_of(item.encode(), n)
    delta(
        "wrong-partition",
        ("key_mismatch",),
        bundle(item, ok()),
        "an item whose murmur2 partition is not the record's",
        partition=(home + 1) % n,
    )


def _accepted(b: _Builder) -> None:
    """Edges of the contract that are valid: each must raise its user's count by one."""
    b.good(
        "accept-skip-min-weight",
        "a skip with weight -1000",
        "edge-skip",
        type="skip",
        weight=-1000,
        user_id="edge-skip",
    )
    b.good(
        "accept-weight-max",
        "a rate with weight 1000",
        "edge-weight",
        type="rate",
        weight=1000,
        user_id="edge-weight",
    )
    b.good(
        "accept-int-user", "an integer user_id (key '987654321')", "987654321", user_id=987654321
    )
    b.good(
        "accept-int-item-zero", "item_id 0", "edge-item-zero", user_id="edge-item-zero", item_id=0
    )
    id128 = "u" * 128
    b.good(
        "accept-ids-128",
        "ids of exactly 128 characters",
        id128,
        user_id=id128,
        item_id="i" * 128,
        event_id=(b.run + ":" + "e" * 128)[:128],
    )
    emoji = "\U0001f600" * 128
    b.good("accept-emoji-128", "a user_id of 128 emoji (512 bytes of UTF-8)", emoji, user_id=emoji)
    for name, user in (("cjk", "edge-用户"), ("rtl", "edge-مستخدم"), ("combining", "edge-e\u0301")):
        b.good(f"accept-{name}", f"a {name} user_id", user, user_id=user)
    esc = "edge-\u00e9t\u00e9"
    b.good(
        "accept-escaped-unicode",
        "a \\u00e9-escaped user_id with a UTF-8 key",
        esc,
        value=dumps(b.event("accept-escaped-unicode", user_id=esc)),
        user_id=esc,
    )
    body = dumps(b.event("accept-exactly-16k", user_id="edge-16k", context={"pad": ""}))
    exact = body.replace(b'"pad":""', b'"pad":"' + b"x" * (MAX_EVENT_BYTES - len(body)) + b'"')
    b.good(
        "accept-exactly-16k",
        "an event of exactly 16,384 bytes",
        "edge-16k",
        value=exact,
        user_id="edge-16k",
    )
    b.good(
        "accept-nested-context",
        "a context nesting 8 levels",
        "edge-nested",
        user_id="edge-nested",
        context=json.loads('{"a":' * 8 + "1" + "}" * 8),
    )
    b.good(
        "accept-old-ts",
        "an event ten years old",
        "edge-old",
        user_id="edge-old",
        ts=round(b.now - 10 * 365 * 86400.0),
    )


_FAMILIES: tuple[Callable[[_Builder], None], ...] = (
    _oversized,
    _malformed,
    _not_an_object,
    _missing_and_unknown,
    _wrong_type,
    _invalid_value,
    _type_key_clock,
    _spoofed_headers,
    _rekeyed,
    _item_deltas,
    _accepted,
)
