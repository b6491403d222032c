"""The streaming scorer: one pure function from a batch of interactions to new state,
recommendations and statistics deltas.

The ``interest`` agent calls :func:`process_batch` with table-backed lookups; the offline
evaluation calls it with dicts. Nothing here does I/O, so what the benchmarks measure is
exactly what the workers run.

Per event, in order: skip it if its source offset was already applied (a re-delivery) or
its id is among the user's recent ids (a duplicate), evaluate it against the last list shown
(online hit), take the co-visitation pairs from the state *before* the event, learn it. Then, per the emission policy, score:

=============  ===============================================================
``event``      after every event
``batch``      once per user per batch, after all of the user's events (default)
``interval``   once per batch, for users not served in the last ``emit_interval_s``
``request``    never from the stream (``GET /recommendations/{user}`` only)
=============  ===============================================================

Items no list may hold (``exclude``): a request's filter (:func:`recommend`) and, on the
stream too (:func:`process_batch`), the items the catalogue hides. Both scorers remove them
before ranking, as they remove the user's seen items, so the lists keep their full length
whenever enough other candidates exist.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace

from lsi.core.rules import (
    MAX_FETCH,
    Categories,
    Rules,
    explore,
    fetch_size,
    only_category,
    own_items,
    select,
)
from lsi.core.scoring import ScoringConfig, StatsLookup, score_user
from lsi.core.snapshot_view import SeqLists, SeqRequest, SnapshotView
from lsi.core.state import StateConfig, UserState
from lsi.core.stats import StatsConfig, Trending, batch_deltas
from lsi.wire.records import Event, ItemDelta, RecItem, Recommendation, ScoredItem

__all__ = [
    "EMIT_POLICIES",
    "BatchResult",
    "EngineConfig",
    "emit",
    "fused_lists",
    "learn_batch",
    "process_batch",
    "recommend",
    "recommend_many",
]

EMIT_POLICIES = ("event", "batch", "interval", "request")
HIT_KS = (1, 5, 10, 20)
BASELINE_VERSION = "baseline-covisit"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything the scorer needs, frozen."""

    state: StateConfig = StateConfig()
    stats: StatsConfig = StatsConfig()
    scoring: ScoringConfig = ScoringConfig()
    rules: Rules = Rules()
    emit_policy: str = "batch"
    emit_interval_s: float = 5.0
    model_version: str = BASELINE_VERSION

    def __post_init__(self) -> None:
        if self.emit_policy not in EMIT_POLICIES:
            raise ValueError(
                f"emit_policy must be one of {EMIT_POLICIES}, got {self.emit_policy!r}"
            )


@dataclass(slots=True)
class BatchResult:
    """What a batch changed and produced.

    Attributes:
        states: users whose state changed, or who had a re-delivered event skipped →
            their state (write these back; see :func:`process_batch`).
        recommendations: records to emit, in order.
        deltas: item id → statistics increment (send to the stats topic).
        accepted: event type → events learned.
        duplicates: event type → events dropped as duplicates (same ``event_id``).
        redelivered: events skipped because their source offset was already applied.
        evaluated: events that had a previous list to be judged against.
        hits: K → events whose item was in the top-K of that list.
        applied: positions in ``events`` of the events learned (neither duplicates nor
            re-deliveries), in order: what the worker appends to the interaction log.
        judged: per evaluated event, ``(user, emitted_at of the list it was judged against,
            its rank in that list or None)``: what per-arm online measures are built from.
    """

    states: dict[str, UserState] = field(default_factory=dict)
    recommendations: list[Recommendation] = field(default_factory=list)
    deltas: dict[str, ItemDelta] = field(default_factory=dict)
    accepted: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    redelivered: int = 0
    evaluated: int = 0
    hits: Counter[int] = field(default_factory=Counter)
    applied: list[int] = field(default_factory=list)
    judged: list[tuple[str, float, int | None]] = field(default_factory=list)


def recommend(
    user_id: str,
    state: UserState,
    lookup: StatsLookup,
    trending: Trending,
    cfg: EngineConfig,
    now: float,
    *,
    event_ts: float | None,
    trigger: str = "event",
    model: SnapshotView | None = None,
    exclude: Collection[str] = frozenset(),
    categories: Categories | None = None,
    category: str | None = None,
    new_items: Sequence[str] = (),
) -> Recommendation:
    """Score one user and wrap the list as a record (does not touch the state); no list of
    it holds an item of ``exclude``, and with ``category`` every item is in it (by
    ``categories``, the catalogue's); see :func:`recommend_many`."""
    return recommend_many([(user_id, state, event_ts)], lookup, trending, cfg, now,
                          trigger=trigger, model=model, exclude=exclude,
                          categories=categories, category=category,
                          new_items=new_items)[0]  # fmt: skip


