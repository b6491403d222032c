"""``lsi bench refresh``: how long the long-term refresh takes, and how that grows with the graph.

Three measurements, all through :func:`models.training.longterm.train_long_term` (the refresh job's code):

1. **Cold.** The dataset in time order; the oldest ``1 − new_fraction`` of it is trained from
   scratch (``cfg.epochs``) on :func:`models.training.longterm.holdout_last`'s training rows and validated
   on its held-out rows, exactly as the refresh job does.
2. **Warm.** The newest ``new_fraction`` arrives; a refresh warm-starts from the cold model
   (same ids keep their layer-0 rows, new ids are appended) and trains ``cfg.warm_epochs`` on
   the whole log, with a new holdout drawn, as the refresh job draws it, among users whose
   newest interaction is in the new data. The cold model is validated on the same cases,
   ranking the same candidates (``live_validation``): the comparison the refresh job's
   promotion makes. With fewer than 30 such users the holdout is drawn from all users and the
   comparison is left out (``null``), as the job would.
3. **Scaling.** Synthetic graphs of exactly ``E`` distinct user–item edges for each ``E`` of
   ``scaling_edges`` (Zipf item and user popularity, ``E/150`` users and ``E/300`` items, more
   on small graphs; fixed seed; :func:`synthetic_log`). Each is trained twice: with a zero-epoch warm start from an empty
   snapshot (graph build plus one final propagation: the *setup*) and with
   ``scaling_epochs`` epochs. Seconds per epoch is ``(total − setup) / epochs``. A least-squares
   line ``t = a·E + b`` (slope, intercept, R²), the log–log exponent (1 means linear) and the
   ratio ``t(E_max) / t(E_min)`` make "linear in the edges" checkable. An epoch is
   ``min(ceil(E / batch_size), max_steps_per_epoch)`` full-graph steps, so it is linear only
   from ``E ≥ batch_size · max_steps_per_epoch`` (196,608 by default) on.

Peak memory (``peak_memory_bytes``): on CUDA, torch's peak allocation during the run; on CPU,
the process's resident high-water mark, reset before each run where Linux allows
(``/proc/self/clear_refs``; ``memory_at_start_bytes`` is then the resident size when the run
began, so the difference is what the run added, a lower bound since freed memory is reused),
else the high-water mark of the whole process so far (``memory_at_start_bytes`` is ``None``).

Writes ``refresh-<dataset>.json``, ``refresh-<dataset>.md`` and
``refresh-<dataset>-scaling.png`` under ``out``.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lsi.bench.provenance import provenance, provenance_line
from lsi.errors import LsiError
from lsi.evaluation.datasets import Interactions, load
from models.training.longterm import (
    Log,
    TrainConfig,
    Trained,
    WarmStart,
    holdout_last,
    pick_device,
    train_long_term,
    validate,
)

__all__ = ["RefreshBenchOptions", "interactions_log", "run_refresh_bench", "synthetic_log"]

DAY_S = 86_400.0
Memory = dict[str, int | None]


@dataclass(frozen=True, slots=True)
class RefreshBenchOptions:
    """What ``lsi bench refresh`` measures.

    Attributes:
        dataset: dataset name (or CSV path) for the cold/warm phases; names the report files.
        out: folder of the report files.
        device: ``auto``, ``cpu`` or ``cuda``; replaces ``cfg.device``.
        scaling_edges: distinct edges of each synthetic graph (empty: no scaling curve).
        scaling_epochs: epochs per scaling run.
        new_fraction: newest share of the log that arrives between the cold and warm refresh.
        valid_cases: held-out cases per validation (:func:`models.training.longterm.holdout_last`).
        cfg: training hyper-parameters of every run.
        data: a log to use instead of loading ``dataset`` (tests, other sources).
        seed: seed of the synthetic graphs and of the holdouts.
    """

    dataset: str = "ml-1m"
    out: Path = Path("benchmarks/results/current")
    device: str = "auto"
    scaling_edges: tuple[int, ...] = (1_000_000, 2_000_000, 5_000_000, 10_000_000)
    scaling_epochs: int = 1
    new_fraction: float = 0.01
    valid_cases: int = 1000
    cfg: TrainConfig = field(default_factory=TrainConfig)
    data: Log | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise LsiError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if not 0.0 < self.new_fraction < 1.0:
            raise LsiError(f"--new-fraction must be in (0, 1), got {self.new_fraction}")
        if self.scaling_epochs < 1 or self.valid_cases < 1:
            raise LsiError("--scaling-epochs and --valid-cases must be at least 1")
        if any(e < 1 for e in self.scaling_edges):
            raise LsiError(f"--scaling-edges must be positive, got {self.scaling_edges}")


def interactions_log(data: Interactions) -> Log:
    """``data`` as a training :class:`Log` in time order (:meth:`Log.from_interactions`)."""
    return Log.from_interactions(data)


def _zipf(n: int, exponent: float) -> npt.NDArray[np.float64]:
    p: npt.NDArray[np.float64] = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    return p / float(p.sum())


def synthetic_log(n_edges: int, seed: int = 0) -> Log:
    """``n_edges`` distinct user–item interactions over a year, strength 1, time ordered.

    ``n_edges/150`` users (Zipf exponent 0.5) and ``n_edges/300`` items (Zipf 0.8), or
    ``4·sqrt(E)`` and ``sqrt(E)`` on small graphs so at most a quarter of the pairs are edges;
    pairs are drawn until ``n_edges`` distinct ones exist, then ``n_edges`` are kept at random.
    Ids are shared string objects, so the log costs pointers, not strings, per row.
    """
    root = math.isqrt(n_edges - 1) + 1  # ceil(sqrt(E))
    n_u, n_i = max(n_edges // 150, 4 * root), max(n_edges // 300, root)
    rng = np.random.default_rng(seed)
    pu, pi = _zipf(n_u, 0.5), _zipf(n_i, 0.8)
    pairs = np.zeros(0, dtype=np.int64)
    while pairs.shape[0] < n_edges:
        draw = math.ceil((n_edges - pairs.shape[0]) * 1.3) + 16
        fresh = rng.choice(n_u, draw, p=pu) * n_i + rng.choice(n_i, draw, p=pi)
        pairs = np.unique(np.concatenate([pairs, fresh]))
    pairs = pairs[rng.permutation(pairs.shape[0])[:n_edges]]
    ts = np.sort(rng.uniform(0.0, 365 * DAY_S, n_edges))
    uid = [f"u{k}" for k in range(n_u)]
    iid = [f"i{k}" for k in range(n_i)]
    return Log([uid[k] for k in (pairs // n_i).tolist()], [iid[k] for k in (pairs % n_i).tolist()],
               ts, np.ones(n_edges, dtype=np.float32))  # fmt: skip


def _reset_rss_peak() -> bool:
    try:  # Linux: "5" resets the resident high-water mark (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _status_bytes(key: str) -> int | None:
    """``VmHWM`` / ``VmRSS`` of this process in bytes (Linux), else ``None``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _train(log: Log, cfg: TrainConfig, warm: WarmStart | None = None) -> tuple[Trained, Memory]:
    """Train; return the result and its memory (see the module docstring)."""
    start = None
    if pick_device(cfg.device).type == "cpu" and _reset_rss_peak():
        start = _status_bytes("VmRSS")
    trained = train_long_term(log, cfg, warm)
    peak = _status_bytes("VmHWM") if start is not None else None
    if peak is None:
        start, peak = None, trained.peak_memory_bytes
    elif start is not None:
        start = min(start, peak)  # the kernel syncs its RSS counters lazily
    return trained, {"peak_memory_bytes": peak, "memory_at_start_bytes": start}


