"""Training the long-term model: graph building, warm start, the BPR loop, validation.

The refresh job (:mod:`models.jobs.refresh`), the benchmarks and the offline evaluation all train
through :func:`train_long_term`, so the model they measure is the one workers serve.

Graph. Interactions ``(user, item, type strength, ts)`` with positive strength become
undirected user–item edges of weight ``strength · 2^{-(now - ts)/h}``
(:func:`models.nn.lightgcn.edge_weights`; repeated pairs add up). The normalised adjacency
:math:`D^{-1/2} A D^{-1/2}` is built once per refresh (:func:`normalized_adjacency`) so each
propagation is three sparse-dense products, ``[N, N] @ [N, d]``.

Loss. BPR (:func:`models.nn.lightgcn.bpr_loss`): each step draws a batch of observed pairs
``(u, i)`` uniformly and one uniformly random item ``j`` per pair, propagates the whole graph
and minimises :math:`-\\log\\sigma(\\langle X_u, X_i\\rangle - \\langle X_u, X_j\\rangle)` plus
L2 on the layer-0 rows the batch touched. An epoch is ``ceil(E / batch)`` steps, each costing
:math:`O(E d)`; the batch grows with the graph (``max_steps_per_epoch``) so an epoch stays
:math:`O(E d)` overall, which is what makes refresh time linear in the edges.

Warm start. Given the live model's ids and layer-0 embeddings, rows keep their ids and
values; ids new since then are appended with fresh :math:`\\mathcal N(0, 0.1^2)` rows.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lsi.core.ranking import hit_rate_at_k, ndcg_at_k, rank_in_row
from lsi.evaluation.datasets import Interactions
from lsi.evaluation.measures import DEFAULT_KS
from lsi.serving.snapshot import Snapshot
from lsi.wire.records import EVENT_TYPES, TYPE_WEIGHTS
from models.nn.lightgcn import WeightedLightGCN, bpr_loss, edge_weights, normalized_adjacency

__all__ = [
    "Log",
    "TrainConfig",
    "Trained",
    "WarmStart",
    "add_history",
    "holdout_last",
    "pick_device",
    "train_long_term",
    "validate",
]

Progress = Callable[[int, int, float], None]


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters of a refresh (chosen on the ``--phase valid`` split, never on test).

    Attributes:
        dim: embedding size ``d``.
        layers: propagation layers ``L``.
        epochs: epochs of a cold start.
        warm_epochs: epochs when warm-starting from the live snapshot. 3, chosen on ML-1M's
            ``lsi bench refresh`` protocol with a holdout seed (1) other than the reported
            one: 0/1/2/3/8 epochs at lr 0.03 gave NDCG@10 0.0283/0.0285/0.0322/0.0347/0.0203
            (the cold model: 0.0272); lr 0.01 with 2/3/4 epochs 0.0301/0.0315/0.0325. Longer
            warm runs drift (Adam restarts with full-size steps), so 3 is also the best.
        batch_size: observed pairs per step (at least; see ``max_steps_per_epoch``).
        max_steps_per_epoch: the batch grows so an epoch has at most this many steps.
        lr: Adam learning rate.
        l2: L2 weight on the touched layer-0 rows, per pair.
        half_life_days: edge time-decay half-life ``h``.
        seed: RNG seed (initialisation and sampling).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    """

    dim: int = 64
    layers: int = 2
    epochs: int = 30
    warm_epochs: int = 3
    batch_size: int = 8192
    max_steps_per_epoch: int = 24
    lr: float = 0.03
    l2: float = 1e-4
    half_life_days: float = 365.0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if min(self.dim, self.epochs, self.batch_size, self.max_steps_per_epoch) < 1:
            raise ValueError("dim, epochs, batch_size and max_steps_per_epoch must be positive")
        if self.layers < 0 or self.warm_epochs < 0 or self.lr <= 0 or self.half_life_days <= 0:
            raise ValueError("layers/warm_epochs must be >= 0, lr and half_life_days > 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")


