"""Training loops: the long-term model (:mod:`models.training.longterm`) and the fused scorer
(:mod:`models.training.sequence`). They take their configuration sections, never the worker's
settings, and do no I/O.
"""
