"""Benchmarks (``lsi bench …``): each writes ``report.json``, ``report.md`` and PNG plots."""

from lsi.bench.pipeline import PipelineBenchOptions, run_pipeline_bench

__all__ = ["PipelineBenchOptions", "run_pipeline_bench"]
