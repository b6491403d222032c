"""Typed wire records: click events in, recommendations out.

These are the contracts of the Kafka topics (``lsi.events``, ``lsi.events.rekeyed`` and the
interaction log ``lsi.interactions`` carry :class:`Event`, ``lsi.recommendations`` carries
:class:`Recommendation`). JSON Schemas for both ship in ``lsi/wire/schemas/``;
:mod:`lsi.wire.validation` enforces the event schema wherever a record enters a worker or the
refresh job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from lsi.errors import InvalidRecord

__all__ = [
    "ARMS",
    "EVENT_TYPES",
    "NEGATIVE_CODES",
    "SOURCE_HEADER",
    "TYPE_CODES",
    "TYPE_WEIGHTS",
    "Event",
    "ItemDelta",
    "RecItem",
    "Recommendation",
    "ScoredItem",
    "decode_bundle",
    "encode_bundle",
    "parse_recommendation",
]

#: Header of a re-keyed event and of an interaction-log record: ``<partition>:<offset>`` of
#: the event in ``lsi.events`` (set by the worker; lets later readers recognise a copy).
SOURCE_HEADER = "lsi-src"

#: The arms of an experiment between snapshots (:mod:`lsi.core.experiment`): ``control`` is
#: served by the live snapshot, ``candidate`` by the experiment's candidate.
ARMS: tuple[str, ...] = ("control", "candidate")

#: Event types a client may send, in a fixed order (the order is the wire-free integer code
#: that per-user state stores).
EVENT_TYPES: tuple[str, ...] = ("view", "click", "cart", "like", "purchase", "skip", "rate")
TYPE_CODES: dict[str, int] = {name: code for code, name in enumerate(EVENT_TYPES)}

#: Strength of each type as implicit feedback. ``skip`` is negative: it never counts as
#: interest in co-visitation or popularity. ``rate`` is scaled by the event's ``weight``.
TYPE_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 1.0,
    "cart": 3.0,
    "like": 2.0,
    "purchase": 5.0,
    "skip": -1.0,
    "rate": 1.0,
}

#: Codes of the types that are not interest (``skip``): never an anchor of the statistics
#: scorer, never a source of a folded-in long-term vector.
NEGATIVE_CODES: frozenset[int] = frozenset(
    code for code, name in enumerate(EVENT_TYPES) if TYPE_WEIGHTS[name] <= 0
)


@dataclass(frozen=True, slots=True)
class Event:
    """One user interaction, as validated at the boundary.

    Attributes:
        event_id: client-chosen unique id; duplicates are dropped.
        user_id: the user (also the Kafka message key).
        item_id: the item interacted with.
        type: one of :data:`EVENT_TYPES`.
        ts: event time, seconds since the Unix epoch.
        weight: optional strength (e.g. a rating); ``None`` means 1.
        context: optional free-form JSON object (device, page, original timestamp …).
    """

    event_id: str
    user_id: str
    item_id: str
    type: str
    ts: float
    weight: float | None = None
    context: dict[str, Any] | None = None

    @property
    def strength(self) -> float:
        """Implicit-feedback strength: type weight times the event's own weight.

        A negative type (``skip``) never counts as interest: its strength is
        ``-|weight|``, so ``{"type": "skip", "weight": -1000}`` is a strong skip, not +1000.
        """
        base = TYPE_WEIGHTS[self.type]
        if self.weight is None:
            return base
        if base < 0:  # a negative type stays negative whatever the weight's sign
            return base * abs(self.weight)
        return base * self.weight

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "item_id": self.item_id,
            "type": self.type,
            "ts": self.ts,
        }
        if self.weight is not None:
            out["weight"] = self.weight
        if self.context is not None:
            out["context"] = self.context
        return out

    def to_json(self) -> bytes:
        """Canonical compact JSON (orjson; the stdlib for what orjson cannot encode: an
        integer beyond 64 bits or a lone surrogate in ``context``)."""
        data = self.to_dict()
        try:
            return orjson.dumps(data)
        except TypeError:  # orjson.JSONEncodeError
            return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_trusted(cls, data: dict[str, Any]) -> Event:
        """Build from a dict that already passed :func:`lsi.wire.validation.validate_event`.

        No checks are repeated: for data this process validated itself.
        """
        return cls(
            event_id=data["event_id"],
            user_id=data["user_id"],
            item_id=data["item_id"],
            type=data["type"],
            ts=float(data["ts"]),
            weight=data.get("weight"),
            context=data.get("context"),
        )


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """An item with one score (the per-source lists)."""

    item_id: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "score": round(self.score, 6)}


@dataclass(frozen=True, slots=True)
class RecItem:
    """An item of the fused list with its attribution.

    With the fused scorer (a snapshot with the encoder, :mod:`lsi.serving.fusion`) ``score`` is the
    item's fused probability and ``long_score`` / ``short_score`` are its probabilities under
    the long-term and the short-term source alone. With the statistics scorer
    (:mod:`lsi.core.scoring`) ``score = long_weight * long_score + (1 - long_weight) *
    short_score`` over rescaled scores.
    """

    item_id: str
    score: float
    long_score: float
    short_score: float
    #: the item's categories in the catalogue (:mod:`lsi.wire.catalogue`); empty without one
    categories: tuple[str, ...] = ()
    #: a new catalogue item placed by the rules' exploration (:func:`lsi.core.rules.explore`),
    #: not scored (its scores are 0); written only when true
    explore: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "item_id": self.item_id,
            "score": round(self.score, 6),
            "long_score": round(self.long_score, 6),
            "short_score": round(self.short_score, 6),
        }
        if self.categories:
            out["categories"] = list(self.categories)
        if self.explore:
            out["explore"] = True
        return out


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A recommendation record (``lsi.recommendations``, key = ``user_id``).

    Attributes:
        user_id: the user.
        ts: time the list was computed (seconds since the epoch).
        model_version: the snapshot that scored it (``baseline`` before any model exists).
        long_weight: the gate, in [0, 1]: how much the long-term view counted.
        items: the fused top-K, best first.
        short_term: the short-term source's own top list.
        long_term: the long-term source's own top list (empty without a long-term model).
        source: what produced the list: ``covisit`` (from the user's recent items),
            ``trending`` (cold start), ``fused`` (long-term snapshot and short-term
            path), ``long_term`` (the snapshot alone, ``LSI_SCORER=long_only``) or
            ``short_term`` (the snapshot's sequence encoder alone: ``LSI_SCORER=short_only``,
            or a user the snapshot's long-term part does not know yet and who has no
            positive event on an item it knows to be folded in from).
        event_ts: event time of the newest event behind the list (``None`` on request).
        emitted_at: wall-clock time the record was sent.
        trigger: ``event`` (emitted by the stream) or ``request`` (HTTP).
        history_size: events in the user's state when the list was computed.
        experiment: the experiment running when it was computed (``lsi models experiment``),
            or ``None``; written only when set.
        arm: the user's arm in it, ``control`` (the live snapshot scored the list) or
            ``candidate`` (the experiment's candidate did); set exactly when ``experiment`` is.
    """

    user_id: str
    ts: float
    model_version: str
    long_weight: float
    items: tuple[RecItem, ...]
    short_term: tuple[ScoredItem, ...] = ()
    long_term: tuple[ScoredItem, ...] = ()
    source: str = "covisit"
    event_ts: float | None = None
    emitted_at: float = 0.0
    trigger: str = "event"
    history_size: int = 0
    experiment: str | None = None
    arm: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "user_id": self.user_id,
            "ts": self.ts,
            "model_version": self.model_version,
            "long_weight": round(self.long_weight, 6),
            "items": [i.to_dict() for i in self.items],
            "short_term": [i.to_dict() for i in self.short_term],
            "long_term": [i.to_dict() for i in self.long_term],
            "source": self.source,
            "event_ts": self.event_ts,
            "emitted_at": self.emitted_at,
            "trigger": self.trigger,
            "history_size": self.history_size,
        }
        if self.experiment is not None:
            out["experiment"] = self.experiment
            out["arm"] = self.arm
        return out

    def to_json(self) -> bytes:
        """Compact JSON; raises ``ValueError`` if a number is NaN or infinite (orjson would
        write ``null``, which no consumer should have to guess about)."""
        numbers = [self.ts, self.long_weight, self.emitted_at]
        if self.event_ts is not None:
            numbers.append(self.event_ts)
        for item in self.items:
            numbers += (item.score, item.long_score, item.short_score)
        for scored in (*self.short_term, *self.long_term):
            numbers.append(scored.score)
        if not all(map(math.isfinite, numbers)):
            raise ValueError(f"a NaN or infinite number in the list of user {self.user_id!r}")
        return orjson.dumps(self.to_dict())


