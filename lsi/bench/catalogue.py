"""``lsi bench catalogue``: serving cost per event as the catalogue grows, exact scoring
against candidate retrieval (:mod:`lsi.serving.retrieval`), and what retrieval costs in accuracy.

1. **Cost curve.** For each size ``I`` of ``sizes`` a synthetic snapshot
   (:func:`synthetic_snapshot`): an untrained encoder and gate of the served shape whose item
   rows are replaced by "trained-looking" vectors (``I / 500`` clusters, item = centre +
   noise, norm growing with a Zipf popularity), long-term vectors of the same clusters in
   another basis, users with two favourite clusters whose long-term vector is the mean of
   their history (70 % drawn within their clusters, 30 % by Zipf popularity overall).
   Requests are worker-like: a known (or, one in ten, unknown and folded-in) user with 20–50
   recent events drawn the same way. The encoder is untrained: its short-term vectors ignore
   the clusters, so the short-term index's recall here is a pessimistic bound. Each micro-batch of ``batch`` requests goes through
   :meth:`lsi.serving.fusion.SequenceModel.recommend`, the interest agent's call, once with every
   item scored (``mode="exact"``) and once through retrieval (``mode="ann"``), on one thread
   (``torch`` and faiss both set to 1; the index build uses every core). Reported: the
   median seconds per event, the index build time, bytes per item vector (model and index),
   recall@100 of each index against exact inner-product search on the batch's queries.
   Every catalogue is built first and the timed calls then go round (each size, retrieval
   then exact, batch by batch), so that on a shared machine every point meets the same
   background load.
2. **ML-1M** (``--ml1m``; a run without it keeps this section of the report already in
   ``out``, marked ``earlier_run`` with the command that measured it). A snapshot trained as the refresh job does
   (:func:`lsi.evaluation.fused.train_bundle`, encoder time ``ml1m_budget_s``) on the
   leave-one-out split of ``phase`` (``valid``: learn the training rows, judge the validation
   items, used to choose the parameters; ``test``: learn training + validation, judge the
   test items), scored as ``lsi bench accuracy`` scores the fused list
   (:func:`lsi.evaluation.fused.score_lists`), exact and with retrieval forced on. Reported:
   NDCG@10 and HR@10 of both, the relative NDCG@10 lost, recall@100 of the short-term and
   long-term indexes against exact top-100 inner-product search for the judged users, and
   how far the emitted fused probabilities of the exact top 10 move.

Writes ``catalogue.json``, ``catalogue.md`` and ``catalogue.png`` under ``out``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lsi.core.snapshot_view import SeqRequest
from lsi.errors import LsiError
from lsi.serving.fusion import SequenceModel, scorer_from_config
from lsi.serving.retrieval import ExactIndex, RetrievalConfig, recall_at
from lsi.serving.snapshot import Snapshot

__all__ = ["QUICK", "CatalogueBenchOptions", "run_catalogue_bench", "synthetic_snapshot"]

DEFAULT_OUT = Path("benchmarks/results/current/catalogue")
#: what ``--quick`` changes (tests, smoke runs): two small catalogues, few batches
QUICK: dict[str, Any] = {"sizes": (1000, 5000), "batch": 8, "batches": 3}
#: the encoder the synthetic snapshots serve (lsi bench accuracy's defaults, a 50-event window)
ENCODER = {"encoder": "attention", "dim": 64, "max_len": 50, "layers": 2, "heads": 2,
           "dropout": 0.0, "gate_hidden": 32, "gate": "learned", "session_gap_s": 1800.0}  # fmt: skip


@dataclass(frozen=True, slots=True)
class CatalogueBenchOptions:
    """What ``lsi bench catalogue`` measures.

    Attributes:
        sizes: catalogue sizes of the cost curve.
        batch: requests per micro-batch.
        batches: timed micro-batches per size and path (the exact path at sizes from
            ``exact_cap`` on runs at most 3: it takes seconds each).
        exact_cap: size from which the exact path is timed on 3 micro-batches only.
        retrieval: the retrieval settings measured (``mode`` is forced per path).
        ml1m: also measure the accuracy lost on ML-1M.
        ml1m_budget_s: encoder training time of the ML-1M snapshot.
        phase: ``test`` or ``valid`` (ML-1M targets).
        dataset: the dataset of that section (``ml-1m``).
        out: report folder.
        seed: seed of the synthetic data.
    """

    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    batch: int = 64
    batches: int = 20
    exact_cap: int = 300_000
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    ml1m: bool = False
    ml1m_budget_s: float = 120.0
    phase: str = "test"
    dataset: str = "ml-1m"
    out: Path = DEFAULT_OUT
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) < 100:
            raise LsiError(f"--sizes must be at least 100 items each, got {self.sizes}")
        if self.batch < 1 or self.batches < 1:
            raise LsiError("--batch and --batches must be at least 1")
        if self.phase not in ("test", "valid"):
            raise LsiError("--phase must be test or valid")
        if self.ml1m_budget_s <= 0:
            raise LsiError("--ml1m-budget must be positive")


# -- synthetic snapshots ----------------------------------------------------------------------
def _zipf_sampler(n: int, rng: np.random.Generator, exponent: float = 1.0
                  ) -> Callable[[int], npt.NDArray[np.int64]]:  # fmt: skip
    """Draws of item rows with Zipf popularity over a random permutation of ``0…n-1``."""
    p = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    cdf = np.cumsum(p / p.sum())
    perm = rng.permutation(n)

    def draw(size: int) -> npt.NDArray[np.int64]:
        ranks = np.minimum(np.searchsorted(cdf, rng.random(size)), n - 1)
        out: npt.NDArray[np.int64] = perm[ranks].astype(np.int64)
        return out

    return draw


def synthetic_snapshot(n_items: int, seed: int = 0, n_users: int = 2000, dim: int = 64
                       ) -> tuple[Snapshot, Callable[[int], list[SeqRequest]]]:  # fmt: skip
    """A snapshot of ``n_items`` items with its fused scorer (see the module docstring), and
    a function that draws ``n`` worker-like requests."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    n_clusters = max(16, n_items // 500)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    label = rng.integers(0, n_clusters, n_items)
    draw = _zipf_sampler(n_items, rng)
    # popularity (how often 20·I Zipf draws hit the row) sets the norm, as training does
    counts = np.bincount(draw(20 * n_items), minlength=n_items).astype(np.float32)
    norm = (0.5 + np.log1p(counts) / np.log1p(counts.max())).astype(np.float32)

    def vectors(basis: npt.NDArray[np.float32], scale: float) -> npt.NDArray[np.float32]:
        v = (centres[label] @ basis + 0.7 * rng.standard_normal((n_items, dim))
             .astype(np.float32)) * (norm[:, None] * scale)  # fmt: skip
        return np.ascontiguousarray(v, dtype=np.float32)

    item_ids = tuple(f"i{j}" for j in range(n_items))
    cfg = {**ENCODER, "dim": dim}
    scorer = scorer_from_config(cfg, n_items, dim)
    emb = vectors(np.eye(dim, dtype=np.float32), dim**-0.5)
    with torch.no_grad():
        scorer.encoder.embed.item.weight[1:] = torch.from_numpy(emb)
    seq = SequenceModel(item_ids, scorer, cfg)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    item_vec = vectors(q.astype(np.float32), 0.3)
    hist_len = rng.integers(10, 40, n_users)
    indptr = np.concatenate([[0], np.cumsum(hist_len)]).astype(np.int64)
    order = np.argsort(label, kind="stable")
    starts = np.searchsorted(label[order], np.arange(n_clusters + 1))
    taste = rng.integers(0, n_clusters, (n_users, 2))

    def liked(clusters: npt.NDArray[np.int64], size: int) -> npt.NDArray[np.int64]:
        """``size`` rows: 70 % uniform within the user's two clusters, 30 % Zipf overall."""
        c = clusters[rng.integers(0, 2, size)]
        lo, width = starts[c], starts[c + 1] - starts[c]
        inside = order[np.minimum(lo + (rng.random(size) * width).astype(np.int64),
                                  n_items - 1)]  # fmt: skip
        pick: npt.NDArray[np.int64] = np.where((rng.random(size) < 0.7) & (width > 0), inside,
                                               draw(size))  # fmt: skip
        return pick

    hist = np.concatenate([liked(taste[u], int(hist_len[u]))
                           for u in range(n_users)]).astype(np.int32)  # fmt: skip
    user_vec = np.stack([item_vec[hist[indptr[u] : indptr[u + 1]]].mean(axis=0)
                         for u in range(n_users)]).astype(np.float32)  # fmt: skip
    user_ids = tuple(f"u{u}" for u in range(n_users))
    long = Snapshot("synthetic", user_ids, item_ids, user_vec, item_vec, indptr, hist,
                         {}, seq)  # fmt: skip

    def requests(n: int) -> list[SeqRequest]:
        out = []
        for _ in range(n):
            known = rng.random() >= 0.1
            u = int(rng.integers(n_users))
            user = f"u{u}" if known else f"new{rng.integers(10**9)}"
            m = int(rng.integers(20, 51))
            clusters = taste[u] if known else rng.integers(0, n_clusters, 2)
            items = [item_ids[j] for j in liked(clusters, m).tolist()]
            times = np.cumsum(rng.exponential(120.0, m)).tolist()
            out.append(SeqRequest(user, items, [0] * m, times, m + int(rng.integers(0, 200))))
        return out

    return long, requests


