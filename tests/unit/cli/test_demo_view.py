"""What the demo shows each round: the lists that just arrived, the fused model's first."""

from __future__ import annotations

from lsi.cli.demo import _current


def rec(user: str, source: str, at: float, items: int = 3) -> dict[str, object]:
    return {"user_id": user, "source": source, "emitted_at": at,
            "items": [{"item_id": str(j)} for j in range(items)]}  # fmt: skip


def test_the_round_shows_fresh_lists_fused_first_then_newest() -> None:
    latest = {
        "old": rec("old", "fused", 1.0),  # not fresh this round: not shown again
        "a": rec("a", "covisit", 9.0),
        "b": rec("b", "fused", 5.0),
        "c": rec("c", "fused", 7.0),
        "empty": rec("empty", "fused", 8.0, items=0),  # nothing to show
    }
    got = _current(latest, {"a", "b", "c", "empty"}, 3)
    assert [r["user_id"] for r in got] == ["c", "b", "a"]
    assert [r["user_id"] for r in _current(latest, {"a", "b", "c"}, 1)] == ["c"]
    assert _current(latest, set(), 3) == []
