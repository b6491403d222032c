"""lsi.client against a real broker and worker: events in with ``EventProducer``, the user's
list back over HTTP with ``RecommendationsClient.recommend`` and on the recommendations topic
with ``follow``."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from lsi.client import EventProducer, RecommendationsClient
from lsi.config import Settings
from lsi.wire.partitioning import partition_of
from tests.integration.conftest import WorkerProcess, consume

pytestmark = pytest.mark.timeout(180)


def test_events_in_recommendations_out(
    lsi_settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker()
    user = "client/ü 1"  # percent-encoded whole in the URL, '/' included
    with EventProducer(worker.settings) as events:
        for n, item in enumerate(("i1", "i2", "i3")):
            events.send(user, item, "click", event_id=f"client-{n}")
        events.send(user, "i3", "click", event_id="client-2")  # a retry: dropped as a duplicate

    (record,) = consume(lsi_settings, lsi_settings.events_topic, lambda r: len(r) == 4)[:1]
    assert record.key == user.encode()
    assert record.partition == partition_of(user.encode(), lsi_settings.partitions)

    client = RecommendationsClient(worker.url, retry_for_s=30)
    deadline = time.monotonic() + 45
    rec = client.recommend(user, n=2)
    while rec.history_size < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
        rec = client.recommend(user, n=2)
    assert (rec.user_id, rec.history_size, rec.trigger) == (user, 3, "request")
    assert len(rec.items) <= 2

    streamed = client.follow(worker.settings, from_beginning=True, timeout_s=45)
    mine = next((r for r in streamed if r.user_id == user and r.trigger == "event"), None)
    streamed.close()
    assert mine is not None and 1 <= mine.history_size <= 3
