"""``lsi bench rules``: what each business rule (:mod:`lsi.core.rules`) costs in accuracy.

Per seed, one snapshot is trained on the leave-one-out training rows as the refresh job
trains it (:func:`lsi.evaluation.fused.train_bundle`); then, for each rule set, every held-out
user's list is built by :func:`lsi.core.engine.recommend_many`, the function behind every list
a worker emits, from the state a worker would hold (the user's last ``recent_n`` events), with
the dataset's own catalogue as the categories (MovieLens genres, Taobao's category ids). The
held-out item's place in that list gives NDCG@10 and HR@10; the list's distinct categories in
its top 10 and the share of the user's own items in it say what the rule bought.

Rule sets are named ``seen`` (the default rules), ``purchased``, ``recent:DAYS``, ``cap:N``,
``new:N`` (``N`` exploration places for new items) and ``+``-joined combinations
(``purchased+cap:2``). The new items offline are those whose first interaction in the
training rows lies within ``new_days`` (7) of its end, newest first, at most 1,000, as the
catalogue view gives a worker its newest items. Each is compared with ``seen`` on the
same cases (paired t-test over all seeds' cases). The held-out item is never one of the
user's earlier items in these datasets (each user rates a movie once; the Taobao log may
repeat), so letting own items back can only cost there: the figure is the price of a
repeat-purchase or re-targeting policy, not its benefit.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsi.bench.provenance import provenance, provenance_line
from lsi.core.engine import EngineConfig, recommend_many
from lsi.core.rules import Rules
from lsi.core.scoring import ScoringConfig
from lsi.core.state import UserState
from lsi.core.stats import Trending
from lsi.errors import DatasetError, LsiError
from lsi.evaluation.datasets import load
from lsi.evaluation.measures import paired_t_test
from models.training.sequence import SequenceConfig

__all__ = [
    "DEFAULT_RULES",
    "RulesBenchOptions",
    "catalogue_categories",
    "parse_rules",
    "report_stem",
    "run_rules_bench",
]

DEFAULT_OUT = Path("benchmarks/results/current/rules")
DEFAULT_RULES = ("seen", "purchased", "recent:30", "cap:3", "cap:2", "cap:1", "new:1")
DEFAULT_NEW_DAYS = Rules().new_days
#: the recipe of the ml-100k validation reports (benchmarks/results/current/ml-100k-loo-valid-layout)
DEFAULT_SEQUENCE = SequenceConfig(max_len=50, dropout=0.2, epochs=40, patience=100, device="cpu")
K = 10
LIST = 20  # the records' length


def parse_rules(spec: str) -> Rules:
    """``seen``, ``purchased``, ``recent:DAYS``, ``cap:N``, or ``+``-joined ones."""
    fields: dict[str, Any] = {}
    try:
        for part in spec.split("+"):
            name, _, arg = part.strip().partition(":")
            if name in ("seen", "purchased") and not arg:
                fields["own_items"] = name
            elif name == "recent":
                fields["own_items"], fields["recent_days"] = "recent", float(arg or 30)
            elif name == "cap":
                fields["category_cap"] = int(arg)
            elif name == "new":
                fields["new_slots"] = int(arg)
            else:
                raise ValueError(f"unknown rule {part.strip()!r}")
        return Rules(**fields)
    except ValueError as exc:
        raise LsiError(f"--rules {spec!r}: {exc}; rules are seen, purchased, recent:DAYS, "
                       "cap:N, new:N, or +-joined ones (purchased+cap:2)") from None  # fmt: skip


@dataclass(frozen=True, slots=True)
class RulesBenchOptions:
    dataset: str = "ml-100k"
    phase: str = "valid"
    seeds: int = 3
    rules: tuple[str, ...] = DEFAULT_RULES
    sequence: SequenceConfig = DEFAULT_SEQUENCE
    out: Path = DEFAULT_OUT
    categories: dict[str, tuple[str, ...]] | None = field(default=None, compare=False)
    #: where ``categories`` came from (``--catalogue``), for the report's command line
    catalogue: Path | None = None


def catalogue_categories(dataset: str, csv: Path | None = None) -> dict[str, tuple[str, ...]]:
    """Item → categories: of a catalogue CSV (``lsi items publish --csv``'s format), else of
    the dataset's own catalogue (none for a log without one)."""
    from lsi.kafka.catalogue import from_csv, from_dataset

    if csv is not None:
        return {r["item_id"]: tuple(r.get("categories", ())) for r in from_csv(csv)}
    try:
        return {r["item_id"]: tuple(r.get("categories", ())) for r in from_dataset(dataset)}
    except DatasetError:
        return {}


def _state(items: list[str], types: list[int], times: list[float], n_events: int) -> UserState:
    """The state a worker holds after these events (the window the encoder reads)."""
    return UserState(items=list(items), times=list(times), types=list(types),
                     last_ts=max(times, default=0.0), n_events=n_events)  # fmt: skip


def _one_seed(opts: RulesBenchOptions, seed: int, cats: dict[str, tuple[str, ...]],
              log: Callable[[str], None]) -> dict[str, dict[str, npt.NDArray[np.float64]]]:  # fmt: skip
    from lsi.bench.accuracy import _log, _loo_rows
    from lsi.evaluation.fused import loo_requests, train_bundle

    data = load(opts.dataset)
    split, rows = _loo_rows(data, opts.phase)
    cases = split.valid if opts.phase == "valid" else split.test
    users = [str(int(split.users.raw[u])) for u in cases.users.tolist()]
    targets = [str(int(split.items.raw[t])) for t in cases.targets.tolist()]
    train = _log(data, rows)
    t0 = time.perf_counter()
    bundle = train_bundle(train, seed, opts.sequence, version=f"rules-{seed}")
    log(f"seed {seed}: trained in {time.perf_counter() - t0:.0f} s")
    model = bundle.served
    reqs = loo_requests(train, users)
    new = _new_items(train, DEFAULT_NEW_DAYS)
    history: dict[str, set[str]] = {}
    for user, item in zip(train.users, train.items, strict=True):
        history.setdefault(user, set()).add(item)
    pending = [(r.user_id, _state(list(r.items), list(r.types), list(r.times), r.n_events), None)
               for r in reqs]  # fmt: skip

    def categories(item: str) -> tuple[str, ...]:
        return cats.get(item, ())

    # the held-out item is one of the user's earlier items: only a rule letting them back finds it
    repeat = [float(t in history.get(u, ())) for u, t in zip(users, targets, strict=True)]
    out: dict[str, dict[str, npt.NDArray[np.float64]]] = {"_repeat": {"case": np.array(repeat)}}
    for spec in opts.rules:
        cfg = EngineConfig(scoring=ScoringConfig(top_k=LIST), rules=parse_rules(spec))
        ndcg, hr, diverse, own, explored = [], [], [], [], []
        for s in range(0, len(pending), 512):
            chunk = pending[s : s + 512]
            recs = recommend_many(chunk, lambda _: None, Trending(0.0, ()), cfg, 0.0,
                                  model=model, categories=categories if cats else None,
                                  new_items=new)  # fmt: skip
            for rec, (_, state, _), target in zip(recs, chunk, targets[s : s + 512], strict=True):
                ids = [i.item_id for i in rec.items]
                rank = ids.index(target) if target in ids else LIST
                ndcg.append(1.0 / math.log2(rank + 2) if rank < K else 0.0)
                hr.append(1.0 if rank < K else 0.0)
                top = ids[:K]
                diverse.append(float(len({c for i in top for c in cats.get(i, ())})))
                mine = set(state.items)
                own.append(sum(i in mine for i in top) / max(1, len(top)))
                explored.append(float(sum(i.explore for i in rec.items[:K])))
        out[spec] = {"ndcg@10": np.array(ndcg), "hr@10": np.array(hr),
                     "categories@10": np.array(diverse), "own@10": np.array(own),
                     "explore@10": np.array(explored)}  # fmt: skip
        log(f"seed {seed}: {spec}: NDCG@10 {np.mean(ndcg):.4f}")
    return out


def _new_items(log: Any, days: float, limit: int = 1000) -> tuple[str, ...]:
    """The items whose first row in ``log`` lies within ``days`` of its newest row, newest
    first (at most ``limit``): what a catalogue would call new at the end of the log."""
    if log.ts.shape[0] == 0:
        return ()
    first: dict[str, float] = {}
    for item, ts in zip(log.items, log.ts.tolist(), strict=True):
        if item not in first or ts < first[item]:
            first[item] = ts
    since = float(log.ts.max()) - days * 86400.0
    fresh = sorted(((t, i) for i, t in first.items() if t >= since), reverse=True)
    return tuple(i for _, i in fresh[:limit])


def run_rules_bench(opts: RulesBenchOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure (see the module docstring); write ``rules.json`` / ``.md`` / ``.png``."""
    measured = provenance()  # the checkout the run starts from, not the one at its end
    started = time.perf_counter()
    for spec in opts.rules:
        parse_rules(spec)
    cats = opts.categories if opts.categories is not None else catalogue_categories(opts.dataset)
    per_seed = [_one_seed(opts, seed, cats, log) for seed in range(opts.seeds)]
    base = opts.rules[0]
    rows: dict[str, Any] = {}
    for spec in opts.rules:
        row: dict[str, Any] = {}
        for metric in ("ndcg@10", "hr@10", "categories@10", "own@10", "explore@10"):
            means = [float(s[spec][metric].mean()) for s in per_seed]
            row[metric] = float(np.mean(means))
            row[f"{metric}_std"] = float(np.std(means))
        a = np.concatenate([s[spec]["ndcg@10"] for s in per_seed])
        b = np.concatenate([s[base]["ndcg@10"] for s in per_seed])
        _, p = paired_t_test(a, b)
        row["delta_ndcg@10"] = float(a.mean() - b.mean())
        row["p_value"] = p if math.isfinite(p) else None
        row["rules"] = _as_dict(parse_rules(spec))
        rows[spec] = row
    report: dict[str, Any] = {
        **measured,
        "dataset": opts.dataset,
        "name": Path(opts.dataset).name.split(".")[0],
        "phase": opts.phase,
        "seeds": opts.seeds,
        "cases": int(per_seed[0][base]["ndcg@10"].shape[0]) if per_seed else 0,
        "repeat_targets": float(per_seed[0]["_repeat"]["case"].mean()) if per_seed else 0.0,
        "catalogue_items": len(cats),
        "new_days": DEFAULT_NEW_DAYS,
        "baseline": base,
        "rules": rows,
        "sequence": {
            "negatives": opts.sequence.negatives,
            "max_len": opts.sequence.max_len,
            "dropout": opts.sequence.dropout,
            "epochs": opts.sequence.epochs,
            "patience": opts.sequence.patience,
        },
        "seconds": round(time.perf_counter() - started, 1),
        "command": _command(opts),
    }
    _write(opts.out, report)
    return report


def _as_dict(rules: Rules) -> dict[str, Any]:
    return {"own_items": rules.own_items, "recent_days": rules.recent_days,
            "category_cap": rules.category_cap}  # fmt: skip


def _command(opts: RulesBenchOptions) -> str:
    parts = [f"lsi bench rules --dataset {opts.dataset}"]
    if opts.phase != "valid":
        parts.append(f"--phase {opts.phase}")
    parts.append(f"--seeds {opts.seeds}")
    if opts.rules != DEFAULT_RULES:
        parts.append("--rules " + ",".join(opts.rules))
    if opts.catalogue is not None:
        parts.append(f"--catalogue {opts.catalogue}")
    if opts.sequence.epochs != DEFAULT_SEQUENCE.epochs:
        parts.append(f"--epochs {opts.sequence.epochs}")
    if opts.sequence.negatives != DEFAULT_SEQUENCE.negatives:
        parts.append(f"--negatives {opts.sequence.negatives}")
    if opts.out != DEFAULT_OUT:
        parts.append(f"--out {opts.out}")
    return " ".join(parts)


def _rows(report: dict[str, Any]) -> Iterator[str]:
    yield "| rules | NDCG@10 | HR@10 | Δ NDCG@10 vs " + report["baseline"] + " (p) | " \
          "categories in top 10 | own items in top 10 | new items placed in top 10 |"  # fmt: skip
    yield "|---|---:|---:|---:|---:|---:|---:|"
    for spec, r in report["rules"].items():
        p = "" if r["p_value"] is None else f" ({r['p_value']:.2g})"
        delta = "—" if spec == report["baseline"] else f"{r['delta_ndcg@10']:+.4f}{p}"
        yield (f"| `{spec}` | {r['ndcg@10']:.4f} ± {r['ndcg@10_std']:.4f} | {r['hr@10']:.4f} | "
               f"{delta} | {r['categories@10']:.2f} | {r['own@10']:.1%} | "
               f"{r.get('explore@10', 0.0):.2f} |")  # fmt: skip


def _write(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / report_stem(report)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    items = "validation" if report["phase"] == "valid" else "test"
    md = [
        f"# What each business rule costs: {report['dataset']}, leave-one-out, {items} items",
        "",
        f"{report['cases']:,} held-out users, {report['seeds']} seed(s) (one trained snapshot "
        "per seed, the refresh job's recipe); every list built by `lsi.core.engine."
        "recommend_many`, as a worker builds it, with the dataset's catalogue "
        f"({report['catalogue_items']:,} items) as categories. Mean ± std over seeds; the "
        "p-value is a paired t-test over all seeds' cases. "
        f"{report.get('repeat_targets', 0.0):.1%} of the held-out items are items the user "
        "had interacted with before (only a rule letting own items back can find those).",
        "",
        *_rows(report),
        "",
        f"{provenance_line(report)} Command: `{report['command']}` ({report['seconds']:.0f} s).",
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(md))
    _plot(stem, report)


def report_stem(report: dict[str, Any]) -> str:
    """The reports' file name without suffix: ``rules-<dataset>-<phase>``."""
    return f"rules-{report['name']}-{report['phase']}"


def _plot(stem: Path, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = list(report["rules"])
    rows = [report["rules"][s] for s in specs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.barh(specs, [r["ndcg@10"] for r in rows], xerr=[r["ndcg@10_std"] for r in rows])
    left.set_xlabel("NDCG@10")
    left.invert_yaxis()
    right.barh(specs, [r["categories@10"] for r in rows])
    right.set_xlabel("distinct categories in the top 10")
    right.invert_yaxis()
    fig.suptitle(f"Business rules on {report['dataset']} ({report['phase']} items)")
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    plt.close(fig)


def with_sequence(opts: RulesBenchOptions, **changes: Any) -> RulesBenchOptions:
    """``opts`` with other encoder settings (the CLI's ``--epochs`` …)."""
    return replace(opts, sequence=replace(opts.sequence, **changes))
