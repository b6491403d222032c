"""Whatever `lsi demo` started, it stops, on any signal: SIGTERM (a timeout, an IDE's stop
button) and Ctrl-C through `uv run`, which forwards the terminal's SIGINT, so the demo gets two
in a row and the second used to cut its cleanup short (the broker was left running)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import free_port
from tests.integration.test_cli_live import lsi

pytestmark = pytest.mark.timeout(300)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) is gone for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def listening_pid(port: int) -> int | None:
    """The process whose command line names ``127.0.0.1:port`` (Prometheus' listen address)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "prometheus" in cmdline and f"127.0.0.1:{port}" in cmdline:
            return int(entry.name)
    return None


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT twice"])
def test_a_signal_stops_everything_the_demo_started(tmp_path: Path, how: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LSI_")}
    env.update({
        "LSI_KAFKA_PORT": str(free_port()), "LSI_KAFKA_CONTROLLER_PORT": str(free_port()),
        "LSI_KAFKA_DATA_DIR": str(tmp_path / "kafka"), "LSI_WEB_PORT": str(free_port()),
        "LSI_REFRESH_METRICS_PORT": str(free_port()), "PYTHONUNBUFFERED": "1",
    })  # fmt: skip
    if "LSI_DATASETS_DIR" in os.environ:
        env["LSI_DATASETS_DIR"] = os.environ["LSI_DATASETS_DIR"]
    demo = subprocess.Popen([sys.executable, "-m", "lsi", "demo", "--rate", "200"], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in demo.stdout or ()],
                              daemon=True)  # fmt: skip
    reader.start()
    seen: list[str] = []
    worker_pid = prom_port = None
    deadline = time.time() + 180
    try:
        while time.time() < deadline and not any("[demo] replaying" in line for line in seen):
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                assert demo.poll() is None, "".join(seen)[-3000:]
        out = "".join(seen)
        assert "[demo] replaying" in out, out[-3000:]
        worker_pid = int(re.search(r"\[demo\] worker pid (\d+)", out).group(1))  # type: ignore[union-attr]
        found = re.search(r"\[demo\] Prometheus at http://127\.0\.0\.1:(\d+)", out)
        prom_port = int(found.group(1)) if found else None
        prom_pid = listening_pid(prom_port) if prom_port else None
        assert alive(worker_pid) and (prom_port is None or prom_pid is not None)

        if how == "SIGTERM":
            demo.send_signal(signal.SIGTERM)
        else:
            demo.send_signal(signal.SIGINT)
            time.sleep(0.3)  # the forwarded copy arrives while the cleanup has begun
            demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=120)
        status = lsi("kafka", "status", env=env, cwd=tmp_path)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        lsi("kafka", "down", env=env, cwd=tmp_path)  # whatever the test left, never the CI's
        reader.join(timeout=30)  # the pipe is at its end once the demo has exited
        if demo.stdout is not None:
            demo.stdout.close()

    tail = "".join(seen) + "".join(iter_queue(lines))
    assert code == 128 + (signal.SIGTERM if how == "SIGTERM" else signal.SIGINT), tail[-3000:]
    assert "stopping the worker" in tail and "stopping Kafka" in tail, tail[-3000:]
    assert not alive(worker_pid)
    if prom_pid is not None:
        assert not alive(prom_pid)
    assert status.returncode == 1 and "stopped" in status.stdout  # the demo stopped it itself


def iter_queue(q: queue.Queue[str]) -> list[str]:
    out = []
    while True:
        try:
            out.append(q.get(timeout=0.5))
        except queue.Empty:
            return out