def recommend_many(
    pending: Sequence[tuple[str, UserState, float | None]],
    lookup: StatsLookup,
    trending: Trending,
    cfg: EngineConfig,
    now: float,
    *,
    trigger: str = "event",
    model: SnapshotView | None = None,
    lists: Sequence[SeqLists | None] | None = None,
    exclude: Collection[str] = frozenset(),
    categories: Categories | None = None,
    category: str | None = None,
    new_items: Sequence[str] = (),
) -> list[Recommendation]:
    """Score users ``(user, state, event_ts)`` and wrap each list as a record.

    With a snapshot that carries the fused scorer (``model.sequence``), all users go through
    one forward pass (:meth:`lsi.serving.fusion.SequenceModel.recommend`); a user whose recent items
    the encoder does not know, or any user without such a snapshot, is scored by
    :func:`lsi.core.scoring.score_user` (co-visitation, trending, the long-term vectors).
    ``model_version`` is the snapshot's version when it took part in the list, else
    ``cfg.model_version`` (the short-term baseline). ``lists``: the fused scorer's lists of
    ``pending``, already computed (:func:`fused_lists`, e.g. on another thread, with the same
    ``exclude`` and ``categories``). ``exclude``: items no list may hold (a request's filter).

    The rules (``cfg.rules``, :mod:`lsi.core.rules`): each user's own items are left out as
    they say; with a per-category cap (and ``categories``, the catalogue's) or a request's
    ``category``, the scorers are asked for more than ``top_k`` items and
    :func:`lsi.core.rules.select` keeps the first ``top_k`` that pass, asking again with a
    larger size for a user whose list came back short while the scorer had more. The
    sources' own lists keep their order, cut to ``top_k`` (and to ``category``). With
    ``rules.new_slots``, items of ``new_items`` (the catalogue's new items, newest first)
    take that many places (:func:`lsi.core.rules.explore`)."""
    k, rules = cfg.scoring.top_k, cfg.rules
    cats = categories if categories is not None else _no_categories
    fetch = fetch_size(k, rules, category, categories is not None)
    owns = [own_items(state, rules) for _, state, _ in pending]
    scored: list[_Scored | None] = [None] * len(pending)
    todo = list(range(len(pending)))
    first = True
    while todo:
        sub = [pending[n] for n in todo]
        sub_cfg = cfg if fetch == k else replace(cfg, scoring=replace(cfg.scoring, top_k=fetch))
        got = _score(sub, [owns[n] for n in todo], lookup, trending, sub_cfg, model,
                     lists if first else None, exclude)  # fmt: skip
        first = False
        again: list[int] = []
        for n, res in zip(todo, got, strict=True):
            if fetch == k:
                scored[n] = res
                continue
            kept = select(res.items, _item_id, k, cats, cap=rules.category_cap, category=category)
            if len(kept) < k and len(res.items) >= fetch and fetch < MAX_FETCH:
                again.append(n)
                continue
            scored[n] = replace(res, items=tuple(kept),
                                short_term=only_category(res.short_term, _item_id, k, cats, category),
                                long_term=only_category(res.long_term, _item_id, k, cats, category))  # fmt: skip
        todo, fetch = again, min(MAX_FETCH, fetch * 4)
    out: list[Recommendation] = []
    for n, ((user_id, state, event_ts), one) in enumerate(zip(pending, scored, strict=True)):
        assert one is not None
        if rules.new_slots and new_items:
            one = _with_new(one, user_id, state, owns[n], new_items, cfg, cats, category, exclude)
        out.append(Recommendation(
            user_id=user_id, ts=now, model_version=one.version, long_weight=one.long_weight,
            items=one.items, short_term=one.short_term, long_term=one.long_term,
            source=one.source, event_ts=event_ts, emitted_at=now, trigger=trigger,
            history_size=state.n_events,
        ))  # fmt: skip
    return out


@dataclass(frozen=True, slots=True)
class _Scored:
    """One user's lists as a scorer gave them, before the rules cut them."""

    items: tuple[RecItem, ...]
    short_term: tuple[ScoredItem, ...]
    long_term: tuple[ScoredItem, ...]
    long_weight: float
    source: str
    version: str


