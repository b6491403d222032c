"""Typed settings of the local single-node Kafka broker.

Defaults live here and nowhere else. Every field but ``partitions`` and
``start_timeout_s`` can be overridden from the environment:

==============================  ==========================  =========================
variable                        field                       default
==============================  ==========================  =========================
``LSI_KAFKA_VERSION``           ``kafka_version``           ``4.0.1``
``LSI_KAFKA_HOST``              ``host``                    ``127.0.0.1``
``LSI_KAFKA_PORT``              ``port``                    ``9092``
``LSI_KAFKA_CONTROLLER_PORT``   ``controller_port``         ``9093``
``LSI_KAFKA_DATA_DIR``          ``data_dir``                ``~/.local/share/lsi/kafka``
``LSI_KAFKA_CACHE_DIR``         ``cache_dir``               ``~/.cache/lsi``
``LSI_KAFKA_HEAP``              ``heap``                    ``512m``
==============================  ==========================  =========================
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lsi.errors import ConfigError

__all__ = ["BrokerSettings"]

_HEAP = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "lsi" / "kafka"


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "lsi"


def _env_str(environ: Mapping[str, str], name: str) -> str | None:
    raw = environ.get(name, "").strip()
    return raw or None


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _env_path(environ: Mapping[str, str], name: str) -> Path | None:
    raw = environ.get(name, "").strip()
    return Path(raw).expanduser() if raw else None


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Where the local broker's jars, data and logs live and how it listens.

    Args:
        kafka_version: version of ``org.apache.kafka:kafka_2.13`` to resolve from Maven.
        host: address both listeners bind to and the one advertised to clients.
        port: client (PLAINTEXT) listener port.
        controller_port: KRaft controller listener port.
        data_dir: broker state: ``server.properties``, the KRaft log dirs, logs, pid file.
        cache_dir: jars go to ``cache_dir/kafka-<version>/libs``.
        heap: JVM ``-Xmx``/``-Xms`` value such as ``512m`` or ``1g``.
        partitions: ``num.partitions``, the default for auto-created topics.
        start_timeout_s: how long :meth:`KafkaBroker.up` waits for the broker to answer.

    Raises:
        ConfigError: a port outside 1–65535, a malformed heap size, or non-positive
            partitions or timeout.
    """

    kafka_version: str = "4.0.1"
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    data_dir: Path = field(default_factory=_default_data_dir)
    cache_dir: Path = field(default_factory=_default_cache_dir)
    heap: str = "512m"
    partitions: int = 8
    start_timeout_s: float = 90.0

    def __post_init__(self) -> None:
        for name, value in (("port", self.port), ("controller_port", self.controller_port)):
            if not 1 <= value <= 65535:
                raise ConfigError(f"{name} must be between 1 and 65535, got {value}")
        if self.port == self.controller_port:
            raise ConfigError(f"port and controller_port must differ, both are {self.port}")
        if not _HEAP.match(self.heap):
            raise ConfigError(f"heap must look like 512m or 2g, got {self.heap!r}")
        if self.partitions < 1:
            raise ConfigError(f"partitions must be at least 1, got {self.partitions}")
        if self.start_timeout_s <= 0:
            raise ConfigError(f"start_timeout_s must be positive, got {self.start_timeout_s}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BrokerSettings:
        """Build settings from ``LSI_KAFKA_*`` variables; unset or empty ones keep defaults.

        Args:
            environ: the variables to read; ``os.environ`` when ``None``.

        Raises:
            ConfigError: a variable holds a value of the wrong type (the message names
                the variable and the value).
        """
        env = os.environ if environ is None else environ
        base = cls()
        port = _env_int(env, "LSI_KAFKA_PORT")
        controller_port = _env_int(env, "LSI_KAFKA_CONTROLLER_PORT")
        return cls(
            kafka_version=_env_str(env, "LSI_KAFKA_VERSION") or base.kafka_version,
            host=_env_str(env, "LSI_KAFKA_HOST") or base.host,
            port=base.port if port is None else port,
            controller_port=base.controller_port if controller_port is None else controller_port,
            data_dir=_env_path(env, "LSI_KAFKA_DATA_DIR") or base.data_dir,
            cache_dir=_env_path(env, "LSI_KAFKA_CACHE_DIR") or base.cache_dir,
            heap=_env_str(env, "LSI_KAFKA_HEAP") or base.heap,
            partitions=base.partitions,
            start_timeout_s=base.start_timeout_s,
        )

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients' ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def libs_dir(self) -> Path:
        """Directory of the resolved jars: ``cache_dir/kafka-<version>/libs``."""
        return self.cache_dir / f"kafka-{self.kafka_version}" / "libs"

    @property
    def log_dir(self) -> Path:
        """Directory of ``server.log`` (log4j2) and ``stdout.log`` (the JVM's own output)."""
        return self.data_dir / "logs"

    @property
    def kraft_dir(self) -> Path:
        """``log.dirs``: topic partitions and the KRaft metadata log."""
        return self.data_dir / "kraft-combined-logs"
