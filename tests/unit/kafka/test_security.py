"""Kafka security settings: validation, the translation for each client, no leaked password.

The live counterpart, against a broker with a SASL_SSL listener, is
tests/integration/test_security_live.py.
"""

from __future__ import annotations

import argparse
import doctest
import logging
import ssl
from pathlib import Path
from typing import Any, ClassVar

import kafka.errors
import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

import lsi.kafka.broker.config
import lsi.kafka.clients
import lsi.kafka.security
from lsi.cli.main import build_parser, main
from lsi.config import Settings
from lsi.errors import BrokerError, ConfigError
from lsi.kafka.broker import BrokerSettings
from lsi.kafka.clients import client_errors, ensure_topics
from lsi.kafka.security import (
    aiokafka_options,
    describe,
    faust_credentials,
    kafka_python_options,
    ssl_context,
)
from lsi.serving.worker_process import settings_env
from tests.tls import Certificates, make_certificates

PASSWORD = "pw-never-shown-7f3a"

SASL_ENV = {
    "LSI_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "LSI_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
    "LSI_KAFKA_SASL_USERNAME": "lsi-worker",
    "LSI_KAFKA_SASL_PASSWORD": PASSWORD,
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def sasl_ssl(certs: Certificates | None = None, **changes: Any) -> Settings:
    tls = {"kafka_ssl_cafile": str(certs.ca)} if certs is not None else {}
    return Settings.from_env(SASL_ENV, **tls, **changes)


def test_the_doctests_hold() -> None:
    for module in (lsi.kafka.security, lsi.kafka.broker.config):
        assert doctest.testmod(module).failed == 0, module.__name__


# -- settings ------------------------------------------------------------------------------
def test_settings_read_their_kafka_variables_and_leave_the_brokers_alone() -> None:
    s = Settings.from_env({**SASL_ENV, "LSI_KAFKA_SSL_CHECK_HOSTNAME": "false",
                           "LSI_KAFKA_PORT": "19092", "LSI_KAFKA_SASL_USERS": "a:b",
                           "LSI_REPLICATION_FACTOR": "3", "LSI_MIN_INSYNC_REPLICAS": "2"})  # fmt: skip
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    assert (s.kafka_sasl_username, s.kafka_sasl_password) == ("lsi-worker", PASSWORD)
    assert s.kafka_ssl_check_hostname is False
    assert (s.replication_factor, s.min_insync_replicas) == (3, 2)


def test_the_broker_ignores_the_clients_kafka_variables() -> None:
    env = {**SASL_ENV, "LSI_KAFKA_SSL_CAFILE": "/ca.pem", "LSI_KAFKA_SSL_CHECK_HOSTNAME": "no"}
    assert BrokerSettings.from_env(env) == BrokerSettings()


def test_the_password_is_in_no_repr() -> None:
    s = sasl_ssl()
    assert PASSWORD not in repr(s) and PASSWORD not in str(s)
    assert "lsi-worker" in repr(s)
    assert PASSWORD not in describe(s) and describe(s) == "SASL_SSL, SCRAM-SHA-256 as lsi-worker"
    assert PASSWORD not in repr(faust_credentials(s))
    broker = BrokerSettings(sasl_users=(("lsi", PASSWORD),), tls_key_password=PASSWORD)
    assert PASSWORD not in repr(broker)


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string of ``parser`` and of its sub-commands, recursively."""
    flags: list[str] = []
    for action in parser._actions:
        flags += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                flags += _flags(command)
    return flags


def test_no_command_line_flag_takes_a_password() -> None:
    flags = _flags(build_parser())
    assert "--brokers" in flags and "--data-dir" in flags
    assert not [f for f in flags if "password" in f or "sasl" in f], flags


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LSI_KAFKA_SECURITY_PROTOCOL": "TLS"}, "must be one of PLAINTEXT, SSL, SASL_PLAINTEXT"),
        ({**SASL_ENV, "LSI_KAFKA_SASL_MECHANISM": "GSSAPI"}, "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
        ({"LSI_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
         "set LSI_KAFKA_SASL_USERNAME and LSI_KAFKA_SASL_PASSWORD"),
        ({**SASL_ENV, "LSI_KAFKA_SASL_PASSWORD": ""}, "set LSI_KAFKA_SASL_PASSWORD$"),
        ({"LSI_KAFKA_SASL_USERNAME": "u", "LSI_KAFKA_SASL_PASSWORD": PASSWORD},
         "PLAINTEXT does not authenticate: set LSI_KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
        ({"LSI_KAFKA_SSL_CAFILE": "/ca.pem"},
         "LSI_KAFKA_SSL_CAFILE set, but .*PLAINTEXT does not use TLS: set .*=SSL or SASL_SSL"),
        ({**SASL_ENV, "LSI_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
          "LSI_KAFKA_SSL_CERTFILE": "/c.pem"}, "SASL_PLAINTEXT does not use TLS"),
        ({"LSI_KAFKA_SECURITY_PROTOCOL": "SSL", "LSI_KAFKA_SSL_KEYFILE": "/k.pem"},
         "LSI_KAFKA_SSL_KEYFILE is set without LSI_KAFKA_SSL_CERTFILE"),
        ({"LSI_REPLICATION_FACTOR": "2", "LSI_MIN_INSYNC_REPLICAS": "3"},
         r"min_insync_replicas \(LSI_MIN_INSYNC_REPLICAS\) must be between 1 and "
         "replication_factor=2, got 3"),
        ({"LSI_MIN_INSYNC_REPLICAS": "0"}, "between 1 and replication_factor=1, got 0"),
        ({"LSI_REPLICATION_FACTOR": "0"}, "replication_factor=0"),
    ],
)  # fmt: skip
def test_inconsistent_settings_say_what_to_set(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        Settings.from_env(environ)
    assert PASSWORD not in str(info.value)


def test_a_child_worker_gets_the_credentials_through_its_environment() -> None:
    s = sasl_ssl(kafka_ssl_check_hostname=False, replication_factor=3, min_insync_replicas=2)
    env = settings_env(s, base={"LSI_KAFKA_SASL_PASSWORD": "stale", "PATH": "/bin"})
    assert env["LSI_KAFKA_SASL_PASSWORD"] == PASSWORD
    assert Settings.from_env(env) == s


# -- the translation -----------------------------------------------------------------------
def test_plaintext_needs_nothing() -> None:
    s = Settings()
    assert kafka_python_options(s) == {"security_protocol": "PLAINTEXT"}
    assert aiokafka_options(s) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(s) is None and ssl_context(s) is None


def test_kafka_python_gets_sasl_and_tls_options(certs: Certificates) -> None:
    s = sasl_ssl(certs, kafka_ssl_certfile=str(certs.client_cert),
                 kafka_ssl_keyfile=str(certs.client_key))  # fmt: skip
    assert kafka_python_options(s) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "lsi-worker",
        "sasl_plain_password": PASSWORD,
        "ssl_check_hostname": True,
        "ssl_cafile": str(certs.ca),
        "ssl_certfile": str(certs.client_cert),
        "ssl_keyfile": str(certs.client_key),
    }
    plain = Settings.from_env({**SASL_ENV, "LSI_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                               "LSI_KAFKA_SASL_MECHANISM": "PLAIN"})  # fmt: skip
    assert kafka_python_options(plain) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "lsi-worker",
        "sasl_plain_password": PASSWORD,
    }


def test_aiokafka_gets_a_verifying_tls_context(certs: Certificates) -> None:
    options = aiokafka_options(sasl_ssl(certs))
    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "lsi-worker",
        "sasl_plain_password": PASSWORD,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [dict(c["subject"][0])["commonName"] for c in context.get_ca_certs()] == ["lsi test CA"]
    relaxed = ssl_context(sasl_ssl(certs, kafka_ssl_check_hostname=False))
    assert relaxed is not None and not relaxed.check_hostname
    assert relaxed.verify_mode == ssl.CERT_REQUIRED  # the chain is still checked


def test_a_client_certificate_is_loaded(certs: Certificates) -> None:
    s = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(certs.ca),
                 kafka_ssl_certfile=str(certs.client_cert),
                 kafka_ssl_keyfile=str(certs.client_key))  # fmt: skip
    assert ssl_context(s) is not None
    wrong = s.with_(kafka_ssl_keyfile=str(certs.keystore))  # the broker's key, not the client's
    with pytest.raises(ConfigError, match="cannot load the Kafka TLS files"):
        ssl_context(wrong)


def test_missing_or_broken_tls_files_are_config_errors(tmp_path: Path) -> None:
    missing = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(tmp_path / "no.pem"))
    for translate in (kafka_python_options, aiokafka_options, faust_credentials):
        with pytest.raises(ConfigError, match=r"LSI_KAFKA_SSL_CAFILE=.*no\.pem: no such file"):
            translate(missing)
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"cannot load the Kafka TLS files \(ssl_cafile="):
        ssl_context(missing.with_(kafka_ssl_cafile=str(tmp_path / "junk.pem")))


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_faust_passes_scram_and_tls_to_aiokafka(certs: Certificates, mechanism: str) -> None:
    credentials = faust_credentials(sasl_ssl(certs, kafka_sasl_mechanism=mechanism))
    assert isinstance(credentials, SASLCredentials)
    # what Faust's consumer and producer will hand aiokafka
    auth = credentials_to_aiokafka_auth(credentials)
    assert isinstance(auth.pop("ssl_context"), ssl.SSLContext)
    assert auth == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "lsi-worker",
        "sasl_plain_password": PASSWORD,
    }


def test_faust_without_tls_or_without_sasl(certs: Certificates) -> None:
    sasl_plaintext = Settings.from_env(
        {**SASL_ENV, "LSI_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
    )
    auth = credentials_to_aiokafka_auth(faust_credentials(sasl_plaintext))
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["ssl_context"] is None
    tls_only = faust_credentials(Settings(kafka_security_protocol="SSL",
                                          kafka_ssl_cafile=str(certs.ca)))  # fmt: skip
    assert isinstance(tls_only, SSLCredentials)
    assert credentials_to_aiokafka_auth(tls_only)["security_protocol"] == "SSL"


def test_the_worker_app_connects_with_the_settings(certs: Certificates, tmp_path: Path) -> None:
    from streams.app import build_app

    s = sasl_ssl(certs, data_dir=tmp_path, models_dir=tmp_path / "models",
                 replication_factor=3, min_insync_replicas=2)  # fmt: skip
    conf = build_app(s).app.conf
    assert conf.topic_replication_factor == 3
    auth = credentials_to_aiokafka_auth(conf.broker_credentials)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "SCRAM-SHA-256"


# -- kafka-python clients ------------------------------------------------------------------
class FakeAdmin:
    """Records what lsi asks of kafka-python's admin client."""

    instances: ClassVar[list[FakeAdmin]] = []

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.created: list[Any] = []
        FakeAdmin.instances.append(self)

    def list_topics(self) -> list[str]:
        return []

    def create_topics(self, new: list[Any], timeout_ms: int) -> None:
        self.created += new

    def close(self) -> None:
        pass


def test_topics_get_the_replication_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lsi.kafka.clients, "KafkaAdminClient", FakeAdmin)
    FakeAdmin.instances.clear()
    s = sasl_ssl(replication_factor=3, min_insync_replicas=2)
    created = ensure_topics(s, changelogs=True)
    (admin,) = FakeAdmin.instances
    assert admin.config["security_protocol"] == "SASL_SSL"
    assert admin.config["sasl_plain_password"] == PASSWORD
    topics = {t.name: t for t in admin.created}
    # 8 lsi topics (events, their re-key hop, log, outputs, dead letters, deltas, models,
    # catalogue) and the 4 tables' changelogs
    assert sorted(topics) == sorted(created) and len(topics) == 12
    for topic in topics.values():
        assert topic.replication_factor == 3, topic.name
        assert topic.topic_configs["min.insync.replicas"] == "2", topic.name
    assert topics[s.models_topic].num_partitions == 1
    assert topics[s.models_topic].topic_configs["cleanup.policy"] == "compact"
    assert topics[s.interactions_topic].topic_configs["retention.ms"] == "-1"
    assert topics["lsi-user_state-changelog"].topic_configs["cleanup.policy"] == "compact"
    assert "cleanup.policy" not in topics[s.events_topic].topic_configs
    assert topics[s.items_topic].topic_configs["cleanup.policy"] == "compact"
    assert topics[s.items_topic].num_partitions == s.partitions  # co-partitioned with its table


