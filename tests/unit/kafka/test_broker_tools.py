"""Unit tests of lsi.kafka.broker.tools (``lsi kafka tool``): the tool table, the arguments
lsi adds, the Java client's properties (lsi.kafka.broker.java_client), and a whole run with a
fake ``java`` and ``mvn``; no JVM. The live counterpart is tests/integration/test_kafka_tools_live.py."""

from __future__ import annotations

import doctest
import re
import signal
import stat
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

import lsi.kafka.broker.config
import lsi.kafka.broker.java_client
import lsi.kafka.broker.tools
from lsi.cli.main import main
from lsi.config import Settings
from lsi.errors import BrokerError, ConfigError
from lsi.kafka.broker import BrokerSettings
from lsi.kafka.broker.java_client import client_properties, render_properties
from lsi.kafka.broker.tools import (
    TOOLS,
    kafka_tool,
    run_tool,
    tool_arguments,
    tool_command,
    wants_properties,
)
from tests.tls import Certificates, make_certificates

BROKERS = "kafka-1:9092,kafka-2:9092"
PASSWORD = 'p"w\\7'
SASL = {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "lsi",
        "kafka_sasl_password": PASSWORD}  # fmt: skip


def _script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\nPATH=/usr/bin:/bin\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _properties(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def test_the_doctests_hold() -> None:
    modules = (lsi.kafka.broker.tools, lsi.kafka.broker.java_client, lsi.kafka.broker.config)
    for module in modules:
        assert doctest.testmod(module).failed == 0, module.__name__


# -- the table --------------------------------------------------------------------------------
def test_the_table_names_each_script_and_its_main_class() -> None:
    assert list(TOOLS) == sorted(TOOLS) and all(name.startswith("kafka-") for name in TOOLS)
    java_class = re.compile(r"^[a-z]+(\.[a-z]+)*(\.[A-Z][A-Za-z]+)$")
    assert all(java_class.match(tool.main_class) for tool in TOOLS.values())
    main_classes = {name: tool.main_class for name, tool in TOOLS.items()}
    assert main_classes["kafka-consumer-groups"] == (
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
    )
    assert main_classes["kafka-topics"] == "org.apache.kafka.tools.TopicCommand"
    assert main_classes["kafka-configs"] == "kafka.admin.ConfigCommand"  # still in kafka_2.13
    assert main_classes["kafka-console-consumer"] == (
        "org.apache.kafka.tools.consumer.ConsoleConsumer"
    )
    assert main_classes["kafka-get-offsets"] == "org.apache.kafka.tools.GetOffsetShell"


def test_the_client_properties_go_with_each_tools_own_flag() -> None:
    flags = {name: tool.config for name, tool in TOOLS.items()}
    assert flags["kafka-topics"] == flags["kafka-consumer-groups"] == "--command-config"
    assert flags["kafka-console-consumer"] == "--consumer.config"
    assert flags["kafka-console-producer"] == "--producer.config"
    assert flags["kafka-leader-election"] == "--admin.config"
    assert flags["kafka-cluster"] == "--config"
    assert flags["kafka-dump-log"] is None and TOOLS["kafka-dump-log"].bootstrap is None


def test_an_unknown_tool_is_one_line_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        kafka_tool("kafka-topic")
    message = str(caught.value)
    assert "\n" not in message and "no Kafka tool 'kafka-topic'" in message
    assert "did you mean kafka-topics?" in message
    assert all(name in message for name in TOOLS)
    assert kafka_tool("kafka-topics.sh") is TOOLS["kafka-topics"]


# -- the arguments lsi adds -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("kafka-consumer-groups", ["--describe", "--group", "lsi"],
         ["--bootstrap-server", BROKERS, "--describe", "--group", "lsi"]),
        # options of the main parser come before an argparse4j sub-command
        ("kafka-metadata-quorum", ["describe", "--status"],
         ["--bootstrap-server", BROKERS, "describe", "--status"]),
        # kafka-cluster's options belong to its sub-command
        ("kafka-cluster", ["cluster-id"], ["cluster-id", "--bootstrap-server", BROKERS]),
        ("kafka-topics", ["--list", "--bootstrap-server", "b:1"],
         ["--list", "--bootstrap-server", "b:1"]),
        ("kafka-topics", ["--list", "--bootstrap-server=b:1"], ["--list", "--bootstrap-server=b:1"]),
        ("kafka-configs", ["--bootstrap-controller", "c:1", "--describe"],
         ["--bootstrap-controller", "c:1", "--describe"]),
        ("kafka-cluster", ["cluster-id", "-b", "b:1"], ["cluster-id", "-b", "b:1"]),
        ("kafka-dump-log", ["--files", "x.log"], ["--files", "x.log"]),
        ("kafka-producer-perf-test", ["--topic", "t"], ["--topic", "t"]),
    ],
)  # fmt: skip
def test_bootstrap_is_added_when_no_server_is_named(
    name: str, args: list[str], expected: list[str]
) -> None:
    assert tool_arguments(TOOLS[name], args, BROKERS) == expected


