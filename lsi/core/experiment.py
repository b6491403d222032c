"""Experiments between snapshots: which users a candidate serves, and how each arm does.

An :class:`Experiment` sends a fixed ``fraction`` of users to a ``candidate`` (a snapshot
version of the store, or :data:`BASELINE`, the statistics scorer) while the others stay on
the live snapshot (the ``control`` arm). The split is a stable hash bucket, salted with the
experiment's name, so a user keeps their arm on every worker, across restarts and
rebalances, and two experiments split users independently:

.. math::

    b(u) = \\operatorname{BLAKE2b}_{64}(\\text{name} \\,\\|\\, 0 \\,\\|\\, u) \\bmod 10\\,000,
    \\qquad \\text{arm}(u) = \\text{candidate} \\iff b(u) < \\text{fraction} \\cdot 10\\,000

Each arm's online hit rate@K is the share of its judged events (an event judged against the
list last emitted to its user, :attr:`lsi.core.engine.BatchResult.judged`) whose item was in
that list's top-K. Only lists emitted once the experiment applied count
(:func:`count_arms`): an older list belongs to no arm. :func:`hit_rate_interval` and
:func:`two_proportion_test` turn the counts into the numbers a promotion is decided on.

Pure: no I/O, no clock (the caller passes ``started_at``).

>>> exp = Experiment("demo", "v000002", 0.5, started_at=0.0)
>>> arm_of("u1", exp), arm_of("u1", exp) == arm_of("u1", exp)
('control', True)
>>> [round(x, 4) for x in hit_rate_interval(30, 100)]
[0.3, 0.2189, 0.3959]
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lsi.errors import LsiError
from lsi.wire.records import ARMS

__all__ = [
    "ARMS",
    "BASELINE",
    "BUCKETS",
    "HIT_KS",
    "ArmCounts",
    "Experiment",
    "InvalidExperiment",
    "arm_of",
    "bucket",
    "count_arms",
    "hit_rate_interval",
    "two_proportion_test",
]

#: the candidate that is no snapshot: the online statistics scorer (co-visitation, trending)
BASELINE = "baseline"
#: hash buckets; the fraction is applied at this resolution (0.01 %)
BUCKETS = 10_000
#: the K of the per-arm hit counts (those of ``lsi_online_hits_total``)
HIT_KS = (1, 5, 10, 20)
#: an experiment's name: a metric label value and the hash salt
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_VERSION = re.compile(r"^v\d{6,}$")
#: ``UserState`` stores a list's emission time to the millisecond
_EMIT_RESOLUTION_S = 0.001


class InvalidExperiment(LsiError):
    """An experiment's settings are out of range, or its stored form is malformed."""


@dataclass(frozen=True, slots=True)
class Experiment:
    """A running comparison of a candidate with the live snapshot.

    Attributes:
        name: 1-64 characters of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit; the
            ``experiment`` label of the metrics and records, and the salt of the split.
        candidate: a snapshot version (``v000003``) or :data:`BASELINE`.
        fraction: share of users the candidate serves, in (0, 1).
        started_at: when it was started (seconds since the epoch).
    """

    name: str
    candidate: str
    fraction: float
    started_at: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME.match(self.name):
            raise InvalidExperiment(
                f"experiment name must be 1-64 letters, digits, '.', '_' or '-' (starting with "
                f"a letter or digit), got {self.name!r:.80}"
            )
        if not isinstance(self.candidate, str) or not (
            self.candidate == BASELINE or _VERSION.match(self.candidate)
        ):
            raise InvalidExperiment(f"the candidate must be a snapshot version (v000003) or "
                                    f"{BASELINE!r}, got {self.candidate!r:.80}")  # fmt: skip
        if (isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float))
                or not 0.0 < self.fraction < 1.0):  # fmt: skip
            raise InvalidExperiment(
                f"fraction must be a number in (0, 1), got {self.fraction!r:.40}"
            )
        if (isinstance(self.started_at, bool) or not isinstance(self.started_at, (int, float))
                or not math.isfinite(self.started_at) or self.started_at < 0):  # fmt: skip
            raise InvalidExperiment(f"started_at must be a time in seconds, got "
                                    f"{self.started_at!r:.40}")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "candidate": self.candidate, "fraction": self.fraction,
                "started_at": self.started_at}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Any) -> Experiment:
        """The experiment of a stored object (raises :class:`InvalidExperiment`)."""
        if not isinstance(data, Mapping):
            raise InvalidExperiment(f"an experiment must be an object, got {data!r:.80}")
        missing = [k for k in ("name", "candidate", "fraction", "started_at") if k not in data]
        if missing:
            raise InvalidExperiment(f"the experiment lacks {', '.join(missing)}")
        return cls(data["name"], data["candidate"], data["fraction"], data["started_at"])