@dataclass(frozen=True, slots=True)
class Log:
    """Interactions to learn, as parallel arrays (raw string ids).

    ``strength`` is the implicit-feedback strength (:attr:`lsi.wire.records.Event.strength`);
    rows with ``strength <= 0`` (skips) add no edge. ``types``: event-type codes
    (:data:`lsi.wire.records.EVENT_TYPES`; the sequence encoder's input), ``None`` = all ``view``.
    """

    users: Sequence[str]
    items: Sequence[str]
    ts: npt.NDArray[np.float64]
    strength: npt.NDArray[np.float32]
    types: npt.NDArray[np.int8] | None = None

    def __post_init__(self) -> None:
        n = len(self.users)
        if not (len(self.items) == n == self.ts.shape[0] == self.strength.shape[0]):
            raise ValueError("users, items, ts and strength must have the same length")
        if self.types is not None and self.types.shape[0] != n:
            raise ValueError("types must have one code per interaction")

    def type_codes(self) -> npt.NDArray[np.int8]:
        """``types``, or all zeros (``view``) when the log has none."""
        if self.types is None:
            return np.zeros(len(self.users), dtype=np.int8)
        return self.types

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def from_interactions(cls, data: Interactions, rows: npt.NDArray[np.int64] | None = None
                          ) -> Log:  # fmt: skip
        """Rows of a dataset as the refresh job would read them from the topic: string ids,
        strength ``TYPE_WEIGHTS[type] · weight`` (:attr:`lsi.wire.records.Event.strength`; a
        missing weight is 1). ``rows`` default: all, in time order."""
        if rows is None:
            rows = data.time_order()
        table = np.array([TYPE_WEIGHTS[t] for t in EVENT_TYPES], dtype=np.float32)
        strength = table[data.types[rows].astype(np.int64)]
        if data.weights is not None:
            w = data.weights[rows]
            strength = strength * np.where(np.isnan(w), 1.0, w).astype(np.float32)
        return cls(data.users[rows].astype(str).tolist(), data.items[rows].astype(str).tolist(),
                   data.ts[rows].astype(np.float64), strength.astype(np.float32),
                   data.types[rows].astype(np.int8))  # fmt: skip

    def take(self, rows: npt.NDArray[np.int64]) -> Log:
        r = rows.tolist()
        return Log([self.users[j] for j in r], [self.items[j] for j in r], self.ts[rows],
                   self.strength[rows], None if self.types is None else self.types[rows])  # fmt: skip


@dataclass(frozen=True, slots=True)
class WarmStart:
    """What a refresh continues from: the live snapshot's ids and layer-0 rows ``[U+I, d]``."""

    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    base: npt.NDArray[np.float32]
    version: str = ""


@dataclass
class Trained:
    """A trained long-term model and how it was made."""

    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    base: npt.NDArray[np.float32]  # layer-0 rows [U+I, d] (warm-start input of the next refresh)
    user_vec: npt.NDArray[np.float32]
    item_vec: npt.NDArray[np.float32]
    hist_indptr: npt.NDArray[np.int64]
    hist_items: npt.NDArray[np.int32]
    n_edges: int
    epochs: int
    seconds: float
    device: str
    peak_memory_bytes: int
    losses: list[float] = field(default_factory=list)
    warm_from: str = ""
    new_users: int = 0
    new_items: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    def model(self, version: str, manifest: dict[str, Any] | None = None) -> Snapshot:
        return Snapshot(version, self.user_ids, self.item_ids, self.user_vec, self.item_vec,
                        self.hist_indptr, self.hist_items, manifest or {})  # fmt: skip


def pick_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda requested but torch sees no CUDA device")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _index(
    ids: Sequence[str], known: tuple[str, ...]
) -> tuple[tuple[str, ...], npt.NDArray[np.int64]]:
    """Dense rows for ``ids``: known ids keep their row, new ones are appended in order."""
    index = {k: j for j, k in enumerate(known)}
    order = list(known)
    rows = np.empty(len(ids), dtype=np.int64)
    for n, k in enumerate(ids):
        j = index.get(k)
        if j is None:
            j = index[k] = len(order)
            order.append(k)
        rows[n] = j
    return tuple(order), rows


