"""Offline evaluation of the fused scorer (``fused``, ``short_only``, ``long_only`` and the
ablations) with the code workers run.

Training (:func:`train_bundle`) is the refresh job's: the newest positive interaction of up to
``LSI_REFRESH_VALID_CASES`` (5,000) random users with at least three is held out as a
calibration case, the long-term model
(:func:`models.training.longterm.train_long_term`) learns the rest, the encoder and gate
(:func:`models.training.sequence.train_sequence`) learn the rest and are calibrated on the
held-out cases, and the served snapshot adds the held-out pairs to each user's history.

Scoring goes through :meth:`lsi.serving.fusion.SequenceModel.log_probs`, the function behind every
list a worker emits, with requests built as a worker builds them (the user's last
``recent_n`` events and their count). The three lists come from one pass:

* ``fused``: the gate's geometric mixture;
* ``short_only``: the encoder alone (:math:`w = 0`);
* ``long_only``: the long-term vectors alone (:math:`w = 1`); a user the snapshot lacks is
  folded in from their positive events (:meth:`lsi.serving.snapshot.Snapshot.fold_in`), and one
  with nothing to fold in gets the encoder's list, as ``LSI_SCORER=long_only`` serves them.

Under ``prequential`` every event is judged against the lists its user would have been sent
after their previous event (the ``event`` emission policy), computed in batches of events
for speed; each list is cut at 20, as the records are. The snapshot is retrained (warm)
every ``refresh_every`` events on everything before; events before the first snapshot are
not judged (the workers serve the statistics scorer then, see ``streaming``).
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lsi.config import Settings
from lsi.core.snapshot_view import SeqRequest
from lsi.core.state import StateConfig
from lsi.errors import TooLittleData
from lsi.evaluation.datasets import Interactions
from lsi.serving.snapshot import Snapshot
from models.training.gate import logprob_ranks
from models.training.longterm import (
    Log,
    TrainConfig,
    WarmStart,
    holdout_last,
)
from models.training.recipe import Recipe, train_snapshot
from models.training.sequence import (
    SequenceConfig,
    TrainedSequence,
    UserSequences,
    request,
)

__all__ = ["LISTS", "Bundle", "gate_profile", "prequential_lists", "score_lists", "train_bundle"]

LISTS = ("fused", "short", "long")
RECENT_N = StateConfig().recent_n


class Bundle:
    """A trained snapshot: the served long-term model with its fused scorer, and how it was
    trained."""

    def __init__(self, served: Snapshot, lt_seconds: float, seq: TrainedSequence,
                 warm: WarmStart, variants: dict[str, Snapshot]) -> None:  # fmt: skip
        self.served = served
        self.lt_seconds = lt_seconds
        self.seq = seq
        self.warm = warm
        self.variants = variants

    def info(self) -> dict[str, Any]:
        return {"long_term_s": round(self.lt_seconds, 2), "sequence_s": round(self.seq.seconds, 2),
                "gate_s": round(self.seq.gate_seconds, 2), "device": self.seq.device,
                "epochs": self.seq.epochs, "best_epoch": self.seq.best_epoch,
                "curve": [[e, round(s, 5)] for e, s in self.seq.curve],
                "calibration": self.seq.validation}  # fmt: skip


def train_bundle(log: Log, seed: int, cfg: SequenceConfig, *, version: str = "eval",
                 warm: Bundle | None = None, extra_gates: tuple[str, ...] = (),
                 cal_cases: int | None = None) -> Bundle:  # fmt: skip
    """Train a snapshot on ``log`` as the refresh job does (see the module docstring), with
    up to ``cal_cases`` calibration cases (default: the default of the refresh job's
    ``LSI_REFRESH_VALID_CASES``, read here, not on import)."""
    if cal_cases is None:
        cal_cases = Settings().refresh_valid_cases
    fit, cal = holdout_last(log, max_cases=cal_cases, seed=seed)
    recipe = Recipe(replace(TrainConfig(), seed=seed, device=cfg.device), replace(cfg, seed=seed))
    out = train_snapshot(log, fit, cal, recipe, warm=warm.warm if warm is not None else None,
                         warm_sequence=warm.seq.model if warm is not None else None,
                         candidate_version=f"{version}-candidate", extra_gates=extra_gates)  # fmt: skip
    if out.sequence is None:
        raise TooLittleData(out.sequence_skipped or "the encoder was not trained")
    served = out.snapshot(version)
    variants = {k: replace(served, sequence=m) for k, m in out.sequence.variants.items()}
    return Bundle(served, out.long_term.seconds, out.sequence, out.warm_start(version), variants)


def _log_probs(model: Snapshot, reqs: list[SeqRequest]) -> tuple[Any, npt.NDArray[np.bool_]]:
    seq = model.sequence
    assert seq is not None
    out: tuple[Any, npt.NDArray[np.bool_]] = seq.log_probs(reqs, model)
    return out


def _lists(lp: Any) -> dict[str, torch.Tensor]:
    """The three lists' log-probabilities as served: a user without a long-term vector (not in
    the snapshot and nothing to fold in) gets the encoder's list in ``long_only`` mode too."""
    long = lp.long.clone()
    no_long = ~torch.isfinite(long).any(dim=1)
    long[no_long] = lp.short[no_long]
    return {"fused": lp.fused, "short": lp.short, "long": long}


