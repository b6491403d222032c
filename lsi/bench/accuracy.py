"""``lsi bench accuracy``: recommendation quality under the literature's protocols.

Protocols (``lsi.evaluation.splits``):

* ``loo``: leave-one-out, full ranking over the whole catalogue. Each model learns the
  training interactions plus the validation item of every user, in global time order, then
  ranks every item for every user's last interaction. ``--filter-seen`` removes the user's
  history from the candidates (off by default, as in the published ML-1M tables).
* ``temporal``: a global time split (80 / 10 / 10 % of the events by timestamp). Each model
  learns everything before the test cut-off, then ranks the item of every test interaction
  whose user has history (nothing from the future leaks into training; the model is not
  updated during the test period).
* ``prequential``: events in time order; for each event the model is first asked for the
  user's list, the event is judged against it, then learned. For ``streaming`` the list is
  exactly the one the live ``interest`` agent would have emitted (``lsi.core.engine`` through
  :class:`lsi.evaluation.replay.StreamingModel`, one event per batch); it holds 20 items,
  so every model's prequential ranks are cut at 20 and MRR is MRR@20.

Models: ``mostpop``, ``recent_pop``, ``covisit``, ``biased_mf`` (``lsi.evaluation.baselines``),
``streaming`` (the scorer the workers run, short-term baseline) and ``long_only`` (the
long-term snapshot alone: :func:`models.training.longterm.train_long_term`, the refresh job's training,
ranked by :meth:`lsi.serving.snapshot.Snapshot.scores`, which the scorer's ``long_only`` mode
serves; the user's training items are excluded, as served). Under ``prequential``,
``long_only`` is the live path in ``long_only`` mode with a warm-started refresh every
``refresh_every`` events; before the first snapshot, and for users or items it does not know,
the scorer serves the short-term path, exactly as a worker would. Deterministic models run once; ``biased_mf``
runs ``--seeds`` times and reports the mean and standard deviation. Per-case metric arrays
are kept for paired comparisons against ``streaming``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsi.bench.provenance import provenance, provenance_line
from lsi.core.ranking import mrr, rank_in_row, rank_of_target
from lsi.errors import LsiError
from lsi.evaluation.baselines import BiasedMF, CoVisit, MostPop, RecentPop, Recommender
from lsi.evaluation.datasets import Interactions, load
from lsi.evaluation.fused import (
    gate_profile,
    loo_requests,
    prequential_lists,
    score_lists,
    train_bundle,
)
from lsi.evaluation.measures import (
    DEFAULT_KS,
    case_metrics,
    coverage_at_k,
    paired_bootstrap,
    summarize,
    top_k,
)
from lsi.evaluation.replay import NOT_EVALUATED, StreamingModel
from lsi.evaluation.splits import loo_split, temporal_split
from lsi.serving.worker_process import die_with_parent
from lsi.wire.records import EVENT_TYPES, Event
from models.training.longterm import Log
from models.training.sequence import SequenceConfig

__all__ = ["MODELS", "PROTOCOLS", "AccuracyOptions", "run_accuracy_bench"]

#: the fused scorer and its ablations: name -> (encoder, contrastive weight, gate, list)
SEQUENCE_MODELS: dict[str, tuple[str, float, str, str]] = {
    "fused": ("attention", 0.0, "learned", "fused"),
    "short_only": ("attention", 0.0, "learned", "short"),
    "long_only": ("attention", 0.0, "learned", "long"),
    "fixed_weight": ("attention", 0.0, "fixed", "fused"),
    "fused_gru": ("gru", 0.0, "learned", "fused"),
    "short_only_gru": ("gru", 0.0, "learned", "short"),
    "fused_contrastive": ("attention", 0.1, "learned", "fused"),
}
MODELS = ("mostpop", "recent_pop", "covisit", "biased_mf", "streaming", *SEQUENCE_MODELS)
#: what a plain ``lsi bench accuracy`` runs (the ablations are asked for by name)
DEFAULT_MODELS = ("mostpop", "recent_pop", "covisit", "biased_mf", "streaming", "fused",
                  "short_only", "long_only")  # fmt: skip
PROTOCOLS = ("loo", "temporal", "prequential")
#: where the reports go unless ``--out`` says otherwise (the reports the docs cite as current)
DEFAULT_OUT = Path("benchmarks/results/current")
LATER: tuple[str, ...] = ()
SEEDED = frozenset({"biased_mf", *SEQUENCE_MODELS})
PREQ_CUTOFF = 20

#: Published full-ranking anchors (shared/datasets/README.md), protocol ``loo``.
#: Each names its source and whether it was measured on the same test set as ours (the
#: others are indicative only, never a basis for "above X"). Every anchor removes the user's
#: seen items from the ranking.
_GR = "generative-recommenders README (Zhai et al., HSTU, ICML 2024)"
_OTHER_ML1M = "other ML-1M preprocessing: raw ratings, 3,706 items, another tie order"
ANCHORS: dict[str, dict[str, dict[str, Any]]] = {
    "ml-1m": {
        "gSASRec": {"hr@10": 0.3003, "ndcg@10": 0.1726, "same_test_set": True,
                    "source": "gSASRec (Petrov & Macdonald, RecSys 2023), gSASRec-pytorch "
                              "checkpoint"},
        "SASRec (sampled softmax)": {"hr@10": 0.2853, "ndcg@10": 0.1603, "same_test_set": False,
                                     "source": f"{_GR}; {_OTHER_ML1M}"},
        "HSTU": {"hr@10": 0.3097, "ndcg@10": 0.1720, "same_test_set": False,
                 "source": f"{_GR}; {_OTHER_ML1M}"},
        "HSTU-large": {"hr@10": 0.3294, "ndcg@10": 0.1893, "same_test_set": False,
                       "source": f"{_GR}; {_OTHER_ML1M}"},
    },
    "amazon-beauty": {
        "SASRec (sampled softmax)": {"recall@10": 0.0921, "ndcg@10": 0.0531,
                                     "same_test_set": True,
                                     "source": "eSASRec benchmark, S3-Rec Beauty order"},
        "eSASRec": {"recall@10": 0.0928, "ndcg@10": 0.0523, "same_test_set": True,
                    "source": "eSASRec benchmark, S3-Rec Beauty order"},
    },
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class AccuracyOptions:
    dataset: str = "ml-1m"
    protocol: str = "loo"
    models: tuple[str, ...] = DEFAULT_MODELS
    seeds: int = 3
    out: Path = DEFAULT_OUT
    filter_seen: bool = False
    limit: int | None = None
    phase: str = "test"
    refresh_every: int = 100_000
    merge: bool = False
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    jobs: int = 1

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise LsiError(
                f"unknown protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}"
            )
        later = [m for m in self.models if m in LATER]
        if later:
            raise LsiError(
                f"{', '.join(later)}: not built yet (the sequence encoder and the fused scorer "
                "arrive with issue 5); available: " + ", ".join(MODELS)
            )
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise LsiError(
                f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}"
            )
        if self.phase not in ("test", "valid"):
            raise LsiError("--phase must be test or valid")
        if self.phase == "valid" and self.protocol == "prequential":
            raise LsiError("prequential has no validation phase: tune on a --limit prefix instead")
        if self.seeds < 1:
            raise LsiError("--seeds must be at least 1")
        if self.jobs < 1:
            raise LsiError("--jobs must be at least 1")
        ablations = [m for m in self.models if m in SEQUENCE_MODELS
                     and m not in ("fused", "short_only", "long_only")]  # fmt: skip
        if ablations and self.protocol != "loo":
            raise LsiError(f"{', '.join(ablations)}: ablations run under --protocol loo only")
        if self.protocol == "temporal" and any(m in SEQUENCE_MODELS for m in self.models):
            raise LsiError(
                "the fused scorer is evaluated under loo and prequential; drop "
                "fused/short_only/long_only from --models for temporal"
            )


def _baseline(name: str, n_items: int, seed: int) -> Recommender:
    if name == "mostpop":
        return MostPop(n_items)
    if name == "recent_pop":
        return RecentPop(n_items)
    if name == "covisit":
        return CoVisit(n_items)
    return BiasedMF(n_items, seed=seed, n_negatives=1)


@dataclass
class _Run:
    per_case: dict[str, npt.NDArray[np.float64]]
    metrics: dict[str, float]
    train_s: float
    eval_s: float
    extra: dict[str, Any] = field(default_factory=dict)
    #: prequential: the event index of each case (models judge slightly different events)
    case_ids: npt.NDArray[np.int64] | None = None


def _metric_names(
    per_case: dict[str, npt.NDArray[np.float64]],
) -> dict[str, npt.NDArray[np.float64]]:
    """``HR@10`` → ``hr@10``, ``MRR`` → ``mrr`` (the report's names)."""
    return {k.lower(): v for k, v in per_case.items()}


# -- leave-one-out and temporal: learn, then rank held-out items -----------------------------------------------------------------------------------------------
def _loo_rows(data: Interactions, phase: str = "test") -> tuple[Any, npt.NDArray[np.int64]]:
    split = loo_split(data)
    if phase == "valid":  # learn training only; the validation items are the targets
        return split, split.train_rows
    rows = np.concatenate([split.train_rows, split.valid.rows])
    order = np.lexsort((rows, data.ts[rows]))  # time, then file order
    return split, rows[order]


def _temporal_rows(data: Interactions, phase: str = "test") -> tuple[Any, npt.NDArray[np.int64]]:
    split = temporal_split(data)
    order = data.time_order()
    cutoff = split.t_valid if phase == "valid" else split.t_test
    return split, order[data.ts[order] < cutoff]


def _event(data: Interactions, row: int, run: str) -> Event:
    w = None if data.weights is None else float(data.weights[row])
    return Event(f"{run}:{row}", str(int(data.users[row])), str(int(data.items[row])),
                 EVENT_TYPES[int(data.types[row])], float(data.ts[row]), w)  # fmt: skip


def _loo_once(data: Interactions, split: Any, rows: npt.NDArray[np.int64], name: str, seed: int,
              phase: str,
              filter_seen: bool) -> _Run:  # fmt: skip
    test = split.valid if phase == "valid" else split.test
    n_items = split.n_items
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if name == "streaming":
        model = StreamingModel()
        model.learn((_event(data, int(r), "loo") for r in rows), batch_size=500)
        item_index = {str(int(raw)): j for j, raw in enumerate(split.items.raw)}
        users_raw = split.users.raw

        def score(u: int) -> npt.NDArray[np.float32]:
            return model.score_all(str(int(users_raw[u])), n_items, item_index)
    else:
        base = _baseline(name, n_items, seed)
        du = split.users.encode(data.users[rows])
        di = split.items.encode(data.items[rows])
        for u, i, t in zip(du.tolist(), di.tolist(), data.ts[rows].tolist(), strict=True):
            base.learn_one(u, i, t)
        score = base.score_all  # type: ignore[assignment]  # same signature, bound method
    train_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    by_user = np.argsort(test.users, kind="stable")  # cases of one user share one score row
    users = test.users[by_user]
    targets = test.targets[by_user]
    seen_all = test.seen_of_cases() if filter_seen else None
    ranks_parts, tops = [], []
    for start in range(0, len(users), 512):
        batch = users[start : start + 512]
        rows_of: dict[int, npt.NDArray[np.float32]] = {}
        scores = np.stack([rows_of.setdefault(int(u), score(int(u))) if int(u) not in rows_of
                           else rows_of[int(u)] for u in batch])  # fmt: skip
        excl = [seen_all[int(c)] for c in by_user[start : start + 512]] if seen_all else None
        ranks_parts.append(rank_of_target(scores, targets[start : start + 512], excl))
        tops.append(top_k(scores, max(DEFAULT_KS), excl))
    ranks = np.concatenate(ranks_parts)
    topk = np.concatenate(tops)
    eval_s = time.perf_counter() - t1
    per_case = _metric_names(case_metrics(ranks))
    metrics = summarize(per_case)
    for k in DEFAULT_KS:
        metrics[f"coverage@{k}"] = coverage_at_k(topk[:, :k], n_items)
    return _Run(per_case, metrics, train_s, eval_s, {"cases": len(users), **extra})


# -- prequential ---------------------------------------------------------------------------
def _log(data: Interactions, rows: npt.NDArray[np.int64]) -> Log:
    """Rows of ``data`` as the refresh job reads them (:meth:`Log.from_interactions`)."""
    return Log.from_interactions(data, rows)


def _prequential_once(
    data: Interactions, order: npt.NDArray[np.int64], name: str, seed: int,
    refresh_every: int = 100_000,
) -> _Run:  # fmt: skip
    t0 = time.perf_counter()
    if name == "streaming":
        extra_lt: dict[str, Any] = {}
        all_ranks = StreamingModel().prequential(
            (_event(data, int(r), "pq") for r in order), batch_size=1).ranks  # fmt: skip
        case_ids = np.flatnonzero(all_ranks != NOT_EVALUATED).astype(np.int64)
        judged = all_ranks[all_ranks != NOT_EVALUATED].astype(np.float64)
        ranks = np.where(judged >= 0, judged, float(PREQ_CUTOFF))
        shown_items: set[int] = set()  # coverage from the lists: not tracked per event here
        extra = {"events": int(all_ranks.shape[0]), "evaluated": int(judged.size), **extra_lt}
    else:
        uids = {u: j for j, u in enumerate(np.unique(data.users).tolist())}
        iids = {i: j for j, i in enumerate(np.unique(data.items).tolist())}
        n_items = len(iids)
        base = _baseline(name, n_items, seed)
        seen_user: set[int] = set()
        out: list[float] = []
        judged_at: list[int] = []
        shown_items = set()
        for n, r in enumerate(order.tolist()):
            u, i, t = uids[int(data.users[r])], iids[int(data.items[r])], float(data.ts[r])
            if u in seen_user:  # judged only once the user has a history, like the live path
                judged_at.append(n)
                s = base.score_all(u)
                out.append(min(rank_in_row(s, i), float(PREQ_CUTOFF)))
                shown_items.update(np.argpartition(-s, PREQ_CUTOFF)[:PREQ_CUTOFF].tolist())
            base.learn_one(u, i, t)
            seen_user.add(u)
        ranks = np.array(out, dtype=np.float64)
        case_ids = np.array(judged_at, dtype=np.int64)
        extra = {"events": int(order.shape[0]), "evaluated": int(ranks.size)}
    elapsed = time.perf_counter() - t0
    extra["events_per_s"] = round(order.shape[0] / elapsed, 1) if elapsed > 0 else 0.0
    # a rank at the cut-off is a miss: metrics @K<=20 are exact, MRR becomes MRR@20
    per_case = _metric_names(case_metrics(ranks))
    per_case["mrr"] = mrr(ranks, PREQ_CUTOFF)
    metrics = summarize(per_case)
    if shown_items:
        metrics["coverage@20"] = len(shown_items) / max(1, len(np.unique(data.items)))
    return _Run(per_case, metrics, elapsed, 0.0, extra, case_ids)


# -- the fused scorer and its ablations (lsi.evaluation.fused) --------------------------------------
def _seq_groups(names: list[str]) -> dict[tuple[str, float], list[str]]:
    """Models that share one training: same encoder and contrastive weight."""
    groups: dict[tuple[str, float], list[str]] = {}
    for name in names:
        enc, con, _, _ = SEQUENCE_MODELS[name]
        groups.setdefault((enc, con), []).append(name)
    return groups


def _ranks_run(ranks: npt.NDArray[np.float64], extra: dict[str, Any], train_s: float,
               eval_s: float, case_ids: npt.NDArray[np.int64] | None = None,
               topk: npt.NDArray[np.int64] | None = None, n_items: int = 0) -> _Run:  # fmt: skip
    per_case = _metric_names(case_metrics(ranks))
    if case_ids is not None:  # prequential: lists cut at 20
        per_case["mrr"] = mrr(ranks, PREQ_CUTOFF)
    metrics = summarize(per_case)
    if topk is not None:
        for k in DEFAULT_KS:
            metrics[f"coverage@{k}"] = coverage_at_k(topk[:, :k], n_items)
    return _Run(per_case, metrics, train_s, eval_s, extra, case_ids)


def _seq_seed(opts: AccuracyOptions, names: list[str], seed: int) -> dict[str, _Run]:
    """One seed of every requested sequence model (one training per encoder variant)."""
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = load(opts.dataset)
    out: dict[str, _Run] = {}
    if opts.protocol == "prequential":
        order = data.time_order()
        if opts.limit is not None:
            order = order[: opts.limit]
        t0 = time.perf_counter()
        ranks, info = prequential_lists(data, order, seed, opts.sequence, opts.refresh_every,
                                        PREQ_CUTOFF)  # fmt: skip
        elapsed = time.perf_counter() - t0
        for name in names:
            r = ranks[SEQUENCE_MODELS[name][3]]
            case_ids = np.flatnonzero(r >= 0).astype(np.int64)
            extra = {"events": int(order.shape[0]), "evaluated": int(case_ids.size), **info,
                     "events_per_s": round(order.shape[0] / elapsed, 1)}  # fmt: skip
            out[name] = _ranks_run(r[case_ids].astype(np.float64), extra, elapsed, 0.0,
                                   case_ids)  # fmt: skip
        return out
    split, rows = _loo_rows(data, opts.phase)
    test = split.valid if opts.phase == "valid" else split.test
    log = _log(data, rows)
    columns_of: dict[str, int] = {str(int(raw)): j for j, raw in enumerate(split.items.raw)}
    users = [str(int(split.users.raw[u])) for u in test.users.tolist()]
    reqs = loo_requests(log, users)
    for (enc, con), group in _seq_groups(names).items():
        cfg = replace(opts.sequence, encoder=enc, contrastive=con)
        gates = ("fixed",) if "fixed_weight" in group else ()
        t0 = time.perf_counter()
        bundle = train_bundle(log, seed, cfg, version=f"eval-{seed}", extra_gates=gates)
        train_s = time.perf_counter() - t0
        for name in group:
            kind = SEQUENCE_MODELS[name]
            model = bundle.variants["fixed"] if kind[2] == "fixed" else bundle.served
            seq = model.sequence
            columns = np.array([columns_of.get(k, -1) for k in seq.item_ids], dtype=np.int64)
            t1 = time.perf_counter()
            parts, tops = [], []
            seen_all = test.seen_of_cases() if opts.filter_seen else None
            for s in range(0, len(reqs), 512):
                scores = score_lists(model, reqs[s : s + 512], columns, split.n_items)[kind[3]]
                excl = seen_all[s : s + 512] if seen_all else None
                parts.append(rank_of_target(scores, test.targets[s : s + 512], excl))
                tops.append(top_k(scores, max(DEFAULT_KS), excl))
            extra = {"cases": len(reqs), "list": kind[3], "encoder": enc, "gate": kind[2],
                     "contrastive": con, **bundle.info()}  # fmt: skip
            if kind[2] == "fixed":
                extra["calibration"] = model.sequence.metrics.get("validation", {})
            if kind[3] == "fused":
                extra["long_weight_profile"] = gate_profile(model, reqs)
            out[name] = _ranks_run(np.concatenate(parts), extra, train_s,
                                   time.perf_counter() - t1, None, np.concatenate(tops),
                                   split.n_items)  # fmt: skip
    return out


def _pool_worker_init(parent_pid: int) -> None:
    """Process-pool initializer: the worker gets ``SIGTERM`` when the bench process dies
    (:func:`lsi.serving.worker_process.die_with_parent`), so a killed ``lsi bench … --jobs N`` does
    not leave ``N`` trainings running; exits at once if the parent is already gone."""
    if not die_with_parent(parent_pid):
        os._exit(1)


def _seq_runs(opts: AccuracyOptions, names: list[str],
              log: Callable[[str], None]) -> dict[str, list[_Run]]:  # fmt: skip
    """Every seed of the sequence models, in ``opts.jobs`` processes."""
    runs: dict[str, list[_Run]] = {n: [] for n in names}
    if opts.jobs > 1 and opts.seeds > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(opts.jobs, opts.seeds), mp_context=mp.get_context("spawn"),
                                 initializer=_pool_worker_init,
                                 initargs=(os.getpid(),)) as pool:  # fmt: skip
            results = list(pool.map(_seq_seed, [opts] * opts.seeds, [names] * opts.seeds,
                                    range(opts.seeds)))  # fmt: skip
    else:
        results = [_seq_seed(opts, names, seed) for seed in range(opts.seeds)]
    for seed, res in enumerate(results):
        for name, run in res.items():
            runs[name].append(run)
            log(f"[bench] {opts.dataset} {opts.protocol} {name} seed {seed}: "
                f"hr@10 {run.metrics['hr@10']:.4f} ndcg@10 {run.metrics['ndcg@10']:.4f} "
                f"(train {run.train_s:.1f} s, eval {run.eval_s:.1f} s)")  # fmt: skip
    return runs