def test_a_rejected_connection_says_what_to_check() -> None:
    s = sasl_ssl()
    with pytest.raises(BrokerError) as info, client_errors(s):
        logging.getLogger("kafka.net.manager").warning(
            "Bootstrap connection to %s failed: %s (backoff %.2f secs)",
            "bootstrap-0", kafka.errors.KafkaConnectionError("socket disconnected"), 0.1,
        )  # fmt: skip
        raise kafka.errors.KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:9092")
    message = str(info.value)
    assert message.startswith("Kafka at 127.0.0.1:9092 (SASL_SSL, SCRAM-SHA-256 as lsi-worker) "
                              "failed (KafkaTimeoutError: Unable to bootstrap from")  # fmt: skip
    assert "last connection error: KafkaConnectionError: socket disconnected" in message
    assert "check LSI_KAFKA_SASL_USERNAME, LSI_KAFKA_SASL_PASSWORD" in message
    assert PASSWORD not in message and "\n" not in message


def test_a_tls_failure_points_at_the_ca() -> None:
    s = sasl_ssl()
    with pytest.raises(BrokerError) as info, client_errors(s):
        logging.getLogger("kafka.net.manager").error(
            "Connection failed: %s",
            kafka.errors.KafkaConnectionError("Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED]"),
        )
        raise kafka.errors.KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:9092")
    message = str(info.value)
    assert "CERTIFICATE_VERIFY_FAILED" in message and "check LSI_KAFKA_SSL_CAFILE" in message
    assert not logging.getLogger("kafka.net.manager").handlers, "the capture is removed"


def test_the_worker_announces_how_it_connects_without_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import streams.app

    ran: list[Settings] = []
    monkeypatch.setattr(lsi.kafka.clients, "ensure_topics", lambda *a, **k: [])
    monkeypatch.setattr(lsi.kafka.clients, "wait_for_group_coordinator", lambda *a, **k: None)
    monkeypatch.setattr(streams.app, "run_worker", lambda settings, loglevel: ran.append(settings))
    for var, value in SASL_ENV.items():
        monkeypatch.setenv(var, value)
    assert main(["worker", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "brokers 127.0.0.1:9092 (SASL_SSL, SCRAM-SHA-256 as lsi-worker)" in out
    assert PASSWORD not in out and ran[0].kafka_sasl_password == PASSWORD
