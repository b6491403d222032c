"""HTTP views of a worker: ``/metrics`` (Prometheus, with the standard ``process_*`` series),
``/recommendations/{user_id}/`` and ``/items/{item_id}/similar/`` (each also without the
trailing slash: the same view, not a 404), ``/healthz`` (liveness) and ``/healthz/ready/``
(readiness: partitions assigned, tables restored; 503 before).

A recommendation request is routed to the worker that owns the user's partition (Faust's
router, as ``table_route`` uses it; the forwarded request keeps its query string), scored
there with :meth:`streams.interest.Interest.recommend_now`, and returned as the same JSON
record the stream emits, with ``trigger = "request"``. Its query may set the lists' length
(``n``, 1 to :data:`MAX_N`, or to ``LSI_TOP_K`` if that is larger; ``LSI_TOP_K`` by default)
and name up to :data:`MAX_EXCLUDE` items no list may hold (``exclude=a,b``, comma-separated,
the parameter may repeat); the scorers leave them out before ranking, so the lists keep
``n`` items while enough other candidates exist. ``category=c`` keeps only items the
catalogue puts in category ``c`` (:mod:`lsi.core.rules`; a rare category may give a shorter
list). The deployment's rules (``LSI_RULE_*``) apply as on the stream.

A similar-items request is answered by whichever worker gets it: every worker holds the live
snapshot and follows the global item statistics (:meth:`streams.interest.Interest.
similar_now`, :mod:`lsi.serving.similar`); ``n`` is 1 to :data:`MAX_N`, 10 by default.

Every answer is a status with a JSON body: 200; 400 for an id that no event could carry
(the rules of :func:`lsi.wire.validation.id_problem`) or a query parameter the view refuses
(unknown, repeated ``n`` or ``category``, ``n`` out of range, too many or bad excluded
ids, a bad category name); 404 for an item
neither the snapshot nor the statistics know (while the worker is still restoring its tables:
503 instead, the item may be in what is not restored yet); 503 while the worker cannot answer
yet or the owner of the user cannot be reached (starting up, no partition assignment or
producer metadata yet, a rebalance, the owner just left): try again shortly; 500 only for a
bug, which is logged. No request changes any state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

from aiohttp import ClientError
from faust.exceptions import SameNode
from faust.web.exceptions import ServiceUnavailable
from prometheus_client import generate_latest

from lsi.monitoring.metrics import WorkerMetrics
from lsi.wire.validation import id_problem
from streams.interest import Interest
from streams.tables import Tables

__all__ = ["MAX_EXCLUDE", "MAX_N", "SIMILAR_N", "readiness", "register_views"]

log = logging.getLogger(__name__)

# aiohttp takes the charset separately; the exposition format is UTF-8 text 0.0.4
_CONTENT_TYPE = "text/plain; version=0.0.4"
#: what makes routing fail while the group is forming or a worker is leaving (RuntimeError:
#: aiohttp's "Session is closed" when this worker forwards while it shuts down)
_NOT_READY = (ServiceUnavailable, KeyError, TypeError, AttributeError, ClientError, OSError,
              asyncio.TimeoutError, RuntimeError)  # fmt: skip
_RETRY = {"Retry-After": "1"}
#: the longest list a request may ask for (``n``), unless ``LSI_TOP_K`` is longer
MAX_N = 100
#: the most item ids one request may exclude
MAX_EXCLUDE = 100
#: the length of a similar-items list when the request does not say
SIMILAR_N = 10


class _BadParameter(ValueError):
    """A query parameter a view refuses (400); the message says what was expected."""


def register_views(app: Any, tables: Tables, interest: Interest, metrics: WorkerMetrics) -> None:
    """Add the views to ``app``'s web server."""

    @app.page("/metrics")
    async def prometheus_metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(metrics.registry), content_type=_CONTENT_TYPE)

    top_n = max(MAX_N, interest.engine.scoring.top_k)

    async def recommendations(web: Any, request: Any, user_id: str) -> Any:
        problem = id_problem(user_id, "user_id")
        if problem is not None:
            return web.json({"error": problem}, status=400)
        try:
            query = _known_query(request.query, ("n", "exclude", "category"))
            n = _query_n(query, top_n)
            exclude = _query_exclude(query)
            category = _query_category(query)
        except _BadParameter as exc:
            return web.json({"error": str(exc)}, status=400)
        try:
            return await app.router.route_req(tables.user_state.name, user_id, web, request)
        except SameNode:
            pass  # this worker owns the user
        except _NOT_READY as exc:
            return _unavailable(web, f"the worker that owns this user cannot be reached yet "
                                f"({type(exc).__name__}); try again shortly")  # fmt: skip
        try:
            return web.json(interest.recommend_now(user_id, n, exclude, category).to_dict())
        except Exception as exc:
            log.exception("GET /recommendations/%r/ failed", user_id)
            return web.json({"error": f"internal error ({type(exc).__name__})"}, status=500)

    _with_and_without_slash(app, "/recommendations/{user_id}", "recommendations", recommendations)

    async def similar(web: Any, request: Any, item_id: str) -> Any:
        problem = id_problem(item_id, "item_id")
        try:
            if problem is not None:
                raise _BadParameter(problem)
            n = _query_n(_known_query(request.query, ("n",)), MAX_N)
        except _BadParameter as exc:
            return web.json({"error": str(exc)}, status=400)
        try:
            found = interest.similar_now(item_id, SIMILAR_N if n is None else n)
        except Exception as exc:
            log.exception("GET /items/%r/similar/ failed", item_id)
            return web.json({"error": f"internal error ({type(exc).__name__})"}, status=500)
        if found is not None:
            return web.json(found.to_dict())
        if readiness(app)["status"] != "ready":
            return _unavailable(web, "this worker is still restoring the item statistics; "
                                "try again shortly")  # fmt: skip
        return web.json({"error": f"item_id {item_id!r} is unknown: neither the live snapshot "
                         "nor the item statistics know it"}, status=404)  # fmt: skip

    _with_and_without_slash(app, "/items/{item_id}/similar", "similar", similar)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "app": app.conf.id})

    async def ready(web: Any, request: Any) -> Any:
        state = readiness(app)
        if state["status"] == "ready":
            return web.json(state)
        return web.json(state, status=503, headers=_RETRY)

    _with_and_without_slash(app, "/healthz/ready", "ready", ready)