def _summary(t: Trained, mem: Memory, val: dict[str, float]) -> dict[str, Any]:
    return {
        "seconds": round(t.seconds, 3),
        "epochs": t.epochs,
        "edges": t.n_edges,
        "users": len(t.user_ids),
        "items": len(t.item_ids),
        "new_users": t.new_users,
        "new_items": t.new_items,
        "device": t.device,
        **mem,
        "final_loss": t.losses[-1] if t.losses else None,
        "validation": val,
    }


def _steps(n_edges: int, cfg: TrainConfig) -> int:
    """Steps per epoch of :func:`models.training.longterm.train_long_term` (its batch rule)."""
    batch = max(cfg.batch_size, math.ceil(n_edges / cfg.max_steps_per_epoch))
    return math.ceil(n_edges / batch)


def _fit(x: list[float], y: list[float]) -> dict[str, float | None] | None:
    """Least-squares ``y = slope·x + intercept`` with R², the log–log exponent and the ratio of
    the last to the first point (``None`` with fewer than two distinct ``x``; the exponent and
    the ratio are ``None`` when a time is zero)."""
    if len(set(x)) < 2:
        return None
    xa, ya = np.asarray(x), np.asarray(y)
    slope, intercept = np.polyfit(xa, ya, 1)
    ss_tot = float(((ya - ya.mean()) ** 2).sum())
    ss_res = float(((ya - (slope * xa + intercept)) ** 2).sum())
    first, last = int(np.argmin(xa)), int(np.argmax(xa))
    positive = bool((ya > 0).all())
    return {
        "slope_seconds_per_million_edges": float(slope) * 1e6,
        "intercept_seconds": float(intercept),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0,
        "loglog_exponent": float(np.polyfit(np.log(xa), np.log(ya), 1)[0]) if positive else None,
        "edge_ratio": float(xa[last] / xa[first]),
        "time_ratio": float(ya[last] / ya[first]) if ya[first] > 0 else None,
    }


