"""The training recipe: one snapshot from one interaction log, exactly as the refresh job
(:mod:`models.jobs.refresh`) and the offline evaluation (:mod:`lsi.evaluation.fused`) both
train it.

Given the log and a split of it into training rows and calibration rows (the newest positive
interaction of sampled users, :func:`models.training.longterm.holdout_last`; each caller draws
its own):

1. the long-term model (:func:`models.training.longterm.train_long_term`) learns the training
   rows, warm from the previous snapshot's rows when given;
2. the encoder and the gate (:func:`models.training.sequence.train_sequence`) learn everything
   before each calibration case and are calibrated on those cases, with the long-term model of
   step 1 (the *candidate*, which has not seen them either); a log too young to calibrate on
   (:class:`lsi.errors.TooLittleData`) gives a snapshot without the encoder, and says why;
3. the calibration pairs join each user's history, so served lists never offer them again.

The recipe takes its two configuration sections (:class:`TrainConfig`,
:class:`SequenceConfig`), never the worker's settings, and does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from lsi.errors import TooLittleData
from lsi.serving.fusion import SequenceModel
from lsi.serving.snapshot import Snapshot
from models.training.longterm import (
    Log,
    TrainConfig,
    Trained,
    WarmStart,
    add_history,
    train_long_term,
)
from models.training.sequence import SequenceConfig, TrainedSequence, train_sequence

__all__ = ["Recipe", "TrainedSnapshot", "train_snapshot"]

#: ``progress(stage)``: a per-epoch callback for ``"train"`` (long-term) or ``"encoder"``
Progress = Callable[[str], Callable[[int, int, float], None] | None]


@dataclass(frozen=True, slots=True)
class Recipe:
    """The two sections of one training recipe.

    Attributes:
        long_term: the long-term model's hyper-parameters.
        sequence: the encoder's and the gate's, or ``None`` (snapshots carry the long-term
            vectors only; the statistics scorer serves the short-term side).
    """

    long_term: TrainConfig = field(default_factory=TrainConfig)
    sequence: SequenceConfig | None = field(default_factory=SequenceConfig)


@dataclass(slots=True)
class TrainedSnapshot:
    """What one run of the recipe made.

    Attributes:
        long_term: the long-term model, its history including the calibration pairs.
        candidate: the long-term model as it was before (its history without them): what the
            encoder was calibrated with and what the refresh job validates.
        sequence: the trained encoder and gate, or ``None``.
        sequence_skipped: why there is no encoder, when the recipe asked for one.
    """

    long_term: Trained
    candidate: Snapshot
    sequence: TrainedSequence | None = None
    sequence_skipped: str | None = None

    @property
    def scorer(self) -> SequenceModel | None:
        return self.sequence.model if self.sequence is not None else None

    def snapshot(self, version: str) -> Snapshot:
        """The served snapshot: the long-term vectors with the fused scorer, if any."""
        return replace(self.long_term.model(version), sequence=self.scorer)

    def warm_start(self, version: str) -> WarmStart:
        """What the next run continues from."""
        lt = self.long_term
        return WarmStart(lt.user_ids, lt.item_ids, lt.base, version)


def train_snapshot(
    log: Log,
    train_rows: npt.NDArray[np.int64],
    cal_rows: npt.NDArray[np.int64],
    recipe: Recipe,
    *,
    warm: WarmStart | None = None,
    warm_sequence: SequenceModel | None = None,
    warm_version: str = "",
    candidate_version: str = "candidate",
    progress: Progress | None = None,
    extra_gates: tuple[str, ...] = (),
) -> TrainedSnapshot:
    """Run the recipe (see the module docstring) on ``log`` split into ``train_rows`` and
    ``cal_rows``. ``warm`` / ``warm_sequence``: continue from the previous snapshot's
    long-term rows and encoder (``warm_version``, recorded with the encoder). ``extra_gates``: also fit
    these gate kinds on the same encoder (ablations)."""
    bar = progress or (lambda stage: None)
    trained = train_long_term(log.take(train_rows), recipe.long_term, warm, bar("train"))
    out = TrainedSnapshot(trained, trained.model(candidate_version))
    if recipe.sequence is not None:
        try:
            out.sequence = train_sequence(log, cal_rows, out.candidate, recipe.sequence,
                                          warm_sequence, bar("encoder"), warm_version,
                                          extra_gates)  # fmt: skip
        except TooLittleData as exc:  # a young log: the long-term model alone, for now
            out.sequence_skipped = str(exc)
    add_history(trained, log)  # held-out pairs are history too: never re-offered
    return out