def _with_new(one: _Scored, user_id: str, state: UserState, own: frozenset[str] | None,
              new_items: Sequence[str], cfg: EngineConfig, cats: Categories,
              category: str | None, exclude: Collection[str]) -> _Scored:  # fmt: skip
    """``one`` with the rules' new-item places filled (:func:`lsi.core.rules.explore`)."""
    rules = cfg.rules
    mine = set(state.items) if own is None else own
    counts: Counter[str] = Counter()
    if rules.category_cap:
        for entry in one.items:
            counts.update(set(cats(entry.item_id)))

    def allowed(item: str) -> bool:
        if item in mine or item in exclude:
            return False
        if category is None and not rules.category_cap:
            return True
        got = cats(item)
        if category is not None and category not in got:
            return False
        return all(counts[c] < rules.category_cap for c in got) if rules.category_cap else True

    items = explore(one.items, cfg.scoring.top_k, user_id, new_items, rules.new_slots, allowed,
                    _explored, _item_id)  # fmt: skip
    return replace(one, items=tuple(items))


def _explored(item: str) -> RecItem:
    return RecItem(item, 0.0, 0.0, 0.0, explore=True)


def _item_id(entry: RecItem | ScoredItem) -> str:
    return entry.item_id


def _no_categories(item: str) -> tuple[str, ...]:
    return ()


def _score(
    pending: Sequence[tuple[str, UserState, float | None]],
    owns: Sequence[frozenset[str] | None],
    lookup: StatsLookup,
    trending: Trending,
    cfg: EngineConfig,
    model: SnapshotView | None,
    lists: Sequence[SeqLists | None] | None,
    exclude: Collection[str],
) -> list[_Scored]:
    """Each user's lists from the fused scorer, else the statistics scorer (see
    :func:`recommend_many`), ``cfg.scoring.top_k`` long."""
    fused: Sequence[SeqLists | None] | None = lists
    if fused is None:
        fused = [None] * len(pending)
        if model is not None and model.sequence is not None and pending:
            fused = _fused(pending, owns, model, cfg.scoring.top_k, cfg, exclude)
    out: list[_Scored] = []
    for (user_id, state, _), own, seq in zip(pending, owns, fused, strict=True):
        if seq is not None and model is not None:
            out.append(_Scored(seq.items, seq.short_term, seq.long_term, seq.long_weight,
                               seq.source, model.version))  # fmt: skip
            continue
        res = score_user(state, lookup, trending, cfg.scoring, model, user_id, exclude, own)
        scored_by = model.version if model is not None and res.long_weight > 0 else None
        out.append(_Scored(res.items, res.short_term, res.long_term, res.long_weight, res.source,
                           scored_by or cfg.model_version))  # fmt: skip
    return out


def fused_lists(
    pending: Sequence[tuple[str, UserState, float | None]],
    model: SnapshotView,
    cfg: EngineConfig,
    exclude: Collection[str] = frozenset(),
    categories: Categories | None = None,
) -> list[SeqLists | None]:
    """The fused scorer's lists for ``pending`` in one forward pass (``None`` for a user it
    cannot score), none holding an item of ``exclude`` nor an own item the rules leave out,
    as long as :func:`recommend_many` first asks for (longer than ``top_k`` under a
    per-category cap with ``categories``). Reads the states and the immutable snapshot,
    writes nothing: safe to run on a thread while the states are not changed."""
    k = fetch_size(cfg.scoring.top_k, cfg.rules, None, categories is not None)
    owns = [own_items(st, cfg.rules) for _, st, _ in pending]
    return _fused(pending, owns, model, k, cfg, exclude)


def _fused(
    pending: Sequence[tuple[str, UserState, float | None]],
    owns: Sequence[frozenset[str] | None],
    model: SnapshotView,
    k: int,
    cfg: EngineConfig,
    exclude: Collection[str],
) -> list[SeqLists | None]:
    """The fused scorer's ``k``-long lists of ``pending`` (each user's own items: ``owns``)."""
    assert model.sequence is not None
    reqs = [
        SeqRequest.from_state(u, st, own) for (u, st, _), own in zip(pending, owns, strict=True)
    ]
    return model.sequence.recommend(reqs, model, k, cfg.scoring.mode, exclude=exclude)


def process_batch(
    events: Sequence[Event],
    load: Callable[[str], UserState | None],
    lookup: StatsLookup,
    trending: Trending,
    cfg: EngineConfig,
    now: float,
    sources: Sequence[tuple[int, int] | None] | None = None,
    model: SnapshotView | None = None,
    exclude: Collection[str] = frozenset(),
    categories: Categories | None = None,
    new_items: Sequence[str] = (),
) -> BatchResult:
    """Apply a batch of interactions and produce what the agent must write and send.

    Args:
        events: interactions in partition order.
        load: the stored state of a user, or ``None`` for a new user.
        lookup: item statistics as of the start of the batch.
        trending: global trending list as of the start of the batch.
        cfg: state, statistics and scoring settings and the emission policy.
        now: the clock used for ``ts``/``emitted_at`` (wall time live, event time offline).
        sources: per event, its ``(partition, offset)`` in ``lsi.events`` (live only), so
            re-deliveries are skipped exactly (see :meth:`UserState.learn_one`).
        model: the live long-term snapshot (one version for the whole batch), or ``None``.
        exclude: items no list may hold (those the catalogue hides now).
        categories: the catalogue's categories of an item (for ``cfg.rules``' cap).
        new_items: the catalogue's new items, newest first (for ``cfg.rules``' new places).

    It is :func:`learn_batch` followed by :func:`emit` of the users it leaves pending.
    """
    out, pending = learn_batch(events, load, lookup, trending, cfg, now, sources, model,
                               exclude, categories, new_items)  # fmt: skip
    emit(out, pending, lookup, trending, cfg, now, model, exclude=exclude, categories=categories,
         new_items=new_items)  # fmt: skip
    return out


