"""The worker's HTTP views with query parameters, without a broker: ``n``, ``exclude`` and
``category`` on
``/recommendations/{user_id}/``, the similar-items view, their 400s, and forwarding to the
owner with the query string kept (Faust's own router, up to the HTTP client).

The app is the worker's (:func:`streams.app.build_app`) with the stand-ins of
tests/unit/streams/test_agents.py; views are served through the app's own routes."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faust.exceptions import SameNode
from yarl import URL

from lsi.serving.snapshot import Snapshot
from lsi.wire.catalogue import CatalogueItem
from streams.app import Pipeline
from streams.web import MAX_EXCLUDE, MAX_N
from tests.unit.streams.test_agents import (
    EVENTS,
    MemoryProducer,
    Source,
    close_pipeline,
    event_json,
    get,
    make_pipeline,
    run_through,
    user_state,
    young_objects_only,  # noqa: F401  (an autouse fixture)
)


@pytest.fixture
async def pipeline(tmp_path: Path) -> AsyncIterator[Pipeline]:
    built = make_pipeline(tmp_path, "memory://")
    yield built
    close_pipeline(built)


@pytest.fixture
def producer(pipeline: Pipeline) -> MemoryProducer:
    prod: MemoryProducer = pipeline.app.producer
    return prod


@pytest.fixture
def owns_every_key(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    async def same_node(*args: Any, **kwargs: Any) -> Any:
        raise SameNode()

    monkeypatch.setattr(pipeline.app.router, "route_req", same_node)


async def learn(pipeline: Pipeline, producer: MemoryProducer) -> None:
    """``a`` views i1 … i6 in turn, ``b`` views i1: i1's co-visitation neighbours are i2 … i6
    (weights 1, 0.8, 0.64, 0.512, 0.4096), and b's list is i2 … i6 in that order."""
    now = round(time.time(), 3)
    events = Source(pipeline.app, EVENTS)
    batch = [events(event_json(now + j, event_id=f"a{j}", user_id="a", item_id=f"i{j}"), b"a")
             for j in range(1, 7)]  # fmt: skip
    batch.append(events(event_json(now + 7, event_id="b1", user_id="b", item_id="i1"), b"b"))
    await run_through(pipeline, producer, batch)


async def answer(pipeline: Pipeline, path: str) -> tuple[int, Any]:
    response = await get(pipeline, path)
    return response.status, json.loads(response.body)


def names(entries: list[dict[str, Any]]) -> list[str]:
    return [e["item_id"] for e in entries]


