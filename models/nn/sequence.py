"""Short-term sequence encoders and the long/short gate: the modules and their losses
(trained by :mod:`models.training.sequence`, served by :mod:`lsi.serving.fusion`).

Input. A user's most recent ``T`` interactions, oldest first and left-padded: item rows
``items`` ``[B, T]`` (0 = padding, item ``i`` of the catalogue is row ``i + 1``), event-type
codes ``types`` ``[B, T]`` (:data:`lsi.wire.records.EVENT_TYPES`), and the gap in seconds before
each event ``gaps`` ``[B, T]`` (0 for the first).

Embedding of position ``t``:

.. math::

    h^{(0)}_t = E_{item}[x_t] + E_{pos}[p_t] + E_{type}[c_t] + E_{gap}[\\beta(\\Delta_t)],
    \\qquad \\beta(\\Delta) = \\min(G - 1, \\lfloor \\log_2(1 + \\Delta / 60) \\rfloor)

(gaps bucketed on a log scale of minutes), where :math:`p_t` counts the real events before
``t`` in the window: positions start at the window's first event, so left padding and the
batch tensor's length never change a row's result, and the prefix of a window is scored
exactly as that prefix alone would be. Item rows ``1…I`` share their space with the
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

Loss (:func:`next_item_loss`): softmax cross-entropy over the catalogue (full, or against
uniformly sampled items) for the next item,
:math:`-\\log \\frac{\\exp \\langle s_t, e_{x_{t+1}} \\rangle}{\\sum_j \\exp \\langle s_t, e_j \\rangle}`:
with a few thousand items the full softmax is affordable and avoids the sampling bias of
negative-sampled losses (gSASRec's finding that BCE with one negative under-trains SASRec).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "GATES",
    "ByteDropout",
    "CausalSelfAttentionEncoder",
    "FusedLogProbs",
    "GRUEncoder",
    "LongShortGate",
    "LongShortScorer",
    "fuse",
    "gap_buckets",
    "make_encoder",
    "next_item_loss",
    "short_long_contrastive",
]

GAP_BUCKETS = 24
N_TYPES = 8


def gap_buckets(gaps: Tensor, n_buckets: int = GAP_BUCKETS) -> Tensor:
    """:math:`\\beta(\\Delta)`: seconds ``[B, T]`` → bucket ids ``[B, T]`` in ``[0, G)``."""
    minutes = gaps.clamp(min=0).to(torch.float32) / 60.0
    return torch.floor(torch.log2(1.0 + minutes)).long().clamp(max=n_buckets - 1)


class ByteDropout(nn.Module):
    """Inverted dropout whose mask is drawn eight elements per random number.

    ``nn.Dropout`` draws one Bernoulli variate per element, which on CPU costs more than the
    encoder's matrix products (a fifth of a training step at ``T = 50``). Here each random
    ``int64`` is read as eight bytes :math:`r`, an element is kept when :math:`r \\ge q` with
    :math:`q = \\mathrm{round}(256 p)`, and kept elements are scaled by
    :math:`256 / (256 - q)`: the drop probability is ``p`` rounded to a multiple of 1/256 and
    the expectation is exact. Identity in eval mode. No parameters, so swapping it for
    ``nn.Dropout`` leaves a ``state_dict`` unchanged. ``[*]`` → ``[*]``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.cut = min(255, round(p * 256))

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.cut == 0:
            return x
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64,
                              device=x.device)  # fmt: skip
        keep = words.view(torch.uint8)[:n].view(x.shape) >= self.cut
        mask = keep.to(x.dtype).mul_(256 / (256 - self.cut))
        return x * mask