def learn_batch(
    events: Sequence[Event],
    load: Callable[[str], UserState | None],
    lookup: StatsLookup,
    trending: Trending,
    cfg: EngineConfig,
    now: float,
    sources: Sequence[tuple[int, int] | None] | None = None,
    model: SnapshotView | None = None,
    exclude: Collection[str] = frozenset(),
    categories: Categories | None = None,
    new_items: Sequence[str] = (),
    model_of: Callable[[str], SnapshotView | None] | None = None,
) -> tuple[BatchResult, list[tuple[str, UserState, float | None]]]:
    """The learning half of :func:`process_batch` (same arguments): every event applied,
    the ``event`` policy's lists emitted on the way, and the users the ``batch`` and
    ``interval`` policies still have to score, as ``(user, state, newest event time)``.
    ``model_of``: the snapshot that scores a user's ``event``-policy lists, when it is not
    ``model`` for everyone (an experiment between snapshots)."""
    out = BatchResult()
    pairs: list[tuple[Event, list[str]]] = []
    newest: dict[str, float] = {}
    for n, event in enumerate(events):
        user = event.user_id
        state = out.states.get(user)
        if state is None:
            state = load(user) or UserState()
        previous = [i for i, _ in state.recent_distinct(cfg.stats.window)]
        outcome = state.learn_one(event, cfg.state, sources[n] if sources is not None else None)
        if outcome.redelivered:
            out.redelivered += 1
            # written back unchanged: a crash may have kept this state's last changelog
            # record from the broker while the local store has it; the re-delivery is the
            # moment to make the changelog whole again (a restore must equal live state)
            out.states.setdefault(user, state)
            continue
        if outcome.duplicate:
            out.duplicates[event.type] += 1
            continue
        pairs.append((event, previous))
        out.applied.append(n)
        out.states[user] = state
        out.accepted[event.type] += 1
        if outcome.evaluated:
            out.evaluated += 1
            out.judged.append((user, state.last_emit, outcome.hit_rank))
            if outcome.hit_rank is not None:
                for k in HIT_KS:
                    if outcome.hit_rank < k:
                        out.hits[k] += 1
        newest[user] = max(newest.get(user, 0.0), event.ts)
        if cfg.emit_policy == "event":
            scorer = model if model_of is None else model_of(user)
            emit(out, [(user, state, event.ts)], lookup, trending, cfg, now, scorer,
                 exclude=exclude, categories=categories, new_items=new_items)  # fmt: skip

    pending: list[tuple[str, UserState, float | None]] = []
    if cfg.emit_policy in ("batch", "interval"):
        for user, ts in newest.items():
            state = out.states[user]
            if cfg.emit_policy == "interval" and now - state.last_emit < cfg.emit_interval_s:
                continue
            pending.append((user, state, ts))
    out.deltas = batch_deltas(pairs, cfg.stats)
    return out, pending


def emit(
    out: BatchResult,
    pending: Sequence[tuple[str, UserState, float | None]],
    lookup: StatsLookup,
    trending: Trending,
    cfg: EngineConfig,
    now: float,
    model: SnapshotView | None,
    *,
    lists: Sequence[SeqLists | None] | None = None,
    exclude: Collection[str] = frozenset(),
    categories: Categories | None = None,
    new_items: Sequence[str] = (),
) -> None:
    """Score ``pending`` (:func:`recommend_many`), add the records to ``out`` and remember
    each list in its user's state (the reference of the next online hit). ``lists``, when
    given, were computed with the same ``exclude`` and ``categories``."""
    recs = recommend_many(pending, lookup, trending, cfg, now, model=model, lists=lists,
                          exclude=exclude, categories=categories, new_items=new_items)  # fmt: skip
    for (_, state, _), rec in zip(pending, recs, strict=True):
        state.remember_recs([i.item_id for i in rec.items], now, cfg.state)
        out.recommendations.append(rec)