# -- the command ---------------------------------------------------------------------------
def run_accuracy_bench(opts: AccuracyOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluate every model; write ``<dataset>-<protocol>.json`` / ``.md`` / ``.png``."""
    measured = provenance()  # the checkout the run starts from, not the one at its end
    data = load(opts.dataset)
    models: dict[str, Any] = {}
    per_case_first: dict[str, dict[str, npt.NDArray[np.float64]]] = {}
    case_ids_first: dict[str, npt.NDArray[np.int64] | None] = {}
    if opts.protocol in ("loo", "temporal"):
        rows_of = _loo_rows if opts.protocol == "loo" else _temporal_rows
        split, rows = rows_of(data, opts.phase)

        def once(name: str, seed: int) -> _Run:
            return _loo_once(data, split, rows, name, seed, opts.phase, opts.filter_seen)
    else:
        order = data.time_order()
        if opts.limit is not None:
            order = order[: opts.limit]

        def once(name: str, seed: int) -> _Run:
            return _prequential_once(data, order, name, seed, opts.refresh_every)

    seq_names = [m for m in opts.models if m in SEQUENCE_MODELS]
    seq_runs = _seq_runs(opts, seq_names, log) if seq_names else {}
    for name in opts.models:
        if name in seq_runs:
            runs = seq_runs[name]
        else:
            seeds = range(opts.seeds) if name in SEEDED else range(1)
            runs = []
            for seed in seeds:
                run = once(name, seed)
                runs.append(run)
                log(f"[bench] {opts.dataset} {opts.protocol} {name} seed {seed}: "
                    f"hr@10 {run.metrics['hr@10']:.4f} ndcg@10 {run.metrics['ndcg@10']:.4f} "
                    f"(train {run.train_s:.1f} s, eval {run.eval_s:.1f} s)")  # fmt: skip
        keys = list(runs[0].metrics)
        entry: dict[str, Any] = {k: float(np.mean([r.metrics[k] for r in runs])) for k in keys}
        entry["std"] = {k: float(np.std([r.metrics[k] for r in runs])) for k in keys}
        entry["seeds"] = len(runs)
        if len(runs) > 1:  # each seed's headline, so a mean can be read apart
            entry["per_seed"] = [{"ndcg@10": r.metrics["ndcg@10"], "hr@10": r.metrics["hr@10"],
                                  "train_s": round(r.train_s, 2)} for r in runs]  # fmt: skip
        entry["train_s"] = round(float(np.mean([r.train_s for r in runs])), 2)
        entry["eval_s"] = round(float(np.mean([r.eval_s for r in runs])), 2)
        entry.update({k: v for k, v in runs[0].extra.items() if k != "curve"})
        if "curve" in runs[0].extra:  # each seed's early-stopping record, not only seed 0's
            entry["training"] = [{k: r.extra[k] for k in ("epochs", "best_epoch", "curve")}
                                 for r in runs]  # fmt: skip
        models[name] = entry
        per_case_first[name] = runs[0].per_case
        case_ids_first[name] = runs[0].case_ids

    # paired bootstrap of per-case NDCG@10: each reference model against every other one
    for ref_name in ("streaming", "long_only", "short_only", "fused"):
        if ref_name not in per_case_first:
            continue
        ref = per_case_first[ref_name]["ndcg@10"]
        for name, per_case in per_case_first.items():
            if name == ref_name:
                continue
            a, b = ref, per_case["ndcg@10"]
            ids_ref, ids = case_ids_first[ref_name], case_ids_first[name]
            if ids_ref is not None and ids is not None:  # pair on the events both judged
                _, ia, ib = np.intersect1d(ids_ref, ids, assume_unique=True, return_indices=True)
                a, b = a[ia], b[ib]
            elif a.shape != b.shape:
                continue
            if a.shape[0] == 0:  # no case judged by both (e.g. no snapshot before the end)
                continue
            diff, lo, hi, p = paired_bootstrap(a, b)
            models[name][f"vs_{ref_name}_ndcg@10"] = {
                f"{ref_name}_minus_model": diff,
                "ci95": [lo, hi],
                "p": p,
                "cases": int(a.shape[0]),
            }

    n_events = len(data) if opts.limit is None else min(len(data), opts.limit)
    if opts.merge:
        _merge_earlier(opts, data.name, models, n_events)
    report: dict[str, Any] = {
        "dataset": data.name,
        "protocol": opts.protocol,
        "filter_seen": opts.filter_seen,
        "phase": opts.phase,
        "models": models,
        "events": n_events,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "anchors": ANCHORS.get(data.name, {}) if opts.protocol == "loo" else {},
        "command": _command(opts, [m for m in opts.models if m in models]),
        **measured,
    }
    _write(opts.out, report)
    return report


def _command(opts: AccuracyOptions, models: list[str]) -> str:
    """The command line that reproduces this report: the dataset as given (a CSV path stays
    a path), the models this run evaluated (not the rows ``--merge`` kept), the seeds when a
    seeded model ran, the encoder's options and the thread count when they were set."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    env = f"OMP_NUM_THREADS={threads} " if threads else ""
    parts = [f"{env}lsi bench accuracy --dataset {opts.dataset} --protocol {opts.protocol}",
             f"--models {','.join(models)}"]  # fmt: skip
    sequence = any(m in SEQUENCE_MODELS for m in opts.models)
    if not sequence and any(m in SEEDED for m in models):
        parts.append(f"--seeds {opts.seeds}")  # with the encoder's options below otherwise
    if opts.phase != "test":
        parts.append(f"--phase {opts.phase}")
    if opts.filter_seen:
        parts.append("--filter-seen")
    if opts.protocol == "prequential":
        parts.append(f"--refresh-every {opts.refresh_every}")
        if opts.limit is not None:
            parts.append(f"--limit {opts.limit}")
    if sequence:
        q, base = opts.sequence, SequenceConfig()
        parts.append(f"--seeds {opts.seeds} --max-len {q.max_len} --dropout {q.dropout}")
        if q.windows != base.windows:
            parts.append(f"--windows {q.windows}")
        for flag, value, default in (("--dim", q.dim, base.dim), ("--layers", q.layers, base.layers),
                                     ("--heads", q.heads, base.heads)):  # fmt: skip
            if value != default:
                parts.append(f"{flag} {value}")
        if q.negatives != base.negatives:
            parts.append(f"--negatives {q.negatives}")
        if q.epochs != base.epochs:
            parts.append(f"--epochs {q.epochs}")
        if q.lr_schedule != base.lr_schedule:
            parts.append(f"--lr-schedule {q.lr_schedule}")
        if q.ema_decay != base.ema_decay:
            parts.append(f"--ema-decay {q.ema_decay:g}")
        if not q.balanced_init:
            parts.append("--no-balanced-init")
        if q.patience != base.patience:
            parts.append(f"--patience {q.patience}")
        if q.max_train_s is not None:
            parts.append(f"--train-budget {q.max_train_s:g}")
        if q.device != "auto":
            parts.append(f"--device {q.device}")
        if q.precision != base.precision:
            parts.append(f"--precision {q.precision}")
        if opts.jobs > 1:
            parts.append(f"--jobs {opts.jobs}")
    if opts.merge:
        parts.append("--merge")
    if opts.out != DEFAULT_OUT:
        parts.append(f"--out {opts.out}")
    return " ".join(parts)


def _merge_earlier(opts: AccuracyOptions, name: str, models: dict[str, Any], n_events: int
                   ) -> None:  # fmt: skip
    """Keep the rows of models this run did not evaluate from the report already on disk
    (same dataset, protocol and phase), marked ``earlier_run``; paired tests are only
    computed within one run."""
    suffix = "-valid" if opts.phase == "valid" else ""
    path = opts.out / f"{name}-{opts.protocol}{suffix}.json"
    if not path.exists():
        return
    earlier = json.loads(path.read_text())
    if earlier.get("filter_seen") != opts.filter_seen or earlier.get("events") != n_events:
        raise LsiError(f"{path} was measured under other options; run without --merge")
    for model, entry in earlier.get("models", {}).items():
        if model not in models:
            entry = {k: v for k, v in entry.items() if not k.startswith("vs_")}
            entry["earlier_run"] = True
            # the run the row was measured in (an older report may not have recorded it)
            entry.setdefault("commit", earlier.get("commit"))
            entry.setdefault("date", earlier.get("date"))
            models[model] = entry


def seen_items(name: str, filter_seen: bool) -> str:
    """What a row did with the items the user had already interacted with: the trained lists
    never offer them (as served); the baselines follow ``--filter-seen``; the statistics
    scorer scores its user's recent window 0 (ranked in the tie below every candidate) unless
    they are removed."""
    if name in SEQUENCE_MODELS or filter_seen:
        return "removed"
    if name == "streaming":
        return "recent ones scored 0"
    return "kept"


def _rows(report: dict[str, Any]) -> Iterator[str]:
    metrics = ["hr@10", "ndcg@10", "recall@10", "mrr", "coverage@10", "hr@20", "ndcg@20"]
    yield "| model | seen items | " + " | ".join(metrics) + " | train s | eval s |"
    yield "|---" * (len(metrics) + 4) + "|"
    filter_seen = bool(report.get("filter_seen"))
    for name, m in report["models"].items():
        cells = []
        for k in metrics:
            if k not in m:
                cells.append("–")
            elif m["seeds"] > 1:
                cells.append(f"{m[k]:.4f} ± {m['std'][k]:.4f}")
            else:
                cells.append(f"{m[k]:.4f}")
        mark = " ¹" if m.get("earlier_run") else ""
        yield (f"| `{name}`{mark} | {seen_items(name, filter_seen)} | " + " | ".join(cells)
               + f" | {m['train_s']:.1f} | {m['eval_s']:.1f} |")  # fmt: skip
    for name, a in report["anchors"].items():
        cells = [f"{a[k]:.4f}" if k in a else "–" for k in metrics]
        where = {True: "same test set", False: "other test set: indicative only"}.get(
            a.get("same_test_set"), "test set not recorded"
        )
        yield f"| {name} (published, {where}) | removed | " + " | ".join(cells) + " | | |"


def _write(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-valid" if report.get("phase") == "valid" else ""
    stem = out / f"{report['dataset']}-{report['protocol']}{suffix}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    proto = {"loo": "leave-one-out, full ranking over all items",
             "temporal": "global time split 80/10/10, full ranking over all items, test cases "
                         "whose user has history", "prequential":
             "prequential replay in time order (judge, then learn); lists cut at 20, MRR = MRR@20"}[report["protocol"]]  # fmt: skip
    md = [
        f"# {report['dataset']} — {report['protocol']}{suffix}",
        "",
        provenance_line(report),
        "",
        *([report["note"], ""] if report.get("note") else []),
        f"Protocol: {proto}. Seen items (the user's own earlier items): what each row did with "
        "them is in its column; the trained lists never offer them, as served, and every "
        "published anchor removes them; the baselines "
        + (
            "remove them too (`--filter-seen`)"
            if report["filter_seen"]
            else "keep them unless `--filter-seen`"
        )
        + ". Deterministic models run once; seeded ones show mean ± std.",
        "",
        *_rows(report),
        "",
        *[
            f"- {name}: {a.get('source', 'source not recorded')}"
            for name, a in report["anchors"].items()
        ],
        *([""] if report["anchors"] else []),
        *(
            [
                "`fused`, `short_only` and `long_only` are the three lists of one trained "
                "snapshot per seed (the `LSI_SCORER` modes); they never offer the user's own "
                "items, as served.",
                "",
            ]
            if "long_only" in report["models"]
            else []
        ),
        *(
            [
                "¹ from an earlier run of the same command and data (`--merge`); deterministic "
                "models give the same numbers again."
                + "".join(
                    f" {name}: {provenance_line(m)}"
                    for name, m in report["models"].items()
                    if m.get("earlier_run") and m.get("commit")
                ),
                "",
            ]
            if any(m.get("earlier_run") for m in report["models"].values())
            else []
        ),
        "Reproduce: `"
        + report.get(
            "command",
            f"lsi bench accuracy --dataset {report['dataset']} --protocol {report['protocol']}",
        )
        + "`"
        + (
            " (rows marked ¹ come from the earlier run kept by `--merge`)"
            if any(m.get("earlier_run") for m in report["models"].values())
            else ""
        ),
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(md))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for name, m in report["models"].items():
        ks = [k for k in DEFAULT_KS if f"ndcg@{k}" in m]
        ax.plot(ks, [m[f"ndcg@{k}"] for k in ks], marker="o", label=name)
    ax.set_xlabel("K")
    ax.set_ylabel("NDCG@K")
    ax.set_xticks(list(DEFAULT_KS))
    ax.set_title(f"{report['dataset']} — {report['protocol']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    plt.close(fig)
    gated = {
        k: m["long_weight_profile"]
        for k, m in report["models"].items()
        if m.get("long_weight_profile", {}).get("cases")
    }
    if gated:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for name, g in gated.items():
            hist = np.asarray(g["histogram"], dtype=float)
            axes[0].step(np.linspace(0.025, 0.975, 20), hist / max(1.0, hist.sum()), where="mid",
                         label=name)  # fmt: skip
            rows = g["by_session_length"]
            axes[1].plot(range(len(rows)), [r[2] for r in rows], marker="o", label=name)
            axes[1].set_xticks(range(len(rows)),
                               [f"{int(r[0])}" if r[0] == r[1] else
                                f"{int(r[0])}–{int(r[1])}" if r[1] < 1e6 else f"{int(r[0])}+"
                                for r in rows])  # fmt: skip
            gaps = g["by_gap_s"]
            names = {0: "<1 min", 60: "<1 h", 3600: "<1 day", 86400: "<1 week", 604800: "≥1 week"}
            axes[2].plot(range(len(gaps)), [r[2] for r in gaps], marker="o", label=name)
            axes[2].set_xticks(range(len(gaps)), [names.get(int(r[0]), str(r[0])) for r in gaps])
        axes[0].set_xlabel("long_weight")
        axes[0].set_ylabel("share of users")
        axes[1].set_xlabel("position in the session (events so far)")
        axes[1].set_ylabel("mean long_weight")
        axes[2].set_xlabel("gap before the newest event")
        axes[2].set_ylabel("mean long_weight")
        for ax in axes:
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"{report['dataset']} — the learned gate on the test cases")
        fig.tight_layout()
        fig.savefig(stem.parent / f"{stem.name}-gate.png", dpi=120)
        plt.close(fig)
