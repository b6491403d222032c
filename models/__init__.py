"""Models: ``nn.Module``\\ s and their losses (:mod:`models.lightgcn`, :mod:`models.sequence`),
their training loops and the refresh job.

Nothing is re-exported here: importing a submodule (the sequence encoder, which the worker's
scorer needs) must not load :mod:`torch_geometric` through the long-term model's module.
"""
