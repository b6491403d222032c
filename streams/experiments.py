"""Experiments between snapshots in the worker: which snapshot scores each user, what each
record says about it, and what each arm's online hits are.

The running experiment lives in the store's ``LIVE`` pointer (``lsi models experiment
start``); :class:`streams.models.ModelWatcher` applies it with its candidate snapshot loaded
(:attr:`~streams.models.ModelWatcher.experiment`, an :class:`ActiveExperiment`). The
``interest`` agent reads it once per micro-batch, as it reads the live snapshot, and:

1. splits the users it is about to score (:func:`split_pending`): the ``control`` arm with
   the live snapshot, the ``candidate`` arm with the candidate (``None``: the statistics
   scorer, for a ``baseline`` candidate); one :func:`lsi.core.engine.emit` per group (under
   the ``event`` emission policy, :func:`model_for` each user inside the learning pass);
2. labels each record with the experiment and the arm that scored it (:func:`labelled`);
3. counts the batch's online judgements per arm (:func:`count_judged`):
   ``lsi_experiment_judged_total`` and ``lsi_experiment_hits_total``.

The split is :func:`lsi.core.experiment.arm_of`, a hash of the user id: the same on every
worker, so an experiment needs no state of its own beyond ``LIVE``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from lsi.core.experiment import ARMS, Experiment, arm_of, count_arms
from lsi.core.state import UserState
from lsi.monitoring.metrics import WorkerMetrics
from lsi.serving.snapshot import Snapshot
from lsi.wire.records import Recommendation

__all__ = [
    "ActiveExperiment",
    "ArmGroup",
    "count_judged",
    "labelled",
    "model_for",
    "split_pending",
]

Pending = tuple[str, UserState, float | None]


@dataclass(frozen=True, slots=True)
class ActiveExperiment:
    """An experiment as one worker runs it.

    Attributes:
        experiment: what ``LIVE`` holds (name, candidate, fraction, started_at).
        candidate: the candidate snapshot, loaded; ``None`` for a ``baseline`` candidate.
        applied_at: when this worker started to split by it: lists emitted before belong
            to no arm (a worker picks an experiment up within seconds of its start; one
            restarted later counts from its restart).
    """

    experiment: Experiment
    candidate: Snapshot | None
    applied_at: float

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def fraction(self) -> float:
        return self.experiment.fraction

    @property
    def started_at(self) -> float:
        return self.experiment.started_at

    @property
    def candidate_version(self) -> str:
        return self.experiment.candidate

    @property
    def since(self) -> float:
        """The emission time from which a list counts for its arm."""
        return max(self.experiment.started_at, self.applied_at)

    def arm(self, user_id: str) -> str:
        return arm_of(user_id, self.experiment)


class ArmGroup(NamedTuple):
    """Users of one arm and the snapshot that scores them (:func:`split_pending`)."""

    #: ``control``, ``candidate``, or ``None`` without an experiment
    arm: str | None
    #: the live snapshot, the candidate, or ``None`` (the statistics scorer)
    model: Snapshot | None
    #: ``(user, state, newest event time)``, as :func:`lsi.core.engine.learn_batch` gives them
    pending: list[Pending]


def model_for(
    user_id: str, control: Snapshot | None, active: ActiveExperiment | None
) -> tuple[str | None, Snapshot | None]:
    """``(arm, snapshot to score with)`` for one user: ``(None, control)`` without an
    experiment, else the user's arm and its scorer (``None``: the statistics scorer)."""
    if active is None:
        return None, control
    arm = active.arm(user_id)
    return arm, (active.candidate if arm == ARMS[1] else control)


def split_pending(
    pending: Sequence[Pending], control: Snapshot | None, active: ActiveExperiment | None
) -> list[ArmGroup]:
    """The users a batch is about to score (``(user, state, newest event time)``, as
    :func:`lsi.core.engine.learn_batch` leaves them), grouped by the snapshot that scores
    them: :class:`ArmGroup` ``(arm, model, pending)`` each, in arm order, each group in ``pending``'s order.

    Without an experiment, one group ``(None, control, pending)`` (even if ``pending`` is
    empty), so a caller has one loop for both cases; with one, a group per arm that has
    users. The two arms' users are disjoint, so scoring the groups one after the other gives
    each user exactly the list one call with their arm's snapshot would.
    """
    if active is None:
        return [ArmGroup(None, control, list(pending))]
    groups: dict[str, list[Pending]] = {arm: [] for arm in ARMS}
    for entry in pending:
        groups[active.arm(entry[0])].append(entry)
    return [ArmGroup(arm, active.candidate if arm == ARMS[1] else control, group)
            for arm, group in groups.items() if group]  # fmt: skip


def labelled(rec: Recommendation, active: ActiveExperiment | None, arm: str | None) -> Recommendation:  # fmt: skip
    """``rec`` with the experiment's name and the arm that scored it (unchanged without an
    experiment or an arm)."""
    if active is None or arm is None:
        return rec
    return replace(rec, experiment=active.name, arm=arm)


def count_judged(
    metrics: WorkerMetrics,
    judged: Iterable[tuple[str, float, int | None]],
    active: ActiveExperiment | None,
) -> None:
    """Add a batch's judgements (:attr:`lsi.core.engine.BatchResult.judged`) to the arms'
    counters; those of lists emitted before the experiment applied are left out
    (:func:`lsi.core.experiment.count_arms`). Nothing without an experiment."""
    if active is None:
        return
    for arm, counts in count_arms(judged, active.experiment, since=active.since).items():
        if counts.judged:
            metrics.experiment_judged.labels(experiment=active.name, arm=arm).inc(counts.judged)
        for k, n in counts.hits.items():
            if n:
                metrics.experiment_hits.labels(experiment=active.name, arm=arm,
                                               k=str(k)).inc(n)  # fmt: skip