class _Embed(nn.Module):
    def __init__(self, num_items: int, dim: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.item = nn.Embedding(num_items + 1, dim, padding_idx=0)
        self.pos = nn.Embedding(max_len, dim)
        self.etype = nn.Embedding(N_TYPES, dim)
        self.gap = nn.Embedding(GAP_BUCKETS, dim)
        self.drop = ByteDropout(dropout)
        self.max_len = max_len
        nn.init.normal_(self.item.weight, std=dim**-0.5)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def forward(self, items: Tensor, types: Tensor, gaps: Tensor) -> Tensor:
        t = items.shape[1]
        if t > self.max_len:
            raise ValueError(f"sequence of {t} exceeds max_len {self.max_len}")
        real = items != 0
        # positions count from the first real event, so padding (left or right) and the
        # length of the batch tensor never change a row's result
        pos = (torch.cumsum(real, dim=1) - 1).clamp(min=0)
        h = self.item(items) + self.pos(pos) + self.etype(types) + self.gap(gap_buckets(gaps))
        out: Tensor = self.drop(h * real.unsqueeze(-1))
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
        for layer in self.blocks.layers:  # the residual and feed-forward dropouts
            layer.dropout = ByteDropout(dropout)
            layer.dropout1 = ByteDropout(dropout)
            layer.dropout2 = ByteDropout(dropout)
        self.norm = nn.LayerNorm(dim)

    @property
    def item_embeddings(self) -> Tensor:
        """Catalogue item vectors ``[I, d]`` (row 0, the padding, excluded)."""
        return self.embed.item.weight[1:]

    def _blocked(self, items: Tensor) -> Tensor:
        """``[B, T, T]``: no attention to later positions, nor to padding (but each position
        may always see itself, so a padded position's row is defined; its output is
        zeroed)."""
        t, dev = items.shape[1], items.device
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=dev), diagonal=1)
        eye = torch.eye(t, dtype=torch.bool, device=dev)
        return causal[None] | ((items == 0)[:, None, :] & ~eye[None])

    def forward(self, items: Tensor, types: Tensor, gaps: Tensor) -> Tensor:
        h = self.embed(items, types, gaps)
        out = self.blocks(h, mask=self._blocked(items).repeat_interleave(self.heads, dim=0))
        result: Tensor = self.norm(out) * (items != 0).unsqueeze(-1)
        return result

    def last(self, items: Tensor, types: Tensor, gaps: Tensor) -> Tensor:
        """``forward(items, types, gaps)[:, -1]`` (``[B, d]``, the short-term vector: all that
        serving needs) at less cost. The same blocks, with the same weights, computed two ways
        faster: attention through ``scaled_dot_product_attention`` with one ``[B, 1, T, T]``
        mask (not a ``[B·heads, T, T]`` copy turned into an additive mask), and the last
        block for the last position only (the blocks below give its keys and values), so its
        attention and feed-forward cost :math:`O(T d)` and :math:`O(d^2)` instead of
        :math:`O(T^2 d)` and :math:`O(T d^2)`. Equal to ``forward`` up to float rounding."""
        h = self.embed(items, types, gaps)
        allowed = ~self._blocked(items)[:, None]  # [B, 1, T, T]
        *lower, top = self.blocks.layers
        for layer in lower:  # pre-norm: x + SA(norm1(x)), then x + FF(norm2(x))
            h = h + layer.dropout1(_attend(layer, layer.norm1(h), allowed))
            h = h + _feed_forward(layer, layer.norm2(h))
        kv = top.norm1(h)
        a = _attend(top, kv, allowed[:, :, -1:], query=kv[:, -1:])[:, 0]
        x = h[:, -1] + top.dropout1(a)
        x = x + _feed_forward(top, top.norm2(x))
        result: Tensor = self.norm(x) * (items[:, -1] != 0).unsqueeze(-1)
        return result