def score_lists(model: Snapshot, reqs: list[SeqRequest], columns: npt.NDArray[np.int64],
                n_items: int) -> dict[str, npt.NDArray[np.float32]]:  # fmt: skip
    """Full-catalogue scores ``[B, n_items]`` of each list for the requests: ``columns[j]``
    is the evaluation's item for encoder row ``j`` (-1: not evaluated). Items the encoder
    lacks score ``-inf``."""
    lp, _ = _log_probs(model, reqs)
    known = columns >= 0
    out: dict[str, npt.NDArray[np.float32]] = {}
    for name, t in _lists(lp).items():
        full = np.full((len(reqs), n_items), -np.inf, dtype=np.float32)
        full[:, columns[known]] = t.numpy()[:, known]
        out[name] = full
    return out


SESSION_BINS = ((1, 1), (2, 2), (3, 5), (6, 10), (11, 20), (21, 50), (51, 10**9))
GAP_BINS = ((0, 60), (60, 3600), (3600, 86400), (86400, 7 * 86400), (7 * 86400, 1e12))


def gate_profile(model: Snapshot, reqs: list[SeqRequest]) -> dict[str, Any]:
    """The gate's ``long_weight`` over the requests of users the snapshot knows: its histogram
    (20 bins on [0, 1]), and its mean by session length (the position within the session) and
    by the gap before the newest event."""
    seq = model.sequence
    assert seq is not None
    ws, sess, gaps = [], [], []
    for s in range(0, len(reqs), 512):
        chunk = reqs[s : s + 512]
        x = seq.inputs(chunk, model)  # built once: the features and the forward pass
        lp = seq.forward(x)
        keep = x.long_known.numpy() & x.scorable
        ws.append(lp.long_weight.numpy()[keep])
        sess.append(x.session_len.numpy()[keep])
        gaps.append(x.since_last_s.numpy()[keep])
    w, n_s, g = np.concatenate(ws), np.concatenate(sess), np.concatenate(gaps)
    hist, _ = np.histogram(w, bins=20, range=(0.0, 1.0))

    def by(values: npt.NDArray[np.float32], bins: tuple[tuple[float, float], ...]
           ) -> list[list[float]]:  # fmt: skip
        rows = []
        for lo, hi in bins:
            m = (values >= lo) & (values <= hi) if bins is SESSION_BINS else (
                (values >= lo) & (values < hi))  # fmt: skip
            if m.any():
                rows.append([float(lo), float(hi), float(w[m].mean()), int(m.sum())])
        return rows

    return {"cases": int(w.size), "mean": float(w.mean()) if w.size else 0.0,
            "quantiles": {f"p{q}": float(np.quantile(w, q / 100)) for q in (10, 50, 90)}
            if w.size else {}, "histogram": hist.astype(int).tolist(),
            "by_session_length": by(n_s, SESSION_BINS), "by_gap_s": by(g, GAP_BINS)}  # fmt: skip


