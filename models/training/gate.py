"""Stage 2 of the fused scorer's training: fitting the long/short gate on the calibration
cases, and choosing whether it serves (see :mod:`models.training.sequence` for stage 1).

With the encoder frozen, the gate, the long-term projection and the temperature are fitted on
90 % of the calibration cases by the fused cross-entropy :math:`-\\log p(y)`
(:func:`models.nn.sequence.fuse`); the three modes are measured on the other 10 %. A learned
(per-user) gate is fitted in two steps: first the best single weight
:math:`w = \\sigma(b)` for everyone, then the gate's MLP starting from exactly that constant
(:meth:`models.nn.sequence.LongShortGate.start_at`); after each pass the held-out cases are
scored, and the pass with the lowest held-out loss is kept (pass 0 = the start). Then
:func:`choose_gate` decides on the held-out cases' NDCG@10 whether the gate serves at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from lsi.core.ranking import expected_rank, ndcg_at_k
from lsi.core.snapshot_view import SeqRequest
from lsi.serving.fusion import SequenceModel
from lsi.serving.snapshot import Snapshot
from models.training.longterm import Log

if TYPE_CHECKING:  # a type only: models.training.sequence calls this module
    from models.training.sequence import SequenceConfig

__all__ = [
    "MIN_DECIDING_CASES",
    "GateFit",
    "choose_gate",
    "fit_gate",
    "logprob_ndcg",
    "logprob_ranks",
]

#: the fewest held-out calibration cases :func:`choose_gate` turns the gate off on (5,000
#: calibration cases, the refresh job's default, hold out 500)
MIN_DECIDING_CASES = 50

#: rows per forward pass of the head
CHUNK = 512


def logprob_ranks(logp: torch.Tensor, targets: torch.Tensor) -> npt.NDArray[np.float64]:
    """Expected ranks ``[B]`` of target rows ``[B]`` in log-probabilities ``[B, I]`` (-1 = the
    target is not in the catalogue: a miss, rank ``inf``; so is a target scored ``-inf``).

    The rank counts are taken on the tensors (on their device); the rank is
    :mod:`lsi.core.ranking`'s, the published evaluation's tie rule (a tie counts half)."""
    ok = targets.to(logp.device) >= 0
    t = targets.to(logp.device).clamp(min=0)
    st = logp.gather(1, t[:, None])
    greater = (logp > st).sum(dim=1)
    equal = (logp == st).sum(dim=1) - 1  # the target equals itself
    valid = ok & torch.isfinite(st[:, 0])
    return expected_rank(greater.cpu().numpy(), equal.cpu().numpy(), valid.cpu().numpy())


def logprob_ndcg(logp: torch.Tensor, targets: torch.Tensor, k: int = 10) -> npt.NDArray[np.float64]:
    """Per-case NDCG@k ``[B]`` of :func:`logprob_ranks`."""
    return ndcg_at_k(logprob_ranks(logp, targets), k)


class GateFit:
    """Fits ``model``'s gate on the calibration ``cases`` (``(user, log row)`` pairs whose
    requests :func:`req` builds), with ``long`` the long-term snapshot trained without them.

    Built once per fit: the frozen encoder's short-term vectors :math:`h_u` ``[C, d]`` and the
    gate's inputs for every case (long-term user vectors ``[C, d_L]``, time since the last
    event, session length, history size, whether the snapshot knows the user, the excluded
    items), so each pass over the cases runs the head only. ``rng`` draws the 90/10 split
    and each pass's order.
    """

    def __init__(self, model: SequenceModel, log: Log, cases: list[tuple[int, int]],
                 req: Callable[[tuple[int, int]], SeqRequest], item_row: dict[str, int],
                 long: Snapshot | None, cfg: SequenceConfig, rng: np.random.Generator) -> None:  # fmt: skip
        self.model, self.long, self.cfg, self.rng = model, long, cfg, rng
        self.scorer = scorer = model.scorer
        self.device = device = model.device
        order = rng.permutation(len(cases))
        n_val = max(1, len(cases) // 10) if len(cases) >= 2 else 0
        self.val, self.fit_rows = order[:n_val], order[n_val:]
        reqs = [req(c) for c in cases]
        tgt = np.array([item_row.get(log.items[r], 0) - 1 for _, r in cases], dtype=np.int64)
        for p in scorer.encoder.parameters():
            p.requires_grad_(False)
        scorer.eval()
        feats: dict[str, list[torch.Tensor]] = {k: [] for k in (
            "short", "long_vec", "since", "session", "history", "known", "ok")}  # fmt: skip
        ex_rows: list[npt.NDArray[np.int64]] = []
        ex_cols: list[npt.NDArray[np.int64]] = []
        for s in range(0, len(reqs), CHUNK):
            x = model.inputs(reqs[s : s + CHUNK], long)
            with torch.no_grad():
                feats["short"].append(scorer.short_state(x.items.to(device), x.types.to(device),
                                                         x.gaps.to(device)).cpu())  # fmt: skip
            feats["long_vec"].append(x.long_vec)
            feats["since"].append(x.since_last_s)
            feats["session"].append(x.session_len)
            feats["history"].append(x.history)
            feats["known"].append(x.long_known)
            feats["ok"].append(torch.from_numpy(x.scorable & (tgt[s : s + CHUNK] >= 0)))
            r, c = np.nonzero(x.excluded.numpy())
            ex_rows.append(r + s)
            ex_cols.append(c)
        self.f = f = {k: torch.cat(v).to(device) for k, v in feats.items()}
        ex_r = np.concatenate(ex_rows)
        self.ex_c = np.concatenate(ex_cols)
        self.ex_ptr = np.searchsorted(ex_r, np.arange(len(reqs) + 1))
        self.n_items = len(model.item_ids)
        item_mat = torch.full((self.n_items, f["long_vec"].shape[1]), float("nan"))
        if long is not None:
            rows_l = model._long_rows(long)
            have = rows_l >= 0
            item_mat[torch.from_numpy(have)] = torch.from_numpy(long.item_vec[rows_l[have]])
        self.item_mat = item_mat.to(device)
        self.targets = torch.from_numpy(tgt).to(device)
        self.head = [p for n_, p in scorer.named_parameters() if not n_.startswith("encoder.")]
        val = self.val
        self.held_out = [self.head_inputs(val[s : s + CHUNK]) for s in range(0, val.size, CHUNK)]
        self.scored = bool(val.size) and bool(f["ok"][torch.from_numpy(val).to(device)].any())

    def head_inputs(self, idx: npt.NDArray[np.int64]
                    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:  # fmt: skip
        """The rows ``idx`` and :meth:`LongShortScorer.head`'s arguments for them (none
        depends on a trained parameter)."""
        f, device = self.f, self.device
        sel = torch.from_numpy(idx).to(device)
        excl = np.zeros((idx.size, self.n_items), dtype=bool)
        for k, j in enumerate(idx.tolist()):
            excl[k, self.ex_c[self.ex_ptr[j] : self.ex_ptr[j + 1]]] = True
        lv = f["long_vec"][sel]
        logits = lv @ self.item_mat.T
        logits = torch.where(
            f["known"][sel][:, None], logits, torch.full_like(logits, float("nan"))
        )
        return sel, (f["short"][sel], lv, logits, f["since"][sel], f["session"][sel],
                     f["history"][sel], f["known"][sel], torch.from_numpy(excl).to(device))  # fmt: skip

    def target_logp(self, sel: torch.Tensor, out: Any) -> torch.Tensor:
        """The fused log-probability of each row's target (one the list cannot offer: -30)."""
        lp = out.fused.gather(1, self.targets[sel].clamp(min=0)[:, None])[:, 0]
        return torch.where(torch.isfinite(lp), lp, torch.full_like(lp, -30.0))

    def held_out_nll(self) -> float:
        """Mean :math:`-\\log p(y)` of the fused list over the held-out cases."""
        total, n = 0.0, 0
        with torch.no_grad():
            for sel, args in self.held_out:
                ok = self.f["ok"][sel]
                total += float(-(self.target_logp(sel, self.scorer.head(*args))[ok]).sum())
                n += int(ok.sum())
        return total / n

    def fit_head(self, start: float | None = None) -> tuple[int, float | None]:
        """Adam on the fused cross-entropy of the fit cases for ``gate_epochs`` passes;
        keeps the parameters of the pass (0 = the start, whose held-out loss is ``start``
        when given) with the lowest held-out loss. Without scorable held-out cases: the
        last pass, no loss."""
        cfg, fit, head, scored = self.cfg, self.fit_rows, self.head, self.scored
        opt = torch.optim.Adam(head, lr=cfg.gate_lr)
        best = (self.held_out_nll() if start is None else start) if scored else float("inf")
        best_pass = 0
        best_state = [p.detach().clone() for p in head]
        for n_pass in range(1, cfg.gate_epochs + 1):
            shuffled = fit[self.rng.permutation(fit.size)]
            for s in range(0, fit.size, CHUNK):
                sel, args = self.head_inputs(shuffled[s : s + CHUNK])
                ok = self.f["ok"][sel]
                if not bool(ok.any()):
                    continue
                loss = -(self.target_logp(sel, self.scorer.head(*args))[ok]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
            if not scored:
                best_pass = n_pass
                continue
            score = self.held_out_nll()
            if score < best:
                best, best_pass = score, n_pass
                best_state = [p.detach().clone() for p in head]
        if scored:
            with torch.no_grad():
                for p, kept in zip(head, best_state, strict=True):
                    p.copy_(kept)
        return best_pass, best if scored else None

    def fit(self) -> dict[str, float]:
        """Fit the gate's kind (``learned``: the constant first, then the MLP from it); the
        ``gate_fit`` record: ``passes`` kept and the held-out ``nll`` (with a learned gate
        also ``constant_passes`` and ``constant_nll``). The encoder is trainable again
        afterwards."""
        scorer = self.scorer
        fitted: dict[str, float] = {}

        def record(prefix: str, result: tuple[int, float | None]) -> None:
            fitted[f"{prefix}passes"] = result[0]
            if result[1] is not None:
                fitted[f"{prefix}nll"] = result[1]

        if self.long is not None and self.fit_rows.size and self.cfg.gate_epochs:
            if scorer.gate_kind == "learned":
                # the best single weight first; the per-user gate starts from it and moves away
                # only as far as the held-out cases agree (it over-fits small data otherwise)
                # (a warm start's gate is refitted too: the calibration cases are new each refresh)
                scorer.gate_kind = "fixed"
                try:
                    record("constant_", self.fit_head())
                finally:
                    scorer.gate_kind = "learned"
                scorer.gate.start_at(float(scorer.fixed_logit.detach()))
                # pass 0 is that constant, whatever the last bit of a vectorised sigmoid says
                record("", self.fit_head(start=fitted.get("constant_nll")))
            else:
                record("", self.fit_head())
        for p in scorer.encoder.parameters():
            p.requires_grad_(True)
        scorer.eval()
        return fitted

    def measure(self) -> dict[str, dict[str, float]]:
        """NDCG@10 of the three modes on the held-out cases (``cases``: how many) and the
        served long-term weight's mean and 10th/90th percentiles; empty without held-out
        cases."""
        out: dict[str, dict[str, float]] = {}
        if not self.val.size:
            return out
        parts: dict[str, list[npt.NDArray[np.float64]]] = {"fused": [], "short_only": [],
                                                            "long_only": []}  # fmt: skip
        weights: list[npt.NDArray[np.float32]] = []
        with torch.no_grad():
            for sel, args in self.held_out:
                lp = self.scorer.head(*args)
                t = self.targets[sel].cpu()
                ok = self.f["ok"][sel].cpu()
                parts["fused"].append(logprob_ndcg(lp.fused.cpu(), torch.where(ok, t, -1)))
                parts["short_only"].append(logprob_ndcg(lp.short.cpu(), torch.where(ok, t, -1)))
                parts["long_only"].append(logprob_ndcg(lp.long.cpu(), torch.where(ok, t, -1)))
                weights.append(lp.long_weight.cpu().numpy())
        for name, v in parts.items():
            out[name] = {"ndcg@10": float(np.concatenate(v).mean()),
                         "cases": float(self.val.size)}  # fmt: skip
        w = np.concatenate(weights)
        out["long_weight"] = {"mean": float(w.mean()), "p10": float(np.quantile(w, 0.1)),
                              "p90": float(np.quantile(w, 0.9))}  # fmt: skip
        return out


def fit_gate(model: SequenceModel, log: Log, cases: list[tuple[int, int]],
             req: Callable[[tuple[int, int]], SeqRequest], item_row: dict[str, int],
             long: Snapshot | None, cfg: SequenceConfig,
             rng: np.random.Generator) -> dict[str, dict[str, float]]:  # fmt: skip
    """Fit the gate (encoder frozen) on 90 % of the cases; measure the modes on the rest.

    Both fits keep the pass with the lowest held-out loss, reported as ``gate_fit``. The
    held-out cases thus choose the pass *and* measure the modes, so those measures are
    slightly optimistic; the benchmark's own test items never reach this function."""
    g = GateFit(model, log, cases, req, item_row, long, cfg, rng)
    fitted = g.fit()
    out = g.measure()
    if out:
        out = {**{k: v for k, v in out.items() if k != "long_weight"}, "gate_fit": fitted,
               "long_weight": out["long_weight"]}  # fmt: skip
    return out


def choose_gate(validation: dict[str, Any]) -> dict[str, Any] | None:
    """Whether the fitted gate serves, or the encoder alone: the fused list must never rank the
    held-out calibration cases worse than its own encoder.

    Decided on the quantity the tables report, NDCG@10 of the held-out cases' items (the gate
    was fitted on the other cases' likelihood, which mixing in the long-term side can improve
    while their ranking does not). The gate serves unless its held-out NDCG@10 is strictly
    below the encoder's; then the snapshot serves the encoder alone (``gate="off"``,
    ``long_weight`` 0 in every record). ``None`` without held-out cases to decide on.

    Fewer than :data:`MIN_DECIDING_CASES` held-out cases (a young deployment's first
    snapshots, the demo's) say nothing either way: one case moves NDCG@10 by up to
    1/n. The gate then serves as fitted, and the choice says why.
    """
    fused = validation.get("fused", {}).get("ndcg@10")
    short = validation.get("short_only", {}).get("ndcg@10")
    if fused is None or short is None:
        return None
    cases = int(validation.get("fused", {}).get("cases", MIN_DECIDING_CASES))
    out = {"fused_ndcg@10": fused, "short_only_ndcg@10": short}
    if cases < MIN_DECIDING_CASES:
        return {"serves": "gate", **out,
                "why": f"{cases} held-out cases are too few to judge the gate against the "
                       f"encoder (at least {MIN_DECIDING_CASES}); the gate serves as fitted"}  # fmt: skip
    alone = fused < short
    return {"serves": "encoder alone" if alone else "gate", **out,
            "why": ("the gate ranked the held-out cases below the encoder alone" if alone else
                    "the gate ranked the held-out cases at least as well as the encoder")}  # fmt: skip
