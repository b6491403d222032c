"""Unit tests of lsi.kafka.broker: settings, rendered files, tool checks, pid handling; no JVM."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import lsi.kafka.broker
from lsi.errors import BrokerError, ConfigError
from lsi.kafka.broker import BrokerSettings, KafkaBroker
from lsi.kafka.broker.config import (
    is_formatted,
    load_or_create_cluster_id,
    log4j2_config,
    new_cluster_id,
    scram_arguments,
    server_properties,
)
from lsi.kafka.broker.runtime import java_major, resolve_libs


def _props(text: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
    assert len(pairs) == len({key for key, _ in pairs}), "duplicate keys"
    return dict((key, value) for key, value in pairs)


def _script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory that is all of PATH."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    return path


def test_exports_are_pinned() -> None:
    assert lsi.kafka.broker.__all__ == ["BrokerSettings", "BrokerStatus", "KafkaBroker"]


def test_from_env_without_variables_gives_defaults() -> None:
    settings = BrokerSettings.from_env({})
    assert settings == BrokerSettings()
    assert settings.bootstrap == "127.0.0.1:9092"
    assert settings.data_dir == Path.home() / ".local/share/lsi/kafka"
    assert settings.libs_dir == Path.home() / ".cache/lsi/kafka-4.0.1/libs"


def test_from_env_reads_every_variable(tmp_path: Path) -> None:
    settings = BrokerSettings.from_env(
        {
            "LSI_KAFKA_VERSION": "4.1.0",
            "LSI_KAFKA_HOST": "localhost",
            "LSI_KAFKA_PORT": " 29092",
            "LSI_KAFKA_CONTROLLER_PORT": "29093",
            "LSI_KAFKA_DATA_DIR": str(tmp_path / "data"),
            "LSI_KAFKA_CACHE_DIR": "~/elsewhere",
            "LSI_KAFKA_HEAP": "1g",
        }
    )
    assert (settings.kafka_version, settings.host, settings.heap) == ("4.1.0", "localhost", "1g")
    assert (settings.port, settings.controller_port) == (29092, 29093)
    assert settings.bootstrap == "localhost:29092"
    assert settings.data_dir == tmp_path / "data"
    assert settings.libs_dir == Path.home() / "elsewhere/kafka-4.1.0/libs"


@pytest.mark.parametrize("name", ["LSI_KAFKA_PORT", "LSI_KAFKA_CONTROLLER_PORT"])
def test_from_env_rejects_a_non_integer_port_naming_variable_and_value(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"{name}.*'90x2'"):
        BrokerSettings.from_env({name: "90x2"})


@pytest.mark.parametrize(
    ("environ", "match"),
    [
        ({"LSI_KAFKA_PORT": "70000"}, "port"),
        ({"LSI_KAFKA_HEAP": "lots"}, "heap"),
        ({"LSI_KAFKA_PORT": "9093"}, "differ"),
    ],
)
def test_from_env_rejects_bad_values(environ: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        BrokerSettings.from_env(environ)


def test_server_properties_is_a_single_node_kraft_broker(tmp_path: Path) -> None:
    props = _props(server_properties(BrokerSettings(data_dir=tmp_path, partitions=3)))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "kraft-combined-logs")
    assert props["num.partitions"] == "3"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "min.insync.replicas",
        "default.replication.factor",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "1", key


def test_from_env_reads_the_sasl_ssl_listener(tmp_path: Path) -> None:
    settings = BrokerSettings.from_env(
        {
            "LSI_KAFKA_SASL_SSL_PORT": "29094",
            "LSI_KAFKA_TLS_KEYSTORE": str(tmp_path / "keystore.pem"),
            "LSI_KAFKA_TLS_KEY_PASSWORD": "kp",
            "LSI_KAFKA_TLS_CLIENT_CA": str(tmp_path / "ca.pem"),
            "LSI_KAFKA_SASL_USERS": "lsi:s3cret!, admin:a:b",
        }
    )
    assert settings.sasl_ssl_port == 29094 and settings.sasl_ssl_bootstrap == "127.0.0.1:29094"
    assert settings.tls_keystore == tmp_path / "keystore.pem" and settings.tls_key_password == "kp"
    assert settings.tls_client_ca == tmp_path / "ca.pem"
    assert settings.sasl_users == (("lsi", "s3cret!"), ("admin", "a:b"))
    assert "s3cret!" not in repr(settings) and "kp" not in repr(settings)
    assert BrokerSettings().sasl_ssl_bootstrap is None


@pytest.mark.parametrize(
    ("environ", "match"),
    [
        ({"LSI_KAFKA_SASL_SSL_PORT": "29094"}, "needs a certificate: set tls_keystore"),
        ({"LSI_KAFKA_SASL_SSL_PORT": "9092", "LSI_KAFKA_TLS_KEYSTORE": "/k.pem"}, "must differ"),
        ({"LSI_KAFKA_SASL_SSL_PORT": "99999", "LSI_KAFKA_TLS_KEYSTORE": "/k.pem"}, "65535"),
        ({"LSI_KAFKA_SASL_USERS": "lsi"}, "name:password"),
        ({"LSI_KAFKA_SASL_USERS": "a b:pw"}, "user name 'a b'"),
        ({"LSI_KAFKA_SASL_USERS": "lsi:"}, "password of SASL user 'lsi' must be non-empty"),
        ({"LSI_KAFKA_SASL_USERS": 'lsi:x"y'}, "without spaces, quotes"),
    ],
)
def test_sasl_ssl_settings_are_checked(environ: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        BrokerSettings.from_env(environ)


def test_sasl_ssl_listener_properties(tmp_path: Path) -> None:
    settings = BrokerSettings(
        data_dir=tmp_path,
        sasl_ssl_port=9094,
        tls_keystore=tmp_path / "keystore.pem",
        tls_client_ca=tmp_path / "ca.pem",
        sasl_users=(("lsi", "pw1"), ("admin", "pw2")),
    )
    props = _props(server_properties(settings))
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093,SASL_SSL://127.0.0.1:9094"
    )
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9094"
    assert props["listener.security.protocol.map"].split(",") == [
        "CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT", "SASL_SSL:SASL_SSL"
    ]  # fmt: skip
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    name = "listener.name.sasl_ssl."
    assert props[name + "plain.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'user_lsi="pw1" user_admin="pw2";'
    )
    for mechanism in ("scram-sha-256", "scram-sha-512"):
        assert props[f"{name}{mechanism}.sasl.jaas.config"].endswith("ScramLoginModule required;")
    assert props[name + "ssl.keystore.type"] == props[name + "ssl.truststore.type"] == "PEM"
    assert props[name + "ssl.keystore.location"] == str(tmp_path / "keystore.pem")
    assert props[name + "ssl.truststore.location"] == str(tmp_path / "ca.pem")
    assert props[name + "ssl.client.auth"] == "required"
    assert name + "ssl.key.password" not in props
    assert scram_arguments(settings) == [
        "--add-scram", "SCRAM-SHA-256=[name=lsi,password=pw1]",
        "--add-scram", "SCRAM-SHA-512=[name=lsi,password=pw1]",
        "--add-scram", "SCRAM-SHA-256=[name=admin,password=pw2]",
        "--add-scram", "SCRAM-SHA-512=[name=admin,password=pw2]",
    ]  # fmt: skip
    plain = _props(server_properties(BrokerSettings(data_dir=tmp_path)))
    assert not [key for key in plain if "sasl" in key or "ssl" in key]
    assert scram_arguments(BrokerSettings()) == []


def test_log4j2_config_is_xml_writing_to_the_log_file(tmp_path: Path) -> None:
    log_file = tmp_path / "a & b" / "server.log"
    root = ET.fromstring(log4j2_config(log_file))
    appender = root.find("Appenders/RollingFile")
    assert appender is not None and appender.get("fileName") == str(log_file)
    levels = {logger.get("name"): logger.get("level") for logger in root.iter("Logger")}
    assert levels["kafka.server"] == "INFO" and levels["org.apache.kafka"] == "WARN"


def test_cluster_id_has_kafka_form_and_is_kept(tmp_path: Path) -> None:
    generated = new_cluster_id()
    assert len(generated) == 22 and not generated.startswith("-")
    first = load_or_create_cluster_id(tmp_path / "cluster.id")
    assert load_or_create_cluster_id(tmp_path / "cluster.id") == first


def test_format_is_detected_by_meta_properties(tmp_path: Path) -> None:
    assert not is_formatted(tmp_path)
    (tmp_path / "meta.properties").write_text("node.id=1\n")
    assert is_formatted(tmp_path)


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_292"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ('openjdk version "11.0.2"', 11),
        ("junk", None),
    ],
)
def test_java_major(output: str, major: int | None) -> None:
    assert java_major(output) == major


@pytest.mark.usefixtures("bin_dir")
def test_missing_java_is_one_line_saying_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(BrokerError) as caught:
        KafkaBroker(BrokerSettings(data_dir=tmp_path, cache_dir=tmp_path)).resolve()
    message = str(caught.value)
    assert "\n" not in message
    assert "Java 17+" in message and "openjdk-17-jre-headless" in message


def test_old_java_is_refused(bin_dir: Path, tmp_path: Path) -> None:
    _script(bin_dir, "java", "echo 'openjdk version \"11.0.2\" 2019-01-15' >&2")
    with pytest.raises(BrokerError, match=r"Java 17\+ .* is Java 11") as caught:
        KafkaBroker(BrokerSettings(data_dir=tmp_path, cache_dir=tmp_path)).resolve()
    assert "\n" not in str(caught.value)


def test_missing_maven_is_one_line(bin_dir: Path, tmp_path: Path) -> None:
    _script(bin_dir, "java", "echo 'openjdk version \"17.0.15\"' >&2")
    with pytest.raises(BrokerError, match="Maven") as caught:
        KafkaBroker(BrokerSettings(data_dir=tmp_path, cache_dir=tmp_path)).resolve()
    assert "\n" not in str(caught.value)


def test_jars_are_downloaded_once_and_again_when_unfinished(bin_dir: Path, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    _script(
        bin_dir,
        "mvn",
        f"""PATH=/usr/bin:/bin
