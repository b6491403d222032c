"""Training the fused scorer: the short-term encoder, then the long/short gate.

Data. The interaction log (:class:`models.training.longterm.Log`) becomes one time-ordered sequence per
user (ties in log order). The caller holds out each user's newest positive interaction for
up to ``gate_cases`` users (:func:`models.training.longterm.holdout_last`, the *calibration* cases) and
trains the long-term model without them.

Stage 1, the encoder. For every user, the window of the last ``max_len + 1`` events before
their calibration case (SASRec's recipe: the most recent window; older history is the
long-term model's job) gives ``max_len`` next-item targets; with ``windows="all"`` the
older history is cut into further windows of ``max_len + 1`` events, overlapping by one
event, so every event before the cut is a target exactly once (each seen with at most
``max_len`` events of context, as in serving). Skips are inputs but never targets. Loss:
full- or sampled-softmax cross-entropy (``negatives``; :func:`models.nn.sequence.next_item_loss`),
plus, with ``contrastive > 0``, the CLSR-style InfoNCE of
:func:`models.nn.sequence.short_long_contrastive`.
Every ``eval_every`` epochs the short-term NDCG@10 on the calibration cases decides early
stopping (``patience`` evaluations without a gain); the best weights are kept. AdamW's rate is
constant or falls along a cosine (``lr_schedule``); with ``ema_decay`` the weights evaluated
and kept are a moving average of the steps' weights.

Stage 2, the gate (:mod:`models.training.gate`). With the encoder frozen, the gate, the
long-term projection and the temperature are fitted on 90 % of the calibration cases by the
fused cross-entropy and the three modes are measured on the other 10 %; the fused list serves
only if it ranks those cases at least as well as the encoder alone. Why in two stages: the
long-term model has learned every training interaction, so on training positions its scores
look better than they will on tomorrow's events, and a gate fitted there would over-trust it.
On the calibration cases neither source has seen the target, as in serving.

Every feature goes through :meth:`lsi.serving.fusion.SequenceModel.inputs`, the function workers
call, so training and serving cannot disagree about a window, a gap or an excluded item.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lsi.core.snapshot_view import SeqRequest
from lsi.errors import TooLittleData
from lsi.serving.fusion import SequenceModel, scorer_from_config
from lsi.serving.snapshot import Snapshot
from models.nn.sequence import Encoder, next_item_loss, short_long_contrastive
from models.training.gate import choose_gate, fit_gate, logprob_ndcg
from models.training.longterm import Log, pick_device

__all__ = ["SequenceConfig", "TrainedSequence", "UserSequences", "train_sequence"]

Progress = Callable[[int, int, float], None]


@dataclass(frozen=True, slots=True)
class SequenceConfig:
    """Hyper-parameters of the fused scorer (chosen on calibration cases, never on test).

    Attributes:
        encoder: ``attention`` (SASRec-style) or ``gru``.
        dim, layers, heads, dropout: the encoder's shape.
        max_len: the window ``T``: the last events the encoder reads.
        windows: ``last`` (each user's most recent window only) or ``all`` (the whole
            history before the cut, in consecutive windows: more targets per epoch, each
            epoch longer).
        epochs: most epochs of a cold start (early stopping usually ends sooner).
        warm_epochs: most epochs when continuing from the live snapshot's encoder.
        batch_size: users per step.
        lr: AdamW learning rate (the peak, with a schedule).
        lr_schedule: ``constant``, or ``cosine``: the rate falls per step from ``lr`` to 0
            along half a cosine over the most epochs of the run (``epochs``, or
            ``warm_epochs`` when continuing), :math:`\\eta_t = \\frac{\\eta}{2}(1 + \\cos
            \\frac{\\pi t}{T})`, meant to let Adam settle where a constant rate keeps moving
            (on Beauty's validation items it was level with the constant rate:
            docs/benchmarks.md); a time budget that ends the run early cuts it short.
        weight_decay: AdamW weight decay.
        ema_decay: 0 = off; :math:`\\beta \\in (0, 1)`: early stopping evaluates, and training
            returns, an exponential moving average of the encoder's weights, updated after
            every step, :math:`\\bar\\theta_t = \\beta \\bar\\theta_{t-1} + (1 - \\beta)
            \\theta_t` (:math:`\\bar\\theta_0` the initial weights), rather than the weights
            of one step: a constant learning rate leaves the weights wandering around a
            minimum, and their average over the last :math:`\\approx 1 / (1 - \\beta)` steps
            sits nearer its centre (Polyak averaging; SWA, Izmailov et al., 2018). On Beauty
            (0.999) it reached in 100 epochs what 200 reach without (docs/benchmarks.md).
        eval_every: epochs between early-stopping evaluations.
        patience: evaluations without a gain before stopping.
        eval_cases: calibration cases used by early stopping.
        gate: ``learned`` (per user) or ``fixed`` (one constant weight; an ablation).
        gate_hidden: the gate MLP's hidden width.
        gate_epochs: passes over the calibration cases when fitting the gate (a learned
            gate: that many for the constant it starts from, then as many for the gate).
        gate_lr: the gate's Adam learning rate.
        negatives: 0 = full-softmax loss; ``N`` = sampled softmax against ``N`` uniformly
            drawn items per batch (:func:`models.nn.sequence.next_item_loss`).
        contrastive: weight of the CLSR-style term (0 = off).
        contrastive_last: the recent items the short-term vector is tied to.
        init_from_long_term: start the encoder's item rows from the long-term item vectors
            (one item space for both sources).
        balanced_init: start the position, event-type and time-gap embeddings at the item
            rows' scale (std :math:`d^{-1/2}`) instead of PyTorch's :math:`\\mathcal N(0, 1)`,
            whose rows are :math:`\\sqrt d` times longer than an item's: at the input
            :math:`h = e_i + p_t + e_\\tau + g_\\Delta` the item is then one term of four of
            equal size rather than :math:`1 / (3d + 1)` of the sum's variance (1/193 at
            :math:`d = 64`), so the first epochs learn from what was seen instead of from
            where and when. SASRec balances the same sum by scaling the item by
            :math:`\\sqrt d`; scaling the others down leaves serving untouched (initial
            weights only: a warm start copies the live encoder's).
        session_gap_s: a gap longer than this starts a new session (a gate feature).
        max_train_s: stop the encoder's training after this many seconds (the best
            weights so far are kept); ``None``: no time limit.
        seed: RNG seed.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        precision: ``fp32``, or ``bf16``: the encoder's training steps run under bfloat16
            autocast (matrix products in bfloat16; weights, optimizer state, the softmax and
            its loss in float32). 1.2× faster per step on a CPU with AMX (``T = 50``, one
            thread) and on GPUs with bfloat16 units; emulated, hence slower, elsewhere.
            Early stopping, the gate and serving stay in float32.
    """

    encoder: str = "attention"
    dim: int = 64
    max_len: int = 200
    windows: str = "last"
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2
    epochs: int = 200
    warm_epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    ema_decay: float = 0.0
    eval_every: int = 5
    patience: int = 3
    eval_cases: int = 2000
    gate: str = "learned"
    gate_hidden: int = 32
    gate_epochs: int = 20
    gate_lr: float = 1e-2
    negatives: int = 0
    contrastive: float = 0.0
    contrastive_last: int = 5
    init_from_long_term: bool = True
    balanced_init: bool = True
    session_gap_s: float = 1800.0
    max_train_s: float | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.encoder not in ("attention", "gru"):
            raise ValueError(f"encoder must be attention or gru, got {self.encoder!r}")
        if self.windows not in ("last", "all"):
            raise ValueError(f"windows must be last or all, got {self.windows!r}")
        if self.gate not in ("learned", "fixed"):
            raise ValueError(f"gate must be learned or fixed, got {self.gate!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}")
        if min(self.dim, self.max_len, self.epochs, self.batch_size, self.eval_every,
               self.patience, self.eval_cases, self.heads, self.layers) < 1:  # fmt: skip
            raise ValueError("sizes, epochs, eval_every and patience must be positive")
        if self.dim % self.heads:
            raise ValueError("dim must be a multiple of heads")
        if self.lr <= 0 or self.gate_lr <= 0 or not 0 <= self.dropout < 1:
            raise ValueError("learning rates must be > 0 and dropout in [0, 1)")
        if min(self.contrastive, self.warm_epochs, self.gate_epochs, self.negatives) < 0:
            raise ValueError("contrastive, warm_epochs and gate_epochs must be >= 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")


@dataclass
class TrainedSequence:
    """A trained fused scorer and how it was made."""

    model: SequenceModel
    epochs: int
    best_epoch: int
    seconds: float
    gate_seconds: float
    device: str
    losses: list[float] = field(default_factory=list)
    curve: list[tuple[int, float]] = field(default_factory=list)  # (epoch, calibration NDCG@10)
    validation: dict[str, dict[str, float]] = field(default_factory=dict)
    warm_from: str = ""
    variants: dict[str, SequenceModel] = field(default_factory=dict)


@dataclass(frozen=True)
class UserSequences:
    """The log as one time-ordered sequence per user: rows of user ``u`` are
    ``order[indptr[u]:indptr[u+1]]`` (indices into the log)."""

    user_ids: tuple[str, ...]
    indptr: npt.NDArray[np.int64]
    order: npt.NDArray[np.int64]

    @classmethod
    def build(cls, log: Log) -> UserSequences:
        uniq, codes = np.unique(np.asarray(log.users, dtype=object).astype(str),
                                return_inverse=True)  # fmt: skip
        order = np.lexsort((np.arange(len(log)), log.ts, codes)).astype(np.int64)
        indptr = np.zeros(len(uniq) + 1, dtype=np.int64)
        np.cumsum(np.bincount(codes, minlength=len(uniq)), out=indptr[1:])
        return cls(tuple(uniq.tolist()), indptr, order)

    def rows(self, u: int) -> npt.NDArray[np.int64]:
        return self.order[self.indptr[u] : self.indptr[u + 1]]


def request(log: Log, rows: npt.NDArray[np.int64], user: str, n_events: int,
            window: int) -> SeqRequest:  # fmt: skip
    """The request a worker would build for ``user`` after the log rows ``rows`` (oldest
    first; the state keeps the last ``window``)."""
    tail = rows[-window:].tolist()
    codes = log.type_codes()
    return SeqRequest(user, [log.items[r] for r in tail], [int(codes[r]) for r in tail],
                      [float(log.ts[r]) for r in tail], n_events)  # fmt: skip


def _catalogue(log: Log, long: Snapshot | None, warm: SequenceModel | None
               ) -> tuple[str, ...]:  # fmt: skip
    base: list[str] = list(warm.item_ids) if warm is not None else (
        list(long.item_ids) if long is not None else [])  # fmt: skip
    known = set(base)
    for item in log.items:
        if item not in known:
            known.add(item)
            base.append(item)
    return tuple(base)


def _windows(log: Log, seqs: UserSequences, cut: dict[int, int], item_row: dict[str, int],
             length: int, every: bool = False) -> tuple[npt.NDArray[Any], ...]:  # fmt: skip
    """Left-padded ``[N, length]`` items (encoder rows), types, gaps and positive flags of
    each user's last ``length`` events before their cut; with ``every``, also the windows
    before it: ``length`` events ending where the next one starts (one shared event), so
    each event after a user's first is a target in exactly one window. Gaps are measured
    within a window (0 for its first event), as :meth:`SequenceModel.inputs` does."""
    codes = log.type_codes()
    spans: list[npt.NDArray[np.int64]] = []
    for u in range(len(seqs.user_ids)):
        rows = seqs.rows(u)
        rows = rows[: cut.get(u, rows.shape[0])]
        end = rows.shape[0]
        while end >= 2:
            spans.append(rows[max(0, end - length) : end])
            if not every:
                break
            end -= length - 1
    n_w = len(spans)
    items = np.zeros((n_w, length), dtype=np.int64)
    types = np.zeros((n_w, length), dtype=np.int64)
    gaps = np.zeros((n_w, length), dtype=np.float32)
    pos = np.zeros((n_w, length), dtype=bool)
    for k, rows in enumerate(spans):
        n = rows.shape[0]
        items[k, length - n :] = [item_row[log.items[r]] for r in rows.tolist()]
        types[k, length - n :] = codes[rows]
        ts = log.ts[rows]
        gaps[k, length - n :] = np.maximum(np.diff(ts, prepend=ts[0]), 0.0)
        pos[k, length - n :] = log.strength[rows] > 0
    return items, types, gaps, pos


def _length_batches(lengths: npt.NDArray[Any], batch_size: int, rng: np.random.Generator
                    ) -> list[npt.NDArray[np.int64]]:  # fmt: skip
    """One epoch's batches of window rows, each of rows of similar length, in random order.

    Rows are sorted by length (ties broken at random), cut into batches of ``batch_size``, and
    the batches shuffled: a batch is then padded only to its own longest row, which on ML-1M at
    ``T = 200`` halves the encoder's work per epoch (653k real positions of 1.2M) without
    changing what an epoch contains. Every row is in exactly one batch.
    """
    ties: npt.NDArray[np.float64] = rng.random(size=(int(lengths.shape[0]),))
    order = np.lexsort((ties, np.asarray(lengths))).astype(np.int64)
    batches = [order[s : s + batch_size] for s in range(0, order.shape[0], batch_size)]
    return [batches[j] for j in rng.permutation(len(batches)).tolist()]


def _calibration_cases(log: Log, seqs: UserSequences, cal_rows: npt.NDArray[np.int64]
                       ) -> tuple[dict[int, int], list[tuple[int, int]]]:  # fmt: skip
    """``(cut, cases)``: each calibration user's first held-out position in their sequence
    (the encoder trains on the events before it), and the cases ``(user, log row)`` that have
    an earlier event of their user to score from."""
    user_of = {u: j for j, u in enumerate(seqs.user_ids)}
    position = np.empty(len(log), dtype=np.int64)
    position[seqs.order] = np.arange(len(log)) - np.repeat(seqs.indptr[:-1],
                                                           np.diff(seqs.indptr))  # fmt: skip
    cut: dict[int, int] = {}
    cases: list[tuple[int, int]] = []  # (user, log row)
    for r in cal_rows.tolist():
        u = user_of[log.users[r]]
        cut[u] = min(cut.get(u, 1 << 62), int(position[r]))
        cases.append((u, r))
    cases = [(u, r) for u, r in cases if cut[u] == position[r] and cut[u] >= 1]
    if not cases:
        raise TooLittleData(
            f"no held-out interaction has an earlier event of its user to calibrate the gate "
            f"on ({len(log):,} interactions, {len(cal_rows):,} held out); the encoder is "
            "trained once more users have two or more events"
        )
    return cut, cases


def _new_model(ids: tuple[str, ...], long: Snapshot | None, warm: SequenceModel | None,
               cfg: SequenceConfig, device: torch.device) -> SequenceModel:  # fmt: skip
    """The scorer before training: balanced initial tables (``balanced_init``), then the
    item rows a warm start or the long-term vectors give (:func:`_init_items`)."""
    config: dict[str, Any] = asdict(cfg)
    long_dim = long.dim if long is not None else cfg.dim
    scorer = scorer_from_config(config, len(ids), long_dim)
    if cfg.balanced_init:  # a warm start then overwrites the tables whose shape still fits
        balance_inputs(scorer.encoder)
    _init_items(scorer, ids, long, warm, cfg)
    scorer.to(device)
    return SequenceModel(ids, scorer, config)


@dataclass(slots=True)
class _EncoderFit:
    """Stage 1's loop: next-item training on the windows, early stopping on the calibration
    requests' short-term NDCG@10; what it did."""

    epochs: int = 0
    best_epoch: int = 0
    losses: list[float] = field(default_factory=list)
    curve: list[tuple[int, float]] = field(default_factory=list)