@dataclass(slots=True)
class ItemDelta:
    """Increments for one item from one batch: popularity, newest ts, neighbour weights."""

    pop: float = 0.0
    ts: float = 0.0
    co: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"p": self.pop, "t": self.ts, "c": self.co}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ItemDelta:
        return cls(pop=d["p"], ts=d["t"], co=d["c"])


def encode_bundle(deltas: Mapping[str, ItemDelta]) -> bytes:
    """Many items' deltas as one message: ``{item: {"p","t","c"}}``."""
    return orjson.dumps({k: d.to_dict() for k, d in deltas.items()})


def decode_bundle(raw: bytes) -> dict[str, ItemDelta]:
    return {k: ItemDelta.from_dict(d) for k, d in orjson.loads(raw).items()}


_RECOMMENDATION_FIELDS = ("user_id", "ts", "model_version", "long_weight", "items", "short_term", "long_term",
           "source", "event_ts", "emitted_at", "trigger", "history_size")  # fmt: skip


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRecord("wrong_type", f"{where} must be a number, got {value!r:.40}")
    if not math.isfinite(value):
        raise InvalidRecord("invalid_value", f"{where} must be finite, got {value!r}")
    return float(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRecord("wrong_type", f"{where} must be a non-empty string, got {value!r:.40}")
    return value


def _objects(data: Mapping[str, Any], name: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``("name[n]", object)`` for the objects of the array ``data[name]``."""
    value = data[name]
    if not isinstance(value, list):
        raise InvalidRecord("wrong_type", f"{name} must be an array, got {value!r:.40}")
    for n, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise InvalidRecord("wrong_type", f"{name}[{n}] must be an object, got {item!r:.40}")
        yield f"{name}[{n}]", item


def _scored(data: Mapping[str, Any], name: str) -> tuple[ScoredItem, ...]:
    return tuple(ScoredItem(_text(i.get("item_id"), f"{at}.item_id"),
                            _number(i.get("score"), f"{at}.score"))
                 for at, i in _objects(data, name))  # fmt: skip


def _categories(item: Mapping[str, Any], where: str) -> tuple[str, ...]:
    names = item.get("categories", [])
    if not isinstance(names, list):
        raise InvalidRecord("wrong_type", f"{where}.categories must be an array, got {names!r:.40}")
    return tuple(_text(c, f"{where}.categories[{n}]") for n, c in enumerate(names))


def _fused(data: Mapping[str, Any]) -> tuple[RecItem, ...]:
    out = []
    for at, i in _objects(data, "items"):
        score, long_score, short_score = (_number(i.get(f), f"{at}.{f}")
                                          for f in ("score", "long_score", "short_score"))  # fmt: skip
        explore = i.get("explore", False)
        if not isinstance(explore, bool):
            raise InvalidRecord("wrong_type", f"{at}.explore must be true or false, got "
                                f"{explore!r:.40}")  # fmt: skip
        out.append(RecItem(_text(i.get("item_id"), f"{at}.item_id"), score, long_score,
                           short_score, _categories(i, at), explore))  # fmt: skip
    return tuple(out)


def parse_recommendation(raw: bytes | str | Mapping[str, Any]) -> Recommendation:
    """A recommendation record (its JSON, or the decoded object) as a typed
    :class:`~lsi.wire.records.Recommendation`; fields lsi does not define are ignored.

    Raises:
        InvalidRecord: ``malformed_json``, ``not_an_object``, ``missing_field``,
            ``wrong_type`` or ``invalid_value``, naming the field.
    """
    data: Any = raw
    if isinstance(raw, (bytes, str)):
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRecord("malformed_json", f"not JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise InvalidRecord("not_an_object", f"expected a JSON object, got {data!r:.40}")
    missing = [name for name in _RECOMMENDATION_FIELDS if name not in data]
    if missing:
        raise InvalidRecord("missing_field", f"the field(s) {', '.join(missing)} are missing")
    history, event_ts = data["history_size"], data["event_ts"]
    if isinstance(history, bool) or not isinstance(history, int) or history < 0:
        raise InvalidRecord("wrong_type", f"history_size must be an integer >= 0, got {history!r:.40}")  # fmt: skip
    return Recommendation(
        user_id=_text(data["user_id"], "user_id"),
        ts=_number(data["ts"], "ts"),
        model_version=_text(data["model_version"], "model_version"),
        long_weight=_number(data["long_weight"], "long_weight"),
        items=_fused(data),
        short_term=_scored(data, "short_term"),
        long_term=_scored(data, "long_term"),
        source=_text(data["source"], "source"),
        event_ts=None if event_ts is None else _number(event_ts, "event_ts"),
        emitted_at=_number(data["emitted_at"], "emitted_at"),
        trigger=_text(data["trigger"], "trigger"),
        history_size=history,
        **_experiment_fields(data),
    )


def _experiment_fields(data: Mapping[str, Any]) -> dict[str, str]:
    """``experiment`` and ``arm`` of a record: both absent (or null), or both set."""
    experiment, arm = data.get("experiment"), data.get("arm")
    if experiment is None and arm is None:
        return {}
    if experiment is None or arm is None:
        raise InvalidRecord("missing_field", "experiment and arm come together; got only "
                            + ("experiment" if arm is None else "arm"))  # fmt: skip
    if arm not in ARMS:
        raise InvalidRecord("invalid_value", f"arm must be one of {', '.join(ARMS)}, got {arm!r:.40}")  # fmt: skip
    return {"experiment": _text(experiment, "experiment"), "arm": arm}