def bucket(user_id: str, name: str) -> int:
    """The user's hash bucket in ``[0, BUCKETS)`` for the experiment ``name``."""
    digest = hashlib.blake2b(f"{name}\0{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def arm_of(user_id: str, experiment: Experiment) -> str:
    """``"candidate"`` for the ``fraction`` of users whose bucket is below it, else
    ``"control"``; the same answer on every worker and every run."""
    cut = round(experiment.fraction * BUCKETS)
    return ARMS[1] if bucket(user_id, experiment.name) < cut else ARMS[0]


@dataclass(slots=True)
class ArmCounts:
    """One arm's judged events and, per K, those whose item was in the list's top-K."""

    judged: int = 0
    hits: dict[int, int] = field(default_factory=lambda: dict.fromkeys(HIT_KS, 0))

    def hit_rate(self, k: int = 10) -> float:
        return self.hits.get(k, 0) / self.judged if self.judged else math.nan


def count_arms(
    judged: Iterable[tuple[str, float, int | None]],
    experiment: Experiment,
    since: float | None = None,
) -> dict[str, ArmCounts]:
    """Per-arm counts of a batch's judgements (``(user, emitted_at, hit rank or None)``).

    A judgement counts only if the list it judged was emitted at or after ``since`` (default:
    the experiment's ``started_at``; a worker passes the later moment it applied the
    experiment): an older list was not scored by the user's arm. Times are compared at the
    millisecond a user's state keeps them.

    >>> exp = Experiment("e", "baseline", 0.5, started_at=100.0)
    >>> counts = count_arms([("u1", 100.0, 0), ("u1", 99.0, 0), ("u1", 101.0, None)], exp)
    >>> counts["candidate"].judged, counts["candidate"].hits[1], counts["control"].judged
    (2, 1, 0)
    """
    cut = experiment.started_at if since is None else since
    out = {arm: ArmCounts() for arm in ARMS}
    for user, emitted_at, rank in judged:
        if emitted_at + _EMIT_RESOLUTION_S < cut:
            continue
        counts = out[arm_of(user, experiment)]
        counts.judged += 1
        if rank is not None:
            for k in HIT_KS:
                if rank < k:
                    counts.hits[k] += 1
    return out


def hit_rate_interval(hits: float, n: float, z: float = 1.96) -> tuple[float, float, float]:
    """``(p, low, high)``: the hit rate and its Wilson score interval (95 % for ``z=1.96``).

    .. math::

        \\hat p = h / n, \\qquad
        \\frac{\\hat p + \\frac{z^2}{2n} \\pm z \\sqrt{\\frac{\\hat p (1 - \\hat p)}{n}
        + \\frac{z^2}{4n^2}}}{1 + z^2 / n}

    Unlike the normal approximation it stays inside [0, 1] and is not empty at ``p`` = 0 or 1.
    ``n`` = 0 gives NaNs.
    """
    if n <= 0:
        return math.nan, math.nan, math.nan
    p = min(1.0, max(0.0, hits / n))
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_test(
    hits_a: float, n_a: float, hits_b: float, n_b: float
) -> tuple[float, float]:
    """``(z, two-sided p-value)`` of the pooled two-proportion z-test of ``b`` against ``a``.

    .. math::

        z = \\frac{\\hat p_b - \\hat p_a}{\\sqrt{\\bar p (1 - \\bar p)(1/n_a + 1/n_b)}},
        \\qquad \\bar p = \\frac{h_a + h_b}{n_a + n_b},
        \\qquad p = \\operatorname{erfc}(|z| / \\sqrt 2)

    NaNs when either arm has no judged event or the pooled rate is 0 or 1.

    >>> z, p = two_proportion_test(100, 1000, 130, 1000)
    >>> round(z, 3), round(p, 4)
    (2.103, 0.0355)
    """
    if n_a <= 0 or n_b <= 0:
        return math.nan, math.nan
    pooled = (hits_a + hits_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return math.nan, math.nan
    z = (hits_b / n_b - hits_a / n_a) / se
    return z, math.erfc(abs(z) / math.sqrt(2))
