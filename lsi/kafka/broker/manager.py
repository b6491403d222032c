"""Start, stop and inspect a local single-node Kafka broker (KRaft combined mode).

Everything the broker owns lives under ``settings.data_dir``::

    server.properties   log4j2.xml   cluster.id   broker.pid
    kraft-combined-logs/            (log.dirs: partitions and the metadata log)
    logs/server.log                 (log4j2)     logs/stdout.log (the JVM's own output)

The broker outlives the Python process that starts it: ``lsi kafka up`` returns and the
broker keeps running until ``lsi kafka down``. The pid file is the only link between them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from lsi.errors import BrokerError
from lsi.kafka.broker.config import (
    is_formatted,
    load_or_create_cluster_id,
    log4j2_config,
    scram_arguments,
    server_properties,
)
from lsi.kafka.broker.process import (
    MAIN_CLASS,
    alive,
    answering,
    is_broker,
    port_in_use,
    spawn_detached,
)
from lsi.kafka.broker.runtime import find_java, resolve_libs
from lsi.kafka.broker.settings import BrokerSettings

__all__ = ["BrokerStatus", "KafkaBroker"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """A snapshot of the local broker.

    Attributes:
        running: the pid file names a live ``kafka.Kafka`` process.
        pid: that process's id, or ``None`` when not running.
        bootstrap: ``host:port`` clients connect to.
        answering: the broker answered a metadata request just now.
        version: the Kafka version these settings run.
        data_dir: where its state lives.
        log_file: its log4j2 log.
    """

    running: bool
    pid: int | None
    bootstrap: str
    answering: bool
    version: str
    data_dir: Path
    log_file: Path


class KafkaBroker:
    """Manages the local broker described by ``settings``.

    Args:
        settings: where jars, data and logs live; ``BrokerSettings.from_env()`` if ``None``.
    """

    def __init__(self, settings: BrokerSettings | None = None) -> None:
        self.settings = BrokerSettings.from_env() if settings is None else settings
        data = self.settings.data_dir
        self._pid_file = data / "broker.pid"
        self._properties = data / "server.properties"
        self._log4j = data / "log4j2.xml"
        self._stdout = self.settings.log_dir / "stdout.log"

    def resolve(self) -> Path:
        """Check for Java 17+ and download the jars if needed; return the libs dir.

        Raises:
            BrokerError: Java or Maven missing, Java too old, or the download failed.
        """
        find_java()
        return resolve_libs(self.settings)

    def status(self) -> BrokerStatus:
        """Read the pid file and, if the broker runs, ask it for metadata."""
        pid = self._read_pid()
        running = pid is not None and is_broker(pid)
        s = self.settings
        return BrokerStatus(
            running=running,
            pid=pid if running else None,
            bootstrap=s.bootstrap,
            answering=running and answering(s.bootstrap, 2.0),
            version=s.kafka_version,
            data_dir=s.data_dir,
            log_file=self.log_path(),
        )

    def up(self, wait: bool = True) -> BrokerStatus:
        """Start the broker unless it already runs; with ``wait``, until it answers.

        Formats the storage on first start (the cluster id is kept in ``cluster.id``).

        Raises:
            BrokerError: a port is taken by another process, Java or the jars are
                missing, formatting failed, the broker died while starting (the message
                ends with its last log lines), or it did not answer in ``start_timeout_s``.
        """
        current = self.status()
        if current.running and current.pid is not None:
            if wait and not current.answering:
                self._wait_ready(current.pid)
                return self.status()
            return current
        s = self.settings
        for port in (s.port, s.controller_port, s.sasl_ssl_port):
            if port and port_in_use(s.host, port):
                raise BrokerError(
                    f"{s.host}:{port} is already in use by another process, not the "
                    f"lsi broker of {s.data_dir}: stop it or choose other ports "
                    "(LSI_KAFKA_PORT, LSI_KAFKA_CONTROLLER_PORT, LSI_KAFKA_SASL_SSL_PORT)"
                )
        for path, var in ((s.tls_keystore, "KEYSTORE"), (s.tls_client_ca, "CLIENT_CA")):
            if s.sasl_ssl_port and path is not None and not path.is_file():
                raise BrokerError(f"{path} does not exist (LSI_KAFKA_TLS_{var})")
        java = find_java()
        libs = resolve_libs(s)
        s.log_dir.mkdir(parents=True, exist_ok=True)
        self._properties.touch(mode=0o600)  # it may hold SASL PLAIN passwords
        self._properties.chmod(0o600)
        self._properties.write_text(server_properties(s), encoding="utf-8")
        self._log4j.write_text(log4j2_config(self.log_path()), encoding="utf-8")
        jvm = [str(java), f"-Dlog4j2.configurationFile={self._log4j}", "-cp", f"{libs}/*"]
        if not is_formatted(s.kraft_dir):
            self._format(jvm)
        heap = [f"-Xmx{s.heap}", f"-Xms{s.heap}"]
        command = [jvm[0], *heap, *jvm[1:], MAIN_CLASS, str(self._properties)]
        pid = spawn_detached(command, self._stdout)
        self._pid_file.write_text(f"{pid}\n", encoding="utf-8")
        log.info("started Kafka %s (pid %d) on %s", s.kafka_version, pid, s.bootstrap)
        if wait:
            self._wait_ready(pid)
        return self.status()

    def down(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker: SIGTERM, then SIGKILL after ``timeout_s``.

        Returns:
            ``True`` if a broker was running and is now stopped, ``False`` if none ran.
        """
        pid = self._read_pid()
        if pid is None or not is_broker(pid):
            self._pid_file.unlink(missing_ok=True)
            return False
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not alive(pid):
                break
            log.warning("Kafka broker (pid %d) ignored %s for %.0f s", pid, sig.name, wait_s)
        self._pid_file.unlink(missing_ok=True)
        return True

    def log_path(self) -> Path:
        """The broker's log4j2 log file."""
        return self.settings.log_dir / "server.log"

    def tail_logs(self, lines: int = 50) -> list[str]:
        """The last ``lines`` lines of the broker log (empty if there is none yet)."""
        try:
            with self.log_path().open(encoding="utf-8", errors="replace") as handle:
                return [line.rstrip("\n") for line in deque(handle, maxlen=lines)]
        except FileNotFoundError:
            return []

    def _read_pid(self) -> int | None:
        try:
            return int(self._pid_file.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            return None

    def _format(self, jvm: list[str]) -> None:
        cluster_id = load_or_create_cluster_id(self.settings.data_dir / "cluster.id")
        command = [
            *jvm,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self._properties),
            *scram_arguments(self.settings),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            output = " | ".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            for _, password in self.settings.sasl_users:
                output = output.replace(password, "***")
            raise BrokerError(
                f"formatting {self.settings.kraft_dir} failed (exit {done.returncode}): {output}"
            )

    def _wait_ready(self, pid: int) -> None:
        timeout_s = self.settings.start_timeout_s
        deadline = time.monotonic() + timeout_s
        while not answering(self.settings.bootstrap, 2.0):
            if not alive(pid):
                self._pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"the Kafka broker (pid {pid}) exited while starting; {self._last_lines()}"
                )
            if time.monotonic() > deadline:
                self.down()
                raise BrokerError(
                    f"the Kafka broker did not answer on {self.settings.bootstrap} "
                    f"within {timeout_s:.0f} s and was stopped; "
                    f"{self._last_lines()}"
                )
            time.sleep(0.5)

    def _last_lines(self) -> str:
        text = f"last lines of {self.log_path()}:\n" + "\n".join(self.tail_logs(20) or ["(empty)"])
        try:  # the JVM's own complaints (bad heap size, missing class) never reach log4j2
            jvm = self._stdout.read_text(errors="replace").strip().splitlines()[-20:]
        except FileNotFoundError:
            jvm = []
        return text + (f"\nlast lines of {self._stdout}:\n" + "\n".join(jvm) if jvm else "")
