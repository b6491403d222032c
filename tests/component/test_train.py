"""Training the long-term model for real (slow): BPR alone, and LightGCN, learn to rank each
user's own cluster first on a two-cluster log."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest

from lsi.serving.snapshot import Snapshot
from models.training.longterm import train_long_term
from tests.unit.models.test_train import SMALL, two_clusters

pytestmark = pytest.mark.slow


def cluster_auc(model: Snapshot) -> npt.NDArray[np.float64]:
    """Per user: the share of (unseen in-cluster, out-of-cluster) item pairs ranked right."""
    out = []
    for user in model.user_ids:
        s = model.scores(user)
        assert s is not None
        mine = user[0].upper()
        own = np.array([s[j] for k, j in model.item_index.items() if k[0] == mine])
        other = np.array([s[j] for k, j in model.item_index.items() if k[0] != mine])
        assert np.isfinite(other).all() and np.isneginf(own).sum() == 5  # history excluded
        own = own[np.isfinite(own)]
        out.append(float((own[:, None] > other[None, :]).mean()))
    return np.array(out)


def test_bpr_learns_to_rank_in_cluster_items_first() -> None:
    """Without propagation (``layers=0``) the ranking can only come from training."""
    log = two_clusters()
    cfg = replace(SMALL, layers=0)
    trained = train_long_term(log, cfg)
    assert trained.epochs == 30 and len(trained.losses) == 30
    assert trained.losses[-1] < 0.5 * trained.losses[0]
    assert trained.device == "cpu" and trained.warm_from == ""
    auc = cluster_auc(trained.model("v000001"))
    assert (auc >= 0.9).mean() >= 0.9 and auc.mean() > 0.95
    # control: one epoch from the random start ranks no better than chance
    untrained = cluster_auc(train_long_term(log, replace(cfg, epochs=1)).model("v0"))
    assert untrained.mean() < 0.7


def test_lightgcn_ranks_all_in_cluster_items_first_for_most_users() -> None:
    trained = train_long_term(two_clusters(seed=1), SMALL)
    auc = cluster_auc(trained.model("v000001"))
    assert (auc == 1.0).mean() >= 0.9
