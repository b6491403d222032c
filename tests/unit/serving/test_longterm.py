"""The served long-term model: scores, history exclusion, top-K, shape checks."""

from __future__ import annotations

import numpy as np
import pytest

from lsi.serving.snapshot import Snapshot


def make_model() -> Snapshot:
    """Two users, four items, d=2; user u0 has item i1 in its history, u1 none."""
    user_vec = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    item_vec = np.array([[3.0, 1.0], [5.0, 0.0], [1.0, 2.0], [2.0, 4.0]], dtype=np.float32)
    return Snapshot(
        "v000007",
        ("u0", "u1"),
        ("i0", "i1", "i2", "i3"),
        user_vec,
        item_vec,
        np.array([0, 1, 1], dtype=np.int64),
        np.array([1], dtype=np.int32),
        {"k": 1},
    )


def test_scores_are_item_vectors_times_user_vector_with_history_excluded() -> None:
    m = make_model()
    s = m.scores("u0")
    assert s is not None and s.dtype == np.float32 and s.shape == (4,)
    expected = m.item_vec @ m.user_vec[0]
    assert s[1] == -np.inf  # i1 is u0's training item
    np.testing.assert_array_equal(s[[0, 2, 3]], expected[[0, 2, 3]])
    raw = m.scores("u0", exclude_history=False)
    assert raw is not None
    np.testing.assert_array_equal(raw, expected)
    u1 = m.scores("u1")
    assert u1 is not None
    np.testing.assert_array_equal(u1, m.item_vec @ m.user_vec[1])


def test_scores_do_not_mutate_the_model() -> None:
    m = make_model()
    before = m.item_vec.copy()
    m.scores("u0")
    m.top("u1", 2, exclude={"i3"})
    np.testing.assert_array_equal(m.item_vec, before)
    again = m.scores("u1")
    assert again is not None and np.isfinite(again).all()


def test_unknown_user_has_no_scores_and_no_list() -> None:
    m = make_model()
    assert m.scores("nobody") is None
    assert m.top("nobody", 3) == []
    assert not m.knows("nobody") and m.knows("u1")


def test_properties_and_indices() -> None:
    m = make_model()
    assert (m.n_users, m.n_items, m.dim) == (2, 4, 2)
    assert m.item_index == {"i0": 0, "i1": 1, "i2": 2, "i3": 3}
    assert m.user_index == {"u0": 0, "u1": 1}
    assert m.history(0).tolist() == [1] and m.history(1).tolist() == []
    assert m.manifest == {"k": 1}


def test_top_is_best_first_without_history() -> None:
    m = make_model()
    # u0 scores (history excluded): i0=3, i1=-inf, i2=1, i3=2
    assert m.top("u0", 2) == [("i0", 3.0), ("i3", 2.0)]
    # asking for more than the catalogue drops the -inf history item
    assert [k for k, _ in m.top("u0", 10)] == ["i0", "i3", "i2"]
    # u1 scores: i0=1, i1=0, i2=2, i3=4
    assert m.top("u1", 4) == [("i3", 4.0), ("i2", 2.0), ("i0", 1.0), ("i1", 0.0)]
    assert m.top("u1", 0) == []


def test_top_honours_exclusions_and_ignores_unknown_ones() -> None:
    m = make_model()
    assert [k for k, _ in m.top("u1", 2, exclude={"i3", "not-in-catalogue"})] == ["i2", "i0"]
    assert [k for k, _ in m.top("u1", 4, exclude=frozenset({"i2"}))] == ["i3", "i0", "i1"]


def test_top_breaks_ties_by_catalogue_order() -> None:
    item_vec = np.ones((3, 2), dtype=np.float32)
    m = Snapshot(
        "v1",
        ("u",),
        ("c", "a", "b"),
        np.ones((1, 2), dtype=np.float32),
        item_vec,
        np.array([0, 0], dtype=np.int64),
        np.zeros(0, dtype=np.int32),
    )
    assert [k for k, _ in m.top("u", 3)] == ["c", "a", "b"]


