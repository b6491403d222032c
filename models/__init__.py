"""Models (``nn.Module``\\ s and their losses; training loops live in the refresh jobs)."""

from models.lightgcn import WeightedLightGCN, bpr_loss, edge_weights

__all__ = ["WeightedLightGCN", "bpr_loss", "edge_weights"]
