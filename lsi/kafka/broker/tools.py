"""Kafka's own command-line tools, run with the local broker's jars and Java.

``lsi kafka tool NAME ARGS…`` runs what ``bin/NAME.sh ARGS…`` of a Kafka distribution of the
broker's version runs: the tool's main class, with the jars Maven resolved for the broker
(``org.apache.kafka:kafka-tools`` among them, :mod:`lsi.kafka.broker.runtime`) on the class
path. :data:`TOOLS` is the table of names and main classes. The arguments go through
unchanged, with two additions when they lack them:

* ``--bootstrap-server`` with lsi's brokers (``LSI_BROKERS``), for a tool that takes it and
  arguments that name no server (neither ``--bootstrap-server`` nor ``--bootstrap-controller``);
* a client properties file from lsi's security settings (``LSI_KAFKA_SECURITY_PROTOCOL`` other
  than ``PLAINTEXT``, ``LSI_KAFKA_SASL_*``, ``LSI_KAFKA_SSL_*``, translated by
  :mod:`lsi.kafka.broker.java_client`), with the flag the tool reads it from
  (``--command-config``, ``--consumer.config`` …), unless the arguments pass that flag
  themselves. It lives in a private temporary directory, removed when the tool exits.

Building the command is pure (:func:`tool_arguments`, :func:`tool_command`); only
:func:`run_tool` resolves jars, writes files and starts the JVM.
"""

from __future__ import annotations

import difflib
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from lsi.config import Settings
from lsi.errors import BrokerError, ConfigError
from lsi.kafka.broker.config import tools_log4j2_config
from lsi.kafka.broker.java_client import client_properties, render_properties
from lsi.kafka.broker.runtime import find_java, resolve_libs
from lsi.kafka.broker.settings import BrokerSettings

__all__ = [
    "TOOLS",
    "KafkaTool",
    "kafka_tool",
    "run_tool",
    "tool_arguments",
    "tool_command",
    "wants_properties",
]

#: the heap of a tool's JVM, as Kafka's ``kafka-run-class.sh`` gives it
TOOL_HEAP = "256m"
#: how long a tool may take to stop after Ctrl-C (the console consumer prints its count)
_STOP_S = 10.0
_SERVERS = ("--bootstrap-server", "--bootstrap-controller")


@dataclass(frozen=True, slots=True)
class KafkaTool:
    """How to run one of Kafka's tools.

    Attributes:
        main_class: the class its ``bin/kafka-*.sh`` script runs.
        bootstrap: the flag that names the brokers, which lsi adds with ``LSI_BROKERS``; ``None``
            for a tool without one (then a properties file carries ``bootstrap.servers``).
        config: the flag of its client properties file, ``None`` for a tool without a client.
        server_flags: flags whose presence means the servers are named already.
        options_last: its options follow a sub-command (``kafka-cluster cluster-id
            --bootstrap-server …``), so lsi's go after the arguments, not before them.
    """

    main_class: str
    bootstrap: str | None = "--bootstrap-server"
    config: str | None = "--command-config"
    server_flags: tuple[str, ...] = _SERVERS
    options_last: bool = False


_T = "org.apache.kafka.tools."

#: Kafka 4.0's tools by script name (``bin/kafka-topics.sh`` → ``kafka-topics``). All but
#: ``kafka-configs`` and ``kafka-dump-log`` (in ``kafka_2.13``) are in ``kafka-tools``.
TOOLS: Mapping[str, KafkaTool] = MappingProxyType(
    {
        "kafka-acls": KafkaTool(_T + "AclCommand"),
        "kafka-broker-api-versions": KafkaTool(_T + "BrokerApiVersionsCommand"),
        "kafka-client-metrics": KafkaTool(_T + "ClientMetricsCommand"),
        "kafka-cluster": KafkaTool(_T + "ClusterTool", config="--config",
                                   server_flags=(*_SERVERS, "-b", "-C"), options_last=True),
        "kafka-configs": KafkaTool("kafka.admin.ConfigCommand"),
        "kafka-console-consumer": KafkaTool(_T + "consumer.ConsoleConsumer",
                                            config="--consumer.config"),
        "kafka-console-producer": KafkaTool(_T + "ConsoleProducer", config="--producer.config"),
        "kafka-console-share-consumer": KafkaTool(_T + "consumer.ConsoleShareConsumer",
                                                  config="--consumer-config"),
        "kafka-consumer-groups": KafkaTool(_T + "consumer.group.ConsumerGroupCommand"),
        "kafka-consumer-perf-test": KafkaTool(_T + "ConsumerPerformance",
                                              config="--consumer.config"),
        "kafka-delegation-tokens": KafkaTool(_T + "DelegationTokenCommand"),
        "kafka-delete-records": KafkaTool(_T + "DeleteRecordsCommand"),
        "kafka-dump-log": KafkaTool("kafka.tools.DumpLogSegments", bootstrap=None, config=None),
        "kafka-features": KafkaTool(_T + "FeatureCommand"),
        "kafka-get-offsets": KafkaTool(_T + "GetOffsetShell"),
        "kafka-groups": KafkaTool(_T + "GroupsCommand"),
        "kafka-leader-election": KafkaTool(_T + "LeaderElectionCommand", config="--admin.config"),
        "kafka-log-dirs": KafkaTool(_T + "LogDirsCommand"),
        "kafka-metadata-quorum": KafkaTool(_T + "MetadataQuorumCommand"),
        "kafka-producer-perf-test": KafkaTool(_T + "ProducerPerformance", bootstrap=None,
                                              config="--producer.config"),
        "kafka-reassign-partitions": KafkaTool(_T + "reassign.ReassignPartitionsCommand"),
        "kafka-share-groups": KafkaTool(_T + "consumer.group.ShareGroupCommand"),
        "kafka-topics": KafkaTool(_T + "TopicCommand"),
        "kafka-transactions": KafkaTool(_T + "TransactionsCommand"),
        "kafka-verifiable-consumer": KafkaTool(_T + "VerifiableConsumer",
                                               config="--consumer.config"),
        "kafka-verifiable-producer": KafkaTool(_T + "VerifiableProducer",
                                               config="--producer.config"),
    }
)  # fmt: skip


