"""The request filters and the similar-items view against a real broker and real workers:
events in with ``EventProducer``; ``?exclude=`` never returns an excluded item, ``?n=``
returns ``n`` items, ``/items/{item}/similar/`` answers from co-visitation (no snapshot).
A second worker then takes half the partitions, and requests sent to the first for users the
second owns are forwarded with their query string (the second worker counts them)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from lsi.client import EventProducer, RecommendationsClient, RequestRejected
from lsi.config import Settings
from lsi.wire.partitioning import partition_of
from tests.integration.conftest import WorkerProcess, free_port, wait_until

pytestmark = pytest.mark.timeout(240)

ITEMS = [f"i{j}" for j in range(1, 9)]


def status_of(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_filters_and_similar_items_on_live_workers(
    lsi_settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker("w1")
    # one user per partition, each of whom took i1: their lists come from i1's co-visits
    users: dict[int, str] = {}
    j = 0
    while len(users) < lsi_settings.partitions:
        users.setdefault(partition_of(f"u{j}".encode(), lsi_settings.partitions), f"u{j}")
        j += 1
    with EventProducer(worker.settings) as events:
        for n, item in enumerate(ITEMS):  # a takes i1 … i8 in turn: i1's neighbours i2 … i6
            events.send("a", item, "view", ts=time.time() - 100 + n, event_id=f"a-{n}")
        for user in users.values():
            events.send(user, "i1", "view", event_id=f"{user}-i1")

    client = RecommendationsClient(worker.url, retry_for_s=30)

    def settled() -> Any:
        """The list of a user who took i1, once every event is in the statistics: i1's five
        neighbours (window 5: i2 … i6), then i7 and i8 from the trending list."""
        status, body = status_of(f"{worker.url}/items/i1/similar/?n=10")
        if status != 200 or len(body["items"]) < 5:
            return None
        rec = client.recommend(users[0])
        return rec if rec.source == "covisit" and len(rec.items) >= 7 else None

    full = wait_until("the statistics of every event", settled, 60, worker)
    top = [i.item_id for i in full.items]
    assert top[:5] == ITEMS[1:6]
    banned = top[:2]

    rec = client.recommend(users[0], n=3, exclude=banned)
    assert [i.item_id for i in rec.items] == [x for x in top if x not in banned][:3]
    status, body = status_of(f"{worker.url}/recommendations/{users[0]}?n=2&exclude={top[0]}")
    assert status == 200 and [i["item_id"] for i in body["items"]] == top[1:3]
    assert len(body["short_term"]) == 2 and top[0] not in {i["item_id"] for i in body["short_term"]}
    status, body = status_of(f"{worker.url}/recommendations/{users[0]}/?n=0")
    assert status == 400 and "n must be an integer from 1 to 100" in body["error"]

    near = client.similar("i1", n=3)
    assert (near.item_id, near.source, near.model_version) == ("i1", "covisitation",
                                                                "baseline-covisit")  # fmt: skip
    assert [s.item_id for s in near.items] == ["i2", "i3", "i4"]
    assert near.items[0].score > near.items[1].score > near.items[2].score > 0
    assert [s.item_id for s in client.similar("i1", n=10).items] == ITEMS[1:6]
    wait_until("the worker is ready", lambda: status_of(worker.url + "/healthz/ready/")[0] == 200, 60,
          worker)  # fmt: skip
    with pytest.raises(RequestRejected) as raised:
        client.similar("never-seen")
    assert raised.value.status == 404

    # a second worker: requests to the first for the users the second owns are forwarded,
    # query string included
    second = start_worker("w2", web_port=free_port())

    def requests_served(w: WorkerProcess) -> float:
        return w.metrics().total("lsi_recommendations_total", trigger="request")

    def both_ready() -> bool:
        return all(status_of(w.url + "/healthz/ready/")[0] == 200 for w in (worker, second))

    def all_filtered() -> bool:
        """Every user asked of the first worker; True once the second answered some."""
        if not both_ready():
            return False  # rebalancing, or restoring the moved partitions' states
        for user in users.values():
            status, body = status_of(f"{worker.url}/recommendations/{user}/?n=2&exclude={top[0]}")
            if status != 200:
                return False  # 503 while the group rebalances
            listed = [i["item_id"] for i in body["items"]]
            assert len(listed) == 2 and top[0] not in listed, (user, body)
            assert listed == top[1:3] or not both_ready(), (user, body)
        return requests_served(second) > 0

    wait_until("requests forwarded to the second worker answer with the filters", all_filtered, 90,
          second)  # fmt: skip
