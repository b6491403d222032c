"""HTTP views of a worker: ``/metrics`` (Prometheus) and ``/recommendations/{user_id}/``.

A recommendation request is routed to the worker that owns the user's partition (Faust's
``table_route``), scored there with :meth:`streams.interest.Interest.recommend_now`, and
returned as the same JSON record the stream emits, with ``trigger = "request"``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest

from lsi.metrics import WorkerMetrics
from streams.interest import Interest
from streams.tables import Tables

__all__ = ["register_views"]

# aiohttp takes the charset separately; the exposition format is UTF-8 text 0.0.4
_CONTENT_TYPE = "text/plain; version=0.0.4"


def register_views(app: Any, tables: Tables, interest: Interest, metrics: WorkerMetrics) -> None:
    """Add the views to ``app``'s web server."""

    @app.page("/metrics")
    async def prometheus_metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(metrics.registry), content_type=_CONTENT_TYPE)

    @app.page("/recommendations/{user_id}/")
    @app.table_route(table=tables.user_state, match_info="user_id")
    async def recommendations(web: Any, request: Any, user_id: str) -> Any:
        if not user_id or len(user_id) > 128:
            return web.json({"error": "user_id must have 1 to 128 characters"}, status=400)
        return web.json(interest.recommend_now(user_id).to_dict())

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "app": app.conf.id})