def test_the_properties_file_is_added_unless_the_tool_has_its_own(tmp_path: Path) -> None:
    props = tmp_path / "client.properties"
    consumer = TOOLS["kafka-console-consumer"]
    assert tool_arguments(consumer, ["--topic", "t"], BROKERS, props) == [
        "--bootstrap-server", BROKERS, "--consumer.config", str(props), "--topic", "t"]  # fmt: skip
    own = ["--topic", "t", "--consumer.config", "mine.properties"]
    assert tool_arguments(consumer, own, BROKERS, props) == ["--bootstrap-server", BROKERS, *own]


def test_a_properties_file_is_written_for_security_or_a_tool_without_bootstrap() -> None:
    plain, sasl = Settings(), Settings(**SASL)
    topics, perf = TOOLS["kafka-topics"], TOOLS["kafka-producer-perf-test"]
    assert not wants_properties(topics, ["--list"], plain)
    assert wants_properties(topics, ["--list"], sasl)
    assert not wants_properties(topics, ["--list", "--command-config", "x"], sasl)
    assert not wants_properties(TOOLS["kafka-dump-log"], [], sasl)
    assert wants_properties(perf, ["--topic", "t"], plain)  # bootstrap.servers goes there


def test_the_command_runs_the_main_class_with_every_jar_of_libs(tmp_path: Path) -> None:
    libs, log4j = tmp_path / "libs", tmp_path / "log4j2.xml"
    command = tool_command(Path("/usr/bin/java"), libs, log4j, TOOLS["kafka-topics"], ["--list"])
    assert command == ["/usr/bin/java", "-Xmx256m", f"-Dlog4j2.configurationFile={log4j}",
                       "-cp", f"{libs}/*", "org.apache.kafka.tools.TopicCommand", "--list"]  # fmt: skip


def test_the_pom_adds_the_tools_of_the_brokers_version_without_kafka_connect() -> None:
    pom = resources.files("lsi.kafka.broker").joinpath("pom.xml").read_text()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    deps = {d.findtext("m:artifactId", namespaces=ns): d
            for d in ET.fromstring(pom).iterfind("m:dependencies/m:dependency", ns)}  # fmt: skip
    tools = deps["kafka-tools"]
    assert tools.findtext("m:groupId", namespaces=ns) == "org.apache.kafka"
    assert tools.findtext("m:version", namespaces=ns) == "${kafka.version}"
    excluded = {e.findtext("m:artifactId", namespaces=ns)
                for e in tools.iterfind("m:exclusions/m:exclusion", ns)}  # fmt: skip
    assert "connect-runtime" in excluded


# -- the Java client's properties -------------------------------------------------------------
def test_sasl_properties_quote_the_password_for_jaas() -> None:
    props = client_properties(Settings(**SASL, kafka_sasl_mechanism="SCRAM-SHA-512"))
    assert props["security.protocol"] == "SASL_PLAINTEXT"
    assert props["sasl.mechanism"] == "SCRAM-SHA-512"
    assert props["sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="lsi" password="p\\"w\\\\7";'
    )