def _fit_encoder(model: SequenceModel, windows: tuple[npt.NDArray[np.int64], ...],
                 eval_reqs: list[SeqRequest], eval_targets: torch.Tensor, cfg: SequenceConfig,
                 max_epochs: int, rng: np.random.Generator, progress: Progress | None,
                 t0: float) -> _EncoderFit:  # fmt: skip
    """Train ``model``'s encoder on ``windows`` (items, types, gaps ``[N, max_len + 1]`` and
    the target mask); leaves the best evaluated weights (or, with no calibration request to
    evaluate, the last ones) in the encoder."""
    scorer, device = model.scorer, model.device
    items, types, gaps, pos = windows
    x_items = torch.from_numpy(items).to(device)
    x_types = torch.from_numpy(types).to(device)
    x_gaps = torch.from_numpy(gaps).to(device)
    targets = torch.from_numpy(np.where(pos, items, 0)).to(device)

    def evaluate() -> float:
        scorer.eval()
        vals = []
        for s in range(0, len(eval_reqs), 512):
            lp, _ = model.log_probs(eval_reqs[s : s + 512], None)
            vals.append(logprob_ndcg(lp.short, eval_targets[s : s + 512]))
        return float(np.concatenate(vals).mean()) if vals else 0.0

    def encoder_state() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in scorer.encoder.state_dict().items()}

    enc_params = list(scorer.encoder.parameters())
    averaged = [p.detach().clone() for p in enc_params] if cfg.ema_decay > 0 else None
    opt = torch.optim.AdamW(enc_params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    bf16 = cfg.precision == "bf16"
    lengths = (items != 0).sum(axis=1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_factor(cfg.lr_schedule, max_epochs * -(-items.shape[0] // cfg.batch_size))
    )
    fit = _EncoderFit()
    best, waited = -1.0, 0
    best_state = encoder_state()
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        scorer.train()
        total, steps = 0.0, 0
        for batch in _length_batches(lengths, cfg.batch_size, rng):
            idx = torch.from_numpy(batch).to(device)
            bi, bt, bg, by = x_items[idx], x_types[idx], x_gaps[idx], targets[idx]
            first = int((bi != 0).int().argmax(dim=1).min())  # trim all-padding columns
            bi, bt, bg, by = bi[:, first:], bt[:, first:], bg[:, first:], by[:, first:]
            with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                out = scorer.encoder(bi[:, :-1], bt[:, :-1], bg[:, :-1])
                loss = next_item_loss(out, by[:, 1:], scorer.encoder.item_embeddings,
                                      cfg.negatives)  # fmt: skip
                if cfg.contrastive > 0:
                    last = bi[:, -cfg.contrastive_last - 1 : -1]
                    emb = scorer.encoder.embed.item(last)
                    mean = emb.sum(1) / (last != 0).sum(1, keepdim=True).clamp(min=1)
                    loss = loss + cfg.contrastive * short_long_contrastive(out[:, -1], mean)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
            if averaged is not None:
                with torch.no_grad():
                    for a, p in zip(averaged, enc_params, strict=True):
                        a.lerp_(p.detach(), 1.0 - cfg.ema_decay)
            total += float(loss.detach())
            steps += 1
        fit.losses.append(total / max(steps, 1))
        if progress is not None:
            progress(epoch, max_epochs, fit.losses[-1])
        out_of_time = cfg.max_train_s is not None and time.perf_counter() - t0 > cfg.max_train_s
        if epoch % cfg.eval_every == 0 or epoch == max_epochs or out_of_time:
            with _swapped_in(enc_params, averaged):  # the weights evaluated are those kept
                score = evaluate()
                improved = score > best
                if improved:
                    best_state = encoder_state()
            fit.curve.append((epoch, score))
            if improved:
                best, fit.best_epoch, waited = score, epoch, 0
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
            if out_of_time:
                break
    fit.epochs = epoch
    if not eval_reqs:
        fit.best_epoch = epoch
        with _swapped_in(enc_params, averaged):
            best_state = encoder_state()
    scorer.encoder.load_state_dict(best_state)
    return fit


def train_sequence(
    log: Log,
    cal_rows: npt.NDArray[np.int64],
    long: Snapshot | None,
    cfg: SequenceConfig | None = None,
    warm: SequenceModel | None = None,
    progress: Progress | None = None,
    warm_version: str = "",
    extra_gates: tuple[str, ...] = (),
) -> TrainedSequence:
    """Train the encoder on ``log`` minus the calibration rows ``cal_rows`` (and anything
    after them), then fit the gate on those rows; ``long`` is the long-term model trained
    without them. ``warm``: continue from this encoder (``warm_epochs``), keeping its item
    rows and appending new items. ``extra_gates`` (``fixed``): also fit these gate kinds on
    the same encoder (:attr:`TrainedSequence.variants`, for ablations)."""
    cfg = cfg or SequenceConfig()
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = pick_device(cfg.device)
    ids = _catalogue(log, long, warm)
    item_row = {k: j + 1 for j, k in enumerate(ids)}
    seqs = UserSequences.build(log)
    cut, cases = _calibration_cases(log, seqs, cal_rows)
    model = _new_model(ids, long, warm, cfg, device)
    scorer = model.scorer
    windows = _windows(log, seqs, cut, item_row, cfg.max_len + 1, every=cfg.windows == "all")

    def req(case: tuple[int, int]) -> SeqRequest:
        u = case[0]
        rows = seqs.rows(u)[: cut[u]]
        return request(log, rows, seqs.user_ids[u], rows.shape[0], cfg.max_len)

    eval_idx = rng.permutation(len(cases))[: cfg.eval_cases]
    eval_reqs = [req(cases[j]) for j in eval_idx.tolist()]
    eval_targets = torch.tensor([item_row.get(log.items[cases[j][1]], 0) - 1
                                 for j in eval_idx.tolist()])  # fmt: skip
    max_epochs = cfg.warm_epochs if warm is not None else cfg.epochs
    enc = _fit_encoder(model, windows, eval_reqs, eval_targets, cfg, max_epochs, rng, progress, t0)
    t_gate = time.perf_counter()
    validation = fit_gate(model, log, cases, req, item_row, long, cfg,
                          np.random.default_rng(cfg.seed))  # fmt: skip
    gate_s = time.perf_counter() - t_gate
    variants: dict[str, SequenceModel] = {}
    for kind in extra_gates:
        twin = copy.deepcopy(scorer)
        twin.gate_kind = kind
        other = SequenceModel(ids, twin, {**model.config, "gate": kind})
        other.metrics["validation"] = fit_gate(other, log, cases, req, item_row, long, cfg,
                                               np.random.default_rng(cfg.seed))  # fmt: skip
        variants[kind] = other
    choice = choose_gate(validation)
    if choice is not None:
        validation["gate_choice"] = choice
        if choice["serves"] == "encoder alone":
            scorer.gate_kind = "off"
            model.config["gate"] = "off"
    scorer.eval()
    model.metrics.update({"validation": validation, "best_epoch": enc.best_epoch,
                          "epochs": enc.epochs, "curve": enc.curve})  # fmt: skip
    return TrainedSequence(
        model=model, epochs=enc.epochs, best_epoch=enc.best_epoch,
        seconds=time.perf_counter() - t0, gate_seconds=gate_s, device=str(device),
        losses=enc.losses, curve=enc.curve, validation=validation, warm_from=warm_version,
        variants=variants,
    )  # fmt: skip


@contextlib.contextmanager
def _swapped_in(params: Sequence[torch.Tensor], values: Sequence[torch.Tensor] | None
                ) -> Iterator[None]:  # fmt: skip
    """Within the block the parameters hold ``values`` (the averaged weights); after it, their
    own again. ``None``: nothing changes."""
    if values is None:
        yield
        return
    with torch.no_grad():
        own = [p.detach().clone() for p in params]
        for p, v in zip(params, values, strict=True):
            p.copy_(v)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, v in zip(params, own, strict=True):
                p.copy_(v)


def lr_factor(schedule: str, total_steps: int) -> Callable[[int], float]:
    """The learning rate's multiplier at step ``t`` of ``total_steps``: 1 (``constant``) or
    :math:`\\frac12(1 + \\cos \\frac{\\pi t}{T})` (``cosine``, 1 at the first step, 0 after the
    last)."""
    if schedule == "constant":
        return lambda t: 1.0
    if schedule != "cosine":
        raise ValueError(f"lr_schedule must be constant or cosine, got {schedule!r}")
    n = max(1, total_steps)
    return lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, n) / n))


