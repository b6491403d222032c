"""The files a single-node KRaft broker reads: ``server.properties``, log4j2, cluster id.

Rendering is pure (settings in, text out) so tests can pin the content without a JVM.
The broker runs in KRaft *combined* mode: one process is both broker and controller,
with a static voter set ``1@host:controller_port``. Because the voters are static, the
storage is formatted without ``--standalone`` (that flag is for dynamic quorums declared
with ``controller.quorum.bootstrap.servers``).

With one broker every replicated internal topic must ask for a replication factor of 1,
or consumer groups (``__consumer_offsets``), transactions (``__transaction_state``) and
share groups (``__share_group_state``) never become available.

With ``sasl_ssl_port`` the broker also listens for ``SASL_SSL``: TLS with the PEM keystore
(``ssl.keystore.type=PEM``) and, with ``tls_client_ca``, a required client certificate;
then SASL ``PLAIN`` (users in the listener's JAAS config) or ``SCRAM-SHA-256``/``-512``
(users stored in the metadata log by :func:`scram_arguments` at format time). The
controller and the ``PLAINTEXT`` listener are unchanged.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from xml.sax.saxutils import quoteattr

from lsi.kafka.broker.settings import BrokerSettings

__all__ = [
    "SCRAM_MECHANISMS",
    "is_formatted",
    "load_or_create_cluster_id",
    "log4j2_config",
    "new_cluster_id",
    "scram_arguments",
    "server_properties",
    "tools_log4j2_config",
]

#: the SCRAM mechanisms the ``SASL_SSL`` listener offers; every user gets credentials for each
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
_LISTENER = "listener.name.sasl_ssl."

#: Loggers that are chatty at INFO; ``kafka.server`` stays at INFO to record startup.
_QUIET_LOGGERS = ("kafka", "org.apache.kafka", "state.change.logger", "kafka.request.logger")


def server_properties(settings: BrokerSettings) -> str:
    """Render ``server.properties`` for a one-node broker+controller.

    Args:
        settings: ports, host, data dir and default partition count.

    Returns:
        The file's text, one ``key=value`` per line.
    """
    host = settings.host
    client, controller = f"{host}:{settings.port}", f"{host}:{settings.controller_port}"
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{controller}",
        "listeners": f"PLAINTEXT://{client},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{client}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(settings.kraft_dir),
        "num.partitions": str(settings.partitions),
        "auto.create.topics.enable": "true",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # one member per group in tests and demos: do not wait 3 s for more to join
        "group.initial.rebalance.delay.ms": "0",
    }
    if settings.sasl_ssl_port:
        props |= _sasl_ssl_listener(settings)
    lines = ["# Written by lsi (lsi.kafka.broker); edits are overwritten on the next `up`."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def _sasl_ssl_listener(settings: BrokerSettings) -> dict[str, str]:
    """The properties that add the ``SASL_SSL`` listener (see the module docstring)."""
    host = settings.host
    client, sasl_ssl = f"{host}:{settings.port}", f"{host}:{settings.sasl_ssl_port}"
    plain = ["org.apache.kafka.common.security.plain.PlainLoginModule required"]
    plain += [f'user_{name}="{password}"' for name, password in settings.sasl_users]
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    props = {
        "listeners": f"PLAINTEXT://{client},CONTROLLER://{host}:{settings.controller_port},"
        f"SASL_SSL://{sasl_ssl}",
        "advertised.listeners": f"PLAINTEXT://{client},SASL_SSL://{sasl_ssl}",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
        "SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms": ",".join(("PLAIN", *SCRAM_MECHANISMS)),
        f"{_LISTENER}plain.sasl.jaas.config": " ".join(plain) + ";",
        **{f"{_LISTENER}{m.lower()}.sasl.jaas.config": scram for m in SCRAM_MECHANISMS},
        f"{_LISTENER}ssl.keystore.type": "PEM",
        f"{_LISTENER}ssl.keystore.location": str(settings.tls_keystore),
    }
    if settings.tls_key_password:
        props[f"{_LISTENER}ssl.key.password"] = settings.tls_key_password
    if settings.tls_client_ca is not None:
        props |= {
            f"{_LISTENER}ssl.truststore.type": "PEM",
            f"{_LISTENER}ssl.truststore.location": str(settings.tls_client_ca),
            f"{_LISTENER}ssl.client.auth": "required",
        }
    return props


def scram_arguments(settings: BrokerSettings) -> list[str]:
    """``StorageTool format`` arguments that create every SASL user's SCRAM credentials.

    >>> scram_arguments(BrokerSettings(sasl_users=(("lsi", "pw"),)))[:2]
    ['--add-scram', 'SCRAM-SHA-256=[name=lsi,password=pw]']
    """
    arguments: list[str] = []
    for name, password in settings.sasl_users:
        for mechanism in SCRAM_MECHANISMS:
            arguments += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
    return arguments


def log4j2_config(log_file: Path) -> str:
    """Render a log4j2 XML config: one size-rolled file, quiet except ``kafka.server``.

    Args:
        log_file: where the broker log goes (``data_dir/logs/server.log``).

    Returns:
        The XML text for ``-Dlog4j2.configurationFile``.
    """
    quiet = "\n".join(f'    <Logger name="{name}" level="WARN"/>' for name in _QUIET_LOGGERS)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by lsi (lsi.kafka.broker); edits are overwritten on the next `up`. -->
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <RollingFile name="file" fileName={quoteattr(str(log_file))}
                 filePattern={quoteattr(str(log_file) + ".%i")}>
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
{quiet}
    <Logger name="kafka.server" level="INFO"/>
    <Root level="WARN"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


def tools_log4j2_config() -> str:
    """Render the log4j2 XML config of Kafka's command-line tools: warnings and errors to stderr.

    As Kafka's own ``tools-log4j2.yaml``: stdout stays the tool's output (the console consumer's
    records, ``kafka-topics --list``), and log4j2's default would print to stdout.
    """
    return """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by lsi (lsi kafka tool) for one run of a Kafka tool. -->
<Configuration status="WARN">
  <Appenders>
    <Console name="stderr" target="SYSTEM_ERR">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="stderr"/></Root>
  </Loggers>
</Configuration>
"""


def new_cluster_id() -> str:
    """A random cluster id in Kafka's form: 16 bytes, URL-safe base64, no padding.

    Like Kafka's ``Uuid.randomUuid`` it never starts with ``-``, so it cannot be
    mistaken for a command-line flag.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def load_or_create_cluster_id(path: Path) -> str:
    """Return the cluster id stored at ``path``, generating and storing one if absent."""
    if path.is_file():
        stored = path.read_text(encoding="utf-8").strip()
        if stored:
            return stored
    cluster_id = new_cluster_id()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cluster_id + "\n", encoding="utf-8")
    return cluster_id


def is_formatted(kraft_dir: Path) -> bool:
    """Whether ``StorageTool format`` already ran here: it leaves ``meta.properties``."""
    return (kraft_dir / "meta.properties").is_file()
