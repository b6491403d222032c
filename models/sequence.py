"""Short-term sequence encoders and the long/short gate (issue 5 groundwork: the modules and
their losses; not trained by the refresh job or served yet).

Input. A user's most recent ``T`` interactions, oldest first and left-padded: item rows
``items`` ``[B, T]`` (0 = padding, item ``i`` of the catalogue is row ``i + 1``), event-type
codes ``types`` ``[B, T]`` (:data:`lsi.records.EVENT_TYPES`), and the gap in seconds before
each event ``gaps`` ``[B, T]`` (0 for the first).

Embedding of position ``t``:

.. math::

    h^{(0)}_t = E_{item}[x_t] + E_{pos}[t] + E_{type}[c_t] + E_{gap}[\\beta(\\Delta_t)],
    \\qquad \\beta(\\Delta) = \\min(G - 1, \\lfloor \\log_2(1 + \\Delta / 60) \\rfloor)

(gaps bucketed on a log scale of minutes). Item rows ``1…I`` share their space with the
long-term model's item vectors when ``dim`` matches, so both sources score with inner products.

:class:`CausalSelfAttentionEncoder` (SASRec-style): ``L`` pre-norm Transformer blocks with a
causal mask (position ``t`` attends to ``t' <= t`` only) and a padding mask; output ``[B, T, d]``,
whose last row is the short-term vector :math:`S_u`. :class:`GRUEncoder`: a GRU over the same
embeddings, for comparison. Because both are causal, the output at ``t`` for a sequence equals
the last output for its prefix ``0…t``: the serving path (one event at a time) and the training
path (whole sequences) agree.

:class:`LongShortGate`:
:math:`w = \\sigma(\\mathrm{MLP}([L_u, S_u, \\log(1 + \\Delta_{last}), \\log(1 + n_{session}),
\\log(1 + n_{history})]))`, the weight of the long-term score.

Loss (:func:`next_item_loss`): full softmax cross-entropy over the catalogue for the next item,
:math:`-\\log \\frac{\\exp \\langle s_t, e_{x_{t+1}} \\rangle}{\\sum_j \\exp \\langle s_t, e_j \\rangle}`:
with a few thousand items the full softmax is affordable and avoids the sampling bias of
negative-sampled losses (gSASRec's finding that BCE with one negative under-trains SASRec).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "CausalSelfAttentionEncoder",
    "GRUEncoder",
    "LongShortGate",
    "gap_buckets",
    "next_item_loss",
]

GAP_BUCKETS = 24
N_TYPES = 8


def gap_buckets(gaps: Tensor, n_buckets: int = GAP_BUCKETS) -> Tensor:
    """:math:`\\beta(\\Delta)`: seconds ``[B, T]`` → bucket ids ``[B, T]`` in ``[0, G)``."""
    minutes = gaps.clamp(min=0).to(torch.float32) / 60.0
    return torch.floor(torch.log2(1.0 + minutes)).long().clamp(max=n_buckets - 1)


class _Embed(nn.Module):
    def __init__(self, num_items: int, dim: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.item = nn.Embedding(num_items + 1, dim, padding_idx=0)
        self.pos = nn.Embedding(max_len, dim)
        self.etype = nn.Embedding(N_TYPES, dim)
        self.gap = nn.Embedding(GAP_BUCKETS, dim)
        self.drop = nn.Dropout(dropout)
        self.max_len = max_len
        nn.init.normal_(self.item.weight, std=dim**-0.5)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def forward(self, items: Tensor, types: Tensor, gaps: Tensor) -> Tensor:
        t = items.shape[1]
        if t > self.max_len:
            raise ValueError(f"sequence of {t} exceeds max_len {self.max_len}")
        pos = torch.arange(t, device=items.device)
        h = self.item(items) + self.pos(pos)[None] + self.etype(types) + self.gap(gap_buckets(gaps))
        out: Tensor = self.drop(h * (items != 0).unsqueeze(-1))
        return out


class CausalSelfAttentionEncoder(nn.Module):
    """SASRec-style causal self-attention over the recent sequence.

    Args:
        num_items: ``I`` (rows ``1…I``; 0 is padding).
        dim: ``d``.
        max_len: longest sequence ``T``.
        layers, heads, dropout: Transformer shape.

    :meth:`forward` maps ``items``, ``types``, ``gaps`` ``[B, T]`` to ``[B, T, d]``.
    """

    def __init__(self, num_items: int, dim: int = 64, max_len: int = 50, layers: int = 2,
                 heads: int = 2, dropout: float = 0.2) -> None:  # fmt: skip
        super().__init__()
        self.embed = _Embed(num_items, dim, max_len, dropout)
        self.heads = heads
        block = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=dim * 4, dropout=dropout,
                                           batch_first=True, norm_first=True)  # fmt: skip
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    @property
    def item_embeddings(self) -> Tensor:
        """Catalogue item vectors ``[I, d]`` (row 0, the padding, excluded)."""
        return self.embed.item.weight[1:]

    def forward(self, items: Tensor, types: Tensor, gaps: Tensor) -> Tensor:
        t = items.shape[1]
        h = self.embed(items, types, gaps)
        dev = items.device
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=dev), diagonal=1)
        eye = torch.eye(t, dtype=torch.bool, device=dev)
        # [B, T, T]: no attention to later positions, nor to padding (but each position may
        # always see itself, so a padded position's row is defined; its output is zeroed)
        blocked = causal[None] | ((items == 0)[:, None, :] & ~eye[None])
        out = self.blocks(h, mask=blocked.repeat_interleave(self.heads, dim=0))
        result: Tensor = self.norm(out) * (items != 0).unsqueeze(-1)
        return result


class GRUEncoder(nn.Module):
    """A GRU over the same embeddings (the recurrent comparison). ``[B, T]`` → ``[B, T, d]``."""

    def __init__(self, num_items: int, dim: int = 64, max_len: int = 50, layers: int = 1,
                 dropout: float = 0.2) -> None:  # fmt: skip
        super().__init__()
        self.embed = _Embed(num_items, dim, max_len, dropout)
        self.gru = nn.GRU(dim, dim, num_layers=layers, batch_first=True)

    @property
    def item_embeddings(self) -> Tensor:
        return self.embed.item.weight[1:]

    def forward(self, items: Tensor, types: Tensor, gaps: Tensor) -> Tensor:
        out, _ = self.gru(self.embed(items, types, gaps))
        result: Tensor = out * (items != 0).unsqueeze(-1)
        return result


class LongShortGate(nn.Module):
    """``long_weight = σ(MLP([L_u, S_u, log1p(Δ_last), log1p(n_session), log1p(n_history)]))``.

    ``long_vec``, ``short_vec`` ``[B, d]``; ``since_last_s``, ``session_len``, ``history``
    ``[B]``; returns ``[B]`` in (0, 1).
    """

    def __init__(self, dim: int = 64, hidden: int = 32) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * dim + 3, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, long_vec: Tensor, short_vec: Tensor, since_last_s: Tensor,
                session_len: Tensor, history: Tensor) -> Tensor:  # fmt: skip
        feats = torch.stack([torch.log1p(since_last_s.clamp(min=0)),
                             torch.log1p(session_len.clamp(min=0)),
                             torch.log1p(history.clamp(min=0))], dim=-1).to(long_vec.dtype)  # fmt: skip
        x = torch.cat([long_vec, short_vec, feats], dim=-1)
        return torch.sigmoid(self.mlp(x).squeeze(-1))


def next_item_loss(states: Tensor, targets: Tensor, item_embeddings: Tensor) -> Tensor:
    """Full-softmax next-item cross-entropy.

    ``states`` ``[B, T, d]`` (the encoder's outputs), ``targets`` ``[B, T]`` the next item's
    row (``1…I``; 0 = no target, ignored), ``item_embeddings`` ``[I, d]``.
    """
    logits = states @ item_embeddings.T  # [B, T, I]
    mask = targets > 0
    if not bool(mask.any()):
        return states.sum() * 0.0
    loss: Tensor = nn.functional.cross_entropy(logits[mask], targets[mask] - 1)
    return loss
