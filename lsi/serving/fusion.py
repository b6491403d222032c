"""The fused scorer as workers serve it: the short-term sequence encoder and the learned gate
over the long-term snapshot.

A :class:`SequenceModel` is the trained part of a snapshot (:class:`models.nn.sequence.
LongShortScorer`: encoder, gate, temperature) with its item catalogue; it scores against the
:class:`lsi.serving.snapshot.Snapshot` of the same snapshot. Like that model it is immutable and
read-only, so a worker swaps the whole snapshot between micro-batches.

Requests. One :class:`SeqRequest` per user to score, built from what the ``interest`` agent
keeps (:meth:`SeqRequest.from_state`: the last ``recent_n`` events with their types and times,
and the count of all events). :meth:`SequenceModel.inputs` turns a batch of requests into the
model's tensors, always the same way, for serving, for training the gate and for the offline
evaluation:

* the window: the last ``max_len`` events whose item the encoder knows (others are dropped),
  left-padded; the gap before each event (0 for the window's first);
* the gate's features: the gap before the newest event (a user returning after a long
  pause), the session length (events since the last gap longer than ``session_gap_s``), the
  count of all the user's events;
* the long-term user vector and inner products over the encoder's catalogue (items the
  snapshot lacks: NaN). A user the snapshot lacks (one who arrived after it was trained) is
  folded in from the request's positive events (:meth:`lsi.serving.snapshot.Snapshot.fold_in`);
  one with no such event the snapshot knows has no long-term part, :math:`w = 0`;
* the excluded items: every item of the request (the worker's recent events, even beyond the
  encoder's window) and the user's history in the snapshot, or, when the deployment's rules
  name them (``SeqRequest.own``, :mod:`lsi.core.rules`), only those of the user's items; and
  ``exclude``: the items the
  catalogue hides and those a request names (``GET /recommendations/{user}?exclude=…``). An excluded item scores
  :math:`-\\infty` in every list and takes no share of any distribution, so each list is the
  top ``k`` of the items left.

:meth:`SequenceModel.log_probs` runs the batch through :func:`models.nn.sequence.fuse` in one
forward pass (micro-batches make the model's cost per event fall with load);
:meth:`SequenceModel.recommend` turns it into the three lists of a record: the fused list
(score = fused probability, with each source's own probability as ``long_score`` /
``short_score``), the short-term list and the long-term list, plus :math:`w`.

Large catalogues. The exact path above costs :math:`O(I d)` per request (and ``[B, I]``
arrays per batch). From ``retrieval.exact_below`` items on (:class:`lsi.serving.retrieval.
RetrievalConfig`, 50,000 by default) :meth:`SequenceModel.recommend` and
:meth:`SequenceModel.log_probs` go through :meth:`SequenceModel.candidate_log_probs`
instead: the same windows, features, exclusions and long-term vectors, the encoder and the
gate, then a few hundred candidates from two inner-product indexes (short-term vector against
the encoder's item rows, long-term vector against the snapshot's item vectors, the user's
excluded items filtered inside the search) re-ranked with the exact fused score
(:func:`lsi.serving.rerank.fuse_candidates`, whose normalisers are estimated from a fixed tail sample:
each ``score`` estimates the full model's probability, in (0, 1]). The indexes are built once
per snapshot (:meth:`SequenceModel.retriever`). Below the threshold nothing changes: the exact
path is the one it always was.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lsi.core.snapshot_view import SeqLists, SeqRequest
from lsi.serving.rerank import fuse_candidates
from lsi.serving.retrieval import CandidateRetriever, RetrievalConfig
from lsi.serving.snapshot import Snapshot
from lsi.wire.records import NEGATIVE_CODES, RecItem, ScoredItem
from models.nn.sequence import FusedLogProbs, LongShortScorer, make_encoder

__all__ = ["SequenceModel", "scorer_from_config"]

MODES = ("fused", "long_only", "short_only")
#: one index build at a time per process (building twice would only waste the time)
_BUILD_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Inputs:
    """The tensors of a batch (see the module docstring); ``scorable[b]`` is False for a
    request with no item the encoder knows (its rows are padding)."""

    items: torch.Tensor
    types: torch.Tensor
    gaps: torch.Tensor
    long_vec: torch.Tensor
    long_logits: torch.Tensor
    since_last_s: torch.Tensor
    session_len: torch.Tensor
    history: torch.Tensor
    long_known: torch.Tensor
    excluded: torch.Tensor
    scorable: npt.NDArray[np.bool_]

    def to(self, device: torch.device) -> Inputs:
        moved: dict[str, Any] = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                                 for k, v in ((f, getattr(self, f)) for f in self.__slots__)}  # fmt: skip
        return Inputs(**moved)

    def model_args(self) -> tuple[torch.Tensor, ...]:
        return (self.items, self.types, self.gaps, self.long_vec, self.long_logits,
                self.since_last_s, self.session_len, self.history, self.long_known,
                self.excluded)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Windows:
    """The encoder's side of a batch (:meth:`SequenceModel._windows`): ``items``, ``types``,
    ``gaps`` ``[B, T]``, the gate's features ``[B]``, ``scorable`` ``[B]`` and each
    request's known items as encoder rows (``seen``, all excluded)."""

    items: npt.NDArray[np.int64]
    types: npt.NDArray[np.int64]
    gaps: npt.NDArray[np.float32]
    since_last_s: npt.NDArray[np.float32]
    session_len: npt.NDArray[np.float32]
    history: npt.NDArray[np.float32]
    scorable: npt.NDArray[np.bool_]
    seen: list[npt.NDArray[np.int64]]


