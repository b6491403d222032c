"""Worker settings: typed, frozen, one place for defaults, environment overrides.

Every field of :class:`Settings` can be set with an environment variable named ``LSI_`` plus
the field name in capitals (``LSI_BROKERS``, ``LSI_EMIT_POLICY`` …). An ``LSI_`` variable that
names no setting is an error (a typo must not silently fall back to a default). The
``LSI_KAFKA_*`` variables are shared: those that name a field here (the client's security
settings, ``LSI_KAFKA_SECURITY_PROTOCOL``, ``LSI_KAFKA_SASL_*``, ``LSI_KAFKA_SSL_*``) are read
here, the others belong to the local broker's :class:`lsi.kafka.broker.BrokerSettings`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lsi.core.engine import EMIT_POLICIES, EngineConfig
from lsi.core.scoring import SCORING_MODES, ScoringConfig
from lsi.core.state import StateConfig
from lsi.core.stats import StatsConfig
from lsi.errors import ConfigError
from lsi.wire.validation import Limits

__all__ = ["Settings"]

_OTHER_PREFIXES = ("LSI_KAFKA_", "LSI_TEST_")  # the broker's and the tests' own (but see below)
#: read elsewhere: by lsi.evaluation.datasets, and by ``lsi report`` / ``lsi monitoring`` (lsi.cli.monitoring)
_OTHER_VARIABLES = frozenset({"LSI_DATASETS_DIR", "LSI_PROMETHEUS_URL"})

#: what ``kafka_security_protocol`` and ``kafka_sasl_mechanism`` accept
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True)
class Settings:
    """Settings of a worker (and of the tools that talk to it).

    Attributes:
        app_id: Faust application id: the consumer group and the prefix of internal topics.
        brokers: Kafka bootstrap servers, ``host:port[,host:port]``.
        kafka_security_protocol: how every Kafka client of lsi connects: ``PLAINTEXT``,
            ``SSL`` (TLS), ``SASL_PLAINTEXT`` or ``SASL_SSL`` (SASL over TLS; see
            :mod:`lsi.kafka.security`).
        kafka_sasl_mechanism: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512`` (SASL only).
        kafka_sasl_username: the SASL principal's name.
        kafka_sasl_password: its password; set it in the environment only
            (``LSI_KAFKA_SASL_PASSWORD``): no command-line flag takes it, and it is left out of
            the settings' ``repr`` and of every message lsi prints.
        kafka_ssl_cafile: PEM file of the CA(s) that signed the brokers' certificates (empty:
            the system's trusted CAs).
        kafka_ssl_certfile / kafka_ssl_keyfile: the client's own certificate chain and
            private key (PEM), for brokers that require TLS client authentication; the key
            may also be in the certificate file.
        kafka_ssl_check_hostname: verify that a broker's certificate names the host
            connected to (on by default; turn off only for a test CA).
        replication_factor: replicas of every topic lsi creates (its own topics, the tables'
            changelogs, Faust's internal topics); 3 on a production cluster.
        min_insync_replicas: ``min.insync.replicas`` of those topics: with ``acks=all``, a
            write succeeds only once this many replicas have it (2 with a replication
            factor of 3: one broker can fail without losing or refusing writes).
        partitions: partitions of every lsi topic (events, their re-key hop, the log,
            outputs, tables).
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
        batch_within_s: longest wait to fill a batch (a wait every event of a quiet stream
            pays; under load batches fill before it ends).
        emit_policy: ``event``, ``batch``, ``interval`` or ``request`` (see :mod:`lsi.core.engine`).
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
        scorer: ``fused``, ``long_only`` or ``short_only`` (:mod:`lsi.core.scoring`).
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
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    kafka_ssl_check_hostname: bool = True
    replication_factor: int = 1
    min_insync_replicas: int = 1
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
    batch_within_s: float = 0.03
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
        self._check_security()
        if not 1 <= self.min_insync_replicas <= self.replication_factor:
            raise ConfigError(
                f"min_insync_replicas (LSI_MIN_INSYNC_REPLICAS) must be between 1 and "
                f"replication_factor={self.replication_factor}, got {self.min_insync_replicas}"
            )

    def _check_security(self) -> None:
        """Reject Kafka security settings that cannot connect or would be silently ignored.

        The messages name the variables to set and never quote the password.
        """
        protocol = self.kafka_security_protocol
        if protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"kafka_security_protocol (LSI_KAFKA_SECURITY_PROTOCOL) must be one of "
                f"{', '.join(SECURITY_PROTOCOLS)}, got {protocol!r}"
            )
        if self.kafka_sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"kafka_sasl_mechanism (LSI_KAFKA_SASL_MECHANISM) must be one of "
                f"{', '.join(SASL_MECHANISMS)}, got {self.kafka_sasl_mechanism!r}"
            )
        user = {"LSI_KAFKA_SASL_USERNAME": self.kafka_sasl_username,
                "LSI_KAFKA_SASL_PASSWORD": self.kafka_sasl_password}  # fmt: skip
        if protocol.startswith("SASL_"):
            missing = [var for var, value in user.items() if not value]
            if missing:
                raise ConfigError(
                    f"kafka_security_protocol={protocol} authenticates with a SASL user: set "
                    f"{' and '.join(missing)}"
                )
        elif any(user.values()):
            raise ConfigError(
                f"LSI_KAFKA_SASL_USERNAME or LSI_KAFKA_SASL_PASSWORD is set, but "
                f"kafka_security_protocol={protocol} does not authenticate: set "
                "LSI_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT)"
            )
        tls = {"LSI_KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
               "LSI_KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
               "LSI_KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile}  # fmt: skip
        given = [var for var, value in tls.items() if value]
        if given and protocol not in ("SSL", "SASL_SSL"):
            raise ConfigError(
                f"{' and '.join(given)} set, but kafka_security_protocol={protocol} does not "
                "use TLS: set LSI_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL"
            )
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ConfigError(
                "LSI_KAFKA_SSL_KEYFILE is set without LSI_KAFKA_SSL_CERTFILE: set the client "
                "certificate the key belongs to"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``LSI_*`` variables, then keyword overrides."""
        env = os.environ if environ is None else environ
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for var, raw in env.items():
            name = var[4:].lower()
            if (
                not var.startswith("LSI_")
                or (var.startswith(_OTHER_PREFIXES) and name not in known)
                or var in _OTHER_VARIABLES
            ):
                continue
            if name not in known:
                hint = difflib.get_close_matches(name, known, n=1)
                also = f"; did you mean LSI_{hint[0].upper()}?" if hint else ""
                raise ConfigError(f"unknown setting {var}{also}")
            values[name] = _coerce(var, raw, type(getattr(cls(), name)))
        for name in overrides:
            if name not in known:
                raise ConfigError(f"unknown setting {name!r}")
        for name, value in overrides.items():
            if value is None:
                continue
            kind = type(getattr(cls(), name))
            # command-line values arrive as strings; give them the type environment values get
            if isinstance(value, str) and kind is not str:
                value = _coerce(name, value, kind)
            values[name] = value
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def isolated(self, prefix: str) -> Settings:
        """These settings with an app id (consumer group, changelogs) and topics of their own,
        ``lsi-<prefix>`` and ``<prefix>.events`` …: for tests and benches sharing a broker."""
        return replace(
            self,
            app_id=f"lsi-{prefix}",
            events_topic=f"{prefix}.events",
            interactions_topic=f"{prefix}.interactions",
            recommendations_topic=f"{prefix}.recommendations",
            dlq_topic=f"{prefix}.events.dlq",
            item_deltas_topic=f"{prefix}.item-deltas",
            models_topic=f"{prefix}.models",
        )

    @property
    def rekey_topic(self) -> str:
        """``<events_topic>.rekeyed``: the internal hop of the events that arrived on a
        partition other than their user's (murmur2 of ``user_id``), and only of those."""
        return f"{self.events_topic}.rekeyed"

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