# -- the cost curve -----------------------------------------------------------------------------
def _one_thread() -> Callable[[], None]:
    """Torch and faiss on one thread; returns what restores them."""
    import faiss

    before_t, before_f = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)

    def restore() -> None:
        torch.set_num_threads(before_t)
        faiss.omp_set_num_threads(before_f)

    return restore


@dataclass
class _Size:
    """One catalogue of the curve, ready to time."""

    point: dict[str, Any]
    batches: list[list[SeqRequest]]
    paths: list[tuple[SequenceModel, Snapshot, int]]  # retrieval, exact


def _prepare(n_items: int, opts: CatalogueBenchOptions, log: Callable[[str], None]) -> _Size:
    """The snapshot, its requests, its indexes (built on every core, as a refresh would) and
    the recall@100 of each index against exact search on the first batch's queries."""
    t0 = time.perf_counter()
    long, requests = synthetic_snapshot(n_items, opts.seed)
    base: SequenceModel = long.sequence
    make_s = time.perf_counter() - t0
    batches = [requests(opts.batch) for _ in range(opts.batches)]
    ann = replace(base, retrieval=replace(opts.retrieval, mode="ann"))
    served = replace(long, sequence=ann)
    t1 = time.perf_counter()
    ret = ann.retriever(served)
    build_s = time.perf_counter() - t1
    exact = replace(base, retrieval=replace(opts.retrieval, mode="exact"))
    n_exact = 3 if n_items >= opts.exact_cap else opts.batches
    win = ann._windows(batches[0])
    with torch.inference_mode():
        s = ann.scorer.short_state(torch.from_numpy(win.items), torch.from_numpy(win.types),
                                   torch.from_numpy(win.gaps)).numpy()  # fmt: skip
    emb = ann.scorer.encoder.item_embeddings.detach().numpy()
    rows = [long.user_index[r.user_id] for r in batches[0] if r.user_id in long.user_index]
    lq = long.user_vec[rows]
    recall_short = recall_at(ret.short.search(s, 100), ExactIndex(emb).search(s, 100))
    assert ret.long is not None
    recall_long = recall_at(ret.long.search(lq, 100), ExactIndex(long.item_vec).search(lq, 100))
    point: dict[str, Any] = {
        "items": n_items,
        "index_build_s": round(build_s, 3),
        "synthetic_build_s": round(make_s, 2),
        "nlist": int(getattr(ret.short, "nlist", 0)),
        "recall@100_short": recall_short,
        "recall@100_long": recall_long,
        "memory": {
            "model_bytes_per_item": 2 * 4 * int(emb.shape[1]),  # encoder row + long vector
            **{k: round(v, 2) for k, v in ret.memory().items()},
        },
    }
    log(f"[catalogue] {n_items:>9,} items: index built in {build_s:.1f} s, recall@100 "
        f"{recall_short:.3f}/{recall_long:.3f}")  # fmt: skip
    return _Size(point, batches,
                 [(ann, served, len(batches)), (exact, replace(long, sequence=exact), n_exact)])  # fmt: skip


