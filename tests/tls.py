"""Throw-away TLS material for tests: a CA, a broker certificate and a client certificate.

Made with the ``openssl`` command line (OpenSSL 1.1.1 or newer), as PEM files with
unencrypted PKCS#8 keys (what Kafka's ``ssl.keystore.type=PEM`` and Python's ``ssl`` read).
The certificates are valid for two days, for ``localhost`` and ``127.0.0.1``.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certificates", "make_certificates"]


@dataclass(frozen=True, slots=True)
class Certificates:
    """Paths of the PEM files :func:`make_certificates` wrote.

    Attributes:
        ca: the CA's certificate (clients trust it; the broker trusts it for client certs).
        keystore: the broker's private key followed by its certificate.
        client_cert / client_key: a client certificate signed by the same CA, and its key.
    """

    ca: Path
    keystore: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()[-500:]}")


def _signed(directory: Path, name: str, subject: str, extensions: str) -> tuple[Path, Path]:
    """A key and a certificate for ``subject``, signed by the CA in ``directory``."""
    key, csr, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
    ext_file = directory / f"{name}.ext"
    ext_file.write_text(extensions + "\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", subject)  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(directory / "ca.pem"),
             "-CAkey", str(directory / "ca.key"), "-CAcreateserial", "-days", "2",
             "-out", str(cert), "-extfile", str(ext_file))  # fmt: skip
    return key, cert


def make_certificates(directory: Path) -> Certificates:
    """Write a CA, a broker certificate (localhost, 127.0.0.1) and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.pem"),
             "-subj", "/CN=lsi test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    server_key, server_cert = _signed(
        directory, "broker", "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth",
    )  # fmt: skip
    client_key, client_cert = _signed(
        directory, "client", "/CN=lsi-client", "extendedKeyUsage=clientAuth"
    )
    keystore = directory / "broker-keystore.pem"
    keystore.write_text(server_key.read_text() + server_cert.read_text())
    keystore.chmod(0o600)
    return Certificates(directory / "ca.pem", keystore, client_cert, client_key)
