"""Exact fused re-ranking of retrieved candidates (:mod:`lsi.serving.retrieval`), with the softmax
normalisers estimated from a fixed uniform sample of the rest of the catalogue.

:func:`models.nn.sequence.fuse` normalises over every item the user may be offered,
:math:`\\mathcal C_u`. With retrieval only the candidates :math:`\\mathcal K_u \\subset
\\mathcal C_u` are scored; the rest of :math:`\\mathcal C_u`, the *tail*
:math:`\\mathcal T_u = \\mathcal C_u \\setminus \\mathcal K_u`, is represented by the items
:math:`\\mathcal M_u` of a sample drawn once per snapshot that fall in it, each standing for
:math:`\\rho_u = |\\mathcal T_u| / |\\mathcal M_u|` items. For any logit :math:`x`,

.. math::

    \\log Z(x) = \\log\\Big(\\sum_{i \\in \\mathcal K_u} e^{x_i}
                 + \\rho_u \\sum_{j \\in \\mathcal M_u} e^{x_j}\\Big),

an unbiased estimate of :math:`\\sum_{i \\in \\mathcal C_u} e^{x_i}` inside the logarithm. The
three log-probabilities of :func:`~models.nn.sequence.fuse` follow with :math:`Z` in place of the
full sums: :math:`\\log p_S = s - \\log Z(s)`, :math:`\\log p_L = \\tau l - \\log Z(\\tau l)`,
:math:`\\log p = f - \\log Z(f)` with :math:`f = w \\log p_L + (1 - w) \\log p_S`.

Consequences. The order of the candidates is exactly the full model's (the normalisers are
constants per user). The emitted probabilities are estimates of the full model's, never
above 1 (the candidates' own mass is counted exactly) and never NaN; with no tail sample
(``tail_sample = 0``) they are the probabilities *within the candidates*, higher than the
full model's by the tail's share. An item the snapshot lacks gets the lowest long-term score
among the candidates and the sample (the full model takes the lowest over the catalogue).
When the candidates are the whole of :math:`\\mathcal C_u` and the tail is empty, this is
:func:`~models.nn.sequence.fuse` exactly (tested).
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.nn.sequence import FusedLogProbs

__all__ = ["fuse_candidates"]

_NEG = -1e9


def _log_z(cand: Tensor, tail: Tensor, cand_ok: Tensor, tail_ok: Tensor,
           log_scale: Tensor) -> Tensor:  # fmt: skip
    """:math:`\\log Z` ``[B, 1]`` of logits ``cand`` ``[B, C]`` and ``tail`` ``[B, M]``."""
    x = torch.cat([cand.masked_fill(~cand_ok, _NEG),
                   (tail + log_scale[:, None]).masked_fill(~tail_ok, _NEG)], dim=1)  # fmt: skip
    return torch.logsumexp(x, dim=1, keepdim=True)


def fuse_candidates(short_c: Tensor, long_c: Tensor, short_t: Tensor, long_t: Tensor,
                    cand_ok: Tensor, tail_ok: Tensor, log_scale: Tensor, long_weight: Tensor,
                    log_tau: Tensor) -> FusedLogProbs:  # fmt: skip
    """:class:`FusedLogProbs` ``[B, C]`` of the candidates (see the module docstring).

    Args:
        short_c, long_c: ``[B, C]`` :math:`\\langle S_u, e_i\\rangle` and
            :math:`\\langle L_u, v_i\\rangle` of the candidates (long: NaN where the snapshot
            lacks the item, or for a user without a long-term vector).
        short_t, long_t: ``[B, M]`` the same for the tail sample.
        cand_ok: ``[B, C]`` bool, False for padding.
        tail_ok: ``[B, M]`` bool, the sample items in the user's tail.
        log_scale: ``[B]`` :math:`\\log \\rho_u`.
        long_weight: ``[B]`` :math:`w_u` (0 without a long-term vector).
        log_tau: scalar.

    Padding scores ``-inf`` in every list, as excluded items do in the full model.
    """
    finite_c, finite_t = torch.isfinite(long_c) & cand_ok, torch.isfinite(long_t) & tail_ok
    inf = torch.full_like(long_c[:, :1], float("inf"))
    floor = torch.minimum(torch.where(finite_c, long_c, inf).min(dim=1, keepdim=True).values,
                          torch.where(finite_t, long_t, inf[:, :1].expand_as(long_t))
                          .min(dim=1, keepdim=True).values if long_t.shape[1] else inf)  # fmt: skip
    floor = torch.where(torch.isfinite(floor), floor, torch.zeros_like(floor))
    tau = log_tau.exp()
    lc = tau * torch.where(torch.isfinite(long_c), long_c, floor)
    lt = tau * torch.where(torch.isfinite(long_t), long_t, floor)
    z_short = _log_z(short_c, short_t, cand_ok, tail_ok, log_scale)
    z_long = _log_z(lc, lt, cand_ok, tail_ok, log_scale)
    short, short_tail = short_c - z_short, short_t - z_short
    long, long_tail = lc - z_long, lt - z_long
    w = long_weight.unsqueeze(1)
    f_c = w * long + (1.0 - w) * short
    f_t = w * long_tail + (1.0 - w) * short_tail
    fused = f_c - _log_z(f_c, f_t, cand_ok, tail_ok, log_scale)
    ninf = float("-inf")
    no_long = ~(finite_c.any(dim=1) | finite_t.any(dim=1))[:, None]
    return FusedLogProbs(fused.masked_fill(~cand_ok, ninf), short.masked_fill(~cand_ok, ninf),
                         long.masked_fill(~cand_ok | no_long, ninf), long_weight)  # fmt: skip