def loo_requests(log: Log, users: list[str]) -> list[SeqRequest]:
    """For each user, the request after all of their rows in ``log``."""
    seqs = UserSequences.build(log)
    index = {u: j for j, u in enumerate(seqs.user_ids)}
    out = []
    for u in users:
        j = index.get(u)
        rows = seqs.rows(j) if j is not None else np.zeros(0, dtype=np.int64)
        out.append(request(log, rows, u, int(rows.shape[0]), RECENT_N))
    return out


def prequential_lists(data: Interactions, order: npt.NDArray[np.int64], seed: int,
                      cfg: SequenceConfig, refresh_every: int, cutoff: int = 20,
                      batch: int = 1024) -> tuple[dict[str, npt.NDArray[np.float64]], dict[str, Any]]:  # fmt: skip
    """Prequential ranks of each list (see the module docstring): ``ranks[name][n]`` is the
    0-based rank of event ``n``'s item in the list, float64 (the expected rank of
    :mod:`lsi.core.ranking`: a half where the item ties; ``cutoff`` = missed), -1 where the event
    was not judged (no snapshot yet, or the user's first event)."""
    n = order.shape[0]
    ranks = {k: np.full(n, -1.0, dtype=np.float64) for k in LISTS}
    users = data.users[order].astype(str).tolist()
    items = data.items[order].astype(str).tolist()
    codes = data.types[order].astype(np.int64).tolist()
    times = data.ts[order].astype(np.float64).tolist()
    hist: dict[str, deque[tuple[str, int, float]]] = defaultdict(lambda: deque(maxlen=RECENT_N))
    count: dict[str, int] = defaultdict(int)
    model: Snapshot | None = None
    bundle: Bundle | None = None
    refreshes: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for start in range(0, n, refresh_every):
        stop = min(n, start + refresh_every)
        if start > 0:
            log = Log.from_interactions(data, order[:start])
            bundle = train_bundle(log, seed, cfg, version=f"pq{len(refreshes)}", warm=bundle)
            model = bundle.served
            refreshes.append({"at": start, **bundle.info()})
        for b0 in range(start, stop, batch):
            b1 = min(stop, b0 + batch)
            judged: list[int] = []
            reqs: list[SeqRequest] = []
            # each event sees its user's events before it, including earlier ones in this batch
            for k in range(b0, b1):
                u = users[k]
                if model is not None and count[u] > 0:
                    h = hist[u]
                    reqs.append(SeqRequest(u, [e[0] for e in h], [e[1] for e in h],
                                           [e[2] for e in h], count[u]))  # fmt: skip
                    judged.append(k)
                hist[u].append((items[k], codes[k], times[k]))
                count[u] += 1
            if not reqs or model is None:
                continue
            _judge(model, reqs, judged, items, ranks, cutoff)
    info = {"refresh_every": refresh_every, "refreshes": refreshes,
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    return ranks, info


def _judge(model: Snapshot, reqs: list[SeqRequest], judged: list[int], items: list[str],
           ranks: dict[str, npt.NDArray[np.float64]], cutoff: int) -> None:  # fmt: skip
    seq = model.sequence
    assert seq is not None
    lp, scorable = _log_probs(model, reqs)
    target = torch.tensor([seq.item_index.get(items[k], -1) for k in judged])
    # an unscorable request is a miss, as an unknown target is (lsi.core.ranking's rule)
    target = torch.where(torch.from_numpy(scorable), target, torch.full_like(target, -1))
    for name, lpm in _lists(lp).items():
        ranks[name][np.asarray(judged)] = np.minimum(logprob_ranks(lpm, target), cutoff)