def _arrays(users: int = 2, items: int = 3, d: int = 2, du: int | None = None) -> dict[str, object]:
    return {
        "version": "v9",
        "user_ids": tuple(f"u{j}" for j in range(users)),
        "item_ids": tuple(f"i{j}" for j in range(items)),
        "user_vec": np.zeros((users, du or d), dtype=np.float32),
        "item_vec": np.zeros((items, d), dtype=np.float32),
        "hist_indptr": np.zeros(users + 1, dtype=np.int64),
        "hist_items": np.zeros(0, dtype=np.int32),
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user_ids", ("only-one",)),
        ("item_ids", ("a", "b")),
        ("item_vec", np.zeros((3, 5), dtype=np.float32)),  # dim disagrees with user_vec
    ],
)
def test_shape_disagreements_are_rejected(field: str, value: object) -> None:
    kwargs = _arrays()
    kwargs[field] = value
    with pytest.raises(ValueError, match="v9: shapes disagree"):
        Snapshot(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("indptr", "hist"),
    [
        (np.zeros(2, dtype=np.int64), np.zeros(0, dtype=np.int32)),  # [U] instead of [U+1]
        (np.array([0, 1, 1], dtype=np.int64), np.zeros(0, dtype=np.int32)),  # nnz 1 vs 0
        (np.array([0, 0, 0], dtype=np.int64), np.array([2], dtype=np.int32)),  # nnz 0 vs 1
    ],
)
def test_history_index_must_match_users(indptr: np.ndarray, hist: np.ndarray) -> None:
    kwargs = _arrays()
    kwargs.update(hist_indptr=indptr, hist_items=hist)
    with pytest.raises(ValueError, match="history index does not match"):
        Snapshot(**kwargs)  # type: ignore[arg-type]


def test_a_valid_model_builds() -> None:
    m = Snapshot(**_arrays())  # type: ignore[arg-type]
    assert m.n_users == 2 and m.n_items == 3


def fold_model(scale: float) -> Snapshot:
    """Three users whose trained vectors are exactly ``scale`` times the mean of their items'
    vectors (u2 has no history and must not count), so the least-squares scale is ``scale``."""
    item_vec = np.array([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0], [-2.0, 1.0]], dtype=np.float32)
    hists = [[0, 1], [2, 3, 1], []]
    user_vec = np.array([scale * item_vec[h].mean(axis=0) if h else [9.0, -9.0]
                         for h in hists], dtype=np.float32)  # fmt: skip
    indptr = np.cumsum([0] + [len(h) for h in hists]).astype(np.int64)
    return Snapshot("v000001", ("u0", "u1", "u2"), ("i0", "i1", "i2", "i3"), user_vec,
                         item_vec, indptr, np.array([i for h in hists for i in h], dtype=np.int32))  # fmt: skip


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_fold_scale_is_the_least_squares_map_from_item_means_to_user_vectors(scale: float) -> None:
    assert fold_model(scale).fold_scale == pytest.approx(scale, rel=1e-6)


def test_fold_in_is_the_scaled_mean_of_the_known_items() -> None:
    m = fold_model(2.0)
    v = m.fold_in(["i2", "i0", "unknown", "i2"])  # repeats count once; unknown items not at all
    assert v is not None and v.dtype == np.float32 and v.shape == (2,)
    np.testing.assert_allclose(v, 2.0 * np.array([2.5, 2.0]), rtol=1e-6)
    # a folded user scores like a trained one whose history is the same items
    again = m.fold_in(["i0", "i1"])
    assert again is not None
    np.testing.assert_allclose(again, m.user_vec[0], rtol=1e-6)


def test_fold_in_without_a_known_item_is_none() -> None:
    m = fold_model(2.0)
    assert m.fold_in([]) is None and m.fold_in(["nope", "zzz"]) is None


def test_fold_scale_without_any_history_is_one() -> None:
    m = make_model()
    empty = Snapshot("v000002", m.user_ids, m.item_ids, m.user_vec, m.item_vec,
                          np.zeros(3, dtype=np.int64), np.zeros(0, dtype=np.int32))  # fmt: skip
    assert empty.fold_scale == 1.0
