"""Kafka security settings as each client library wants them: one translation, three clients.

lsi talks to Kafka through three libraries, and each spells authentication and encryption its
own way:

=====================  =====================================  ==============================
client                 used by                                built with
=====================  =====================================  ==============================
Faust (on aiokafka)    the worker's agents, tables, topics    :func:`faust_credentials`
aiokafka               the worker's model watcher             :func:`aiokafka_options`
kafka-python           topics, producers, consumers of tools  :func:`kafka_python_options`
=====================  =====================================  ==============================

All three read the same :class:`~lsi.config.Settings` fields (``LSI_KAFKA_SECURITY_PROTOCOL``,
``LSI_KAFKA_SASL_*``, ``LSI_KAFKA_SSL_*``), already checked for consistency by
``Settings.__post_init__``. The functions here add the checks that need the file system (a
named certificate file exists and loads) and raise :class:`~lsi.errors.ConfigError` naming
the variable. Nothing happens at import: the client libraries are imported by the function
that needs them, and files are read only when a function is called.

The SASL password goes into the option mappings (the clients need it) and nowhere else:
:func:`describe`, the text lsi logs and prints about a connection, names the protocol, the
mechanism and the user only.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsi.config import Settings
from lsi.errors import ConfigError

if TYPE_CHECKING:
    from faust.auth import Credentials

__all__ = [
    "aiokafka_options",
    "describe",
    "faust_credentials",
    "kafka_python_options",
    "ssl_context",
    "uses_sasl",
    "uses_tls",
]


def uses_tls(settings: Settings) -> bool:
    """Whether connections are encrypted (``SSL`` or ``SASL_SSL``)."""
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def uses_sasl(settings: Settings) -> bool:
    """Whether connections authenticate with a SASL user (``SASL_PLAINTEXT`` or ``SASL_SSL``)."""
    return settings.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def describe(settings: Settings) -> str:
    """How lsi connects, for a person: ``SASL_SSL, SCRAM-SHA-256 as lsi``; never the password.

    >>> describe(Settings())
    'PLAINTEXT'
    >>> describe(Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="lsi",
    ...                   kafka_sasl_password="secret", kafka_sasl_mechanism="SCRAM-SHA-512"))
    'SASL_SSL, SCRAM-SHA-512 as lsi'
    """
    text = settings.kafka_security_protocol
    if uses_sasl(settings):
        text += f", {settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username}"
    return text


def _tls_files(settings: Settings) -> dict[str, str]:
    """The TLS files set, by client option name; each must be a readable file."""
    named = {
        "ssl_cafile": ("LSI_KAFKA_SSL_CAFILE", settings.kafka_ssl_cafile),
        "ssl_certfile": ("LSI_KAFKA_SSL_CERTFILE", settings.kafka_ssl_certfile),
        "ssl_keyfile": ("LSI_KAFKA_SSL_KEYFILE", settings.kafka_ssl_keyfile),
    }
    files: dict[str, str] = {}
    for option, (var, value) in named.items():
        if not value:
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigError(f"{var}={value}: no such file (a PEM file is expected)")
        files[option] = str(path)
    return files


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context aiokafka and Faust connect with; ``None`` without TLS.

    It trusts ``kafka_ssl_cafile`` (the system's CAs when empty), presents the client
    certificate when one is set, and checks the broker's host name unless
    ``kafka_ssl_check_hostname`` is off.

    Raises:
        ConfigError: a file is missing or is not a PEM certificate or key.
    """
    if not uses_tls(settings):
        return None
    from aiokafka.helpers import create_ssl_context

    files = _tls_files(settings)
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=files.get("ssl_cafile"),
            certfile=files.get("ssl_certfile"),
            keyfile=files.get("ssl_keyfile"),
        )
    except (ssl.SSLError, OSError) as exc:
        shown = ", ".join(f"{option}={path}" for option, path in files.items())
        raise ConfigError(f"cannot load the Kafka TLS files ({shown}): {exc}") from None
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


def kafka_python_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's ``KafkaProducer``, ``KafkaConsumer`` and
    ``KafkaAdminClient``.

    >>> kafka_python_options(Settings())
    {'security_protocol': 'PLAINTEXT'}

    Raises:
        ConfigError: a TLS file is missing.
    """
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if uses_sasl(settings):
        options |= _sasl_options(settings)
    if uses_tls(settings):
        options["ssl_check_hostname"] = settings.kafka_ssl_check_hostname
        options |= _tls_files(settings)
    return options


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's ``AIOKafkaConsumer`` and ``AIOKafkaProducer``.

    Raises:
        ConfigError: a TLS file is missing or does not load.
    """
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if uses_sasl(settings):
        options |= _sasl_options(settings)
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    return options


def faust_credentials(settings: Settings) -> Credentials | None:
    """The ``broker_credentials`` of the Faust app; ``None`` for ``PLAINTEXT``.

    Faust hands them to every aiokafka client it creates (consumer, producer, the admin
    requests that create topics). Its :class:`~faust.auth.SASLCredentials` take any of
    aiokafka's mechanisms, SCRAM included, and switch to ``SASL_SSL`` when given a TLS
    context; :class:`~faust.auth.SSLCredentials` is TLS alone.

    Raises:
        ConfigError: a TLS file is missing or does not load.
    """
    from faust.auth import SASLCredentials, SSLCredentials

    context = ssl_context(settings)
    if uses_sasl(settings):
        return SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return SSLCredentials(context)
    return None


def _sasl_options(settings: Settings) -> dict[str, Any]:
    # kafka-python and aiokafka name the user's fields "plain" for SCRAM too
    return {
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": settings.kafka_sasl_password,
    }