def test_tls_properties_trust_the_ca_and_present_key_and_certificate(
    certs: Certificates, tmp_path: Path
) -> None:
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(certs.ca),
                        kafka_ssl_certfile=str(certs.client_cert),
                        kafka_ssl_keyfile=str(certs.client_key), kafka_ssl_check_hostname=False)  # fmt: skip
    keystore = tmp_path / "client.pem"
    props = client_properties(settings, keystore)
    assert props == {
        "security.protocol": "SSL",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs.ca),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
        "ssl.endpoint.identification.algorithm": "",
    }
    pem = keystore.read_text()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----") and "BEGIN CERTIFICATE" in pem
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600


def test_a_key_java_cannot_read_is_one_line_saying_how_to_convert_it(
    certs: Certificates, tmp_path: Path
) -> None:
    rsa = tmp_path / "rsa.key"
    rsa.write_text("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_certfile=str(certs.client_cert),
                        kafka_ssl_keyfile=str(rsa))  # fmt: skip
    with pytest.raises(ConfigError, match="openssl pkcs8 -topk8") as caught:
        client_properties(settings, tmp_path / "client.pem")
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="LSI_KAFKA_SSL_CAFILE"):
        client_properties(Settings(kafka_security_protocol="SSL",
                                   kafka_ssl_cafile=str(tmp_path / "none.pem")))  # fmt: skip


def test_properties_values_are_escaped_as_java_reads_them() -> None:
    text = render_properties({"a": " lead\\back\nnew\u00e9\U0001f600", "b": ""})
    assert text.splitlines()[1:] == [
        "a=\\ lead\\\\back\\u000anew\\u00e9\\ud83d\\ude00",
        "b=",
    ]
    assert text.isascii()


# -- a whole run, with a fake java and mvn ----------------------------------------------------
@pytest.fixture
def fake_jvm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """PATH holds a ``mvn`` that "resolves" the two Kafka jars and a ``java`` that records its
    arguments and the properties file it is given, and exits 3; the jar cache is empty."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    _script(bin_dir, "mvn", """for a in "$@"; do case "$a" in -DoutputDirectory=*) d="${a#*=}";; esac; done
mkdir -p "$d" && touch "$d/kafka_2.13-4.0.1.jar" "$d/kafka-tools-4.0.1.jar\"""")  # fmt: skip
    _script(bin_dir, "java", f"""case "$1" in -version) echo 'openjdk version "17.0.15"' >&2; exit 0;; esac
printf '%s\\n' "$@" > {calls}
for a in "$@"; do case "$a" in *.properties) cp "$a" {calls}.properties;; esac; done
exit 3""")  # fmt: skip
    monkeypatch.setenv("PATH", str(bin_dir))
    for var in ("LSI_BROKERS", "LSI_KAFKA_SECURITY_PROTOCOL", "LSI_KAFKA_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    broker = BrokerSettings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    monkeypatch.setenv("LSI_KAFKA_CACHE_DIR", str(broker.cache_dir))
    return {"calls": calls, "broker": broker}


def test_a_tool_runs_with_the_tools_jar_on_the_class_path_and_returns_its_status(
    fake_jvm: dict[str, Any],
) -> None:
    broker: BrokerSettings = fake_jvm["broker"]
    code = run_tool("kafka-topics", ["--list"], Settings(brokers=BROKERS), broker)
    assert code == 3
    argv = fake_jvm["calls"].read_text().splitlines()
    assert argv[argv.index("-cp") + 1] == f"{broker.libs_dir}/*"
    assert (broker.libs_dir / "kafka-tools-4.0.1.jar").is_file()
    assert argv[-4:] == ["org.apache.kafka.tools.TopicCommand", "--bootstrap-server", BROKERS,
                         "--list"]  # fmt: skip
    log4j = Path(argv[1].removeprefix("-Dlog4j2.configurationFile="))
    assert not log4j.parent.exists(), "the scratch directory outlives the tool"


def test_sasl_settings_reach_the_tool_in_a_private_properties_file(
    fake_jvm: dict[str, Any],
) -> None:
    run_tool("kafka-console-consumer", ["--topic", "t"], Settings(**SASL), fake_jvm["broker"])
    argv = fake_jvm["calls"].read_text().splitlines()
    given = argv[argv.index("--consumer.config") + 1]
    props = _properties((fake_jvm["calls"].parent / "calls.properties").read_text())
    assert given.endswith("client.properties") and not Path(given).exists()
    assert props["security.protocol"] == "SASL_PLAINTEXT"
    assert props["sasl.jaas.config"].endswith('password="p\\\\"w\\\\\\\\7";')  # escaped twice
    run_tool("kafka-producer-perf-test", ["--topic", "t"], Settings(brokers=BROKERS),
             fake_jvm["broker"])  # fmt: skip
    props = _properties((fake_jvm["calls"].parent / "calls.properties").read_text())
    assert props == {"security.protocol": "PLAINTEXT", "bootstrap.servers": BROKERS}


def test_jars_without_the_tools_are_refused(fake_jvm: dict[str, Any]) -> None:
    broker: BrokerSettings = fake_jvm["broker"]
    run_tool("kafka-topics", ["--list"], Settings(), broker)
    (broker.libs_dir / "kafka-tools-4.0.1.jar").unlink()  # as resolved by an older pom
    with pytest.raises(BrokerError, match=r"kafka-tools-4\.0\.1\.jar is missing"):
        run_tool("kafka-topics", ["--list"], Settings(), broker)


class _Interrupted:
    """A process whose first wait is interrupted by Ctrl-C and which then exits ``code``."""

    def __init__(self, code: int) -> None:
        self.code, self.waits, self.signals = code, 0, list[int]()

    def wait(self, timeout: float | None = None) -> int:
        self.waits += 1
        if self.waits == 1:
            raise KeyboardInterrupt
        return self.code

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)


