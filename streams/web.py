"""HTTP views of a worker: ``/metrics`` (Prometheus, with the standard ``process_*`` series),
``/recommendations/{user_id}/`` (also without the trailing slash: the same view, not a 404),
``/healthz`` (liveness) and ``/healthz/ready/`` (readiness: partitions assigned, tables
restored; 503 before).

A recommendation request is routed to the worker that owns the user's partition (Faust's
router, as ``table_route`` uses it), scored there with
:meth:`streams.interest.Interest.recommend_now`, and returned as the same JSON record the
stream emits, with ``trigger = "request"``.

Every answer is a status with a JSON body: 200; 400 for an id that no event could carry
(the rules of :func:`lsi.wire.validation.id_problem`); 503 while the worker cannot answer yet or
the owner of the user cannot be reached (starting up, no partition assignment or producer
metadata yet, a rebalance, the owner just left): try again shortly; 500 only for a bug, which
is logged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import ClientError
from faust.exceptions import SameNode
from faust.web.exceptions import ServiceUnavailable
from prometheus_client import generate_latest

from lsi.monitoring.metrics import WorkerMetrics
from lsi.wire.validation import id_problem
from streams.interest import Interest
from streams.tables import Tables

__all__ = ["readiness", "register_views"]

log = logging.getLogger(__name__)

# aiohttp takes the charset separately; the exposition format is UTF-8 text 0.0.4
_CONTENT_TYPE = "text/plain; version=0.0.4"
#: what makes routing fail while the group is forming or a worker is leaving (RuntimeError:
#: aiohttp's "Session is closed" when this worker forwards while it shuts down)
_NOT_READY = (ServiceUnavailable, KeyError, TypeError, AttributeError, ClientError, OSError,
              asyncio.TimeoutError, RuntimeError)  # fmt: skip
_RETRY = {"Retry-After": "1"}


def register_views(app: Any, tables: Tables, interest: Interest, metrics: WorkerMetrics) -> None:
    """Add the views to ``app``'s web server."""

    @app.page("/metrics")
    async def prometheus_metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(metrics.registry), content_type=_CONTENT_TYPE)

    async def recommendations(web: Any, request: Any, user_id: str) -> Any:
        problem = id_problem(user_id, "user_id")
        if problem is not None:
            return web.json({"error": problem}, status=400)
        try:
            return await app.router.route_req(tables.user_state.name, user_id, web, request)
        except SameNode:
            pass  # this worker owns the user
        except _NOT_READY as exc:
            return _unavailable(web, f"the worker that owns this user cannot be reached yet "
                                f"({type(exc).__name__}); try again shortly")  # fmt: skip
        try:
            return web.json(interest.recommend_now(user_id).to_dict())
        except Exception as exc:
            log.exception("GET /recommendations/%r/ failed", user_id)
            return web.json({"error": f"internal error ({type(exc).__name__})"}, status=500)

    _with_and_without_slash(app, "/recommendations/{user_id}", "recommendations", recommendations)

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
