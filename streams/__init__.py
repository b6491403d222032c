"""The Faust app of lsi: topics, tables, the worker (interest) and item-stats agents, views."""

from streams.app import Pipeline, build_app, run_worker

__all__ = ["Pipeline", "build_app", "run_worker"]
