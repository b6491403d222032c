"""Find a Java runtime and resolve the Kafka jars with Maven.

The jars come from Maven Central through the ``pom.xml`` shipped in this package;
Maven's own ``~/.m2`` is the download cache, and ``cache_dir/kafka-<version>/libs`` holds
a flat copy for the ``-cp 'libs/*'`` class path. A marker file, written last and holding
the pom's digest, tells a finished copy from one a crash or Ctrl-C cut short, and from
one made by an older pom.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from lsi.errors import BrokerError
from lsi.kafka.broker.settings import BrokerSettings

__all__ = ["MIN_JAVA", "find_java", "java_major", "resolve_libs"]

#: Kafka 4 brokers need Java 17 or newer.
MIN_JAVA = 17

_MARKER = ".lsi-resolved"
_INSTALL_JAVA = "install it (Debian: apt-get install openjdk-17-jre-headless) or put it on PATH"
_INSTALL_MVN = "install it (Debian: apt-get install maven) or put it on PATH"
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def java_major(version_output: str) -> int | None:
    """Major Java version from ``java -version`` output (``1.8.0_x`` → 8, ``17.0.15`` → 17).

    >>> java_major('openjdk version "17.0.15" 2025-04-15')
    17
    >>> java_major('java version "1.8.0_292"')
    8
    """
    match = _VERSION.search(version_output)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java() -> Path:
    """Path of a ``java`` on ``PATH`` whose version is at least :data:`MIN_JAVA`.

    Raises:
        BrokerError: no ``java``, an unreadable version, or one older than 17; the
            message is one line saying what to install.
    """
    found = shutil.which("java")
    if found is None:
        raise BrokerError(f"Java {MIN_JAVA}+ is required to run the Kafka broker: {_INSTALL_JAVA}")
    try:
        done = subprocess.run([found, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(
            f"cannot run {found} -version ({exc}); Java {MIN_JAVA}+ "
            f"is required to run the Kafka broker: {_INSTALL_JAVA}"
        ) from None
    major = java_major(done.stderr + done.stdout)
    if major is None or major < MIN_JAVA:
        seen = "an unknown version" if major is None else f"Java {major}"
        raise BrokerError(
            f"Java {MIN_JAVA}+ is required to run the Kafka broker, but {found} "
            f"is {seen}: {_INSTALL_JAVA}"
        )
    return Path(found)


def _pom_bytes() -> bytes:
    return resources.files("lsi.kafka.broker").joinpath("pom.xml").read_bytes()


def _marker_text(settings: BrokerSettings, pom: bytes) -> str:
    return f"kafka={settings.kafka_version} pom-sha256={hashlib.sha256(pom).hexdigest()}\n"


def resolve_libs(settings: BrokerSettings, timeout_s: float = 900.0) -> Path:
    """Make sure the broker's jars are in :attr:`BrokerSettings.libs_dir` and return it.

    Does nothing when the marker says the copy is complete for this version and pom.
    Otherwise runs ``mvn dependency:copy-dependencies`` into a scratch directory and
    swaps it in, so a stale or partial ``libs`` never mixes with a new one.

    Raises:
        BrokerError: ``mvn`` is missing, fails, or runs past ``timeout_s``.
    """
    libs = settings.libs_dir
    pom = _pom_bytes()
    marker = libs / _MARKER
    expected = _marker_text(settings, pom)
    if marker.is_file() and marker.read_text(encoding="utf-8") == expected:
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"Maven (mvn) is required to download Kafka {settings.kafka_version}: {_INSTALL_MVN}"
        )
    home = libs.parent
    scratch = home / "libs.partial"
    home.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(scratch, ignore_errors=True)
    (home / "pom.xml").write_bytes(pom)
    command = [
        mvn,
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(home / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={scratch}",
        f"-Dkafka.version={settings.kafka_version}",
        "-DincludeScope=runtime",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise BrokerError(
            f"Maven did not finish resolving Kafka {settings.kafka_version} "
            f"within {timeout_s:.0f} s"
        ) from None
    if done.returncode != 0 or not any(scratch.glob("kafka_2.13-*.jar")):
        output = _ANSI.sub("", done.stdout + done.stderr).splitlines()
        errors = [line.strip() for line in output if "ERROR" in line] or output[-1:]
        detail = errors[0] if errors else "no output"
        raise BrokerError(
            f"Maven could not resolve Kafka {settings.kafka_version} "
            f"(exit {done.returncode}): {detail}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    scratch.rename(libs)
    marker.write_text(expected, encoding="utf-8")
    return libs
