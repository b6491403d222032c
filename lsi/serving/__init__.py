"""Serving: the model snapshot, the fused scorer with its feature builder and candidate retrieval,
the snapshot store, and a worker as a child process.

torch lives here (the fused scorer), never in :mod:`lsi.core`.
"""