# -- /recommendations/{user_id}/?n=…&exclude=… ---------------------------------------------
@pytest.mark.usefixtures("owns_every_key")
async def test_n_sets_the_length_and_excluded_items_are_left_out_before_it(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    await learn(pipeline, producer)
    sent, changelog, state = (
        len(producer.records),
        len(producer.changelog),
        user_state(pipeline, "b"),
    )
    status, full = await answer(pipeline, "/recommendations/b/")
    assert status == 200 and names(full["items"]) == ["i2", "i3", "i4", "i5", "i6"]

    status, body = await answer(pipeline, "/recommendations/b/?n=3&exclude=i2,i4")
    assert status == 200 and body["trigger"] == "request"
    assert names(body["items"]) == ["i3", "i5", "i6"]  # still three: filtered, then cut
    assert names(body["short_term"]) == ["i3", "i5", "i6"]
    status, bare = await answer(pipeline, "/recommendations/b?n=3&exclude=i2,i4")
    assert status == 200 and bare["items"] == body["items"]
    assert names((await answer(pipeline, "/recommendations/b/?n=2"))[1]["items"]) == ["i2", "i3"]
    # the parameter may repeat; a comma percent-encoded is still a separator; empty: none
    repeated = (await answer(pipeline, "/recommendations/b/?exclude=i3&exclude=i5,i6"))[1]
    assert names(repeated["items"]) == ["i2", "i4"]
    encoded = (await answer(pipeline, "/recommendations/b/?exclude=i2%2Ci3&n=5"))[1]
    assert names(encoded["items"]) == ["i4", "i5", "i6"]  # fewer than n: nothing else left
    assert (await answer(pipeline, "/recommendations/b/?exclude="))[1]["items"] == full["items"]
    # an item nobody knows, excluded: nothing changes
    assert (await answer(pipeline, "/recommendations/b/?exclude=zz"))[1]["items"] == full["items"]
    # read-only: no record sent, no table written
    assert len(producer.records) == sent and len(producer.changelog) == changelog
    assert user_state(pipeline, "b") == state


@pytest.mark.usefixtures("owns_every_key")
async def test_category_keeps_only_the_catalogues_items_of_it(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    await learn(pipeline, producer)
    view = pipeline.catalogue.view
    for item, cats in {"i2": ["c"], "i3": ["d"], "i4": ["c", "d"], "i6": ["c"]}.items():
        view.put(CatalogueItem(item, categories=tuple(cats)))
    status, body = await answer(pipeline, "/recommendations/b/?category=c")
    assert status == 200 and names(body["items"]) == ["i2", "i4", "i6"]
    assert [e["categories"] for e in body["items"]] == [["c"], ["c", "d"], ["c"]]
    assert names(body["short_term"]) == ["i2", "i4", "i6"]
    both = (await answer(pipeline, "/recommendations/b?category=d&exclude=i3&n=1"))[1]
    assert names(both["items"]) == ["i4"]
    assert (await answer(pipeline, "/recommendations/b/?category=none"))[1]["items"] == []


BAD_QUERIES = [
    ("n=0", "n must be an integer from 1 to 100, got '0'"),
    (f"n={MAX_N + 1}", "n must be an integer from 1 to 100"),
    ("n=-1", "n must be an integer"),
    ("n=abc", "n must be an integer"),
    ("n=2.5", "n must be an integer"),
    ("n=%205", "n must be an integer"),
    ("n=", "n must be an integer"),
    ("n=%D9%A5", "n must be an integer"),  # an Arabic-Indic 5: a digit, not ASCII
    ("n=99999999999999999999", "n must be an integer"),
    ("n=1&n=2", "n must be given once, got it 2 times"),
    ("exclude=i1,,i2", "an excluded item_id must have 1 to 128 characters, got 0"),
    ("exclude=i1,", "an excluded item_id must have 1 to 128 characters"),
    ("exclude=a%00b", "an excluded item_id must be valid UTF-8 text without control characters"),
    (f"exclude={'x' * 129}", "an excluded item_id must have 1 to 128 characters, got 129"),
    ("exclude=" + ",".join(f"x{j}" for j in range(MAX_EXCLUDE + 1)),
     "exclude may name at most 100 item ids, got 101"),
    ("exlude=i1", "unknown query parameter(s) 'exlude'; this view takes category, exclude, n"),
    ("category=a&category=b", "category may be given once, got 2 values"),
    ("category=", "category must have 1 to 128 characters, got 0"),
]  # fmt: skip


@pytest.mark.parametrize(("query", "error"), BAD_QUERIES, ids=[q[:20] for q, _ in BAD_QUERIES])
async def test_a_bad_parameter_is_a_400_before_any_routing(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, query: str, error: str
) -> None:
    async def route(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a bad request must not be forwarded")

    monkeypatch.setattr(pipeline.app.router, "route_req", route)
    for path in ("/recommendations/b/", "/recommendations/b"):
        status, body = await answer(pipeline, f"{path}?{query}")
        assert status == 400 and error in body["error"], body


@pytest.mark.usefixtures("owns_every_key")
async def test_exactly_the_limits_are_accepted(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    await learn(pipeline, producer)
    many = ",".join(["i2", *(f"x{j}" for j in range(MAX_EXCLUDE - 1))])
    status, body = await answer(pipeline, f"/recommendations/b/?n={MAX_N}&exclude={many}")
    assert status == 200 and names(body["items"]) == ["i3", "i4", "i5", "i6"]
    status, body = await answer(pipeline, f"/recommendations/b/?exclude={'x' * 128}&n=1")
    assert status == 200 and names(body["items"]) == ["i2"]


class Forwarded:
    """Stands in for the app's HTTP client: records the request Faust's router forwards and
    answers as the owner would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, URL]] = []

    def request(self, method: str, headers: Any, url: URL) -> Any:
        self.calls.append((method, url))
        return self

    async def __aenter__(self) -> Forwarded:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    content_type, status = "application/json", 200

    async def text(self) -> str:
        return json.dumps({"from": "the owner"})


async def test_a_request_for_a_user_of_another_worker_is_forwarded_with_its_query(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust's ``Router.route_req`` (not a stand-in) forwards ``request.url`` with the owner's
    host and port, so ``n`` and ``exclude`` reach the owner as the client sent them."""
    owner = URL("http://10.9.8.7:6099")
    monkeypatch.setattr(pipeline.app.router, "key_store", lambda table, key: owner)
    client = Forwarded()
    pipeline.app.http_client = client
    query = "n=3&exclude=x%26y,i2&exclude=%C3%BC%20z"
    status, body = await answer(pipeline, f"/recommendations/a%2Fb/?{query}")
    assert (status, body) == (200, {"from": "the owner"})
    ((method, url),) = client.calls
    assert (method, url.host, url.port) == ("GET", "10.9.8.7", 6099)
    assert url.raw_path == "/recommendations/a%2Fb/"
    assert url.query.getall("n") == ["3"]
    assert url.query.getall("exclude") == ["x&y,i2", "ü z"]


# -- /items/{item_id}/similar/ ---------------------------------------------------------------
async def test_without_a_snapshot_similar_items_come_from_covisitation(
    pipeline: Pipeline, producer: MemoryProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def route(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("every worker answers similar items itself")

    monkeypatch.setattr(pipeline.app.router, "route_req", route)
    await learn(pipeline, producer)
    sent, changelog = len(producer.records), len(producer.changelog)
    status, body = await answer(pipeline, "/items/i1/similar/")
    assert status == 200
    assert (body["item_id"], body["source"], body["model_version"]) == (
        "i1", "covisitation", "baseline-covisit")  # fmt: skip
    total = 1 + 0.8 + 0.64 + 0.512 + 0.4096
    assert names(body["items"]) == ["i2", "i3", "i4", "i5", "i6"]
    assert body["items"][0]["score"] == pytest.approx(1 / total, abs=1e-6)
    status, two = await answer(pipeline, "/items/i1/similar?n=2")
    assert status == 200 and two["items"] == body["items"][:2]
    assert len(producer.records) == sent and len(producer.changelog) == changelog


def snapshot_of(items: tuple[str, ...], vecs: list[list[float]]) -> Snapshot:
    return Snapshot("v000004", ("u",), items, np.ones((1, 2), np.float32),
                    np.array(vecs, dtype=np.float32), np.array([0, 0], dtype=np.int64),
                    np.zeros(0, dtype=np.int32))  # fmt: skip


async def test_with_a_snapshot_that_knows_the_item_the_answer_is_its_cosine(
    pipeline: Pipeline, producer: MemoryProducer
) -> None:
    await learn(pipeline, producer)
    pipeline.models.current = snapshot_of(("i1", "i2", "i3", "i4"),
                                          [[1, 0], [0, 1], [1, 1], [3, 0.1]])  # fmt: skip
    status, body = await answer(pipeline, "/items/i1/similar/?n=2")
    assert status == 200 and (body["source"], body["model_version"]) == ("long_term", "v000004")
    assert names(body["items"]) == ["i4", "i3"]
    assert body["items"][1]["score"] == pytest.approx(1 / np.sqrt(2), abs=1e-6)
    # i5 is newer than the snapshot: its co-visits answer
    status, body = await answer(pipeline, "/items/i5/similar/")
    assert status == 200 and body["source"] == "covisitation"
    assert body["model_version"] == "baseline-covisit" and "i1" in names(body["items"])


async def test_an_item_neither_knows_is_404_once_the_tables_are_restored(
    pipeline: Pipeline,
) -> None:
    status, body = await answer(pipeline, "/items/nope/similar/")
    assert status == 503 and "try again" in body["error"]  # still restoring: maybe later
    pipeline.app.tables.recovery.completed.set()
    status, body = await answer(pipeline, "/items/nope/similar/")
    assert status == 404 and "unknown" in body["error"]


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/items/a%00b/similar/", "item_id must be valid UTF-8 text"),
        (f"/items/{'x' * 129}/similar/", "item_id must have 1 to 128 characters"),
        ("/items/i1/similar/?n=0", "n must be an integer from 1 to 100"),
        (f"/items/i1/similar/?n={MAX_N + 1}", "n must be an integer from 1 to 100"),
        ("/items/i1/similar?n=x", "n must be an integer"),
        (
            "/items/i1/similar/?exclude=i2",
            "unknown query parameter(s) 'exclude'; this view takes n",
        ),
    ],
)
async def test_the_similar_view_refuses_bad_ids_and_parameters(
    pipeline: Pipeline, path: str, error: str
) -> None:
    status, body = await answer(pipeline, path)
    assert status == 400 and error in body["error"], body