def _attend(layer: nn.TransformerEncoderLayer, x: Tensor, allowed: Tensor,
            query: Tensor | None = None) -> Tensor:  # fmt: skip
    """The block's multi-head self-attention over ``x`` ``[B, T, d]`` for the queries
    ``query`` ``[B, Q, d]`` (default ``x``), ``allowed`` ``[B, 1, Q, T]``; ``[B, Q, d]``."""
    mha = layer.self_attn
    d, heads = x.shape[-1], mha.num_heads
    w, b = mha.in_proj_weight, mha.in_proj_bias
    q = nn.functional.linear(x if query is None else query, w[:d], b[:d])
    k = nn.functional.linear(x, w[d : 2 * d], b[d : 2 * d])
    v = nn.functional.linear(x, w[2 * d :], b[2 * d :])

    def split(z: Tensor) -> Tensor:  # [B, n, d] -> [B, heads, n, d / heads]
        return z.reshape(*z.shape[:-1], heads, d // heads).transpose(1, 2)

    o = nn.functional.scaled_dot_product_attention(
        split(q), split(k), split(v), attn_mask=allowed,
        dropout_p=mha.dropout if mha.training else 0.0,
    )  # fmt: skip
    out: Tensor = mha.out_proj(o.transpose(1, 2).flatten(2))
    return out


def _feed_forward(layer: nn.TransformerEncoderLayer, x: Tensor) -> Tensor:
    out: Tensor = layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(x)))))
    return out


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

    def last(self, items: Tensor, types: Tensor, gaps: Tensor) -> Tensor:
        """The output at the last position, ``[B, d]``."""
        out: Tensor = self.forward(items, types, gaps)[:, -1]
        return out

    def forward(self, items: Tensor, types: Tensor, gaps: Tensor) -> Tensor:
        """Each row's recurrence starts at its first real event: the left-padded rows are
        right-aligned, packed (the GRU never sees padding) and shifted back."""
        b, t = items.shape
        real = items != 0
        lengths = real.sum(dim=1)
        shift = (t - lengths)[:, None]
        steps = torch.arange(t, device=items.device)[None]
        to_right = (steps + shift) % t  # right-aligned position j reads left-padded j + shift
        h = self.embed(items, types, gaps)
        h_right = h.gather(1, to_right[..., None].expand(b, t, h.shape[2]))
        packed = nn.utils.rnn.pack_padded_sequence(h_right, lengths.clamp(min=1).cpu(),
                                                   batch_first=True, enforce_sorted=False)  # fmt: skip
        out_p, _ = self.gru(packed)
        out_right, _ = nn.utils.rnn.pad_packed_sequence(out_p, batch_first=True, total_length=t)
        to_left = (steps - shift) % t
        out = out_right.gather(1, to_left[..., None].expand(b, t, out_right.shape[2]))
        result: Tensor = out * real.unsqueeze(-1)
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

    def start_at(self, logit: float) -> None:
        """Make the gate the constant :math:`\\sigma(\\text{logit})` for every user: the
        output layer's weights become 0 and its bias ``logit`` (the hidden layer keeps its
        weights, so training moves away from the constant from the first step)."""
        out = self.mlp[2]
        assert isinstance(out, nn.Linear)
        with torch.no_grad():
            out.weight.zero_()
            out.bias.fill_(logit)