def test_ctrl_c_lets_the_tool_stop_and_returns_its_status() -> None:
    exit_status = lsi.kafka.broker.tools._exit_status
    process = _Interrupted(130)
    assert exit_status(process) == 130  # type: ignore[arg-type]
    assert process.signals == [signal.SIGINT]
    assert exit_status(_Interrupted(-9)) == 137  # type: ignore[arg-type]


# -- the command line -------------------------------------------------------------------------
def test_lsi_kafka_tool_passes_the_arguments_and_the_exit_status(
    fake_jvm: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LSI_BROKERS", BROKERS)
    args = ["--describe", "--group", "lsi", "--lines", "3"]  # --lines is the tool's, not lsi's
    assert main(["kafka", "tool", "kafka-consumer-groups", *args]) == 3
    argv = fake_jvm["calls"].read_text().splitlines()
    assert argv[-8:] == ["org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                         "--bootstrap-server", BROKERS, *args]  # fmt: skip
    assert main(["kafka", "tool", "--list"]) == 0
    assert capsys.readouterr().out.split() == list(TOOLS)
    assert main(["kafka", "tool", "kafka-nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lsi kafka: error: no Kafka tool 'kafka-nope'") and err.count("\n") == 1
    assert main(["kafka", "tool"]) == 2
    assert "name a Kafka tool" in capsys.readouterr().err
    assert main(["kafka", "tool", "--help"]) == 0
    assert "--bootstrap-server $LSI_BROKERS" in " ".join(capsys.readouterr().out.split())


def test_the_other_actions_keep_their_options_after_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tool``'s arguments take every word after the action; ``logs --lines 3`` still works."""
    monkeypatch.setenv("LSI_KAFKA_DATA_DIR", str(tmp_path))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "server.log").write_text("".join(f"line {i}\n" for i in range(5)))
    assert main(["kafka", "logs", "--lines", "2"]) == 0
    assert capsys.readouterr().out.split("\n")[:2] == ["line 3", "line 4"]
    assert main(["kafka", "--lines", "1", "logs"]) == 0
    assert capsys.readouterr().out == "line 4\n"
    with pytest.raises(SystemExit) as caught:
        main(["kafka", "logs", "extra"])
    assert caught.value.code == 2
    assert "unrecognized arguments: extra" in capsys.readouterr().err
