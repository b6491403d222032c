"""The pure core: per-user state, item statistics, the statistics scorer, the batch engine
(``process_batch``), the one ranking rule and online drift.

Standard library and numpy only (river for drift): no Kafka client, no Faust, no torch. The
engine sees a model snapshot through the protocols of :mod:`lsi.core.snapshot_view`; the
concrete snapshot and the fused scorer live in :mod:`lsi.serving`.
"""
