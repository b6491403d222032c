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
from lsi.core.rules import OWN_ITEMS, Rules
from lsi.core.scoring import SCORING_MODES, ScoringConfig
from lsi.core.state import StateConfig
from lsi.core.stats import StatsConfig
from lsi.errors import ConfigError
from lsi.wire.validation import Limits

__all__ = ["SECTIONS", "Settings", "render_markdown", "setting", "write_markdown"]

_OTHER_PREFIXES = ("LSI_KAFKA_", "LSI_TEST_")  # the broker's and the tests' own (but see below)
#: read elsewhere: by lsi.evaluation.datasets, and by ``lsi report`` / ``lsi monitoring`` (lsi.cli.monitoring)
_OTHER_VARIABLES = frozenset({"LSI_DATASETS_DIR", "LSI_PROMETHEUS_URL"})

#: what ``kafka_security_protocol`` and ``kafka_sasl_mechanism`` accept
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


#: the sections of :class:`Settings`, in the order ``docs/configuration.md`` shows them
SECTIONS: dict[str, str] = {
    "kafka": "Kafka connection",
    "topics": "Topics",
    "worker": "Worker",
    "engine": "Scoring and emission",
    "rules": "Business rules",
    "refresh": "Model store and refresh",
    "long_term": "Long-term model",
    "sequence": "Sequence encoder and gate",
}


