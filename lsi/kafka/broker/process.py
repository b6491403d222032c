"""Process and socket probes for the broker: liveness, ports, a metadata round trip.

All of it is plain POSIX plus ``/proc`` where present; nothing here knows the layout of
the data dir.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
from pathlib import Path

from lsi.errors import BrokerError

__all__ = ["MAIN_CLASS", "alive", "answering", "is_broker", "port_in_use", "spawn_detached"]

#: The broker's main class; its presence in ``/proc/<pid>/cmdline`` guards against pid reuse.
MAIN_CLASS = "kafka.Kafka"

# Run the command in the background of a throw-away shell that prints its pid: the broker
# is then nobody's child in this process (no zombie after `down`, no Popen left running).
_SPAWN = 'out="$1"; shift; "$@" >"$out" 2>&1 </dev/null & echo $!'


def spawn_detached(command: list[str], output: Path) -> int:
    """Start ``command`` in a new session, stdout and stderr to ``output``; return its pid.

    Raises:
        BrokerError: the command could not be launched.
    """
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", _SPAWN, "sh", str(output), *command],
            capture_output=True,
            text=True,
            timeout=30,
            start_new_session=True,
            check=True,
        )
        return int(done.stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        raise BrokerError(f"could not start the Kafka broker: {exc}") from None


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live, non-zombie process (reaping it if it is our child)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def is_broker(pid: int) -> bool:
    """Whether ``pid`` is alive and, where ``/proc`` tells, runs ``kafka.Kafka``."""
    if not alive(pid):
        return False
    try:
        return MAIN_CLASS.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails because something listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def answering(bootstrap: str, timeout_s: float) -> bool:
    """Whether a broker at ``bootstrap`` answers a metadata request listing itself."""
    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError:
        return False  # checked first: kafka-python logs every refused connection as an error
    # imported here: kafka-python loads its protocol schemas on import, too slow for `import lsi`
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    timeout_ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
            client_id="lsi-broker-probe",
        )
    except (KafkaError, OSError):
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()