for a in "$@"; do case "$a" in -DoutputDirectory=*) d="${{a#*=}}";; esac; done
mkdir -p "$d" && touch "$d/kafka_2.13-4.0.1.jar" && echo run >> {calls}""",
    )
    settings = BrokerSettings(data_dir=tmp_path, cache_dir=tmp_path / "cache")
    libs = resolve_libs(settings)
    assert libs == settings.libs_dir and (libs / "kafka_2.13-4.0.1.jar").is_file()
    assert (libs.parent / "pom.xml").read_text().count("kafka_2.13") == 1
    assert resolve_libs(settings) == libs
    assert calls.read_text().count("run") == 1
    (libs / ".lsi-resolved").unlink()  # as if the previous download was cut short
    resolve_libs(settings)
    assert calls.read_text().count("run") == 2


def test_maven_failure_names_the_error(bin_dir: Path, tmp_path: Path) -> None:
    _script(bin_dir, "mvn", "echo '[ERROR] Could not resolve dependencies'; exit 1")
    with pytest.raises(BrokerError, match=r"exit 1\): \[ERROR\] Could not resolve"):
        resolve_libs(BrokerSettings(data_dir=tmp_path, cache_dir=tmp_path))


def test_status_and_down_without_a_broker(tmp_path: Path) -> None:
    broker = KafkaBroker(BrokerSettings(data_dir=tmp_path))
    assert not broker.status().running
    assert broker.tail_logs() == []
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "broker.pid").write_text(f"{dead.pid}\n")  # a stale pid file
    status = broker.status()
    assert (status.running, status.pid, status.answering) == (False, None, False)
    assert broker.down() is False
    assert not (tmp_path / "broker.pid").exists()


def test_pid_of_an_unrelated_process_is_not_taken_for_the_broker(tmp_path: Path) -> None:
    broker = KafkaBroker(BrokerSettings(data_dir=tmp_path))
    (tmp_path / "broker.pid").write_text(f"{os.getpid()}\n")
    assert not broker.status().running
    assert broker.down() is False  # and this test process is still here


def test_up_refuses_a_port_held_by_another_process(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        broker = KafkaBroker(BrokerSettings(data_dir=tmp_path, port=port, controller_port=1))
        with pytest.raises(BrokerError, match=rf"127.0.0.1:{port} is already in use"):
            broker.up()