def kafka_tool(name: str) -> KafkaTool:
    """The tool called ``name`` (``kafka-topics``; ``kafka-topics.sh`` works too).

    Raises:
        ConfigError: no such tool; the one-line message lists the known ones.
    """
    found = TOOLS.get(name.removesuffix(".sh"))
    if found is None:
        hint = difflib.get_close_matches(name, TOOLS, n=1)
        also = f"did you mean {hint[0]}? " if hint else ""
        raise ConfigError(f"no Kafka tool {name!r}: {also}the tools are {', '.join(TOOLS)}")
    return found


def _given(args: Sequence[str], flags: Sequence[str]) -> bool:
    """Whether ``args`` pass one of ``flags`` (``--flag value`` or ``--flag=value``)."""
    return any(arg.split("=", 1)[0] in flags for arg in args)


def wants_properties(tool: KafkaTool, args: Sequence[str], settings: Settings) -> bool:
    """Whether lsi writes a client properties file for this run: the tool reads one, the
    arguments pass none, and there is security to set up or no other way to name the brokers."""
    if tool.config is None or _given(args, (tool.config,)):
        return False
    return settings.kafka_security_protocol != "PLAINTEXT" or tool.bootstrap is None


def tool_arguments(
    tool: KafkaTool, args: Sequence[str], brokers: str, properties: Path | None = None
) -> list[str]:
    """The tool's arguments: ``args`` unchanged, plus ``--bootstrap-server brokers`` when they
    name no server, plus the ``properties`` file (if any) with the tool's flag when they pass
    none.

    >>> tool_arguments(TOOLS["kafka-consumer-groups"], ["--list"], "127.0.0.1:9092")
    ['--bootstrap-server', '127.0.0.1:9092', '--list']
    >>> tool_arguments(TOOLS["kafka-topics"], ["--list", "--bootstrap-server=b:9092"], "a:9092")
    ['--list', '--bootstrap-server=b:9092']
    """
    added: list[str] = []
    if tool.bootstrap is not None and not _given(args, tool.server_flags):
        added += [tool.bootstrap, brokers]
    if properties is not None and tool.config is not None and not _given(args, (tool.config,)):
        added += [tool.config, str(properties)]
    return [*args, *added] if tool.options_last else [*added, *args]


def tool_command(
    java: Path, libs: Path, log4j: Path, tool: KafkaTool, arguments: Sequence[str]
) -> list[str]:
    """The JVM command line of a tool: its heap, the log4j2 config, every jar in ``libs``."""
    return [str(java), f"-Xmx{TOOL_HEAP}", f"-Dlog4j2.configurationFile={log4j}",
            "-cp", f"{libs}/*", tool.main_class, *arguments]  # fmt: skip


def _exit_status(process: subprocess.Popen[bytes]) -> int:
    """Wait for the tool; on Ctrl-C let it stop on its own first (shutdown hooks)."""
    try:
        code = process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)  # it had one already if Ctrl-C came from a terminal
        try:
            code = process.wait(timeout=_STOP_S)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    return 128 - code if code < 0 else code  # killed by signal N: the shell's 128 + N


def run_tool(
    name: str,
    args: Sequence[str],
    settings: Settings | None = None,
    broker: BrokerSettings | None = None,
) -> int:
    """Run Kafka's tool ``name`` with ``args`` (see the module docstring); return its exit status.

    The tool inherits stdin, stdout and stderr; Java and the jars are checked (and the jars
    resolved) as for the broker.

    Args:
        name: a key of :data:`TOOLS`.
        args: the tool's arguments, as on its command line.
        settings: lsi's client settings (brokers, security); ``Settings.from_env()`` if ``None``.
        broker: the local broker's settings (Kafka version, jar cache); from the environment
            if ``None``.

    Raises:
        ConfigError: an unknown tool, or security settings the Java client cannot take.
        BrokerError: Java or the jars are missing, or the jars lack the tools.
    """
    tool = kafka_tool(name)
    settings = Settings.from_env() if settings is None else settings
    broker = BrokerSettings.from_env() if broker is None else broker
    java = find_java()
    libs = resolve_libs(broker)
    jar = libs / f"kafka-tools-{broker.kafka_version}.jar"
    if not jar.is_file():
        raise BrokerError(f"{jar.name} is missing from {libs}: delete {libs.parent} and run "
                          "`lsi kafka tool` again to download the jars anew")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="lsi-kafka-tool-") as scratch:
        directory = Path(scratch)
        log4j = directory / "log4j2.xml"
        log4j.write_text(tools_log4j2_config(), encoding="utf-8")
        properties = None
        if wants_properties(tool, args, settings):
            props = client_properties(settings, directory / "client.pem")
            if tool.bootstrap is None:
                props["bootstrap.servers"] = settings.brokers
            properties = directory / "client.properties"
            properties.touch(mode=0o600)  # it may hold the SASL password
            properties.write_text(render_properties(props), encoding="ascii")
        arguments = tool_arguments(tool, args, settings.brokers, properties)
        command = tool_command(java, libs, log4j, tool, arguments)
        try:
            process = subprocess.Popen(command)
        except OSError as exc:
            raise BrokerError(f"could not start {java} for {name}: {exc}") from None
        return _exit_status(process)