def _machine(device: torch.device) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
    }


def _cold_and_warm(opts: RefreshBenchOptions, cfg: TrainConfig, log: Callable[[str], None]
                   ) -> dict[str, Any]:  # fmt: skip
    """Phases 1 and 2; the log and models are dropped on return, before the scaling runs."""
    if opts.data is not None:
        name = opts.dataset
        full = opts.data.take(np.argsort(opts.data.ts, kind="stable").astype(np.int64))
    else:
        data = load(opts.dataset)
        name, full = data.name, interactions_log(data)
        del data
    n_new = round(len(full) * opts.new_fraction)
    n_old = len(full) - n_new
    if n_new < 1 or n_old < 1:
        raise LsiError(f"{len(full)} interactions cannot be split {1 - opts.new_fraction:.0%} / "
                       f"{opts.new_fraction:.0%}; use a larger log or another --new-fraction")  # fmt: skip

    old = full.take(np.arange(n_old, dtype=np.int64))
    train_rows, valid_rows = holdout_last(old, opts.valid_cases, seed=opts.seed)
    log(f"[bench] {name}: cold refresh on the oldest {n_old:,} interactions ({cfg.device})")
    cold, mem = _train(old.take(train_rows), cfg)
    cold_model = cold.model("cold")
    cold_out = _summary(cold, mem, validate(cold_model, old, valid_rows))
    log(f"[bench] cold: {cold.seconds:.1f} s, {cold.epochs} epochs, {cold.n_edges:,} edges, "
        f"NDCG@10 {cold_out['validation']['ndcg@10']:.4f}")  # fmt: skip

    cutoff = float(old.ts.max())
    train_rows, valid_rows = holdout_last(full, opts.valid_cases, opts.seed, after_ts=cutoff)
    compare = len(valid_rows) >= 30
    if not compare:
        train_rows, valid_rows = holdout_last(full, opts.valid_cases, seed=opts.seed)
    log(f"[bench] {name}: warm refresh after {n_new:,} new interactions")
    start = WarmStart(cold.user_ids, cold.item_ids, cold.base, "cold")
    warm, mem = _train(full.take(train_rows), cfg, start)
    warm_model = warm.model("warm")
    warm_out = _summary(warm, mem, validate(warm_model, full, valid_rows))
    warm_out["live_validation"] = (validate(cold_model, full, valid_rows, exclude=warm_model)
                                   if compare else None)  # fmt: skip
    log(f"[bench] warm: {warm.seconds:.1f} s, {warm.epochs} epochs, {warm.n_edges:,} edges, "
        f"{warm.new_users} new users, {warm.new_items} new items, "
        f"NDCG@10 {warm_out['validation']['ndcg@10']:.4f}")  # fmt: skip
    return {"dataset": name, "interactions": len(full), "new_fraction": opts.new_fraction,
            "new_interactions": n_new, "valid_cases": opts.valid_cases, "cold": cold_out,
            "warm": warm_out}  # fmt: skip