def _curve(opts: CatalogueBenchOptions, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every size prepared, then timed batch by batch in turn (each size, retrieval then
    exact), so that every point meets the same background load of a shared machine."""
    sizes = [_prepare(n, opts, log) for n in sorted(set(opts.sizes))]
    restore = _one_thread()
    try:
        for size in sizes:  # warm-up
            for seq, long, _ in size.paths:
                seq.recommend(size.batches[0], long, 20)
        times: list[list[list[float]]] = [[[], []] for _ in sizes]
        for i in range(opts.batches):
            for size, out in zip(sizes, times, strict=True):
                for (seq, long, n), t in zip(size.paths, out, strict=True):
                    if i < n:
                        t0 = time.perf_counter()
                        seq.recommend(size.batches[i], long, 20)
                        t.append(time.perf_counter() - t0)
    finally:
        restore()
    points = []
    for size, (ann_t, exact_t) in zip(sizes, times, strict=True):
        p = {**size.point,
             "exact_s_per_event": float(np.median(exact_t)) / opts.batch,
             "retrieval_s_per_event": float(np.median(ann_t)) / opts.batch,
             "exact_min_s_per_event": float(np.min(exact_t)) / opts.batch,
             "retrieval_min_s_per_event": float(np.min(ann_t)) / opts.batch,
             "exact_batches": len(exact_t), "retrieval_batches": len(ann_t)}  # fmt: skip
        log(f"[catalogue] {p['items']:>9,} items: exact {p['exact_s_per_event'] * 1e3:.3f} "
            f"ms/event, retrieval {p['retrieval_s_per_event'] * 1e3:.3f} ms/event")  # fmt: skip
        points.append(p)
    return points


# -- ML-1M ---------------------------------------------------------------------------------------
def ml1m_accuracy(opts: CatalogueBenchOptions, log: Callable[[str], None]) -> dict[str, Any]:
    """The ML-1M section (see the module docstring)."""
    from lsi.bench.accuracy import _log, _loo_rows
    from lsi.evaluation.datasets import load
    from lsi.evaluation.fused import loo_requests, train_bundle
    from models.training.sequence import SequenceConfig

    data = load(opts.dataset)
    split, rows = _loo_rows(data, opts.phase)
    test = split.valid if opts.phase == "valid" else split.test
    log_rows = _log(data, rows)
    t0 = time.perf_counter()
    # the encoder of benchmarks/results/archive/ml-1m-loo-300s (50 events, 512 sampled negatives)
    cfg = SequenceConfig(max_len=50, negatives=512, max_train_s=opts.ml1m_budget_s,
                         device="cpu")  # fmt: skip
    bundle = train_bundle(log_rows, opts.seed, cfg, version="catalogue")
    train_s = time.perf_counter() - t0
    log(f"[catalogue] {opts.dataset}: snapshot trained in {train_s:.0f} s")
    users = [str(int(split.users.raw[u])) for u in test.users.tolist()]
    reqs = loo_requests(log_rows, users)
    return evaluate_retrieval(bundle.served, reqs, split, test.targets, opts.retrieval,
                              {"train_s": round(train_s, 1), "phase": opts.phase,
                               "dataset": opts.dataset})  # fmt: skip


def evaluate_retrieval(model: Snapshot, reqs: list[SeqRequest], split: Any,
                       targets: npt.NDArray[np.int64], retrieval: RetrievalConfig,
                       extra: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """NDCG@10 / HR@10 of the fused list exact and through retrieval, recall@100 of both
    indexes against exact inner-product search, and the emitted probabilities' change."""
    from lsi.core.ranking import rank_of_target
    from lsi.evaluation.fused import score_lists
    from lsi.evaluation.measures import case_metrics, summarize

    seq: SequenceModel = model.sequence
    exact = replace(model, sequence=seq.with_retrieval(mode="exact"))
    ann = replace(model, sequence=seq.with_retrieval(**{**asdict(retrieval), "mode": "ann"}))
    columns_of = {str(int(raw)): j for j, raw in enumerate(split.items.raw)}
    columns = np.array([columns_of.get(k, -1) for k in seq.item_ids], dtype=np.int64)
    ranks: dict[str, list[npt.NDArray[np.float64]]] = {"exact": [], "retrieval": []}
    rel_err: list[npt.NDArray[np.float32]] = []
    t_path = {"exact": 0.0, "retrieval": 0.0}
    for s in range(0, len(reqs), 512):
        chunk, tgt = reqs[s : s + 512], targets[s : s + 512]
        scores = {}
        for name, mdl in (("exact", exact), ("retrieval", ann)):
            t0 = time.perf_counter()
            scores[name] = score_lists(mdl, chunk, columns, split.n_items)["fused"]
            t_path[name] += time.perf_counter() - t0
            ranks[name].append(rank_of_target(scores[name], tgt))
        top = np.argsort(-scores["exact"], axis=1)[:, :10]
        pe = np.take_along_axis(scores["exact"], top, 1)
        pa = np.take_along_axis(scores["retrieval"], top, 1)
        ok = np.isfinite(pe) & np.isfinite(pa)
        rel_err.append(np.abs(np.exp(pa[ok] - pe[ok]) - 1.0))
    metrics = {}
    for name, parts in ranks.items():
        m = summarize(case_metrics(np.concatenate(parts), (10,)))
        metrics[name] = {"ndcg@10": m["NDCG@10"], "hr@10": m["HR@10"],
                         "seconds": round(t_path[name], 2)}  # fmt: skip
    ne, na = metrics["exact"]["ndcg@10"], metrics["retrieval"]["ndcg@10"]
    # recall@100 of each index against exact top-100 inner products, the judged users' queries
    ret = ann.sequence.retriever(ann)
    s_q: list[npt.NDArray[np.float32]] = []
    for s in range(0, len(reqs), 512):
        win = seq._windows(reqs[s : s + 512])
        with torch.inference_mode():
            s_q.append(seq.scorer.short_state(torch.from_numpy(win.items),
                                              torch.from_numpy(win.types),
                                              torch.from_numpy(win.gaps)).numpy())  # fmt: skip
    sq = np.concatenate(s_q)
    rows = [model.user_index[r.user_id] for r in reqs if r.user_id in model.user_index]
    l_q = model.user_vec[rows]
    emb = seq.scorer.encoder.item_embeddings.detach().numpy()
    lrows = seq._long_rows(model)
    have = np.flatnonzero(lrows >= 0)
    err = np.concatenate(rel_err)
    assert ret.long is not None
    return {
        **extra,
        "cases": len(reqs),
        "items": len(seq.item_ids),
        "retrieval": asdict(ann.sequence.retrieval),
        "nlist": int(getattr(ret.short, "nlist", 0)),
        "exact": metrics["exact"],
        "with_retrieval": metrics["retrieval"],
        "ndcg@10_relative_loss": (ne - na) / ne if ne > 0 else 0.0,
        "recall@100_short": recall_at(ret.short.search(sq, 100), ExactIndex(emb).search(sq, 100)),
        "recall@100_long": recall_at(
            ret.long.search(l_q, 100),
            ExactIndex(model.item_vec[lrows[have]], have).search(l_q, 100),
        ),
        "top10_probability_relative_error": {
            "median": float(np.median(err)),
            "p90": float(np.quantile(err, 0.9)),
        },
    }


# -- the command ---------------------------------------------------------------------------------
def _machine() -> dict[str, Any]:
    import faiss

    return {"python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "faiss": faiss.__version__,
            "serving_threads": 1}  # fmt: skip


def run_catalogue_bench(opts: CatalogueBenchOptions, log: Callable[[str], None] = print
                        ) -> dict[str, Any]:  # fmt: skip
    """Measure (see the module docstring); write ``catalogue.json`` / ``.md`` / ``.png``."""
    from lsi.bench.provenance import git_commit

    measured = git_commit()  # the checkout the run starts from, not the one at its end
    started = time.perf_counter()
    load_before = os.getloadavg()
    points = _curve(opts, log)
    small, large = points[0], points[-1]
    report: dict[str, Any] = {
        **measured,
        "sizes": points,
        "batch": opts.batch,
        "retrieval": asdict(opts.retrieval),
        "ratio": {
            "retrieval_at_largest_vs_exact_at_smallest": large["retrieval_s_per_event"]
            / small["exact_s_per_event"],
            "retrieval_at_largest_vs_retrieval_at_smallest": large["retrieval_s_per_event"]
            / small["retrieval_s_per_event"],
            "exact_at_largest_vs_exact_at_smallest": large["exact_s_per_event"]
            / small["exact_s_per_event"],
            "min_retrieval_at_largest_vs_min_exact_at_smallest": large["retrieval_min_s_per_event"]
            / small["exact_min_s_per_event"],
            "min_retrieval_at_largest_vs_min_retrieval_at_smallest": large[
                "retrieval_min_s_per_event"
            ]
            / small["retrieval_min_s_per_event"],
        },
        "ml1m": ml1m_accuracy(opts, log) if opts.ml1m else _earlier_ml1m(opts.out),
        "machine": _machine(),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "seconds": round(time.perf_counter() - started, 1),
        "command": _command(opts),
    }
    _write(opts.out, report)
    return report


def _earlier_ml1m(out: Path) -> dict[str, Any] | None:
    """The ML-1M section of the report already in ``out`` (marked ``earlier_run``, with the
    command that measured it): a run without ``--ml1m`` re-measures the cost curve only."""
    path = out / "catalogue.json"
    if not path.exists():
        return None
    earlier = json.loads(path.read_text())
    section = earlier.get("ml1m")
    if not section:
        return None
    if not section.get("earlier_run"):
        section = {**section, "earlier_run": True, "command": earlier.get("command"),
                   "commit": earlier.get("commit")}  # fmt: skip
    return section  # type: ignore[no-any-return]


def _command(opts: CatalogueBenchOptions) -> str:
    base = CatalogueBenchOptions()
    parts = ["lsi bench catalogue"]
    if opts.sizes != base.sizes:
        parts.append("--sizes " + ",".join(str(n) for n in opts.sizes))
    for flag, value, default in (("--batch", opts.batch, base.batch),
                                 ("--batches", opts.batches, base.batches),
                                 ("--candidates", opts.retrieval.candidates,
                                  base.retrieval.candidates),
                                 ("--nprobe", opts.retrieval.nprobe, base.retrieval.nprobe),
                                 ("--storage", opts.retrieval.storage, base.retrieval.storage),
                                 ("--seed", opts.seed, base.seed)):  # fmt: skip
        if value != default:
            parts.append(f"{flag} {value}")
    if opts.ml1m:
        parts.append(f"--ml1m --ml1m-budget {opts.ml1m_budget_s:g}")
        if opts.phase != "test":
            parts.append(f"--phase {opts.phase}")
    if opts.out != DEFAULT_OUT:
        parts.append(f"--out {opts.out}")
    return " ".join(parts)


def _rows(report: dict[str, Any]) -> Iterator[str]:
    yield ("| items | exact ms/event (min) | retrieval ms/event (min) | index build s | "
           "recall@100 short / long | index B/item short / long | model B/item |")  # fmt: skip
    yield "|---:|---:|---:|---:|---:|---:|---:|"
    for p in report["sizes"]:
        mem = p["memory"]
        yield (f"| {p['items']:,} | {p['exact_s_per_event'] * 1e3:.3f} "
               f"({p['exact_min_s_per_event'] * 1e3:.3f}) | "
               f"{p['retrieval_s_per_event'] * 1e3:.3f} "
               f"({p['retrieval_min_s_per_event'] * 1e3:.3f}) | {p['index_build_s']:.1f} | "
               f"{p['recall@100_short']:.3f} / {p['recall@100_long']:.3f} | "
               f"{mem['short_bytes_per_item']:.0f} / {mem.get('long_bytes_per_item', 0):.0f} | "
               f"{mem['model_bytes_per_item']} |")  # fmt: skip


def _write(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "catalogue.json").write_text(json.dumps(report, indent=2) + "\n")
    r, ratio = report["retrieval"], report["ratio"]
    sizes = report["sizes"]
    md = [
        "# Serving cost per event against the catalogue size",
        "",
        f"Micro-batches of {report['batch']} worker-like requests through "
        "`SequenceModel.recommend` on one thread; exact = every item scored, retrieval = "
        f"faiss IVF (inner product, {r['storage']}, nprobe {r['nprobe']}) with "
        f"{r['candidates']} candidates per source, then exact fused re-ranking.",
        "",
        *_rows(report),
        "",
        f"Retrieval at {sizes[-1]['items']:,} items costs "
        f"{ratio['retrieval_at_largest_vs_exact_at_smallest']:.2f}× the exact path at "
        f"{sizes[0]['items']:,} items ({ratio['retrieval_at_largest_vs_retrieval_at_smallest']:.2f}"
        f"× retrieval at {sizes[0]['items']:,}; the exact path grows "
        f"{ratio['exact_at_largest_vs_exact_at_smallest']:.0f}×). By the fastest batch of "
        f"each (the least disturbed by other work on a shared machine): "
        f"{ratio['min_retrieval_at_largest_vs_min_exact_at_smallest']:.2f}× and "
        f"{ratio['min_retrieval_at_largest_vs_min_retrieval_at_smallest']:.2f}×.",
        "",
        "Medians of the timed micro-batches, the fastest in brackets; every size is timed in "
        "turn, batch by batch, so all meet the same background load.",
        "",
        "Memory per item: the model's own float32 vectors (encoder row and long-term vector) "
        "plus each index's code, id and centroid share.",
        "",
    ]
    ml = report.get("ml1m")
    if ml:
        md += [
            f"## {ml['dataset']}: what retrieval costs in accuracy ({ml['phase']} items)",
            "",
            "| list | NDCG@10 | HR@10 |",
            "|---|---:|---:|",
            f"| fused, exact | {ml['exact']['ndcg@10']:.4f} | {ml['exact']['hr@10']:.4f} |",
            f"| fused, retrieval | {ml['with_retrieval']['ndcg@10']:.4f} | "
            f"{ml['with_retrieval']['hr@10']:.4f} |",
            "",
            f"NDCG@10 lost to retrieval: {100 * ml['ndcg@10_relative_loss']:.2f} % (relative); "
            f"recall@100 against exact top-100 inner-product search: short-term "
            f"{ml['recall@100_short']:.4f}, long-term {ml['recall@100_long']:.4f} "
            f"({ml['items']:,} items, nlist {ml['nlist']}, {ml['cases']:,} users). Fused "
            f"probabilities of the exact top 10 move by "
            f"{100 * ml['top10_probability_relative_error']['median']:.1f} % (median).",
            "",
            *(
                [f"This section comes from an earlier run: `{ml['command']}`.", ""]
                if ml.get("earlier_run")
                else []
            ),
        ]
    commit = (report.get("commit") or "unknown")[:12]
    la = report["load_average"]["before"]
    md += [
        f"Commit `{commit}`{' (dirty)' if report.get('dirty') else ''}; "
        f"{report['machine']['cpus']} CPUs, load average {la[0]:.2f} at start; "
        f"{report['seconds']:.0f} s.",
        "",
        f"Reproduce: `{report['command']}`",
        "",
    ]
    (out / "catalogue.md").write_text("\n".join(md))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    xs = [p["items"] for p in sizes]
    for key, name, colour in (("exact", "exact", "C0"),
                              ("retrieval", "retrieval + re-ranking", "C1")):  # fmt: skip
        ax.plot(xs, [p[f"{key}_s_per_event"] * 1e3 for p in sizes], marker="o", c=colour,
                label=f"{name} (median)")  # fmt: skip
        ax.plot(xs, [p.get(f"{key}_min_s_per_event", math.nan) * 1e3 for p in sizes],
                marker=".", ls=":", c=colour, label=f"{name} (fastest batch)")  # fmt: skip
    base = sizes[0].get("exact_min_s_per_event", sizes[0]["exact_s_per_event"])
    ax.axhline(2 * base * 1e3, ls="--", c="grey", lw=0.8,
               label=f"2× exact at {xs[0]:,} (fastest batch)")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("catalogue items")
    ax.set_ylabel("ms per event (one thread)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "catalogue.png", dpi=120)
    plt.close(fig)
