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
``LSI_KAFKA_SASL_SSL_PORT``     ``sasl_ssl_port``           ``0`` (no such listener)
``LSI_KAFKA_TLS_KEYSTORE``      ``tls_keystore``            none
``LSI_KAFKA_TLS_KEY_PASSWORD``  ``tls_key_password``        none
``LSI_KAFKA_TLS_CLIENT_CA``     ``tls_client_ca``           none
``LSI_KAFKA_SASL_USERS``        ``sasl_users``              none
==============================  ==========================  =========================

The last five add a ``SASL_SSL`` listener next to the ``PLAINTEXT`` one, for trying lsi's
client security (:mod:`lsi.kafka.security`) on this machine: ``LSI_KAFKA_SASL_USERS`` is
``name:password[,name:password]``. The other ``LSI_KAFKA_*`` variables
(``LSI_KAFKA_SECURITY_PROTOCOL``, ``LSI_KAFKA_SASL_USERNAME`` …) configure lsi's clients and
belong to :class:`lsi.config.Settings`; they are not read here.
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
_USER_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
# the characters StorageTool's --add-scram and a JAAS config can carry unquoted
_USER_PASSWORD = re.compile(r"^[A-Za-z0-9._~!@#$%^&*+:/?-]+$")


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


def _env_users(environ: Mapping[str, str], name: str) -> tuple[tuple[str, str], ...]:
    raw = environ.get(name, "").strip()
    users = []
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        user, sep, password = entry.partition(":")
        if not sep:
            raise ConfigError(f"{name} must be name:password[,name:password], got an entry "
                              f"without a colon ({user!r})")  # fmt: skip
        users.append((user, password))
    return tuple(users)


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
        sasl_ssl_port: 0, or the port of a ``SASL_SSL`` listener (TLS, then SASL ``PLAIN``,
            ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``) added to the ``PLAINTEXT`` one.
        tls_keystore: that listener's certificate: a PEM file holding the private key
            (PKCS#8) and the certificate chain (Kafka's ``ssl.keystore.type=PEM``).
        tls_key_password: the key's password when it is encrypted.
        tls_client_ca: a PEM file of CA certificates: with it, the listener also requires
            a client certificate signed by one of them (``ssl.client.auth=required``).
        sasl_users: ``(name, password)`` of the SASL users. They are given to ``PLAIN``
            directly and to SCRAM when the storage is formatted (KRaft keeps SCRAM
            credentials in its metadata log): users added later need a new ``data_dir``.

    Raises:
        ConfigError: a port outside 1–65535 or two equal ports, a malformed heap size,
            non-positive partitions or timeout, a ``SASL_SSL`` port without a keystore, or
            a user name or password with characters a broker config cannot carry.
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
    sasl_ssl_port: int = 0
    tls_keystore: Path | None = None
    tls_key_password: str = field(default="", repr=False)
    tls_client_ca: Path | None = None
    sasl_users: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        ports = {"port": self.port, "controller_port": self.controller_port}
        if self.sasl_ssl_port:
            ports["sasl_ssl_port"] = self.sasl_ssl_port
        for name, value in ports.items():
            if not 1 <= value <= 65535:
                raise ConfigError(f"{name} must be between 1 and 65535, got {value}")
        if self.port == self.controller_port:
            raise ConfigError(f"port and controller_port must differ, both are {self.port}")
        if len(set(ports.values())) < len(ports):
            raise ConfigError(f"the broker's ports must differ, got {ports}")
        if self.sasl_ssl_port and self.tls_keystore is None:
            raise ConfigError("a SASL_SSL listener (sasl_ssl_port, LSI_KAFKA_SASL_SSL_PORT) needs "
                              "a certificate: set tls_keystore (LSI_KAFKA_TLS_KEYSTORE) to a PEM "
                              "file with the private key and certificate chain")  # fmt: skip
        for user, password in self.sasl_users:
            if not _USER_NAME.match(user):
                raise ConfigError(f"SASL user name {user!r} must be letters, digits, '.', '_' "
                                  "or '-'")  # fmt: skip
            if not _USER_PASSWORD.match(password):
                raise ConfigError(f"the password of SASL user {user!r} must be non-empty, "
                                  "without spaces, quotes, backslashes, commas, '=', ';' or "
                                  "brackets")  # fmt: skip
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
        sasl_ssl_port = _env_int(env, "LSI_KAFKA_SASL_SSL_PORT")
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
            sasl_ssl_port=base.sasl_ssl_port if sasl_ssl_port is None else sasl_ssl_port,
            tls_keystore=_env_path(env, "LSI_KAFKA_TLS_KEYSTORE"),
            tls_key_password=env.get("LSI_KAFKA_TLS_KEY_PASSWORD", ""),
            tls_client_ca=_env_path(env, "LSI_KAFKA_TLS_CLIENT_CA"),
            sasl_users=_env_users(env, "LSI_KAFKA_SASL_USERS"),
        )

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients' ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def sasl_ssl_bootstrap(self) -> str | None:
        """``host:port`` of the ``SASL_SSL`` listener, if there is one."""
        return f"{self.host}:{self.sasl_ssl_port}" if self.sasl_ssl_port else None

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
