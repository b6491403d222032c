"""Worker settings: typed, frozen, one place for defaults, environment overrides.

Every field of :class:`Settings` can be set with an environment variable named ``LSI_`` plus
the field name in capitals (``LSI_BROKERS``, ``LSI_EMIT_POLICY`` …). An ``LSI_`` variable that
names no setting is an error (a typo must not silently fall back to a default); broker
variables (``LSI_KAFKA_*``) belong to :class:`lsi.broker.BrokerSettings`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from lsi.engine import EMIT_POLICIES, EngineConfig
from lsi.errors import ConfigError
from lsi.scoring import SCORING_MODES, ScoringConfig
from lsi.state import StateConfig
from lsi.stats import StatsConfig
from lsi.validation import Limits

__all__ = ["Settings"]

_OTHER_PREFIXES = ("LSI_KAFKA_", "LSI_TEST_")
_OTHER_VARIABLES = frozenset({"LSI_DATASETS_DIR"})  # read by lsi.datasets


@dataclass(frozen=True, slots=True)
class Settings:
    """Settings of a worker (and of the tools that talk to it).

    Attributes:
        app_id: Faust application id: the consumer group and the prefix of internal topics.
        brokers: Kafka bootstrap servers, ``host:port[,host:port]``.
        partitions: partitions of every lsi topic (events, interactions, outputs, tables).
        data_dir: where the worker keeps its RocksDB tables.
        web_host: address the worker advertises to the other workers (they forward
            ``/recommendations`` requests for users it owns to it) and, unless ``web_bind``
            is set, binds. ``auto`` means this host's own address (a container's IP).
        web_bind: address to bind instead (e.g. ``0.0.0.0`` in a container).
        web_port: its port.
        events_topic / interactions_topic / recommendations_topic / dlq_topic /
        item_deltas_topic: topic names.
        session_timeout_s: how long the group waits for a silent worker before its partitions
            move to the others (a killed worker's partitions resume after this).
        batch_max: most events in one micro-batch.
        batch_within_s: longest wait to fill a batch.
        emit_policy: ``event``, ``batch``, ``interval`` or ``request`` (see :mod:`lsi.engine`).
        emit_interval_s: the interval of the ``interval`` policy.
        top_k: length of each emitted list.
        max_event_bytes: largest accepted event.
        max_future_s: tolerated clock skew of event timestamps.
        recent_n: interactions kept per user.
        session_gap_s: inactivity that starts a new session.
        pop_half_life_s: half-life of trending popularity.
        covis_half_life_s: half-life of co-visitation weights.
        trending_weight: share of trending in the short-term score.
        filter_seen: drop the user's recent items from their lists.
        scorer: ``fused``, ``long_only`` or ``short_only`` (:mod:`lsi.scoring`).
        long_weight: weight of the long-term score in ``fused`` mode.
        models_dir: the snapshot store (shared by the refresh job and every worker).
        models_topic: where new live versions are announced (compacted, one partition).
        models_keep: snapshot versions kept on disk.
        promote_margin: a candidate whose validation NDCG@10 is below the live one's by more
            than this fraction is not promoted.
        refresh_device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        refresh_half_life_days: time-decay half-life of the graph's edge weights.
        refresh_valid_cases: users held out (newest interaction) to validate a refresh.
        refresh_metrics_port: where ``lsi refresh --every`` serves ``/metrics``.
        refresh_sequence: train the short-term encoder and the gate with the long-term model
            (off: snapshots carry the long-term vectors only, and the statistics scorer
            serves the short-term side).
        sequence_encoder: ``attention`` or ``gru``.
        sequence_max_len: the encoder's window (at most ``recent_n``).
        sequence_windows: train on each user's ``last`` window or on ``all`` of their
            history in consecutive windows.
        sequence_precision: ``fp32``, or ``bf16`` (the encoder's training steps under
            bfloat16 autocast; faster on CPUs with AMX and on recent GPUs).
        sequence_epochs: most epochs of a cold encoder training (early stopping).
        sequence_budget_s: most seconds of encoder training per refresh (the best weights
            so far are kept).
        sequence_negatives: 0 = full-softmax loss; N = sampled softmax against N items.
        sequence_lr_schedule: the encoder's learning rate, ``constant`` or ``cosine``
            (falling to 0 over ``sequence_epochs``, or the warm epochs when continuing).
        sequence_ema_decay: 0 = off; :math:`\\beta \\in (0, 1)`: the snapshot carries a
            moving average of the encoder's weights (decay :math:`\\beta` per step), which
            early stopping also evaluates.
        sequence_balanced_init: a cold start draws the position, event-type and time-gap
            embeddings at the item rows' scale (std ``dim**-0.5``) instead of N(0, 1) (on by
            default: the encoder learns in 5–10 epochs what took 25–60 without it, on
            ML-1M and Beauty; ``lsi bench accuracy`` keeps it opt-in, ``--balanced-init``, so
            that the committed reports made before it still reproduce).
        sequence_dim, sequence_layers, sequence_heads: the encoder's width, blocks and
            attention heads (``dim`` a multiple of ``heads``; item rows start from the
            long-term item vectors when ``dim`` equals the long-term model's).
    """

    app_id: str = "lsi"
    brokers: str = "127.0.0.1:9092"
    partitions: int = 8
    data_dir: Path = Path("var/worker")
    web_host: str = "127.0.0.1"
    web_bind: str = ""
    web_port: int = 6066
    events_topic: str = "lsi.events"
    interactions_topic: str = "lsi.interactions"
    recommendations_topic: str = "lsi.recommendations"
    dlq_topic: str = "lsi.events.dlq"
    item_deltas_topic: str = "lsi.item-deltas"
    session_timeout_s: float = 30.0
    batch_max: int = 500
    batch_within_s: float = 0.05
    emit_policy: str = "batch"
    emit_interval_s: float = 5.0
    top_k: int = 20
    max_event_bytes: int = 16 * 1024
    max_future_s: float = 300.0
    recent_n: int = 200
    session_gap_s: float = 1800.0
    pop_half_life_s: float = 3 * 86400.0
    covis_half_life_s: float = 30 * 86400.0
    trending_weight: float = 0.1
    filter_seen: bool = True
    scorer: str = "fused"
    long_weight: float = 0.5
    models_dir: Path = Path("var/models")
    models_topic: str = "lsi.models"
    models_keep: int = 5
    promote_margin: float = 0.05
    refresh_device: str = "auto"
    refresh_half_life_days: float = 365.0
    refresh_valid_cases: int = 5000
    refresh_metrics_port: int = 9108
    refresh_sequence: bool = True
    sequence_encoder: str = "attention"
    sequence_max_len: int = 200
    sequence_windows: str = "last"
    sequence_precision: str = "fp32"
    sequence_epochs: int = 200
    sequence_budget_s: float = 900.0
    sequence_negatives: int = 0
    sequence_lr_schedule: str = "constant"
    sequence_ema_decay: float = 0.0
    sequence_balanced_init: bool = True
    sequence_dim: int = 64
    sequence_layers: int = 2
    sequence_heads: int = 2

    def __post_init__(self) -> None:
        if self.emit_policy not in EMIT_POLICIES:
            raise ConfigError(
                f"emit_policy must be one of {', '.join(EMIT_POLICIES)}, got {self.emit_policy!r}"
            )
        for name in ("partitions", "batch_max", "top_k", "max_event_bytes", "recent_n"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.scorer not in SCORING_MODES:
            raise ConfigError(f"scorer must be one of {', '.join(SCORING_MODES)}, "
                              f"got {self.scorer!r}")  # fmt: skip
        if not 0.0 <= self.long_weight <= 1.0:
            raise ConfigError(f"long_weight must be in [0, 1], got {self.long_weight}")
        if self.refresh_device not in ("auto", "cpu", "cuda"):
            raise ConfigError(
                f"refresh_device must be auto, cpu or cuda, got {self.refresh_device!r}"
            )
        if self.refresh_half_life_days <= 0 or self.refresh_valid_cases < 1:
            raise ConfigError("refresh_half_life_days must be > 0 and refresh_valid_cases >= 1")
        if self.sequence_encoder not in ("attention", "gru"):
            raise ConfigError(f"sequence_encoder must be attention or gru, got "
                              f"{self.sequence_encoder!r}")  # fmt: skip
        if self.sequence_windows not in ("last", "all"):
            raise ConfigError(f"sequence_windows must be last or all, got "
                              f"{self.sequence_windows!r}")  # fmt: skip
        if self.sequence_precision not in ("fp32", "bf16"):
            raise ConfigError(f"sequence_precision must be fp32 or bf16, got "
                              f"{self.sequence_precision!r}")  # fmt: skip
        if min(self.sequence_dim, self.sequence_layers, self.sequence_heads) < 1 or (
            self.sequence_dim % self.sequence_heads
        ):
            raise ConfigError(f"sequence_dim, sequence_layers and sequence_heads must be at least "
                              f"1, and sequence_dim a multiple of sequence_heads; got "
                              f"{self.sequence_dim}, {self.sequence_layers}, "
                              f"{self.sequence_heads}")  # fmt: skip
        if self.sequence_lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"sequence_lr_schedule must be constant or cosine, got "
                              f"{self.sequence_lr_schedule!r}")  # fmt: skip
        if not 0.0 <= self.sequence_ema_decay < 1.0:
            raise ConfigError(f"sequence_ema_decay must be in [0, 1) (0: off), got "
                              f"{self.sequence_ema_decay!r}")  # fmt: skip
        if self.sequence_negatives < 0:
            raise ConfigError("sequence_negatives must be >= 0 (0: full softmax)")
        if not 1 <= self.sequence_max_len <= self.recent_n or self.sequence_epochs < 1:
            raise ConfigError(f"sequence_max_len must be in [1, recent_n={self.recent_n}] and "
                              "sequence_epochs >= 1")  # fmt: skip
        if self.models_keep < 1 or self.promote_margin < 0:
            raise ConfigError("models_keep must be at least 1 and promote_margin >= 0")
        if not self.brokers.strip():
            raise ConfigError("brokers must name at least one host:port")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``LSI_*`` variables, then keyword overrides."""
        env = os.environ if environ is None else environ
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for var, raw in env.items():
            if (
                not var.startswith("LSI_")
                or var.startswith(_OTHER_PREFIXES)
                or var in _OTHER_VARIABLES
            ):
                continue
            name = var[4:].lower()
            if name not in known:
                hint = difflib.get_close_matches(name, known, n=1)
                also = f"; did you mean LSI_{hint[0].upper()}?" if hint else ""
                raise ConfigError(f"unknown setting {var}{also}")
            values[name] = _coerce(var, raw, type(getattr(cls(), name)))
        for name in overrides:
            if name not in known:
                raise ConfigError(f"unknown setting {name!r}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def broker_url(self) -> str:
        """Faust broker URL(s): ``kafka://host:port;kafka://…``."""
        return ";".join(f"kafka://{b.strip()}" for b in self.brokers.split(",") if b.strip())

    @property
    def advertised_host(self) -> str:
        """``web_host``, with ``auto`` resolved to this host's address."""
        if self.web_host != "auto":
            return self.web_host
        import socket

        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"

    @property
    def web_url(self) -> str:
        host = self.advertised_host
        if host == "0.0.0.0":  # a bind-all address is reached on loopback
            host = "127.0.0.1"
        return f"http://{host}:{self.web_port}"

    def limits(self) -> Limits:
        return Limits(max_bytes=self.max_event_bytes, max_future_s=self.max_future_s)

    def engine(self, model_version: str | None = None) -> EngineConfig:
        base = EngineConfig()
        return EngineConfig(
            state=StateConfig(
                recent_n=self.recent_n,
                session_gap_s=self.session_gap_s,
                last_recs_n=max(self.top_k, 20),
            ),
            stats=StatsConfig(
                pop_half_life_s=self.pop_half_life_s, covis_half_life_s=self.covis_half_life_s
            ),
            scoring=ScoringConfig(
                top_k=self.top_k,
                trending_weight=self.trending_weight,
                filter_seen=self.filter_seen,
                mode=self.scorer,
                long_weight=self.long_weight,
            ),
            emit_policy=self.emit_policy,
            emit_interval_s=self.emit_interval_s,
            model_version=model_version or base.model_version,
        )


def _coerce(var: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if issubclass(kind, Path):
            return Path(raw)
        return raw
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a valid {kind.__name__}") from None