def balance_inputs(encoder: Encoder) -> None:
    """Redraw the encoder's position, event-type and time-gap embeddings from
    :math:`\\mathcal N(0, d^{-1})`, the item rows' scale (``SequenceConfig.balanced_init``)."""
    embed = encoder.embed
    std = embed.item.weight.shape[1] ** -0.5
    with torch.no_grad():
        for table in (embed.pos, embed.etype, embed.gap):
            table.weight.normal_(0.0, std)


def _init_items(scorer: Any, ids: tuple[str, ...], long: Snapshot | None,
                warm: SequenceModel | None, cfg: SequenceConfig) -> None:  # fmt: skip
    """Warm: copy the live encoder (item rows by id). Cold with ``init_from_long_term``:
    item rows from the long-term item vectors, rescaled to the encoder's init std."""
    emb = scorer.encoder.embed.item.weight
    with torch.no_grad():
        if warm is not None:
            # every part whose shape still fits (a new long-term dim restarts the projection)
            mine = scorer.state_dict()
            state = {k: v for k, v in warm.scorer.state_dict().items()
                     if not k.startswith("encoder.embed.item.") and k in mine
                     and mine[k].shape == v.shape}  # fmt: skip
            scorer.load_state_dict(state, strict=False)
            old = warm.scorer.encoder.embed.item.weight.detach().cpu()
            if old.shape[1] == emb.shape[1]:
                emb[: old.shape[0]] = old
        if (
            warm is None
            and long is not None
            and cfg.init_from_long_term
            and long.dim == emb.shape[1]
        ):
            rows = np.array([long.item_index.get(k, -1) for k in ids])
            have = rows >= 0
            vec = torch.from_numpy(long.item_vec[rows[have]])
            scale = (cfg.dim**-0.5) / float(vec.std().clamp(min=1e-8))
            emb[1:][torch.from_numpy(have)] = vec * scale