def train_long_term(
    log: Log,
    cfg: TrainConfig = TrainConfig(),
    warm: WarmStart | None = None,
    progress: Progress | None = None,
) -> Trained:
    """Train (or warm-start) the weighted LightGCN on ``log``; returns vectors and history.

    ``progress(epoch, epochs, loss)`` is called after every epoch.
    """
    t0 = time.perf_counter()
    device = pick_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    # only positive interactions make nodes: a user or item seen only in skips stays unknown
    # (served by the short-term path), instead of a random row that would look "known"
    keep = np.flatnonzero(log.strength > 0).tolist()
    user_ids, u_rows = _index([log.users[r] for r in keep], warm.user_ids if warm else ())
    item_ids, i_rows = _index([log.items[r] for r in keep], warm.item_ids if warm else ())
    n_u, n_i = len(user_ids), len(item_ids)
    keep_mask = log.strength > 0
    if u_rows.size == 0:
        raise ValueError("no positive interactions to learn from")

    # edges: one per distinct (user, item), weights summed over repeats
    pair = u_rows * n_i + i_rows
    now = float(log.ts.max())
    w_all = edge_weights(torch.from_numpy(log.strength[keep_mask].astype(np.float64)),
                         torch.from_numpy(log.ts[keep_mask]), now,
                         cfg.half_life_days * 86400.0).numpy()  # fmt: skip
    uniq, inv = np.unique(pair, return_inverse=True)
    w = np.bincount(inv, weights=w_all, minlength=uniq.shape[0]).astype(np.float32)
    eu = torch.from_numpy(uniq // n_i)
    ei = torch.from_numpy(uniq % n_i)
    # Internal node order (cache locality only; the results are the same up to float
    # summation order): users, then items, each by falling degree, so the hot rows the
    # propagation and the loss gather share cache lines and pages. ``su``/``si`` map an
    # internal row to the id's row, ``ru``/``ri`` back.
    su, ru = _by_degree(eu, n_u)
    si, ri = _by_degree(ei, n_i)
    order = torch.cat([su, si + n_u])
    rank = torch.cat([ru, ri + n_u])
    edge_index = WeightedLightGCN.bipartite_edges(ru[eu], ri[ei], n_u)
    ww = torch.from_numpy(np.concatenate([w, w]))
    adj = normalized_adjacency(edge_index, ww, n_u + n_i).to(device)
    del edge_index, ww

    torch.manual_seed(cfg.seed)
    model = WeightedLightGCN(n_u, n_i, cfg.dim, cfg.layers)
    new_users = new_items = 0
    if warm is not None:
        if warm.base.shape[1] != cfg.dim:
            raise ValueError(f"warm start has dim {warm.base.shape[1]}, config has {cfg.dim}")
        wu, wi = len(warm.user_ids), len(warm.item_ids)
        with torch.no_grad():
            base = torch.from_numpy(np.ascontiguousarray(warm.base, dtype=np.float32))
            model.embedding.weight[:wu] = base[:wu]
            model.embedding.weight[n_u : n_u + wi] = base[wu : wu + wi]
        new_users, new_items = n_u - wu, n_i - wi
    with torch.no_grad():  # id rows -> internal rows
        model.embedding.weight.copy_(model.embedding.weight[order])
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    epochs = cfg.warm_epochs if warm is not None else cfg.epochs

    n_edges = int(uniq.shape[0])
    batch = max(cfg.batch_size, math.ceil(n_edges / cfg.max_steps_per_epoch))
    steps = math.ceil(n_edges / batch)
    pos_u = ru[eu].to(device)
    pos_i = (ri[ei] + n_u).to(device)
    neg_map = (ri + n_u).to(device)
    del eu, ei
    losses: list[float] = []
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(n_edges, generator=gen).to(device)
        neg_all = torch.randint(0, n_i, (n_edges,), generator=gen).to(device)
        total = 0.0
        for s in range(steps):
            idx = perm[s * batch : (s + 1) * batch]
            b = idx.shape[0]
            u, o = torch.sort(pos_u[idx])  # the mean is order-free; sorted users gather faster
            loss = _step_loss(model.get_embedding(adj), model.embedding.weight, u,
                              pos_i[idx][o], neg_map[neg_all[idx][o]], cfg.l2)  # fmt: skip
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total += float(loss.detach()) * b
        losses.append(total / n_edges)
        if progress is not None:
            progress(epoch + 1, epochs, losses[-1])

    model.eval()
    with torch.no_grad():
        back = rank.to(device)  # internal rows -> id rows
        emb_np = model.get_embedding(adj)[back].float().cpu().numpy()
        base_np = model.embedding.weight.detach()[back].float().cpu().numpy()
    indptr, hist_items = _history_csr(uniq, n_u, n_i)
    if device.type == "cuda":
        peak = int(torch.cuda.max_memory_allocated(device))
    else:
        peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    return Trained(
        user_ids=user_ids,
        item_ids=item_ids,
        base=base_np,
        user_vec=np.ascontiguousarray(emb_np[:n_u]),
        item_vec=np.ascontiguousarray(emb_np[n_u:]),
        hist_indptr=indptr,
        hist_items=hist_items,
        n_edges=n_edges,
        epochs=epochs,
        seconds=time.perf_counter() - t0,
        device=str(device),
        peak_memory_bytes=peak,
        losses=losses,
        warm_from=warm.version if warm else "",
        new_users=new_users,
        new_items=new_items,
        config=asdict(cfg),
    )


def _by_degree(nodes: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(order, rank)`` of ``n`` rows by falling degree in ``nodes`` (ties: by row):
    ``order[k]`` is the row placed ``k``-th, ``rank`` its inverse."""
    deg = torch.bincount(nodes, minlength=n)
    order = torch.argsort(-deg, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n, dtype=order.dtype)
    return order, rank


_CHUNK = 8192  # pairs per chunk of the loss: its [chunk, d] buffers stay in the CPU caches


class _BPRMargin(torch.autograd.Function):
    """``⟨X_u, X_i⟩ − ⟨X_u, X_j⟩`` per pair, ``[b]``, for rows ``u``, ``i``, ``j`` of ``emb``.

    Autograd through gathers and products would materialise (and zero-fill) several
    ``[b, d]`` buffers per step, and the batch is a 24th of the edges, so on large graphs
    they fall out of the caches and the cost per edge grows. This works in chunks of
    ``_CHUNK`` pairs: forward computes :math:`\\langle X_u, X_i - X_j\\rangle`, backward
    gathers the chunk's rows again and adds :math:`g (X_i - X_j)` to ``u``, :math:`g X_u` to
    ``i`` and :math:`-g X_u` to ``j`` into one ``[N, d]`` gradient: the same numbers as
    autograd, in cache-sized pieces, with memory that does not grow with the batch.
    """

    @staticmethod
    def forward(ctx: Any, emb: torch.Tensor, u: torch.Tensor, i: torch.Tensor,
                j: torch.Tensor) -> torch.Tensor:  # fmt: skip
        ctx.save_for_backward(emb, u, i, j)
        out = emb.new_empty(u.shape[0])
        for s in range(0, u.shape[0], _CHUNK):
            c = slice(s, s + _CHUNK)
            xu = emb.index_select(0, u[c])
            dij = emb.index_select(0, i[c]).sub_(emb.index_select(0, j[c]))
            torch.bmm(xu.unsqueeze(1), dij.unsqueeze(2), out=out[c].view(-1, 1, 1))
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        emb, u, i, j = ctx.saved_tensors
        grad = torch.zeros_like(emb)
        g = g.unsqueeze(1)
        for s in range(0, u.shape[0], _CHUNK):
            c = slice(s, s + _CHUNK)
            xu = emb.index_select(0, u[c]).mul_(g[c])
            dij = emb.index_select(0, i[c]).sub_(emb.index_select(0, j[c])).mul_(g[c])
            grad.index_add_(0, u[c], dij)
            grad.index_add_(0, i[c], xu)
            grad.index_add_(0, j[c], xu, alpha=-1)
        return grad, None, None, None


def _step_loss(emb: torch.Tensor, base: torch.Tensor, u: torch.Tensor, i: torch.Tensor,
               j: torch.Tensor, l2: float) -> torch.Tensor:  # fmt: skip
    """BPR loss of one step (:func:`models.nn.lightgcn.bpr_loss` of the pairs' scores, computed
    from their margin: :math:`-\\log\\sigma(s^+ - s^-)`) plus L2 on the layer-0 rows it
    touched.

    The L2 term :math:`\\sum_r \\lVert w_r\\rVert^2` over the ``3b`` rows ``u, i, j`` is
    computed as :math:`\\sum_v c_v \\lVert w_v\\rVert^2` with the row counts :math:`c` (dense
    over the ``N`` rows, no gather/scatter of ``3b`` rows): the same value and gradient.
    """
    b = u.shape[0]
    margin = _BPRMargin.apply(emb, u, i, j)
    loss = bpr_loss(margin, torch.zeros_like(margin))
    if l2 > 0:
        n = base.shape[0]
        counts = (torch.bincount(u, minlength=n) + torch.bincount(i, minlength=n)
                  + torch.bincount(j, minlength=n)).to(base.dtype)  # fmt: skip
        reg = (counts * base.pow(2).sum(1)).sum()
        loss = loss + l2 * reg / (2 * b)
    return loss


def _history_csr(
    pairs: npt.NDArray[np.int64], n_u: int, n_i: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """Sorted distinct ``user * n_i + item`` codes → per-user item rows, CSR by user row."""
    order = np.argsort(pairs // n_i, kind="stable")
    hist_u = (pairs // n_i)[order]
    hist_items = (pairs % n_i)[order].astype(np.int32)
    indptr = np.zeros(n_u + 1, dtype=np.int64)
    np.cumsum(np.bincount(hist_u, minlength=n_u), out=indptr[1:])
    return indptr, hist_items


def add_history(trained: Trained, log: Log) -> None:
    """Add ``log``'s positive (user, item) pairs that both exist in ``trained`` to its history
    (the rows held out for validation: served lists must not offer them again)."""
    n_u, n_i = len(trained.user_ids), len(trained.item_ids)
    ui = {k: j for j, k in enumerate(trained.user_ids)}
    ii = {k: j for j, k in enumerate(trained.item_ids)}
    codes = [ui[u] * n_i + ii[i] for u, i, s in zip(log.users, log.items, log.strength.tolist(),
                                                    strict=True)
             if s > 0 and u in ui and i in ii]  # fmt: skip
    rows = np.repeat(np.arange(n_u, dtype=np.int64), np.diff(trained.hist_indptr))
    have = rows * n_i + trained.hist_items.astype(np.int64)
    pairs = np.unique(np.concatenate([have, np.asarray(codes, dtype=np.int64)]))
    trained.hist_indptr, trained.hist_items = _history_csr(pairs, n_u, n_i)


def holdout_last(
    log: Log, max_cases: int = 2000, seed: int = 0, after_ts: float | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Split ``log`` into training rows and validation rows: the newest positive interaction
    of up to ``max_cases`` random users with at least 3 positive interactions (and, with
    ``after_ts``, whose newest interaction is later than that: data an older model never saw).

    Returns ``(train_rows, valid_rows)``. Every earlier row of a held-out (user, item) pair
    leaves training too, so no model has seen the pair (a model excludes its training items
    from its lists, so a seen pair would be a forced miss).
    """
    pos = np.flatnonzero(log.strength > 0)
    last: dict[str, int] = {}
    count: dict[str, int] = {}
    for r in pos[np.argsort(log.ts[pos], kind="stable")].tolist():
        u = log.users[r]
        last[u] = r
        count[u] = count.get(u, 0) + 1
    eligible = sorted(u for u, c in count.items()
                      if c >= 3 and (after_ts is None or log.ts[last[u]] > after_ts))  # fmt: skip
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(eligible))[:max_cases]
    valid = np.array(sorted(last[eligible[j]] for j in chosen.tolist()), dtype=np.int64)
    held = {(log.users[r], log.items[r]) for r in valid.tolist()}
    mask = np.array([(u, i) not in held for u, i in zip(log.users, log.items, strict=True)],
                    dtype=bool)  # fmt: skip
    return np.flatnonzero(mask).astype(np.int64), valid


def validate(model: Snapshot, log: Log, rows: npt.NDArray[np.int64],
             exclude: Snapshot | None = None) -> dict[str, float]:  # fmt: skip
    """NDCG@K / HR@K of ``model`` on the cases ``rows`` of ``log`` (full ranking, with
    :meth:`Snapshot.scores`: the serving code). A case whose user or item the model does
    not know counts as a miss. Ranks and metrics are :mod:`lsi.core.ranking`'s, the published
    evaluation's rule (an item tied with the target counts half), so the promotion gate
    compares what the tables report.

    Excluded from the ranking: the training history of ``exclude`` (default: ``model``'s own),
    so two models compared on the same cases (the refresh's candidate and the live snapshot)
    rank the same candidate set."""
    ref = exclude if exclude is not None else model
    ranks = np.full(len(rows), np.inf)  # a miss unless ranked below
    for n, r in enumerate(rows.tolist()):
        user = log.users[r]
        s = model.scores(user, exclude_history=False)
        if s is not None:
            ref_row = ref.user_index.get(user)
            if ref_row is not None:
                seen = [model.item_index.get(ref.item_ids[j]) for j in ref.history(ref_row)]
                s[[j for j in seen if j is not None]] = -np.inf
        j = model.item_index.get(log.items[r])
        if s is not None and j is not None and np.isfinite(s[j]):
            ranks[n] = rank_in_row(s, j)  # the evaluation's tie rule: a tie counts half
    out: dict[str, float] = {"cases": float(len(rows))}
    for k in DEFAULT_KS:
        out[f"ndcg@{k}"] = float(np.mean(ndcg_at_k(ranks, k))) if rows.size else 0.0
        out[f"hr@{k}"] = float(np.mean(hit_rate_at_k(ranks, k))) if rows.size else 0.0
    return out
