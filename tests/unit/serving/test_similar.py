"""Similar items (:mod:`lsi.serving.similar`): cosine neighbours of the snapshot's item
vectors, computed by hand here; ties by catalogue row; the co-visitation fallback; unknown
items."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import lsi.serving.similar
from lsi.core.engine import BASELINE_VERSION
from lsi.serving.similar import Similar, cosine_neighbours, covisit_neighbours, similar_items
from lsi.serving.snapshot import Snapshot
from lsi.wire.records import ScoredItem

#: rows: a, f (a's direction, twice as long), b (45° from a), c and z (both orthogonal to a:
#: a tie), e (zero), d (opposite to a), y (= f exactly: f and y tie for every item)
ITEMS = ("a", "f", "b", "c", "e", "z", "d", "y")
VECS = np.array(
    [[1, 0, 0], [2, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 3], [-1, 0, 0], [2, 0, 0]],
    dtype=np.float32,
)


def snapshot(version: str = "v000005") -> Snapshot:
    return Snapshot(version, ("u",), ITEMS, np.ones((1, 3), np.float32), VECS,
                    np.array([0, 0], dtype=np.int64), np.zeros(0, dtype=np.int32))  # fmt: skip


def pairs(items: tuple[ScoredItem, ...] | None) -> list[tuple[str, float]]:
    assert items is not None
    return [(i.item_id, round(i.score, 5)) for i in items]


def test_the_doctests_hold() -> None:
    assert doctest.testmod(lsi.serving.similar).failed == 0


def test_cosine_neighbours_by_hand() -> None:
    snap = snapshot()
    r = round(1 / math.sqrt(2), 5)
    # f and y point like a (1.0, tied: by row, f first); b at 45°; c, e (zero vector) and z
    # score 0 (tied: by row c, e, z); d opposite; a itself is left out
    assert pairs(cosine_neighbours(snap, "a", 10)) == [
        ("f", 1.0), ("y", 1.0), ("b", r), ("c", 0.0), ("e", 0.0), ("z", 0.0), ("d", -1.0),
    ]  # fmt: skip
    assert pairs(cosine_neighbours(snap, "a", 3)) == [("f", 1.0), ("y", 1.0), ("b", r)]
    # from c: b at 45°, then a, f, e, z, d, y all at 0, in row order
    assert pairs(cosine_neighbours(snap, "c", 3)) == [("b", r), ("a", 0.0), ("f", 0.0)]
    assert cosine_neighbours(snap, "a", 0) == ()


def test_ties_are_broken_by_catalogue_row_not_by_id() -> None:
    snap = snapshot()
    # f and y hold the same vector, a its direction: from f, a (row 0) and y (row 7) tie at 1
    got = pairs(cosine_neighbours(snap, "f", 2))
    assert got == [("a", 1.0), ("y", 1.0)]
    got = pairs(cosine_neighbours(snap, "y", 2))
    assert got == [("a", 1.0), ("f", 1.0)]  # a (row 0) before f (row 1), though 'a' < 'f' too
    # z (row 5) and c (row 3) are orthogonal to a: row order puts c first although 'c' < 'z'
    # holds too; e (row 4, zero) sits between them, which no id order would give
    zeros = [k for k, s in pairs(cosine_neighbours(snap, "a", 10)) if s == 0.0]
    assert zeros == ["c", "e", "z"]


def test_an_unknown_item_or_a_zero_vector_has_no_long_term_neighbours() -> None:
    snap = snapshot()
    assert cosine_neighbours(snap, "nope", 5) is None
    assert cosine_neighbours(snap, "e", 5) is None
    with pytest.raises(ValueError, match="n must be >= 0"):
        cosine_neighbours(snap, "a", -1)


def test_the_row_norms_are_computed_once_per_snapshot() -> None:
    snap = snapshot()
    cosine_neighbours(snap, "a", 2)
    norms = vars(snap)["_lsi_item_norms"]
    np.testing.assert_allclose(norms, np.linalg.norm(VECS, axis=1))
    cosine_neighbours(snap, "b", 2)
    assert vars(snap)["_lsi_item_norms"] is norms


def test_covisitation_neighbours_are_shares_of_the_co_visits() -> None:
    weights = {"x": 2.0, "y": 2.0, "z": 4.0, "a": 5.0, "w": 0.0, "v": -1.0}
    # a itself, and the non-positive weights, are left out; x and y tie: by id
    assert pairs(covisit_neighbours(weights, "a", 10)) == [("z", 0.5), ("x", 0.25), ("y", 0.25)]
    assert pairs(covisit_neighbours(weights, "a", 1)) == [("z", 0.5)]
    assert covisit_neighbours({}, "a", 3) == () and covisit_neighbours(weights, "a", 0) == ()
    with pytest.raises(ValueError, match="n must be >= 0"):
        covisit_neighbours(weights, "a", -2)


def test_the_snapshot_answers_when_it_knows_the_item_else_covisitation() -> None:
    snap = snapshot("v000009")
    near = {"q": 1.0, "r": 3.0}
    known = similar_items("b", 2, snap, near)
    assert known is not None and (known.source, known.model_version) == ("long_term", "v000009")
    assert [i.item_id for i in known.items] == ["a", "f"]
    # the snapshot lacks the item (it came after the snapshot): co-visitation
    fallback = similar_items("new", 2, snap, near)
    assert fallback == Similar("new", "covisitation", BASELINE_VERSION,
                               covisit_neighbours(near, "new", 2))  # fmt: skip
    assert pairs(fallback.items) == [("r", 0.75), ("q", 0.25)]
    # a zero vector tells nothing either
    zero = similar_items("e", 2, snap, near)
    assert zero is not None and zero.source == "covisitation"
    # no snapshot at all
    none = similar_items("b", 5, None, near, covisit_version="baseline-x")
    assert none is not None and none.model_version == "baseline-x"
    # the statistics know the item but not yet any neighbour: an empty list, not unknown
    assert similar_items("new", 5, snap, {}) == Similar("new", "covisitation",
                                                        BASELINE_VERSION, ())  # fmt: skip


def test_an_item_neither_knows_is_none() -> None:
    assert similar_items("nope", 5, snapshot(), None) is None
    assert similar_items("nope", 5, None, None) is None


def test_the_answer_as_json() -> None:
    found = similar_items("a", 2, snapshot("v000003"), None)
    assert found is not None
    assert found.to_dict() == {
        "item_id": "a", "source": "long_term", "model_version": "v000003",
        "items": [{"item_id": "f", "score": 1.0}, {"item_id": "y", "score": 1.0}],
    }  # fmt: skip
