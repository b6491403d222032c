"""Models: ``nn.Module``\\ s and their losses (:mod:`models.nn`), their training loops
(:mod:`models.training`) and the refresh job (:mod:`models.jobs`).

Nothing is re-exported here: importing a submodule (the sequence encoder, which the worker's
scorer needs) must not load :mod:`torch_geometric` through the long-term model's module.
"""
