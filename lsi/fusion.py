"""The fused scorer as workers serve it: the short-term sequence encoder and the learned gate
over the long-term snapshot.

A :class:`SequenceModel` is the trained part of a snapshot (:class:`models.sequence.
LongShortScorer`: encoder, gate, temperature) with its item catalogue; it scores against the
:class:`lsi.longterm.LongTermModel` of the same snapshot. Like that model it is immutable and
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
  folded in from the request's positive events (:meth:`lsi.longterm.LongTermModel.fold_in`);
  one with no such event the snapshot knows has no long-term part, :math:`w = 0`;
* the excluded items: every item of the request (the worker's recent events, even beyond the
  encoder's window) and the user's history in the snapshot.

:meth:`SequenceModel.log_probs` runs the batch through :func:`models.sequence.fuse` in one
forward pass (micro-batches make the model's cost per event fall with load);
:meth:`SequenceModel.recommend` turns it into the three lists of a record: the fused list
(score = fused probability, with each source's own probability as ``long_score`` /
``short_score``), the short-term list and the long-term list, plus :math:`w`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lsi.longterm import LongTermModel
from lsi.records import NEGATIVE_CODES, RecItem, ScoredItem
from lsi.state import UserState
from models.sequence import FusedLogProbs, LongShortScorer, make_encoder

__all__ = ["SeqLists", "SeqRequest", "SequenceModel", "scorer_from_config"]

MODES = ("fused", "long_only", "short_only")


@dataclass(frozen=True, slots=True)
class SeqRequest:
    """One user to score: their recent events, oldest first."""

    user_id: str
    items: Sequence[str]
    types: Sequence[int]
    times: Sequence[float]
    n_events: int

    @classmethod
    def from_state(cls, user_id: str, state: UserState) -> SeqRequest:
        return cls(user_id, state.items, state.types, state.times, state.n_events)


@dataclass(frozen=True, slots=True)
class SeqLists:
    """The lists of one record (see :class:`lsi.records.Recommendation`)."""

    items: tuple[RecItem, ...]
    short_term: tuple[ScoredItem, ...]
    long_term: tuple[ScoredItem, ...]
    long_weight: float
    source: str


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
    """

    item_ids: tuple[str, ...]
    scorer: LongShortScorer
    config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
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
    def _long_rows(self, long: LongTermModel | None) -> npt.NDArray[np.int64]:
        """Encoder catalogue row → the snapshot's item row (-1 where it lacks the item)."""
        if long is None:
            return np.full(len(self.item_ids), -1, dtype=np.int64)
        cache = getattr(long, "_lsi_rows_cache", None)
        if cache is not None and cache[0] is self:
            return cache[1]  # type: ignore[no-any-return]
        rows = np.array([long.item_index.get(k, -1) for k in self.item_ids], dtype=np.int64)
        object.__setattr__(long, "_lsi_rows_cache", (self, rows))
        return rows

    def inputs(self, reqs: Sequence[SeqRequest], long: LongTermModel | None) -> Inputs:
        """The batch's tensors (CPU), exactly as serving, training and evaluation see them."""
        b, n_items, t_max = len(reqs), len(self.item_ids), self.max_len
        gap_s = float(self.config.get("session_gap_s", 1800.0))
        windows: list[tuple[list[int], list[int], list[float]]] = []
        seen_rows: list[list[int]] = []  # every known item of the request (all are excluded)
        for r in reqs:
            rows, types, times = [], [], []
            for item, code, ts in zip(r.items, r.types, r.times, strict=True):
                j = self.item_index.get(item)
                if j is not None:
                    rows.append(j + 1)
                    types.append(int(code))
                    times.append(float(ts))
            windows.append((rows[-t_max:], types[-t_max:], times[-t_max:]))
            seen_rows.append(rows)
        t = max(1, max((len(w[0]) for w in windows), default=1))
        items = np.zeros((b, t), dtype=np.int64)
        types_a = np.zeros((b, t), dtype=np.int64)
        gaps = np.zeros((b, t), dtype=np.float32)
        since = np.zeros(b, dtype=np.float32)
        session = np.zeros(b, dtype=np.float32)
        history = np.array([r.n_events for r in reqs], dtype=np.float32)
        excluded = np.zeros((b, n_items), dtype=bool)
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
            excluded[k, np.asarray(seen_rows[k]) - 1] = True
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
                row = long.user_index.get(r.user_id)
                if row is not None:
                    vec = long.user_vec[row]
                    hist = inv[long.history(row)]
                    excluded[k, hist[hist >= 0]] = True
                else:
                    folded = long.fold_in([item for item, code in zip(r.items, r.types,
                                                                      strict=True)
                                           if code not in NEGATIVE_CODES])  # fmt: skip
                    if folded is None:
                        continue
                    vec = folded
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
    def log_probs(self, reqs: Sequence[SeqRequest], long: LongTermModel | None
                  ) -> tuple[FusedLogProbs, npt.NDArray[np.bool_]]:  # fmt: skip
        """Fused, short-term and long-term log-probabilities ``[B, I]`` over the encoder's
        catalogue, :math:`w` ``[B]`` (CPU tensors), and which requests were scorable."""
        x = self.inputs(reqs, long)
        return self.forward(x), x.scorable

    def forward(self, x: Inputs) -> FusedLogProbs:
        """:meth:`log_probs` on inputs already built (CPU tensors out)."""
        with torch.inference_mode():
            out = self.scorer(*x.to(self.device).model_args())
        return FusedLogProbs(*(v.cpu() for v in out))

    def recommend(self, reqs: Sequence[SeqRequest], long: LongTermModel | None, k: int,
                  mode: str = "fused") -> list[SeqLists | None]:  # fmt: skip
        """The lists of each request's record, ``None`` for a request the encoder cannot
        score (no known item in its window: the caller falls back to the short-term
        statistics path).

        ``mode``: ``fused`` (the learned gate), ``short_only`` (:math:`w = 0`) or
        ``long_only`` (:math:`w = 1` for users the snapshot knows)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not reqs:
            return []
        lp, scorable = self.log_probs(reqs, long)
        known = torch.isfinite(lp.long).any(dim=1) & (lp.long_weight > 0)
        ids = self.item_ids
        kk = min(k, len(ids))
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
        names = ("short_term", "long_term", "fused")
        out: list[SeqLists | None] = []
        for b in range(len(reqs)):
            if not scorable[b]:
                out.append(None)
                continue
            row_long = bool(has_long[b])
            short_list = _scored(short_top, b, ids)
            long_list = _scored(long_top, b, ids) if row_long else ()
            src = int(lead[b])
            w = (0.0, 1.0, float(lp.long_weight[b]))[src]
            items = tuple(
                RecItem(ids[j], float(p_main[b, c]), float(p_long[b, c]) if row_long else 0.0,
                        float(p_short[b, c]))
                for c, (j, v) in enumerate(zip(cols[b].tolist(), main[b].tolist(), strict=True))
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


def _scored(top: Any, b: int, ids: tuple[str, ...]) -> tuple[ScoredItem, ...]:
    return tuple(ScoredItem(ids[j], float(np.exp(v)))
                 for j, v in zip(top.indices[b].tolist(), top.values[b].tolist(), strict=True)
                 if v > float("-inf"))  # fmt: skip