def setting(default: Any, help: str, *, section: str, shown: str | None = None,
            choices: tuple[str, ...] | None = None, secret: bool = False) -> Any:  # fmt: skip
    """One :class:`Settings` field: its ``default``, its ``help`` (Markdown, as
    ``docs/configuration.md`` shows it), its ``section`` (:data:`SECTIONS`), how the page
    shows a default that is not a plain value (``shown``, e.g. ``(system CAs)``), the values
    it accepts when they are few (``choices``; :meth:`Settings.__post_init__` checks them, a
    flag offers them) and whether it is ``secret`` (left out of ``repr``, never a flag)."""
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}")
    return field(default=default, repr=not secret,
                 metadata={"help": help, "section": section, "shown": shown, "choices": choices,
                           "secret": secret})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Settings:
    """Settings of a worker (and of the tools that talk to it): every ``LSI_*`` variable lsi
    reads, declared once.

    Each field is one variable, ``LSI_`` + its name in capitals, with its default, its
    section (:data:`SECTIONS`) and its help text (field metadata, :func:`setting`). From these
    declarations come the environment parsing (:meth:`from_env`), the command-line flags that
    override a setting (:func:`lsi.cli.common.add_setting_flags`, with the environment's type
    coercion) and the tables of ``docs/configuration.md`` (:func:`render_markdown`; a test
    checks the page is what it renders).
    """

    # -- kafka -----------------------------------------------------------------------------------
    brokers: str = setting(
        "127.0.0.1:9092", "Kafka bootstrap servers, `host:port[,host:port]`.", section="kafka"
    )
    kafka_security_protocol: str = setting(
        "PLAINTEXT",
        "How every lsi client connects to Kafka: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL` ([docs/operations.md](operations.md#security)).",
        section="kafka",
        choices=SECURITY_PROTOCOLS,
    )
    kafka_sasl_mechanism: str = setting(
        "PLAIN",
        "`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (SASL protocols only).",
        section="kafka",
        choices=SASL_MECHANISMS,
    )
    kafka_sasl_username: str = setting(
        "", "The SASL user; required by the SASL protocols.", section="kafka", shown="(empty)"
    )
    kafka_sasl_password: str = setting(
        "",
        "The SASL user's password: from the environment only (no flag), never printed.",
        section="kafka",
        shown="(empty)",
        secret=True,
    )
    kafka_ssl_cafile: str = setting(
        "",
        "PEM file of the CA(s) that signed the brokers' certificates (`SSL`, `SASL_SSL`).",
        section="kafka",
        shown="(system CAs)",
    )
    kafka_ssl_certfile: str = setting(
        "",
        "The client's certificate chain (PEM), for brokers that require client certificates.",
        section="kafka",
        shown="(empty)",
    )
    kafka_ssl_keyfile: str = setting(
        "",
        "The client's private key (PEM), unless the certificate file holds it.",
        section="kafka",
        shown="(empty)",
    )
    kafka_ssl_check_hostname: bool = setting(
        True, "Check that a broker's certificate names the host connected to.", section="kafka"
    )
    replication_factor: int = setting(
        1,
        "Replicas of every topic lsi and Faust create (3 on a production cluster).",
        section="kafka",
    )
    min_insync_replicas: int = setting(
        1,
        "`min.insync.replicas` of the topics lsi creates, at most `LSI_REPLICATION_FACTOR` (2 with 3 replicas).",
        section="kafka",
    )
    partitions: int = setting(
        8,
        "Partitions of every lsi topic and table. This bounds the number of busy workers.",
        section="kafka",
    )
    # -- topics ----------------------------------------------------------------------------------
    events_topic: str = setting(
        "lsi.events",
        "Input events. Its name + `.rekeyed` (`lsi.events.rekeyed`) is the internal topic of the events that arrive off their user's murmur2 partition; it is not configured separately.",
        section="topics",
    )
    interactions_topic: str = setting(
        "lsi.interactions",
        "The interaction log: every event the workers learned, once (again after a crash), canonical JSON, key `user_id`, header `lsi-src`; kept forever. The refresh job trains on it and its drift monitor follows it; no worker reads it.",
        section="topics",
    )
    recommendations_topic: str = setting("lsi.recommendations", "Output lists.", section="topics")
    dlq_topic: str = setting("lsi.events.dlq", "Dead letters.", section="topics")
    item_deltas_topic: str = setting(
        "lsi.item-deltas", "Internal: item-keyed statistics increments.", section="topics"
    )
    items_topic: str = setting(
        "lsi.items",
        "The item catalogue (compacted, key `item_id`, on the key's murmur2 partition): titles, categories and availability; an item marked unavailable or past its `expires_at` is in no list ([docs/catalogue.md](catalogue.md)).",
        section="topics",
    )
    models_topic: str = setting(
        "lsi.models",
        "Where promoted versions are announced (one compacted partition).",
        section="topics",
    )
    # -- worker ----------------------------------------------------------------------------------
    app_id: str = setting(
        "lsi",
        "Faust app id: the consumer group and the prefix of internal topics (`<app_id>-<table>-changelog`).",
        section="worker",
    )
    data_dir: Path = setting(
        Path("var/worker"),
        "The worker's RocksDB tables (relative to the working directory).",
        section="worker",
    )
    web_host: str = setting(
        "127.0.0.1",
        "Address the worker advertises to the other workers, which forward `/recommendations` requests for its users to it; also the bind address unless `LSI_WEB_BIND` is set. `auto` = this host's own IP (what compose uses).",
        section="worker",
    )
    web_bind: str = setting(
        "",
        "Address to bind instead of `LSI_WEB_HOST`, e.g. `0.0.0.0` in a container.",
        section="worker",
        shown="(empty)",
    )
    web_port: int = setting(
        6066,
        "The worker's HTTP port: `/recommendations/{user}/`, `/metrics`, `/healthz`.",
        section="worker",
    )
    session_timeout_s: float = setting(
        30.0,
        "How long the group waits for a silent worker before moving its partitions.",
        section="worker",
    )
    batch_max: int = setting(
        500, "Most records per micro-batch (the item-stats agent uses the same).", section="worker"
    )
    batch_within_s: float = setting(
        0.03,
        "Longest wait to fill a batch: at a low rate every event waits up to this long before it is learned and scored; under load batches fill (`LSI_BATCH_MAX`) before it ends. Shorter windows cut latency and cost throughput: Faust hands a take about 50 events per 10 ms, so a drain of 100k ML-1M events ran at 1.8k / 2.8k / 3.0k / 3.1k events/s with 10 / 20 / 30 / 50 ms. Item statistics fold every 200 ms at most, so they lag the stream by up to that.",
        section="worker",
    )
    # -- engine ----------------------------------------------------------------------------------
    emit_policy: str = setting(
        "batch",
        "`event`, `batch`, `interval` or `request` (see [docs/architecture.md](architecture.md#emission-policies)).",
        section="engine",
        choices=EMIT_POLICIES,
    )
    emit_interval_s: float = setting(
        5.0, "The interval of the `interval` policy.", section="engine"
    )
    top_k: int = setting(20, "Length of each list.", section="engine")
    max_event_bytes: int = setting(16 * 1024, "Largest accepted event.", section="engine")
    max_future_s: float = setting(
        300.0, "How far `ts` may be ahead of the worker clock.", section="engine"
    )
    recent_n: int = setting(
        200, "Interactions kept per user (the sequence encoder's input).", section="engine"
    )
    session_gap_s: float = setting(
        1800.0, "Inactivity (in event time) that starts a new session.", section="engine"
    )
    pop_half_life_s: float = setting(
        3 * 86400.0,
        "Half-life of trending popularity, in event time.",
        section="engine",
        shown="`259200` (3 days)",
    )
    covis_half_life_s: float = setting(
        30 * 86400.0,
        "Half-life of co-visitation weights, in event time.",
        section="engine",
        shown="`2592000` (30 days)",
    )
    trending_weight: float = setting(
        0.1, "Share β of trending in the short-term score.", section="engine"
    )
    filter_seen: bool = setting(
        True, "Drop the user's recent items from their lists.", section="engine"
    )
    scorer: str = setting(
        "fused",
        "`fused` (the learned gate), `long_only` or `short_only` (see [docs/fused.md](fused.md#serving)).",
        section="engine",
        choices=SCORING_MODES,
    )
    long_weight: float = setting(
        0.5,
        "Statistics scorer only (snapshots without an encoder): the fixed weight of the long-term score in `fused` mode.",
        section="engine",
    )
    # -- rules -----------------------------------------------------------------------------------
    rule_own_items: str = setting(
        "seen",
        "Which of a user's own items no list offers again: `seen` (every item they interacted with), `purchased` (only those they bought) or `recent` (those of the last `LSI_RULE_RECENT_DAYS` days); see [docs/shop.md](shop.md#business-rules).",
        section="rules",
        choices=OWN_ITEMS,
    )
    rule_recent_days: float = setting(
        30.0,
        "The `recent` rule's horizon, in days before the user's newest event.",
        section="rules",
    )
    rule_category_cap: int = setting(
        0,
        "At most this many items of one catalogue category per list (0: no cap).",
        section="rules",
    )
    rule_new_slots: int = setting(
        0,
        "Places of each list given to new catalogue items (exploration; 0: off).",
        section="rules",
    )
    rule_new_days: float = setting(
        7.0,
        "How long after its `created_at` a catalogue item counts as new.",
        section="rules",
    )
    # -- refresh ---------------------------------------------------------------------------------
    models_dir: Path = setting(
        Path("var/models"),
        "The snapshot store, shared by the refresh job and every worker (a shared volume in compose).",
        section="refresh",
    )
    models_keep: int = setting(
        5, "Versions kept on disk (plus the live one and the rollback target).", section="refresh"
    )
    promote_margin: float = setting(
        0.05,
        "A candidate whose validation NDCG@10 is more than this fraction below the live one's is not promoted.",
        section="refresh",
    )
    refresh_device: str = setting(
        "auto",
        "`auto` (CUDA when torch sees a GPU), `cpu` or `cuda`.",
        section="refresh",
        choices=("auto", "cpu", "cuda"),
    )
    refresh_valid_cases: int = setting(
        5000,
        "Users whose newest interaction is held out to validate a refresh and calibrate the gate.",
        section="refresh",
    )
    refresh_metrics_port: int = setting(
        9108,
        "Where `lsi refresh --every …` serves `/metrics` (bound to `LSI_WEB_BIND`, else 127.0.0.1).",
        section="refresh",
    )
    refresh_sequence: bool = setting(
        True, "Train the sequence encoder and the gate into each snapshot.", section="refresh"
    )
    # -- long_term -------------------------------------------------------------------------------
    refresh_half_life_days: float = setting(
        365.0, "Time-decay half-life of the graph's edge weights.", section="long_term"
    )
    # -- sequence --------------------------------------------------------------------------------
    sequence_encoder: str = setting(
        "attention",
        "`attention` (causal self-attention) or `gru`.",
        section="sequence",
        choices=("attention", "gru"),
    )
    sequence_max_len: int = setting(
        200, "The encoder's window (at most `LSI_RECENT_N`).", section="sequence"
    )
    sequence_windows: str = setting(
        "last",
        "Train the encoder on each user's `last` window, or on `all` of their history cut into consecutive windows (every event a target once; epochs take longer).",
        section="sequence",
        choices=("last", "all"),
    )
    sequence_precision: str = setting(
        "fp32",
        "`bf16`: the encoder's training steps run under bfloat16 autocast (matrix products in bfloat16; weights, optimizer state, softmax and loss in float32). Faster on CPUs with AMX / AVX512-BF16 and on recent GPUs, slower where bfloat16 is emulated. Serving stays float32.",
        section="sequence",
        choices=("fp32", "bf16"),
    )
    sequence_epochs: int = setting(
        200,
        "Most epochs of a cold encoder training (early stopping on held-out cases).",
        section="sequence",
    )
    sequence_budget_s: float = setting(
        900.0,
        "Most seconds of encoder training per refresh (`lsi demo` uses 60).",
        section="sequence",
    )
    sequence_negatives: int = setting(
        0,
        "0: full-softmax loss; N: sampled softmax against N uniformly drawn items (for large catalogues on CPU).",
        section="sequence",
    )
    sequence_lr_schedule: str = setting(
        "constant",
        "The encoder's learning rate: `constant`, or `cosine`, falling per step to 0 along half a cosine over `LSI_SEQUENCE_EPOCHS` (a warm refresh: over its warm epochs). A time budget that ends training first cuts the schedule short.",
        section="sequence",
        choices=("constant", "cosine"),
    )
    sequence_ema_decay: float = setting(
        0.0,
        "0: off. β in (0, 1): the snapshot carries a moving average of the encoder's weights, updated after every step with decay β (its horizon about 1/(1−β) steps), and early stopping evaluates that average rather than the last step's weights.",
        section="sequence",
    )
    sequence_balanced_init: bool = setting(
        True,
        "A cold start draws the encoder's position, event-type and time-gap embeddings at the item rows' scale (std `dim**-0.5`) instead of PyTorch's N(0, 1), whose rows are √dim times longer than an item's and drown it at the input. On Beauty's validation items the encoder alone went from 0.0418 to 0.0510 NDCG@10, its best epoch from 60 to 10; on ML-1M its calibration NDCG@10 reached at epoch 5 what took 25 epochs without (docs/benchmarks.md). `false`: PyTorch's init, as before. Training only: serving reads the trained weights either way. `lsi bench accuracy` trains with it too (`--no-balanced-init` repeats a report made without it).",
        section="sequence",
    )
    sequence_dim: int = setting(
        64,
        "The encoder's width. Equal to the long-term model's (64), its item rows start from the long-term item vectors; otherwise at random, and the gate projects the long-term vector.",
        section="sequence",
    )
    sequence_layers: int = setting(2, "Self-attention blocks.", section="sequence")
    sequence_heads: int = setting(
        2, "Attention heads per block (`LSI_SEQUENCE_DIM` must be a multiple).", section="sequence"
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            choices, value = f.metadata["choices"], getattr(self, f.name)
            if choices is not None and value not in choices:
                raise ConfigError(f"{f.name} (LSI_{f.name.upper()}) must be one of "
                                  f"{', '.join(choices)}, got {value!r}")  # fmt: skip
        for name in ("partitions", "batch_max", "top_k", "max_event_bytes", "recent_n"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.long_weight <= 1.0:
            raise ConfigError(f"long_weight must be in [0, 1], got {self.long_weight}")
        if self.refresh_half_life_days <= 0 or self.refresh_valid_cases < 1:
            raise ConfigError("refresh_half_life_days must be > 0 and refresh_valid_cases >= 1")
        if min(self.sequence_dim, self.sequence_layers, self.sequence_heads) < 1 or (
            self.sequence_dim % self.sequence_heads
        ):
            raise ConfigError(f"sequence_dim, sequence_layers and sequence_heads must be at least "
                              f"1, and sequence_dim a multiple of sequence_heads; got "
                              f"{self.sequence_dim}, {self.sequence_layers}, "
                              f"{self.sequence_heads}")  # fmt: skip
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
        if not self.rule_recent_days > 0 or self.rule_category_cap < 0:
            raise ConfigError("rule_recent_days (LSI_RULE_RECENT_DAYS) must be > 0 and "
                              "rule_category_cap (LSI_RULE_CATEGORY_CAP) >= 0 (0: no cap)")  # fmt: skip
        if self.rule_new_slots < 0 or not self.rule_new_days > 0:
            raise ConfigError("rule_new_slots (LSI_RULE_NEW_SLOTS) must be >= 0 (0: off) and "
                              "rule_new_days (LSI_RULE_NEW_DAYS) > 0")  # fmt: skip
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
            items_topic=f"{prefix}.items",
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
            rules=Rules(
                own_items=self.rule_own_items,
                recent_days=self.rule_recent_days,
                category_cap=self.rule_category_cap,
                new_slots=self.rule_new_slots,
                new_days=self.rule_new_days,
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


#: the markers around the generated part of ``docs/configuration.md``
DOC_BEGIN = "<!-- generated from lsi/config.py by `lsi settings --write docs/configuration.md`; edit the settings there -->"
DOC_END = "<!-- end of generated settings -->"


def shown_default(value: Any) -> str:
    """A default as the page writes it: booleans as ``true``/``false``, whole floats bare."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def render_markdown() -> str:
    """The settings' tables, one per section, as ``docs/configuration.md`` shows them."""
    out: list[str] = []
    for key, title in SECTIONS.items():
        rows = [f for f in fields(Settings) if f.metadata["section"] == key]
        out += [f"### {title}", "", "| variable | default | meaning |", "|---|---|---|"]
        for f in rows:
            meta = f.metadata
            default = meta["shown"] or f"`{shown_default(f.default)}`"
            out.append(f"| `LSI_{f.name.upper()}` | {default} | {meta['help']} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def write_markdown(path: Path) -> bool:
    """Replace the generated part of the page at ``path``; ``True`` if it changed."""
    text = path.read_text()
    head, sep, rest = text.partition(DOC_BEGIN)
    _, sep2, tail = rest.partition(DOC_END)
    if not sep or not sep2:
        raise ConfigError(f"{path} has no {DOC_BEGIN!r} … {DOC_END!r} block")
    new = f"{head}{DOC_BEGIN}\n\n{render_markdown()}\n{DOC_END}{tail}"
    if new != text:
        path.write_text(new)
    return new != text