def _scaling(opts: RefreshBenchOptions, cfg: TrainConfig, log: Callable[[str], None]
             ) -> dict[str, Any]:  # fmt: skip
    """Phase 3: setup and training time of synthetic graphs, and the fits."""
    scale_cfg = replace(cfg, epochs=opts.scaling_epochs, warm_epochs=0)
    empty = WarmStart((), (), np.zeros((0, cfg.dim), dtype=np.float32), "empty")
    points: list[dict[str, Any]] = []
    for n_edges in sorted(opts.scaling_edges):
        g = synthetic_log(n_edges, seed=opts.seed)
        setup, _ = _train(g, scale_cfg, empty)  # zero epochs: graph build + one propagation
        t, mem = _train(g, scale_cfg)
        epoch_s = max(t.seconds - setup.seconds, 0.0) / t.epochs
        points.append({"interactions": len(g), "edges": t.n_edges, "users": len(t.user_ids),
                       "items": len(t.item_ids), "setup_seconds": round(setup.seconds, 3),
                       "seconds": round(t.seconds, 3), "epochs": t.epochs,
                       "seconds_per_epoch": round(epoch_s, 4),
                       "steps_per_epoch": _steps(t.n_edges, scale_cfg), **mem})  # fmt: skip
        log(f"[bench] scaling: {t.n_edges:,} edges: setup {setup.seconds:.1f} s, "
            f"{epoch_s:.2f} s/epoch, total {t.seconds:.1f} s")  # fmt: skip
        del g, setup, t
    edges = [float(p["edges"]) for p in points]
    return {
        "epochs": opts.scaling_epochs,
        "seed": opts.seed,
        "points": points,
        "fit_seconds_per_epoch": _fit(edges, [p["seconds_per_epoch"] for p in points]),
        "fit_total_seconds": _fit(edges, [p["seconds"] for p in points]),
    }


