"""``RecommendationsClient.recommend(n=, exclude=)`` and ``.similar`` against a real HTTP
server on a loopback port playing the worker (tests/unit/client/test_client.py's
``FakeWorker``)."""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import replace
from typing import Any

import pytest

from lsi.client import ClientError, RecommendationsClient, RequestRejected, WorkerUnavailable
from lsi.client.http import SimilarItems
from lsi.wire.records import ScoredItem
from lsi.wire.validation import id_problem
from tests.unit.client.test_client import UNAVAILABLE, Answer, FakeWorker, rounded, sample


def query_of(path: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(path).query, keep_blank_values=True)


def filtering(path: str) -> Answer:
    """A current worker: the sample's items without the excluded ones, cut to ``n`` (the
    short-term list too, as the worker's scorer does)."""
    query = query_of(path)
    n = int(query.get("n", ["20"])[0])
    banned = {x for value in query.get("exclude", []) for x in value.split(",")}
    rec = sample(urllib.parse.unquote(urllib.parse.urlsplit(path).path.split("/")[2]), 8)
    items = tuple(i for i in rec.items if i.item_id not in banned)[:n]
    short = tuple(s for s in rec.short_term if s.item_id not in banned)[:n]
    return 200, {}, replace(rec, items=items, short_term=short).to_dict()


def test_n_and_exclude_are_sent_as_query_parameters_each_id_percent_encoded() -> None:
    with FakeWorker(filtering) as fake:
        client = RecommendationsClient(fake.url)
        rec = client.recommend("u/1", n=3, exclude=["i1", "x&y", "ü z", 7, "i1"])
        assert fake.paths == ["/recommendations/u%2F1/?n=3&exclude=i1,x%26y,%C3%BC%20z,7"]
        assert query_of(fake.paths[0]) == {"n": ["3"], "exclude": ["i1,x&y,ü z,7"]}
        assert [i.item_id for i in rec.items] == ["i0", "i2", "i3"]
        client.recommend("u1", exclude=("i2",))
        client.recommend("u1", n=4)
        client.recommend("u1", exclude=[])
    assert fake.paths[1:] == ["/recommendations/u1/?exclude=i2", "/recommendations/u1/?n=4",
                              "/recommendations/u1/"]  # fmt: skip


def test_the_answer_of_a_worker_that_filters_is_returned_as_it_is() -> None:
    with FakeWorker(filtering) as fake:
        rec = RecommendationsClient(fake.url).recommend("u1", n=2, exclude=["i0"])
    full = sample("u1", 8)
    assert rec == rounded(replace(full, items=full.items[1:3]))


def test_a_worker_that_ignores_the_parameters_still_yields_a_filtered_list() -> None:
    """A worker older than the client answers its full top-K: the client drops the excluded
    items from ``items`` and keeps the first ``n``."""
    with FakeWorker(lambda path: (200, {}, sample("u1", 8).to_dict())) as fake:
        rec = RecommendationsClient(fake.url).recommend("u1", n=3, exclude=["i0", "i2"])
    assert [i.item_id for i in rec.items] == ["i1", "i3", "i4"]


def test_n_zero_asks_for_the_record_and_keeps_no_item() -> None:
    with FakeWorker(filtering) as fake:
        rec = RecommendationsClient(fake.url).recommend("u1", n=0)
    assert rec.items == () and fake.paths == ["/recommendations/u1/"]


@pytest.mark.parametrize("item", ["", "x" * 129, "a\x00b", "a,b"])
def test_an_excluded_id_the_worker_could_not_take_is_refused_before_sending(item: str) -> None:
    with FakeWorker(filtering) as fake:
        with pytest.raises(RequestRejected) as raised:
            RecommendationsClient(fake.url).recommend("u1", exclude=["ok", item])
        assert raised.value.status is None
        want = id_problem(item, "an excluded item_id") or "cannot hold a comma"
        assert want in raised.value.message
        assert fake.paths == []


def test_a_400_for_n_raises_the_workers_message() -> None:
    bad: Answer = (400, {}, {"error": "n must be an integer from 1 to 100, got '500'"})
    with FakeWorker(lambda path: bad) as fake, pytest.raises(RequestRejected) as raised:
        RecommendationsClient(fake.url).recommend("u1", n=500)
    assert (raised.value.status, raised.value.message) == (400, bad[2]["error"])
    assert fake.paths == ["/recommendations/u1/?n=500"]


# -- similar ------------------------------------------------------------------------------------
SIMILAR = {"item_id": "i/1", "source": "covisitation", "model_version": "baseline-covisit",
           "items": [{"item_id": "i2", "score": 0.75}, {"item_id": "i3", "score": 0.25}]}  # fmt: skip


def test_similar_asks_the_items_view_and_returns_a_typed_result() -> None:
    with FakeWorker(lambda path: (200, {}, SIMILAR)) as fake:
        got = RecommendationsClient(fake.url).similar("i/1", n=2)
        RecommendationsClient(fake.url).similar(42)
    assert got == SimilarItems("i/1", "covisitation", "baseline-covisit",
                               (ScoredItem("i2", 0.75), ScoredItem("i3", 0.25)))  # fmt: skip
    assert fake.paths == ["/items/i%2F1/similar/?n=2", "/items/42/similar/?n=10"]
    with pytest.raises(AttributeError):
        got.source = "long_term"  # type: ignore[misc]


def test_similar_retries_a_503_and_raises_a_404_at_once() -> None:
    queue: list[Answer] = [UNAVAILABLE, (200, {}, SIMILAR)]
    with FakeWorker(lambda path: queue.pop(0)) as fake:
        start = time.monotonic()
        assert RecommendationsClient(fake.url, retry_for_s=10).similar("i/1").items
    assert len(fake.paths) == 2 and time.monotonic() - start >= 0.19
    unknown: Answer = (404, {}, {"error": "item_id 'zz' is unknown"})
    with FakeWorker(lambda path: unknown) as fake, pytest.raises(RequestRejected) as raised:
        RecommendationsClient(fake.url, retry_for_s=10).similar("zz")
    assert (raised.value.status, raised.value.message) == (404, "item_id 'zz' is unknown")
    assert len(fake.paths) == 1
    with FakeWorker(lambda path: UNAVAILABLE) as fake, pytest.raises(WorkerUnavailable):
        RecommendationsClient(fake.url, retry_for_s=0).similar("zz")


@pytest.mark.parametrize(
    "body",
    [b"<html>", [], {**SIMILAR, "source": 1}, {**SIMILAR, "items": {}},
     {**SIMILAR, "items": [{"item_id": "i2", "score": "high"}]},
     {**SIMILAR, "items": [{"item_id": "i2", "score": True}]}, {**SIMILAR, "items": ["i2"]}],
)  # fmt: skip
def test_a_200_that_is_not_a_list_of_similar_items_is_an_error(body: Any) -> None:
    with FakeWorker(lambda path: (200, {}, body)) as fake, pytest.raises(ClientError) as raised:
        RecommendationsClient(fake.url).similar("i1")
    assert "not a list of similar items" in str(raised.value) and type(raised.value) is ClientError


def test_similar_refuses_an_id_no_event_could_carry_before_sending() -> None:
    with FakeWorker(lambda path: (200, {}, SIMILAR)) as fake:
        with pytest.raises(RequestRejected) as raised:
            RecommendationsClient(fake.url).similar("a\x00b")
        assert raised.value.message == id_problem("a\x00b", "item_id") and fake.paths == []