def next_item_loss(states: Tensor, targets: Tensor, item_embeddings: Tensor,
                   negatives: int = 0, generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
    """Next-item cross-entropy, over the full catalogue or a sampled one.

    ``states`` ``[B, T, d]`` (the encoder's outputs), ``targets`` ``[B, T]`` the next item's
    row (``1…I``; 0 = no target, ignored), ``item_embeddings`` ``[I, d]``.

    ``negatives = 0`` (or at least ``I``): the full softmax. Otherwise the sampled softmax:
    ``N`` item rows drawn uniformly, shared by the whole batch, and each target scored against
    itself and them, :math:`-\\log \\frac{e^{s_y}}{e^{s_y} + \\sum_{j \\in N, j \\ne y} e^{s_j}}`
    (a drawn row equal to the target is masked). Its cost per position is :math:`O(N d)`
    instead of :math:`O(I d)`, which is what makes CPU training practical for catalogues of
    more than a few thousand items; with enough negatives it ranks nearly as the full softmax
    does (Klenitskiy & Vasilev, 2023).
    """
    mask = targets > 0
    if not bool(mask.any()):
        return states.sum() * 0.0
    n_items = item_embeddings.shape[0]
    s, y = states[mask], targets[mask] - 1  # [M, d], [M]
    if negatives <= 0 or negatives >= n_items:
        loss: Tensor = nn.functional.cross_entropy(s @ item_embeddings.T, y)
        return loss
    neg = torch.randint(0, n_items, (negatives,), device=states.device, generator=generator)
    pos_logit = (s * item_embeddings[y]).sum(-1, keepdim=True)  # [M, 1]
    neg_logits = s @ item_embeddings[neg].T  # [M, N]
    neg_logits = neg_logits.masked_fill(neg[None, :] == y[:, None], float("-inf"))
    logits = torch.cat([pos_logit, neg_logits], dim=1)
    sampled: Tensor = nn.functional.cross_entropy(logits, torch.zeros_like(y))
    return sampled


Encoder = CausalSelfAttentionEncoder | GRUEncoder


def make_encoder(kind: str, num_items: int, dim: int, max_len: int, layers: int, heads: int,
                 dropout: float) -> Encoder:  # fmt: skip
    """``attention`` → :class:`CausalSelfAttentionEncoder`, ``gru`` → :class:`GRUEncoder`."""
    if kind == "attention":
        return CausalSelfAttentionEncoder(num_items, dim, max_len, layers, heads, dropout)
    if kind == "gru":
        return GRUEncoder(num_items, dim, max_len, 1, dropout)
    raise ValueError(f"encoder must be attention or gru, got {kind!r}")


class FusedLogProbs(NamedTuple):
    """Per-item log-probabilities ``[B, I]`` of each source and of the fusion, and ``w``."""

    fused: Tensor
    short: Tensor
    long: Tensor
    long_weight: Tensor


_NEG = -1e9


def fuse(short_logits: Tensor, long_logits: Tensor, long_weight: Tensor, excluded: Tensor,
         log_tau: Tensor) -> FusedLogProbs:  # fmt: skip
    """The product of the two experts, weighted by the gate.

    With the items the user may be offered :math:`\\mathcal C_u` (``~excluded``),

    .. math::

        \\log p_S(i) = \\mathrm{log\\,softmax}_{\\mathcal C_u}(\\langle S_u, e_i \\rangle), \\quad
        \\log p_L(i) = \\mathrm{log\\,softmax}_{\\mathcal C_u}(\\tau \\langle L_u, v_i \\rangle),

        \\log p(i) = \\mathrm{log\\,softmax}_{\\mathcal C_u}\\big(w_u \\log p_L(i)
                     + (1 - w_u) \\log p_S(i)\\big)

    (a geometric mixture: an item must please the source the gate trusts; :math:`w_u = 0`
    gives the short-term list exactly, :math:`w_u = 1` the long-term one). ``tau`` (learned,
    ``exp(log_tau)``) puts the long-term inner products on the scale of a softmax.

    Args:
        short_logits: ``[B, I]`` encoder scores :math:`\\langle S_u, e_i\\rangle`.
        long_logits: ``[B, I]`` :math:`\\langle L_u, v_i\\rangle`; NaN where the snapshot lacks
            the item (it gets the row's lowest long-term score).
        long_weight: ``[B]`` :math:`w_u`, 0 for users without a long-term vector (their
            log-probabilities are all ``-inf``).
        excluded: ``[B, I]`` bool, items never offered (the user's seen items, padding).
        log_tau: scalar.
    """
    known = torch.isfinite(long_logits) & ~excluded
    floor = torch.where(known, long_logits, torch.full_like(long_logits, float("inf")))
    floor = floor.min(dim=1, keepdim=True).values
    floor = torch.where(torch.isfinite(floor), floor, torch.zeros_like(floor))
    long_filled = torch.where(torch.isfinite(long_logits), long_logits, floor)
    short = torch.log_softmax(short_logits.masked_fill(excluded, _NEG), dim=1)
    long = torch.log_softmax((log_tau.exp() * long_filled).masked_fill(excluded, _NEG), dim=1)
    w = long_weight.unsqueeze(1)
    fused = torch.log_softmax((w * long + (1.0 - w) * short).masked_fill(excluded, _NEG), dim=1)
    ninf = float("-inf")
    no_long = ~torch.isfinite(long_logits).any(dim=1, keepdim=True)  # a user the snapshot lacks
    return FusedLogProbs(fused.masked_fill(excluded, ninf), short.masked_fill(excluded, ninf),
                         long.masked_fill(excluded | no_long, ninf), long_weight)  # fmt: skip


#: the gate's kinds: per user, one constant, or none (the encoder alone)
GATES = ("learned", "fixed", "off")


class LongShortScorer(nn.Module):
    """The short-term encoder, the gate and the long-term temperature: everything of the
    fused model that is trained (the long-term vectors come from the GNN snapshot).

    :meth:`forward` takes the window ``items``, ``types``, ``gaps`` ``[B, T]``, the long-term
    user vectors ``long_vec`` ``[B, d_L]`` (zeros for users without one), the
    long-term inner products ``long_logits`` ``[B, I]``, the gate's features ``since_last_s``,
    ``session_len``, ``history`` ``[B]``, ``long_known`` ``[B]`` bool and ``excluded``
    ``[B, I]``; it returns :class:`FusedLogProbs` for the window's last position.

    ``gate="fixed"`` replaces the per-user gate by one learned constant
    :math:`w = \\sigma(b)` (the ablation "fixed weight"); ``gate="off"`` serves the encoder
    alone, :math:`w = 0` for every user (what training chooses when no gate beat the encoder
    on the held-out calibration cases: the fused list is then exactly the short-term one).
    """

    def __init__(self, encoder: Encoder, long_dim: int, gate_hidden: int = 32,
                 gate: str = "learned") -> None:  # fmt: skip
        super().__init__()
        if gate not in GATES:
            raise ValueError(f"gate must be one of {', '.join(GATES)}, got {gate!r}")
        self.encoder = encoder
        dim = encoder.item_embeddings.shape[1]
        self.gate_kind = gate
        self.long_proj = nn.Linear(long_dim, dim, bias=False)  # L_u into the gate's space
        self.gate = LongShortGate(dim, gate_hidden)
        self.fixed_logit = nn.Parameter(torch.zeros(()))  # w = σ(b) for every user ("fixed")
        self.log_tau = nn.Parameter(torch.zeros(()))

    def short_state(self, items: Tensor, types: Tensor, gaps: Tensor, chunk: int = 64) -> Tensor:
        """:math:`S_u`: the encoder's output at each window's last position, ``[B, d]``.

        Rows are encoded in chunks of ``chunk`` rows of similar window length, each chunk cut
        to its own longest window (left padding never changes a row's result, so this is the
        same function): one long history in a micro-batch no longer makes every row pay
        attention over ``T`` positions (:math:`O(T^2)` each)."""
        b = items.shape[0]
        if b <= chunk:
            return self.encoder.last(items, types, gaps)
        lengths = (items != 0).sum(dim=1)
        order = torch.argsort(lengths, stable=True)
        parts = []
        for s in range(0, b, chunk):
            rows = order[s : s + chunk]
            n = max(1, int(lengths[rows].max()))
            parts.append(self.encoder.last(items[rows, -n:], types[rows, -n:], gaps[rows, -n:]))
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(b, device=order.device)
        return torch.cat(parts)[inverse]

    def forward(self, items: Tensor, types: Tensor, gaps: Tensor, long_vec: Tensor,
                long_logits: Tensor, since_last_s: Tensor, session_len: Tensor,
                history: Tensor, long_known: Tensor, excluded: Tensor) -> FusedLogProbs:  # fmt: skip
        s = self.short_state(items, types, gaps)
        return self.head(s, long_vec, long_logits, since_last_s, session_len, history,
                         long_known, excluded)  # fmt: skip

    def head(self, short_vec: Tensor, long_vec: Tensor, long_logits: Tensor,
             since_last_s: Tensor, session_len: Tensor, history: Tensor, long_known: Tensor,
             excluded: Tensor) -> FusedLogProbs:  # fmt: skip
        """Everything after the encoder (the gate is trained on this with the encoder
        frozen)."""
        short_logits = short_vec @ self.encoder.item_embeddings.T
        if self.gate_kind == "fixed":
            w = torch.sigmoid(self.fixed_logit).expand(short_vec.shape[0])
        elif self.gate_kind == "off":
            w = torch.zeros(short_vec.shape[0], device=short_vec.device)
        else:
            w = self.gate(self.long_proj(long_vec), short_vec, since_last_s, session_len,
                          history)  # fmt: skip
        w = torch.where(long_known, w, torch.zeros_like(w))
        return fuse(short_logits, long_logits, w, excluded, self.log_tau)


def short_long_contrastive(short_vec: Tensor, recent_mean: Tensor, temperature: float = 0.1
                           ) -> Tensor:  # fmt: skip
    """CLSR-style self-supervision for the short-term side: InfoNCE that ties each user's
    :math:`S_u` ``[B, d]`` to the mean embedding of their last few items ``[B, d]`` against the
    other users of the batch,
    :math:`-\\frac1B\\sum_b \\log \\frac{\\exp(\\cos(S_b, m_b)/t)}{\\sum_{b'} \\exp(\\cos(S_b, m_{b'})/t)}`."""
    a = nn.functional.normalize(short_vec, dim=-1)
    b = nn.functional.normalize(recent_mean, dim=-1)
    logits = a @ b.T / temperature
    loss: Tensor = nn.functional.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))
    return loss