def run_refresh_bench(
    opts: RefreshBenchOptions, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Cold refresh, warm refresh, scaling curve; write the report files; return the report."""
    measured = provenance()  # the checkout the run starts from, not the one at its end
    cfg = replace(opts.cfg, device=opts.device)
    device = pick_device(opts.device)
    phases = _cold_and_warm(opts, cfg, log)
    gc.collect()  # the dataset and both models are garbage now: keep them out of the scaling
    report: dict[str, Any] = {
        "benchmark": "refresh",
        **phases,
        "config": asdict(cfg),
        "machine": _machine(device),
        "scaling": _scaling(opts, cfg, log),
        "reproduce": _reproduce(opts),
        **measured,
    }
    _write(opts.out, report)
    return report


def _reproduce(opts: RefreshBenchOptions) -> str:
    """The command line of ``opts``: the suggested flags that differ from their defaults."""
    d, c, dc = RefreshBenchOptions(), opts.cfg, TrainConfig()
    cmd = f"lsi bench refresh --dataset {opts.dataset} --out {opts.out}"
    flags = [("--device", opts.device, d.device), ("--new-fraction", opts.new_fraction, d.new_fraction),
             ("--valid-cases", opts.valid_cases, d.valid_cases),
             ("--scaling-edges", ",".join(map(str, opts.scaling_edges)),
              ",".join(map(str, d.scaling_edges))),
             ("--scaling-epochs", opts.scaling_epochs, d.scaling_epochs),
             ("--epochs", c.epochs, dc.epochs), ("--warm-epochs", c.warm_epochs, dc.warm_epochs),
             ("--dim", c.dim, dc.dim), ("--seed", opts.seed, d.seed)]  # fmt: skip
    return cmd + "".join(f" {flag} {v}" for flag, v, default in flags if v != default)


def _memory(p: dict[str, Any]) -> str:
    """``peak MiB`` and, where measured, ``(+ what the run added over its start)``."""
    peak, start = p["peak_memory_bytes"], p["memory_at_start_bytes"]
    added = "" if start is None else f" (+{(peak - start) / 2**20:,.0f})"
    return f"{peak / 2**20:,.0f} MiB{added}"


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _phase_rows(report: dict[str, Any]) -> Iterator[str]:
    yield "| refresh | seconds | epochs | edges | users | items | new users | new items | " \
          "peak memory | final loss | NDCG@10 | HR@10 |"  # fmt: skip
    yield "|---" * 12 + "|"
    for phase in ("cold", "warm"):
        p = report[phase]
        loss = "–" if p["final_loss"] is None else f"{p['final_loss']:.4f}"
        v = p["validation"]
        yield (f"| {phase} | {p['seconds']:.1f} | {p['epochs']} | {p['edges']:,} | {p['users']:,} "
               f"| {p['items']:,} | {p['new_users']:,} | {p['new_items']:,} | "
               f"{_memory(p)} | {loss} | {v['ndcg@10']:.4f} | {v['hr@10']:.4f} |")  # fmt: skip
    live = report["warm"]["live_validation"]
    if live is not None:
        yield (f"| cold model on the warm holdout (same candidates) | | | | | | | | | | "
               f"{live['ndcg@10']:.4f} | {live['hr@10']:.4f} |")  # fmt: skip


def _scaling_rows(report: dict[str, Any]) -> Iterator[str]:
    s = report["scaling"]
    yield "| edges | users | items | steps / epoch | setup s | s / epoch | total s | peak memory |"
    yield "|---" * 8 + "|"
    for p in s["points"]:
        yield (f"| {p['edges']:,} | {p['users']:,} | {p['items']:,} | {p['steps_per_epoch']} "
               f"| {p['setup_seconds']:.2f} "
               f"| {p['seconds_per_epoch']:.3f} | {p['seconds']:.2f} | "
               f"{_memory(p)} |")  # fmt: skip
    for label, key in (
        ("seconds per epoch", "fit_seconds_per_epoch"),
        ("total seconds", "fit_total_seconds"),
    ):
        f = s[key]
        if f is not None:
            yield ""
            yield (f"Fit of {label}: {f['slope_seconds_per_million_edges']:.3f} s per million "
                   f"edges, intercept {f['intercept_seconds']:.2f} s, R² {f['r2']:.4f}; log–log exponent "
                   f"{_num(f['loglog_exponent'])} (1 = linear); {f['edge_ratio']:.1f}× the edges "
                   f"took {_num(f['time_ratio'])}× the time.")  # fmt: skip


def _write(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"refresh-{report['dataset']}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    m, c = report["machine"], report["config"]
    md = [
        f"# Long-term refresh — {report['dataset']}",
        "",
        provenance_line(report),
        "",
        f"{m['device']} ({m['device_name']}), {m['cpus']} CPUs, {m['torch_threads']} torch "
        f"threads, torch {m['torch']}, Python {m['python']}. LightGCN dim {c['dim']}, "
        f"{c['layers']} layers, batch ≥ {c['batch_size']} (≤ {c['max_steps_per_epoch']} steps "
        "per epoch).",
        "",
        f"Cold: trained from scratch on the oldest {1 - report['new_fraction']:.0%} of "
        f"{report['interactions']:,} interactions. Warm: the newest {report['new_interactions']:,} "
        "arrive and the refresh warm-starts from the cold model on the whole log. Validation: "
        f"NDCG/HR over up to {report['valid_cases']:,} held-out newest interactions, full ranking.",
        "",
        *_phase_rows(report),
        "",
        f"## Scaling ({report['scaling']['epochs']} epoch(s) on synthetic Zipf graphs)",
        "",
        "Setup = graph build plus one propagation (a zero-epoch run); s / epoch = "
        "(total − setup) / epochs. A step propagates the whole graph and an epoch has "
        f"ceil(E / batch) steps, at most {c['max_steps_per_epoch']} (the batch grows beyond "
        f"that), so an epoch is linear in the edges from E ≥ {c['batch_size']} × "
        f"{c['max_steps_per_epoch']} = {c['batch_size'] * c['max_steps_per_epoch']:,} on, and "
        "grows faster below. Peak memory: CUDA peak allocation, or the process's "
        "resident high-water mark during the run (in brackets: what the run added over the "
        "resident size at its start).",
        "",
        *_scaling_rows(report),
        "",
        f"Reproduce: `{report['reproduce']}`",
        "",
    ]
    (out / f"{stem}.md").write_text("\n".join(md))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["scaling"]
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    x = np.array([p["edges"] for p in s["points"]], dtype=np.float64)
    ax.plot(x / 1e6, [p["seconds_per_epoch"] for p in s["points"]], "o", label="seconds / epoch")
    ax.plot(x / 1e6, [p["setup_seconds"] for p in s["points"]], "s", label="setup seconds")
    f = s["fit_seconds_per_epoch"]
    if f is not None:
        xs = np.linspace(0.0, float(x.max()), 50)
        ax.plot(xs / 1e6, f["slope_seconds_per_million_edges"] * xs / 1e6 + f["intercept_seconds"],
                "--", label=f"linear fit (R² {f['r2']:.3f})")  # fmt: skip
    ax.set_xlabel("edges (millions)")
    ax.set_ylabel("seconds")
    ax.set_title(f"refresh on synthetic graphs, {m['device']} ({m['device_name']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{stem}-scaling.png", dpi=120)
    plt.close(fig)
