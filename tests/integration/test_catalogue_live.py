"""The item catalogue against a real broker and a real worker: a catalogue record marking an
item unavailable reaches the worker through ``lsi.items`` (published with ``lsi items
publish``), and from then on the item is in no list the worker streams or serves, nor in any
similar-items answer, and listed items carry their categories; a bad catalogue record is dead-lettered with its reason; marked
available again, the item comes back."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from lsi.cli.main import main
from lsi.client import EventProducer, RecommendationsClient
from lsi.config import Settings
from lsi.serving.worker_process import settings_env
from tests.integration.conftest import WorkerProcess, consume, streamed_list, wait_until

pytestmark = pytest.mark.timeout(240)

ITEMS = [f"i{j}" for j in range(1, 9)]


def test_a_hidden_item_leaves_every_list_and_comes_back(
    lsi_settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = start_worker("w1")
    s = worker.settings
    for var, value in settings_env(s, {}).items():  # `lsi items` sees the worker's settings
        monkeypatch.setenv(var, value)
    with EventProducer(s) as events:
        for n, item in enumerate(ITEMS):  # a takes i1 … i8 in turn: i1's neighbours i2 … i6
            events.send("a", item, "view", ts=time.time() - 100 + n, event_id=f"a-{n}")
        events.send("b", "i1", "view", event_id="b-i1")
    client = RecommendationsClient(worker.url, retry_for_s=30)

    def top_of_b() -> list[str] | None:
        rec = client.recommend("b")
        ids = [i.item_id for i in rec.items]
        return ids if rec.source == "covisit" and len(ids) >= 5 else None

    top = wait_until("b's list from i1's co-visits", top_of_b, 60, worker)
    hide = top[0]

    csv = tmp_path / "catalogue.csv"
    csv.write_text(
        f"item_id,title,categories,available\n{hide},Gone,,false\n{top[1]},Kept,shoes|women,true\n"
    )
    assert main(["items", "publish", "--csv", str(csv)]) == 0

    def hidden_everywhere() -> bool:
        listed = {i.item_id for i in client.recommend("b", n=10).items}
        near = {i.item_id for i in client.similar("i1", n=10).items}
        return hide not in listed and hide not in near and bool(listed)

    wait_until(f"{hide} out of b's list and of i1's similar items", hidden_everywhere, 60, worker)
    kept = {i.item_id: i.categories for i in client.recommend("b", n=10).items}
    assert kept[top[1]] == ("shoes", "women")  # categories reach the records
    # the stream too: the next list b is sent
    with EventProducer(s) as events:
        events.send("b", "i8", "view", event_id="b-i8")

    latest = streamed_list(s, "b", 2)
    streamed = {i["item_id"] for key in ("items", "short_term", "long_term") for i in latest[key]}
    assert latest["items"] and hide not in streamed

    # a bad record: dead-lettered with its reason, the worker goes on
    raw = KafkaProducer(bootstrap_servers=s.brokers)
    raw.send(s.items_topic, key=b"i9", value=b'{"item_id": "i9", "price": 3}').get(timeout=30)
    raw.close()

    def refused(records: list[Any]) -> bool:
        return any(m.key == b"i9" and dict(m.headers).get("lsi-dlq-reason") == b"unknown_field"
                   for m in records)  # fmt: skip

    consume(s, s.dlq_topic, refused, timeout_s=60)

    csv.write_text(f"item_id,available\n{hide},true\n")
    assert main(["items", "publish", "--csv", str(csv)]) == 0
    wait_until(f"{hide} back in b's list", lambda: hide in {i.item_id for i in client.recommend(
        "b", n=10).items}, 60, worker)  # fmt: skip