@dataclass(frozen=True, slots=True)
class _LongMaps:
    """Encoder row → snapshot row (``rows``, -1: lacking) and back (``inv``)."""

    rows: npt.NDArray[np.int64]
    inv: npt.NDArray[np.int64]


def scorer_from_config(config: dict[str, Any], n_items: int, long_dim: int) -> LongShortScorer:
    """An untrained :class:`LongShortScorer` of the shape ``config`` describes."""
    enc = make_encoder(config["encoder"], n_items, config["dim"], config["max_len"],
                       config["layers"], config["heads"], config["dropout"])  # fmt: skip
    return LongShortScorer(enc, long_dim, config["gate_hidden"], config.get("gate", "learned"))


@dataclass(frozen=True, eq=False)
class SequenceModel:
    """The trained fused scorer of one snapshot.

    Attributes:
        item_ids: the encoder's catalogue (item ``item_ids[j]`` is encoder row ``j + 1``).
        scorer: the :class:`LongShortScorer`, in eval mode.
        config: the training configuration (``max_len``, ``session_gap_s``, shapes).
        metrics: what training measured (validation NDCG of each mode, times).
        retrieval: how items are found (:class:`lsi.serving.retrieval.RetrievalConfig`): every item
            scored below ``exact_below`` items, retrieved candidates above (serving
            configuration, not stored in the snapshot).
    """

    item_ids: tuple[str, ...]
    scorer: LongShortScorer
    config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    item_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = self.scorer.encoder.item_embeddings.shape[0]
        if n != len(self.item_ids):
            raise ValueError(f"sequence model: {len(self.item_ids)} item ids for {n} rows")
        object.__setattr__(self, "item_index", {k: j for j, k in enumerate(self.item_ids)})
        self.scorer.eval()

    @property
    def max_len(self) -> int:
        return int(self.config["max_len"])

    @property
    def device(self) -> torch.device:
        return next(self.scorer.parameters()).device

    # -- features -------------------------------------------------------------------------
    def _long_rows(self, long: Snapshot | None) -> npt.NDArray[np.int64]:
        """Encoder catalogue row → the snapshot's item row (-1 where it lacks the item)."""
        if long is None:
            return np.full(len(self.item_ids), -1, dtype=np.int64)
        cache = getattr(long, "_lsi_rows_cache", None)
        if cache is not None and cache[0] is self:
            return cache[1]  # type: ignore[no-any-return]
        rows = np.array([long.item_index.get(k, -1) for k in self.item_ids], dtype=np.int64)
        object.__setattr__(long, "_lsi_rows_cache", (self, rows))
        return rows

    def _windows(self, reqs: Sequence[SeqRequest]) -> _Windows:
        """The encoder's side of a batch: windows, gaps and the gate's features (CPU)."""
        b, t_max = len(reqs), self.max_len
        gap_s = float(self.config.get("session_gap_s", 1800.0))
        windows: list[tuple[list[int], list[int], list[float]]] = []
        seen_rows: list[list[int]] = []  # the request's own items to exclude (default: all)
        for r in reqs:
            rows, types, times = [], [], []
            for item, code, ts in zip(r.items, r.types, r.times, strict=True):
                j = self.item_index.get(item)
                if j is not None:
                    rows.append(j + 1)
                    types.append(int(code))
                    times.append(float(ts))
            windows.append((rows[-t_max:], types[-t_max:], times[-t_max:]))
            if r.own is not None:  # the rules name the user's own items to leave out
                rows = [j + 1 for x in r.own if (j := self.item_index.get(x)) is not None]
            seen_rows.append(rows)
        t = max(1, max((len(w[0]) for w in windows), default=1))
        items = np.zeros((b, t), dtype=np.int64)
        types_a = np.zeros((b, t), dtype=np.int64)
        gaps = np.zeros((b, t), dtype=np.float32)
        since = np.zeros(b, dtype=np.float32)
        session = np.zeros(b, dtype=np.float32)
        history = np.array([r.n_events for r in reqs], dtype=np.float32)
        scorable = np.zeros(b, dtype=bool)
        for k, (rows, tys, times) in enumerate(windows):
            n = len(rows)
            if n == 0:
                continue
            scorable[k] = True
            items[k, t - n :] = rows
            types_a[k, t - n :] = tys
            g = np.diff(np.asarray(times, dtype=np.float64), prepend=times[0])
            gaps[k, t - n :] = np.maximum(g, 0.0)
            since[k] = gaps[k, t - 1]
            s = 1
            while s < n and g[n - s] <= gap_s:
                s += 1
            session[k] = s
        seen = [np.asarray(rows, dtype=np.int64) - 1 for rows in seen_rows]
        return _Windows(items, types_a, gaps, since, session, history, scorable, seen)

    def exclusion_rows(self, exclude: Collection[str]) -> npt.NDArray[np.int64]:
        """The encoder rows of the items of ``exclude`` it knows (sorted; others can never
        be offered anyway)."""
        index = self.item_index
        return np.array(sorted({j for x in exclude if (j := index.get(x)) is not None}),
                        dtype=np.int64)  # fmt: skip

    def inputs(self, reqs: Sequence[SeqRequest], long: Snapshot | None,
               exclude: Collection[str] = frozenset()) -> Inputs:  # fmt: skip
        """The batch's tensors (CPU), exactly as serving, training and evaluation see them;
        ``exclude``: items excluded for every request, beside each one's own."""
        b, n_items = len(reqs), len(self.item_ids)
        win = self._windows(reqs)
        items, types_a, gaps, scorable = win.items, win.types, win.gaps, win.scorable
        since, session, history = win.since_last_s, win.session_len, win.history
        excluded = np.zeros((b, n_items), dtype=bool)
        drop = self.exclusion_rows(exclude)
        for k in np.flatnonzero(scorable).tolist():
            excluded[k, win.seen[k]] = True
            excluded[k, drop] = True
        long_rows = self._long_rows(long)
        d_long = int(self.scorer.long_proj.in_features)
        long_vec = np.zeros((b, d_long), dtype=np.float32)
        long_logits = np.full((b, n_items), np.nan, dtype=np.float32)
        known = np.zeros(b, dtype=bool)
        if long is not None:
            have = long_rows >= 0
            inv = np.full(long.n_items, -1, dtype=np.int64)
            inv[long_rows[have]] = np.flatnonzero(have)
            sub_items = long.item_vec[long_rows[have]]
            for k, r in enumerate(reqs):
                if not scorable[k]:
                    continue
                user = _user_long(long, r, inv)
                if user is None:
                    continue
                vec, hist = user
                if r.own is None:
                    excluded[k, hist] = True
                known[k] = True
                long_vec[k] = vec
                long_logits[k, have] = sub_items @ vec
        return Inputs(
            torch.from_numpy(items), torch.from_numpy(types_a), torch.from_numpy(gaps),
            torch.from_numpy(long_vec), torch.from_numpy(long_logits), torch.from_numpy(since),
            torch.from_numpy(session), torch.from_numpy(history), torch.from_numpy(known),
            torch.from_numpy(excluded), scorable,
        )  # fmt: skip

    # -- scoring --------------------------------------------------------------------------
    @property
    def uses_retrieval(self) -> bool:
        """Whether this catalogue is served through candidate retrieval
        (:meth:`lsi.serving.retrieval.RetrievalConfig.uses_index`)."""
        return self.retrieval.uses_index(len(self.item_ids))

    def log_probs(self, reqs: Sequence[SeqRequest], long: Snapshot | None,
                  exclude: Collection[str] = frozenset()
                  ) -> tuple[FusedLogProbs, npt.NDArray[np.bool_]]:  # fmt: skip
        """Fused, short-term and long-term log-probabilities ``[B, I]`` over the encoder's
        catalogue, :math:`w` ``[B]`` (CPU tensors), and which requests were scorable
        (``exclude``: as for :meth:`inputs`).

        Through retrieval (:attr:`uses_retrieval`) the candidates' log-probabilities
        (:meth:`candidate_log_probs`) in their columns and ``-inf`` everywhere else: what
        :meth:`recommend` ranks, laid out for the offline evaluation."""
        if not self.uses_retrieval:
            x = self.inputs(reqs, long, exclude)
            return self.forward(x), x.scorable
        lp, rows, scorable = self.candidate_log_probs(reqs, long, exclude)
        n, r = len(self.item_ids), torch.from_numpy(rows)
        ok = r >= 0
        at = (torch.nonzero(ok, as_tuple=True)[0], r[ok])

        def spread(v: torch.Tensor) -> torch.Tensor:
            full = torch.full((len(reqs), n), float("-inf"), dtype=v.dtype)
            full[at] = v[ok]
            return full

        return FusedLogProbs(spread(lp.fused), spread(lp.short), spread(lp.long),
                             lp.long_weight), scorable  # fmt: skip

    def forward(self, x: Inputs) -> FusedLogProbs:
        """:meth:`log_probs` on inputs already built (CPU tensors out)."""
        with torch.inference_mode():
            out = self.scorer(*x.to(self.device).model_args())
        return FusedLogProbs(*(v.cpu() for v in out))

    # -- retrieval ------------------------------------------------------------------------
    def _maps(self, long: Snapshot) -> _LongMaps:
        cache = getattr(long, "_lsi_maps_cache", None)
        if cache is not None and cache[0] is self:
            return cache[1]  # type: ignore[no-any-return]
        rows = self._long_rows(long)
        have = rows >= 0
        inv = np.full(long.n_items, -1, dtype=np.int64)
        inv[rows[have]] = np.flatnonzero(have)
        maps = _LongMaps(rows, inv)
        object.__setattr__(long, "_lsi_maps_cache", (self, maps))
        return maps

    def retriever(self, long: Snapshot | None) -> CandidateRetriever:
        """The candidate indexes of this scorer with the snapshot ``long``
        (:class:`lsi.serving.retrieval.CandidateRetriever`): built on first use and kept with the
        snapshot, read-only afterwards (rebuilt only if the encoder's item rows change in
        place, as during training). A loader can call it before swapping a snapshot in, so
        that no batch waits for the build (tens of seconds at a million items). Code that
        must score every item whatever the size (training's calibration) uses
        ``with_retrieval(mode="exact")``."""
        holder: Any = long if long is not None else self
        # the weights' version counter: a scorer still being trained gets a fresh index
        weights = self.scorer.encoder.embed.item.weight
        key = (self.retrieval, weights._version, weights.data_ptr())
        cache = getattr(holder, "_lsi_retriever", None)
        if cache is not None and cache[0] is self and cache[1] == key:
            return cache[2]  # type: ignore[no-any-return]
        with _BUILD_LOCK:
            cache = getattr(holder, "_lsi_retriever", None)
            if cache is not None and cache[0] is self and cache[1] == key:
                return cache[2]  # type: ignore[no-any-return]
            short = self.scorer.encoder.item_embeddings.detach().float().cpu().numpy()
            long_vecs = long_ids = None
            if long is not None:
                rows = self._maps(long).rows
                long_ids = np.flatnonzero(rows >= 0)
                long_vecs = long.item_vec[rows[long_ids]]
            built = CandidateRetriever.build(short, long_vecs, long_ids, self.retrieval)
            object.__setattr__(holder, "_lsi_retriever", (self, key, built))
        return built

    def _gate(self, s: torch.Tensor, long_vec: torch.Tensor, win: _Windows,
              known: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """:math:`w` ``[B]`` as :meth:`models.nn.sequence.LongShortScorer.head` computes it."""
        sc, dev = self.scorer, s.device
        if sc.gate_kind == "fixed":
            w = torch.sigmoid(sc.fixed_logit).expand(s.shape[0])
        else:
            w = sc.gate(sc.long_proj(long_vec), s, torch.from_numpy(win.since_last_s).to(dev),
                        torch.from_numpy(win.session_len).to(dev),
                        torch.from_numpy(win.history).to(dev))  # fmt: skip
        return torch.where(known, w, torch.zeros_like(w))

    def candidate_log_probs(self, reqs: Sequence[SeqRequest], long: Snapshot | None,
                            exclude: Collection[str] = frozenset()
                            ) -> tuple[FusedLogProbs, npt.NDArray[np.int64],
                                       npt.NDArray[np.bool_]]:  # fmt: skip
        """The retrieval path: :class:`FusedLogProbs` ``[B, C]`` of each request's
        candidates (:meth:`lsi.serving.retrieval.CandidateRetriever.candidates`, re-ranked exactly by
        :func:`lsi.serving.rerank.fuse_candidates`), their encoder rows ``[B, C]`` (-1: padding,
        scored ``-inf``), and which requests were scorable. The features, exclusions and
        long-term vectors are those of :meth:`inputs`; its ``[B, I]`` arrays are never built,
        so the cost per request does not grow with the catalogue (but for the index's
        search). ``exclude``: as for :meth:`inputs`."""
        ret = self.retriever(long)
        win = self._windows(reqs)
        b, n_items = len(reqs), len(self.item_ids)
        d_long = int(self.scorer.long_proj.in_features)
        long_vec = np.zeros((b, d_long), dtype=np.float32)
        known = np.zeros(b, dtype=bool)
        drop = self.exclusion_rows(exclude)
        excluded = [np.concatenate([seen, drop]) for seen in win.seen]
        maps = self._maps(long) if long is not None else None
        if long is not None and maps is not None:
            for k, r in enumerate(reqs):
                if not win.scorable[k]:
                    continue
                user = _user_long(long, r, maps.inv)
                if user is None:
                    continue
                vec, hist = user
                if len(hist) and r.own is None:
                    excluded[k] = np.concatenate([excluded[k], hist])
                known[k] = True
                long_vec[k] = vec
        excluded = [np.unique(e) for e in excluded]
        dev = self.device
        with torch.inference_mode():
            s = self.scorer.short_state(torch.from_numpy(win.items).to(dev),
                                        torch.from_numpy(win.types).to(dev),
                                        torch.from_numpy(win.gaps).to(dev))  # fmt: skip
            lv = torch.from_numpy(long_vec).to(dev)
            w = self._gate(s, lv, win, torch.from_numpy(known).to(dev))
            rows_ok = np.flatnonzero(win.scorable)
            found = ret.candidates(s.float().cpu().numpy()[rows_ok], long_vec[rows_ok],
                                   known[rows_ok], [excluded[k] for k in rows_ok])  # fmt: skip
            cands: list[npt.NDArray[np.int64]] = [np.zeros(0, np.int64)] * b
            for k, c in zip(rows_ok.tolist(), found, strict=True):
                cands[k] = c
            width = max(1, max((c.shape[0] for c in cands), default=1))
            rows = np.full((b, width), -1, dtype=np.int64)
            for k, c in enumerate(cands):
                rows[k, : c.shape[0]] = c
            tail = ret.tail
            tail_ok = np.zeros((b, tail.shape[0]), dtype=bool)
            log_scale = np.zeros(b, dtype=np.float32)
            for k in rows_ok.tolist():
                ok = _outside(tail, np.concatenate([excluded[k], cands[k]]))
                rest = n_items - excluded[k].shape[0] - cands[k].shape[0]
                if rest > 0 and ok.any():
                    tail_ok[k] = ok
                    log_scale[k] = np.log(rest / ok.sum())
            emb = self.scorer.encoder.item_embeddings
            rows_t = torch.from_numpy(rows).to(dev)
            cand_ok = rows_t >= 0
            at = rows_t.clamp(min=0)
            short_c = _dot_rows(emb, at, s)
            tail_t = torch.from_numpy(tail).to(dev)
            short_t = s @ emb[tail_t].T
            long_c = torch.full_like(short_c, float("nan"))
            long_t = torch.full_like(short_t, float("nan"))
            if long is not None and maps is not None:
                vecs = torch.from_numpy(long.item_vec).to(dev)
                lrows = torch.from_numpy(maps.rows).to(dev)
                lr_c = lrows.index_select(0, at.reshape(-1)).view(at.shape)
                lr_t = lrows[tail_t]
                kn = torch.from_numpy(known).to(dev)[:, None]
                long_c = torch.where((lr_c >= 0) & kn,
                                     _dot_rows(vecs, lr_c.clamp(min=0), lv),
                                     long_c)  # fmt: skip
                long_t = torch.where((lr_t >= 0)[None] & kn, lv @ vecs[lr_t.clamp(min=0)].T,
                                     long_t)  # fmt: skip
            out = fuse_candidates(short_c, long_c, short_t, long_t, cand_ok,
                                  torch.from_numpy(tail_ok).to(dev),
                                  torch.from_numpy(log_scale).to(dev), w,
                                  self.scorer.log_tau)  # fmt: skip
        return FusedLogProbs(*(v.cpu() for v in out)), rows, win.scorable

    def with_retrieval(self, **changes: Any) -> SequenceModel:
        """This scorer (same weights) with other retrieval settings, e.g. ``mode="ann"``."""
        return replace(self, retrieval=replace(self.retrieval, **changes))

    # -- serving --------------------------------------------------------------------------
    def recommend(self, reqs: Sequence[SeqRequest], long: Snapshot | None, k: int,
                  mode: str = "fused", exclude: Collection[str] = frozenset()
                  ) -> list[SeqLists | None]:  # fmt: skip
        """The lists of each request's record, ``None`` for a request the encoder cannot
        score (no known item in its window: the caller falls back to the short-term
        statistics path).

        ``mode``: ``fused`` (the learned gate), ``short_only`` (:math:`w = 0`) or
        ``long_only`` (:math:`w = 1` for users the snapshot knows). ``exclude``: items no
        list may hold, for every request (masked with each user's seen items, so the lists
        still hold ``k`` items while enough others remain).

        Below ``retrieval.exact_below`` items every item is scored (:meth:`log_probs`);
        above, only the retrieved candidates (:meth:`candidate_log_probs`): the same lists
        whenever the candidates hold the full model's top ``k``, each ``score`` an estimate
        of the full model's probability (:mod:`lsi.serving.rerank`)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not reqs:
            return []
        rows: torch.Tensor | None = None
        if self.uses_retrieval:
            lp, rows_np, scorable = self.candidate_log_probs(reqs, long, exclude)
            rows = torch.from_numpy(rows_np)
        else:
            lp, scorable = self.log_probs(reqs, long, exclude)
        known = torch.isfinite(lp.long).any(dim=1) & (lp.long_weight > 0)
        ids = self.item_ids
        kk = min(k, lp.fused.shape[1])

        def item_rows(cols: torch.Tensor) -> torch.Tensor:  # column → encoder row
            return cols if rows is None else rows.gather(1, cols)

        fused_top = torch.topk(lp.fused, kk, dim=1)
        short_top = torch.topk(lp.short, kk, dim=1)
        long_top = torch.topk(lp.long, kk, dim=1)
        has_long = known if long is not None else torch.zeros_like(known)
        # which list each record leads with: 0 short-term, 1 long-term, 2 fused
        lead = torch.zeros_like(known, dtype=torch.int64)
        if mode != "short_only":
            lead = torch.where(has_long, 1 if mode == "long_only" else 2, 0)
        pick = lead[:, None]
        cols = torch.where(pick == 0, short_top.indices,
                           torch.where(pick == 1, long_top.indices, fused_top.indices))  # fmt: skip
        main = torch.where(pick == 0, short_top.values,
                           torch.where(pick == 1, long_top.values, fused_top.values))  # fmt: skip
        # probabilities of the listed items only (not of the whole [B, I] catalogue)
        p_short, p_long = lp.short.gather(1, cols).exp(), lp.long.gather(1, cols).exp()
        p_main = main.exp()
        main_rows, short_rows = item_rows(cols), item_rows(short_top.indices)
        long_rows = item_rows(long_top.indices)
        names = ("short_term", "long_term", "fused")
        out: list[SeqLists | None] = []
        for b in range(len(reqs)):
            if not scorable[b]:
                out.append(None)
                continue
            row_long = bool(has_long[b])
            short_list = _scored(short_top.values, short_rows, b, ids)
            long_list = _scored(long_top.values, long_rows, b, ids) if row_long else ()
            src = int(lead[b])
            w = (0.0, 1.0, float(lp.long_weight[b]))[src]
            items = tuple(
                RecItem(ids[j], float(p_main[b, c]), float(p_long[b, c]) if row_long else 0.0,
                        float(p_short[b, c]))
                for c, (j, v) in enumerate(zip(main_rows[b].tolist(), main[b].tolist(),
                                               strict=True))
                if v > float("-inf")
            )  # fmt: skip
            out.append(SeqLists(items, short_list, long_list, w, names[src]))
        return out

    # -- persistence (inside a snapshot directory) ---------------------------------------
    def to_bytes(self) -> tuple[bytes, bytes]:
        """``(weights, description)``: the state dict (``torch.save``, loaded back with
        ``weights_only=True``) and JSON with the catalogue, config and metrics."""
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in self.scorer.state_dict().items()}, buf)
        desc = {"item_ids": list(self.item_ids), "config": self.config, "metrics": self.metrics,
                "long_dim": int(self.scorer.long_proj.in_features)}  # fmt: skip
        return buf.getvalue(), json.dumps(desc).encode()

    @classmethod
    def from_bytes(cls, weights: bytes, description: bytes) -> SequenceModel:
        desc = json.loads(description)
        ids = tuple(str(x) for x in desc["item_ids"])
        scorer = scorer_from_config(desc["config"], len(ids), int(desc["long_dim"]))
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
        scorer.load_state_dict(state)
        return cls(ids, scorer, desc["config"], desc.get("metrics", {}))


def _dot_rows(table: torch.Tensor, rows: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``[B, C]``: :math:`\\langle \\text{table}[\\text{rows}_{bc}], q_b \\rangle` for
    ``table [N, d]``, ``rows [B, C]``, ``q [B, d]``. ``index_select`` and ``bmm`` give the
    numbers ``einsum("bcd,bd->bc", table[rows], q)`` gives, in about 40 % of its time on a
    million-row table (advanced indexing is the slow part)."""
    b, c = rows.shape
    picked = table.index_select(0, rows.reshape(-1)).view(b, c, -1)
    return torch.bmm(picked, q[:, :, None])[..., 0]


def _outside(sorted_rows: npt.NDArray[np.int64], drop: npt.NDArray[np.int64]
             ) -> npt.NDArray[np.bool_]:  # fmt: skip
    """``[len(sorted_rows)]``: which of the sorted rows are not in ``drop`` (by binary
    search: :math:`O(|drop| \\log m)`, not a sort of both)."""
    ok = np.ones(sorted_rows.shape[0], dtype=bool)
    if sorted_rows.shape[0] == 0 or drop.shape[0] == 0:
        return ok
    pos = np.minimum(np.searchsorted(sorted_rows, drop), sorted_rows.shape[0] - 1)
    ok[pos[sorted_rows[pos] == drop]] = False
    return ok


def _user_long(long: Snapshot, req: SeqRequest, inv: npt.NDArray[np.int64]
               ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None:  # fmt: skip
    """The long-term vector of ``req`` and the encoder columns of its snapshot history: the
    snapshot's row for a user it knows; else folded in from the request's positive events
    (no history); ``None`` without either. ``inv``: snapshot item row -> encoder column
    (-1 where the encoder lacks the item)."""
    row = long.user_index.get(req.user_id)
    if row is not None:
        hist = inv[long.history(row)]
        return long.user_vec[row], hist[hist >= 0]
    folded = long.fold_in([item for item, code in zip(req.items, req.types, strict=True)
                           if code not in NEGATIVE_CODES])  # fmt: skip
    if folded is None:
        return None
    return folded, np.zeros(0, dtype=np.int64)


def _scored(values: torch.Tensor, rows: torch.Tensor, b: int, ids: tuple[str, ...]
            ) -> tuple[ScoredItem, ...]:  # fmt: skip
    return tuple(ScoredItem(ids[j], float(np.exp(v)))
                 for j, v in zip(rows[b].tolist(), values[b].tolist(), strict=True)
                 if v > float("-inf"))  # fmt: skip
