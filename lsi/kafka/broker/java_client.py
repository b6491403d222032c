"""lsi's Kafka security settings as the Java client takes them: a ``.properties`` file.

Kafka's command-line tools (:mod:`lsi.kafka.broker.tools`) read their client settings from a
properties file (``--command-config`` …). :func:`client_properties` translates the same
:class:`~lsi.config.Settings` fields :mod:`lsi.kafka.security` translates for the Python
clients; :func:`render_properties` writes them in the escaped ISO-8859-1 form Java reads.

==================================  ========================================================
lsi setting                         Java client property
==================================  ========================================================
``kafka_security_protocol``         ``security.protocol``
``kafka_sasl_mechanism``            ``sasl.mechanism``
``kafka_sasl_username/password``    ``sasl.jaas.config`` (``PlainLoginModule`` or
                                    ``ScramLoginModule``, values quoted for JAAS)
``kafka_ssl_cafile``                ``ssl.truststore.type=PEM``, ``ssl.truststore.location``
``kafka_ssl_certfile/keyfile``      ``ssl.keystore.type=PEM``, ``ssl.keystore.location``
                                    (key and chain copied into one PEM file)
``kafka_ssl_check_hostname=false``  ``ssl.endpoint.identification.algorithm=`` (empty)
==================================  ========================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from lsi.config import Settings
from lsi.errors import ConfigError

__all__ = ["client_properties", "render_properties"]

_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)
_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def _pem_blocks(path: Path, variable: str) -> list[tuple[str, str]]:
    """``(label, block)`` of every PEM block in ``path``."""
    try:
        text = path.expanduser().read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise ConfigError(f"{variable}={path}: cannot read it ({exc.strerror})") from None
    return [(match.group(1), match.group(0)) for match in _PEM.finditer(text)]


def _client_pem(settings: Settings) -> str:
    """The client's private key and certificate chain in one PEM text (Java's PEM keystore)."""
    certfile = Path(settings.kafka_ssl_certfile)
    blocks = _pem_blocks(certfile, "LSI_KAFKA_SSL_CERTFILE")
    if settings.kafka_ssl_keyfile:
        blocks += _pem_blocks(Path(settings.kafka_ssl_keyfile), "LSI_KAFKA_SSL_KEYFILE")
    keys = [(label, block) for label, block in blocks if label.endswith("PRIVATE KEY")]
    certs = [block for label, block in blocks if label == "CERTIFICATE"]
    if not keys or not certs:
        raise ConfigError(
            "LSI_KAFKA_SSL_CERTFILE (and LSI_KAFKA_SSL_KEYFILE) must hold a PEM certificate and "
            f"its private key; found {len(certs)} certificate(s), {len(keys)} key(s)"
        )
    label, key = keys[0]
    if label != "PRIVATE KEY":
        raise ConfigError(
            f"Kafka's Java tools read unencrypted PKCS#8 keys (BEGIN PRIVATE KEY), not "
            f"'{label}': convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`"
        )
    return "\n".join([key, *certs]) + "\n"


def _jaas_quoted(text: str) -> str:
    # the JAAS parser reads quoted strings with Java's StreamTokenizer: backslash escapes
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def client_properties(settings: Settings, keystore: Path | None = None) -> dict[str, str]:
    """The Java client's properties for lsi's security settings.

    Args:
        settings: ``kafka_security_protocol``, the SASL user, the TLS files.
        keystore: where the client's key and certificate are written as one PEM file (Java
            reads them from one file); needed when ``kafka_ssl_certfile`` is set.

    >>> client_properties(Settings())
    {'security.protocol': 'PLAINTEXT'}
    >>> client_properties(Settings(kafka_security_protocol="SASL_PLAINTEXT",
    ...     kafka_sasl_username="lsi", kafka_sasl_password='p"w'))["sasl.jaas.config"]
    'org.apache.kafka.common.security.plain.PlainLoginModule required username="lsi" password="p\\\\"w";'
    """
    protocol = settings.kafka_security_protocol
    props = {"security.protocol": protocol}
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        mechanism = settings.kafka_sasl_mechanism
        user, password = settings.kafka_sasl_username, settings.kafka_sasl_password
        props["sasl.mechanism"] = mechanism
        props["sasl.jaas.config"] = (
            f"{_LOGIN_MODULES[mechanism]} required "
            f"username={_jaas_quoted(user)} password={_jaas_quoted(password)};"
        )
    if protocol in ("SSL", "SASL_SSL"):
        if settings.kafka_ssl_cafile:
            cafile = Path(settings.kafka_ssl_cafile).expanduser()
            if not cafile.is_file():
                raise ConfigError(f"LSI_KAFKA_SSL_CAFILE={cafile}: no such file")
            props |= {"ssl.truststore.type": "PEM", "ssl.truststore.location": str(cafile)}
        if settings.kafka_ssl_certfile:
            if keystore is None:
                raise ValueError("a client certificate needs a keystore path to be written to")
            keystore.touch(mode=0o600)
            keystore.write_text(_client_pem(settings), encoding="ascii")
            props |= {"ssl.keystore.type": "PEM", "ssl.keystore.location": str(keystore)}
        if not settings.kafka_ssl_check_hostname:
            props["ssl.endpoint.identification.algorithm"] = ""
    return props


def _escape(value: str) -> str:
    """A ``.properties`` value: Java reads the file as ISO-8859-1 with backslash escapes."""
    out = []
    for index, char in enumerate(value):
        if char == "\\":
            out.append("\\\\")
        elif char == " " and index == 0:
            out.append("\\ ")
        elif " " <= char <= "~":
            out.append(char)
        else:  # controls and non-ASCII as UTF-16 units, the way Properties.store writes them
            units = char.encode("utf-16-be")
            out += [f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2)]
    return "".join(out)


def render_properties(props: Mapping[str, str]) -> str:
    """A Java ``.properties`` file of ``props`` (plain ASCII keys), values escaped.

    >>> print(render_properties({"ssl.truststore.location": "/tmp/ca é.pem"}), end="")
    # Written by lsi (lsi kafka tool); removed when the tool exits.
    ssl.truststore.location=/tmp/ca \\u00e9.pem
    """
    lines = ["# Written by lsi (lsi kafka tool); removed when the tool exits."]
    lines += [f"{key}={_escape(value)}" for key, value in props.items()]
    return "\n".join(lines) + "\n"