def _with_and_without_slash(app: Any, path: str, name: str, view: Any) -> None:
    """Serve ``view`` at ``path/`` and at ``path``: the same view, never a 404 trap."""
    app.page(f"{path}/", name=f"{name}_slash")(view)
    app.page(path, name=name)(view)


def _known_query(query: Any, names: Collection[str]) -> Any:
    """``query`` (a request's multidict) if it holds no parameter but ``names``: a typo must
    not be ignored silently."""
    unknown = sorted(set(query) - set(names))
    if unknown:
        raise _BadParameter(f"unknown query parameter(s) {', '.join(map(repr, unknown))}; "
                           f"this view takes {', '.join(sorted(names))}")  # fmt: skip
    return query


def _query_n(query: Any, limit: int) -> int | None:
    """The ``n`` of the query: an integer from 1 to ``limit`` (``None`` when absent)."""
    values = query.getall("n", [])
    if not values:
        return None
    if len(values) > 1:
        raise _BadParameter(f"n must be given once, got it {len(values)} times")
    raw = values[0]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9 and 1 <= int(raw) <= limit):
        raise _BadParameter(f"n must be an integer from 1 to {limit}, got {raw!r:.40}")
    return int(raw)


def _query_exclude(query: Any) -> frozenset[str]:
    """The item ids of every ``exclude`` parameter of the query (each comma-separated; an
    empty value names none): at most :data:`MAX_EXCLUDE`, each a valid id."""
    ids = [item for value in query.getall("exclude", []) if value for item in value.split(",")]
    if len(ids) > MAX_EXCLUDE:
        raise _BadParameter(f"exclude may name at most {MAX_EXCLUDE} item ids, got {len(ids)}")
    for item in ids:
        problem = id_problem(item, "an excluded item_id")
        if problem is not None:
            raise _BadParameter(problem)
    return frozenset(ids)


def _query_category(query: Any) -> str | None:
    """The ``category`` of the query (``None`` when absent): one name, valid as the
    catalogue's category names are (:func:`lsi.wire.validation.id_problem`)."""
    values = query.getall("category", [])
    if not values:
        return None
    if len(values) > 1:
        raise _BadParameter(f"category may be given once, got {len(values)} values")
    problem = id_problem(values[0], "category")
    if problem is not None:
        raise _BadParameter(problem)
    return str(values[0])


def readiness(app: Any) -> dict[str, Any]:
    """``ready`` once the worker has its partitions and has restored its tables from their
    changelogs (no rebalance and no recovery in progress); ``starting`` before, with what it
    waits for. ``/healthz`` answers as soon as the process serves HTTP (liveness);
    ``/healthz/ready/`` is for a load balancer or an orchestrator's readiness probe."""
    recovery = app.tables.recovery
    waiting = [what for what, pending in (
        ("a partition assignment (the group is rebalancing)", bool(app.rebalancing)),
        ("table recovery from the changelogs", bool(app.in_recovery)),
        ("its first partition assignment", not recovery.completed.is_set()),
    ) if pending]  # fmt: skip
    out: dict[str, Any] = {"status": "starting" if waiting else "ready", "app": app.conf.id}
    if waiting:
        out["waiting_for"] = waiting
    return out


def _unavailable(web: Any, message: str) -> Any:
    return web.json({"error": message}, status=503, headers=_RETRY)
