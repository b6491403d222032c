"""The business rules against a real broker and a real worker (``LSI_RULE_CATEGORY_CAP``,
``LSI_RULE_NEW_SLOTS``, ``LSI_RULE_OWN_ITEMS``) and a request's ``?category=``: the catalogue
(published with ``lsi items publish``) gives the categories and a new item; every list the
worker streams and serves follows the rules."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lsi.cli.main import main
from lsi.client import EventProducer, RecommendationsClient
from lsi.config import Settings
from lsi.serving.worker_process import settings_env
from tests.integration.conftest import WorkerProcess, streamed_list, wait_until

pytestmark = pytest.mark.timeout(240)

#: a walks i1 … i12; i<j> is in category c<j mod 3>; "fresh" is new, nobody has seen it
ITEMS = [f"i{j}" for j in range(1, 13)]


def category(item: str) -> str:
    return f"c{int(item[1:]) % 3}"


def test_streamed_and_served_lists_follow_the_rules(
    lsi_settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = start_worker("w1", rule_category_cap=2, rule_new_slots=1, rule_own_items="purchased")
    s = worker.settings
    for var, value in settings_env(s, {}).items():
        monkeypatch.setenv(var, value)
    csv = tmp_path / "catalogue.csv"
    rows = [f"{item},{category(item)},," for item in ITEMS]
    rows.append(f"fresh,new,{time.time() - 3600:.0f},")  # a category of its own: under the cap
    csv.write_text("item_id,categories,created_at,expires_at\n" + "\n".join(rows) + "\n")
    assert main(["items", "publish", "--csv", str(csv)]) == 0
    client = RecommendationsClient(worker.url, retry_for_s=30)

    with EventProducer(s) as events:
        for n, item in enumerate(ITEMS):
            events.send("a", item, "view", ts=time.time() - 100 + n, event_id=f"a-{n}")
        events.send("b", "i1", "view", event_id="b-1")
        events.send("b", "i2", "purchase", event_id="b-2")

    def served() -> Any:
        rec = client.recommend("b", n=10)
        return rec if rec.source == "covisit" and any(i.explore for i in rec.items) else None

    rec = wait_until("b's list with the new item", served, 90, worker)
    listed = [i.item_id for i in rec.items]
    assert "fresh" in listed and listed.index("fresh") == 2 and rec.items[2].explore
    scored = [i for i in listed if i != "fresh"]
    assert max(Counter(category(i) for i in scored).values()) <= 2  # the cap
    assert "i2" not in listed  # b bought i2; i1, only viewed, may come back
    only = client.recommend("b", n=10, category="c1")
    assert only.items and all(category(i.item_id) == "c1" for i in only.items)

    # the stream follows the same rules
    with EventProducer(s) as events:
        events.send("b", "i5", "view", event_id="b-3")

    latest = streamed_list(s, "b", 3)
    ids = [i["item_id"] for i in latest["items"]]
    assert "i2" not in ids
    assert [i.get("explore", False) for i in latest["items"]].count(True) <= 1
    cats = Counter(category(i) for i in ids if i != "fresh")
    assert cats and max(cats.values()) <= 2
