"""``lsi bench``: the benchmarks (pipeline, faults, accuracy, refresh, catalogue, rules), each of
which writes its report (JSON, Markdown, plots) into a folder.

Each ``--out`` without the flag is its options dataclass's default, and the help texts say
which; the modules of those dataclasses import torch or a Kafka client, so they are imported
only by the benchmark that runs, or when its ``--help`` is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lsi.cli.common import LateHelp, at_least, field_default, train_config
from lsi.errors import DatasetError, LsiError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser("bench", help="benchmarks that write report.json, report.md and plots")
    bsub = b.add_subparsers(dest="bench", required=True, parser_class=LateHelp)
    _add_pipeline(bsub)
    _add_faults(bsub)
    _add_accuracy(bsub)
    _add_refresh(bsub)
    _add_catalogue(bsub)
    _add_rules(bsub)
    b.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    run = {"pipeline": _bench_pipeline, "faults": _bench_faults, "accuracy": _bench_accuracy,
           "refresh": _bench_refresh, "catalogue": _bench_catalogue,
           "rules": _bench_rules}  # fmt: skip
    return run[args.bench](args)


# -- pipeline ------------------------------------------------------------------------------
def _add_pipeline(bsub: argparse._SubParsersAction[LateHelp]) -> None:
    bp = bsub.add_parser("pipeline", help="lsi against its anchors (aiokafka, Faust, Faust + "
                         "table) on one topic and broker: rates, latency, 1 vs 2 workers")  # fmt: skip
    bp.add_argument("--dataset", help="default ml-1m")
    bp.add_argument("--events", type=at_least(1),
                    help="the backlog every program drains (default 200000; --quick 3000)")  # fmt: skip
    bp.add_argument("--live-events", type=at_least(1),
                    help="events offered at --rate for each latency (default 20000; --quick 600)")  # fmt: skip
    bp.add_argument("--rate", type=float, help="offered rate, events/s (default 1000; --quick 200)")
    out = bp.add_argument("--out", help="report folder (default {})")
    bp.fill_later(out, lambda: _pipeline_default("out"))
    bp.add_argument("--skip-model", action="store_true",
                    help="no fused-model worker: no training, latency measured without a model")  # fmt: skip
    bp.add_argument("--quick", action="store_true",
                    help="a run of a minute or two: small defaults for every size above")  # fmt: skip
    bp.add_argument("--train-budget", type=float,
                    help="seconds of encoder training for the fused model (default 30)")  # fmt: skip
    bp.add_argument("--max-len", type=int, help="the encoder's window (default 200)")
    catalogue = bp.add_argument(
        "--catalogue", help="the `lsi bench catalogue` report to include (default {})"
    )
    bp.fill_later(catalogue, lambda: _pipeline_default("catalogue"))


def _pipeline_default(name: str) -> object:
    from lsi.bench import PipelineBenchOptions  # imports a Kafka client: only for --help

    return field_default(PipelineBenchOptions, name)


def _bench_pipeline(args: argparse.Namespace) -> int:
    from lsi.bench import PipelineBenchOptions, run_pipeline_bench
    from lsi.bench.pipeline import QUICK

    given = {"dataset": args.dataset, "events": args.events, "live_events": args.live_events,
             "rate": args.rate, "train_budget_s": args.train_budget, "max_len": args.max_len,
             "out": None if args.out is None else Path(args.out),
             "catalogue": None if args.catalogue is None else Path(args.catalogue)}  # fmt: skip
    chosen = {k: v for k, v in given.items() if v is not None}
    popts = PipelineBenchOptions(**{**(QUICK if args.quick else {}), **chosen},
                                 model=not args.skip_model)  # fmt: skip
    report = run_pipeline_bench(popts)
    out = popts.out
    print((out / "report.md").read_text())
    print(f"report: {out}/report.json, {out}/report.md, {out}/report.png")
    if report.get("failed"):
        return 1
    return 0


# -- faults --------------------------------------------------------------------------------
def _add_faults(bsub: argparse._SubParsersAction[LateHelp]) -> None:
    bf = bsub.add_parser("faults", help="the fault suite: SIGKILLs, broker restart, rebalance, "
                         "bad-input corpus; exit 1 on any lost or double-applied event")  # fmt: skip
    bf.add_argument("--events", type=int, default=200_000, help="good events to send")
    bf.add_argument("--kills", type=int, default=10, help="SIGKILLs of a worker")
    bf.add_argument("--dataset", default="synthetic",
                    help="synthetic (built in), or a dataset lsi.evaluation.datasets loads, e.g. ml-1m")  # fmt: skip
    bf.add_argument("--rate", type=float, default=500.0, help="offered rate, events/s")
    bf.add_argument("--seed", type=int, default=0, help="the disruption points and the data")
    bf.add_argument("--partitions", type=int, default=4)
    bf.add_argument("--no-broker-restart", action="store_true")
    bf.add_argument("--no-rebalance", action="store_true")
    bf.add_argument("--no-corpus", action="store_true", help="good traffic only")
    bf.add_argument("--restore-users", type=int, default=300,
                    help="users checked after the restore from the changelog alone")  # fmt: skip
    bf.add_argument("--wait", type=float, default=180.0,
                    help="deadline of each wait on a condition, seconds")  # fmt: skip
    bf.add_argument("--out", help="report folder")  # default: FaultBenchOptions.out
    bf.add_argument("--name", default="faults", help="report file stem")


def _bench_faults(args: argparse.Namespace) -> int:
    from lsi.bench.faults import FaultBenchOptions, run_fault_bench

    given: dict[str, Any] = {} if args.out is None else {"out": Path(args.out)}
    fopts = FaultBenchOptions(events=args.events, kills=args.kills, dataset=args.dataset,
                              rate=args.rate, name=args.name,
                              seed=args.seed, partitions=args.partitions,
                              broker_restart=not args.no_broker_restart,
                              rebalance=not args.no_rebalance, corpus=not args.no_corpus,
                              restore_users=args.restore_users, wait_s=args.wait,
                              **given)  # fmt: skip
    report = run_fault_bench(fopts)
    stem = fopts.out / fopts.name
    print(stem.with_suffix(".md").read_text())
    print(f"report: {stem}.json, {stem}.md, {stem}.png")
    if not report["passed"]:
        print(f"worker logs kept in {report['work_dir']}")
        return 1
    return 0


# -- accuracy ------------------------------------------------------------------------------
def _add_accuracy(bsub: argparse._SubParsersAction[LateHelp]) -> None:
    ba = bsub.add_parser(
        "accuracy", help="quality under loo / prequential, full ranking, baselines"
    )
    ba.add_argument("--dataset", default="ml-1m")
    ba.add_argument("--protocol", default="loo", choices=["loo", "temporal", "prequential"])
    ba.add_argument(
        "--models",
        help="comma-separated, from mostpop,recent_pop,covisit,biased_mf,streaming,fused,"
        "short_only,long_only and the ablations fixed_weight,fused_gru,short_only_gru,"
        "fused_contrastive (default: all but the ablations)",
    )
    ba.add_argument("--seeds", type=int, default=3, help="runs of each seeded model")
    ba.add_argument(
        "--filter-seen", action="store_true", help="remove the user's history from candidates"
    )
    ba.add_argument("--limit", type=int, help="prequential: only the first N events")
    ba.add_argument(
        "--phase",
        default="test",
        choices=["test", "valid"],
        help="valid: learn training only and rank the validation items (for tuning)",
    )
    out = ba.add_argument("--out", help="report folder (default {})")
    ba.fill_later(out, _accuracy_out)
    ba.add_argument("--refresh-every", type=int, default=100_000,
                    help="prequential fused/short_only/long_only: warm refresh every N events")  # fmt: skip
    ba.add_argument("--max-len", type=int, default=200, help="the encoder's window")
    ba.add_argument("--windows", choices=("last", "all"), default="last",
                    help="train the encoder on each user's last window, or on all of their "
                         "history in consecutive windows")  # fmt: skip
    ba.add_argument("--dropout", type=float, default=0.2, help="the encoder's dropout")
    ba.add_argument("--dim", type=int, default=64,
                    help="the encoder's width (item rows start from the long-term vectors "
                         "when it equals theirs, 64)")  # fmt: skip
    ba.add_argument("--layers", type=int, default=2, help="the encoder's blocks")
    ba.add_argument("--heads", type=int, default=2, help="attention heads per block")
    ba.add_argument("--negatives", type=int, default=0,
                    help="sampled-softmax negatives per batch (0: full softmax)")  # fmt: skip
    ba.add_argument("--epochs", type=int, default=200, help="most encoder epochs (early stopping)")
    ba.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                    help="the encoder's learning rate: constant, or falling to 0 along half a "
                         "cosine over --epochs")  # fmt: skip
    ba.add_argument("--ema-decay", type=float, default=0.0,
                    help="evaluate and keep a moving average of the encoder's weights with this "
                         "decay per step (0: off)")  # fmt: skip
    ba.add_argument("--balanced-init", action=argparse.BooleanOptionalAction, default=None,
                    help="start the position, event-type and time-gap embeddings at the item "
                         "rows' scale (std dim**-0.5) instead of N(0, 1); on by default, as in "
                         "`lsi refresh` (LSI_SEQUENCE_BALANCED_INIT): one recipe, one default")  # fmt: skip
    ba.add_argument("--patience", type=int, default=3,
                    help="early stopping: evaluations (every 5 epochs) without a gain before "
                         "the encoder stops")  # fmt: skip
    ba.add_argument("--train-budget", type=float,
                    help="stop each encoder training after this many seconds")  # fmt: skip
    ba.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ba.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16: train the encoder under bfloat16 autocast (faster on CPUs "
                         "with AMX and on recent GPUs)")  # fmt: skip
    ba.add_argument("--jobs", type=int, default=1,
                    help="seeds of the fused scorer trained in parallel processes")  # fmt: skip
    ba.add_argument("--merge", action="store_true",
                    help="keep rows of models not run from the report already in --out")  # fmt: skip


def _accuracy_out() -> object:
    from lsi.bench.accuracy import AccuracyOptions  # imports torch: only for --help

    return field_default(AccuracyOptions, "out")


def _bench_accuracy(args: argparse.Namespace) -> int:
    from lsi.bench.accuracy import DEFAULT_MODELS, AccuracyOptions, run_accuracy_bench
    from models.training.sequence import SequenceConfig

    models = (
        tuple(m.strip() for m in args.models.split(",") if m.strip())
        if args.models
        else DEFAULT_MODELS
    )
    # a flag left out takes SequenceConfig's default, the refresh job's too
    optional = {"balanced_init": args.balanced_init} if args.balanced_init is not None else {}
    try:
        seq = SequenceConfig(max_len=args.max_len, windows=args.windows,
                             dropout=args.dropout, epochs=args.epochs,
                             max_train_s=args.train_budget, device=args.device,
                             negatives=args.negatives,
                             precision=args.precision, dim=args.dim,
                             layers=args.layers, heads=args.heads,
                             patience=args.patience,
                             lr_schedule=args.lr_schedule,
                             ema_decay=args.ema_decay, **optional)  # fmt: skip
    except ValueError as exc:
        raise LsiError(f"{exc}; see `lsi bench accuracy --help`") from None
    given: dict[str, Any] = {"out": Path(args.out)} if args.out else {}
    opts = AccuracyOptions(dataset=args.dataset, protocol=args.protocol, models=models,
                           seeds=args.seeds, filter_seen=args.filter_seen, limit=args.limit,
                           phase=args.phase, refresh_every=args.refresh_every,
                           merge=args.merge, sequence=seq, jobs=args.jobs, **given)  # fmt: skip
    run_accuracy_bench(opts)
    suffix = "-valid" if opts.phase == "valid" else ""
    stem = opts.out / f"{Path(opts.dataset).name.split('.')[0]}-{opts.protocol}{suffix}"
    print(stem.with_suffix(".md").read_text())
    print(f"report: {stem}.json, {stem}.md, {stem}.png")
    return 0


# -- refresh -------------------------------------------------------------------------------
def _add_refresh(bsub: argparse._SubParsersAction[LateHelp]) -> None:
    br = bsub.add_parser("refresh", help="long-term model refresh: cold, warm, scaling curve")
    br.add_argument("--dataset", default="ml-1m")
    out = br.add_argument("--out", help="report folder (default {})")
    br.fill_later(out, _refresh_out)
    br.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    br.add_argument("--scaling-edges", default="1000000,2000000,5000000,10000000",
                    help="synthetic graph sizes (comma-separated edges)")  # fmt: skip
    br.add_argument("--scaling-epochs", type=int, default=1, help="epochs timed per size")
    br.add_argument("--new-fraction", type=float, default=0.01,
                    help="newest share of the log that arrives before the warm refresh")  # fmt: skip
    br.add_argument("--valid-cases", type=int, default=1000)
    br.add_argument("--epochs", type=int, help="cold epochs (default: the refresh job's)")
    br.add_argument("--warm-epochs", type=int, help="warm epochs (default: the refresh job's)")
    br.add_argument("--dim", type=int, help="embedding size (default: the refresh job's)")
    br.add_argument("--seed", type=int, default=0)


def _refresh_out() -> object:
    from lsi.bench.refresh import RefreshBenchOptions  # imports torch: only for --help

    return field_default(RefreshBenchOptions, "out")


def _bench_refresh(args: argparse.Namespace) -> int:
    from lsi.bench.refresh import RefreshBenchOptions, run_refresh_bench

    cfg = train_config(epochs=args.epochs, warm_epochs=args.warm_epochs, dim=args.dim)
    try:
        edges = tuple(int(e) for e in args.scaling_edges.split(",") if e.strip())
    except ValueError:
        raise LsiError("--scaling-edges takes comma-separated integers, e.g. "
                       "1000000,2000000") from None  # fmt: skip
    given: dict[str, Any] = {"out": Path(args.out)} if args.out else {}
    ropts = RefreshBenchOptions(dataset=args.dataset, device=args.device, scaling_edges=edges,
                                scaling_epochs=args.scaling_epochs,
                                new_fraction=args.new_fraction, valid_cases=args.valid_cases,
                                cfg=cfg, seed=args.seed, **given)  # fmt: skip
    run_refresh_bench(ropts)
    stem = ropts.out / f"refresh-{Path(args.dataset).name.split('.')[0]}"
    print(stem.with_suffix(".md").read_text())
    print(f"report: {stem}.json, {stem}.md, {stem}-scaling.png")
    return 0


# -- catalogue -----------------------------------------------------------------------------
def _add_catalogue(bsub: argparse._SubParsersAction[LateHelp]) -> None:
    bc = bsub.add_parser("catalogue", help="serving cost per event against the catalogue size: "
                         "exact scoring vs candidate retrieval")  # fmt: skip
    bc.add_argument("--sizes", help="catalogue sizes, comma-separated (default "
                    "10000,100000,1000000; --quick: 1000,5000)")  # fmt: skip
    bc.add_argument("--batch", type=at_least(1), help="requests per micro-batch (default 64)")
    bc.add_argument("--batches", type=at_least(1), help="timed micro-batches (default 20)")
    bc.add_argument("--candidates", type=at_least(1), default=300,
                    help="items retrieved per source")  # fmt: skip
    bc.add_argument("--nprobe", type=at_least(1), default=32, help="inverted lists scanned")
    bc.add_argument("--storage", choices=["flat", "sq8"], default="flat",
                    help="index codes: float32 or 8-bit")  # fmt: skip
    bc.add_argument("--seed", type=int, default=0, help="seed of the synthetic catalogues")
    bc.add_argument("--ml1m", action="store_true",
                    help="also train an ML-1M snapshot and measure the NDCG@10 lost and the "
                         "recall@100 of the indexes")  # fmt: skip
    bc.add_argument("--ml1m-budget", type=float, default=120.0,
                    help="--ml1m: seconds of encoder training")  # fmt: skip
    bc.add_argument("--phase", choices=["test", "valid"], default="test",
                    help="--ml1m: judge the test items, or the validation items (tuning)")  # fmt: skip
    bc.add_argument("--quick", action="store_true", help="small catalogues, few batches")
    out = bc.add_argument("--out", help="report folder (default {})")
    bc.fill_later(out, _catalogue_out)


def _catalogue_out() -> object:
    from lsi.bench.catalogue import DEFAULT_OUT  # imports torch: only for --help

    return DEFAULT_OUT


def _bench_catalogue(args: argparse.Namespace) -> int:
    from lsi.bench.catalogue import DEFAULT_OUT, QUICK, CatalogueBenchOptions
    from lsi.serving.retrieval import RetrievalConfig

    try:
        sizes = tuple(int(n) for n in args.sizes.split(",") if n.strip()) if args.sizes else None
    except ValueError:
        raise LsiError("--sizes takes comma-separated integers, e.g. 10000,100000") from None
    given = {"sizes": sizes, "batch": args.batch, "batches": args.batches}
    chosen = {k: v for k, v in given.items() if v is not None}
    opts = CatalogueBenchOptions(
        **{**(QUICK if args.quick else {}), **chosen}, seed=args.seed, ml1m=args.ml1m,
        ml1m_budget_s=args.ml1m_budget, phase=args.phase,
        out=Path(args.out) if args.out else DEFAULT_OUT,
        retrieval=RetrievalConfig(candidates=args.candidates, nprobe=args.nprobe,
                                  storage=args.storage),
    )  # fmt: skip
    import lsi.bench.catalogue as bench  # through the module, so tests can replace a part

    bench.run_catalogue_bench(opts)
    print((opts.out / "catalogue.md").read_text())
    print(f"report: {opts.out}/catalogue.json, {opts.out}/catalogue.md, {opts.out}/catalogue.png")
    return 0


# -- rules ---------------------------------------------------------------------------------
def _add_rules(bsub: argparse._SubParsersAction[LateHelp]) -> None:
    br = bsub.add_parser("rules", help="what each business rule (own items, category cap) "
                         "costs in NDCG@10, through the workers' list-building code")  # fmt: skip
    br.add_argument("--dataset", default="ml-100k", help="a dataset of ../shared/datasets")
    br.add_argument("--phase", choices=["valid", "test"], default="valid",
                    help="judge the validation items, or the test items")  # fmt: skip
    br.add_argument("--seeds", type=at_least(1), default=3, help="trained snapshots")
    br.add_argument("--rules", help="rule sets, comma-separated; the first is the baseline "
                    "(default seen,purchased,recent:30,cap:3,cap:2,cap:1,new:1; also "
                    "+-joined: purchased+cap:2)")  # fmt: skip
    br.add_argument("--catalogue", metavar="CSV",
                    help="categories from a catalogue CSV (lsi items publish --csv's format; "
                         "default: the dataset's own catalogue, if it has one)")  # fmt: skip
    br.add_argument("--epochs", type=at_least(1), default=40, help="encoder epochs")
    br.add_argument("--negatives", type=int, default=0,
                    help="sampled negatives per step (0: full softmax; 512 for a large catalogue)")  # fmt: skip
    out = br.add_argument("--out", help="report folder (default {})")
    br.fill_later(out, _rules_out)


def _rules_out() -> object:
    from lsi.bench.rules import DEFAULT_OUT  # imports torch: only for --help

    return DEFAULT_OUT


def _bench_rules(args: argparse.Namespace) -> int:
    from lsi.bench.rules import (
        DEFAULT_OUT,
        DEFAULT_RULES,
        RulesBenchOptions,
        catalogue_categories,
        parse_rules,
        report_stem,
        run_rules_bench,
        with_sequence,
    )

    rules = tuple(r.strip() for r in args.rules.split(",") if r.strip()) if args.rules else None
    for spec in rules or ():
        parse_rules(spec)  # a bad rule is a one-line error before any training
    try:
        cats = catalogue_categories(args.dataset, Path(args.catalogue)) if args.catalogue else None
    except DatasetError as exc:
        raise LsiError(f"--catalogue: {exc}") from None
    opts = RulesBenchOptions(dataset=args.dataset, phase=args.phase, seeds=args.seeds,
                             rules=rules or DEFAULT_RULES, categories=cats,
                             catalogue=Path(args.catalogue) if args.catalogue else None,
                             out=Path(args.out) if args.out else DEFAULT_OUT)  # fmt: skip
    if args.negatives < 0:
        raise LsiError("--negatives must be 0 (full softmax) or more")
    opts = with_sequence(opts, epochs=args.epochs, negatives=args.negatives)
    report = run_rules_bench(opts)
    stem = opts.out / report_stem(report)
    print(stem.with_suffix(".md").read_text())
    print(f"report: {stem}.json, {stem}.md, {stem}.png")
    return 0
