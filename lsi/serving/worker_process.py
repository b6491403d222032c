"""A worker as a child process, for the tools that run one (demo, benchmarks, tests).

The child gets exactly the caller's :class:`~lsi.config.Settings` through ``LSI_*``
variables (``LSI_KAFKA_*``, ``LSI_TEST_*`` and ``LSI_DATASETS_DIR`` pass through; other
``LSI_*`` of the caller's environment do not), runs in its own process group, logs to a file, and (on Linux)
stops when the process that started it dies, however it died (``lsi worker --parent-pid``):
a demo or benchmark killed with ``SIGKILL`` leaves no worker behind.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from lsi.config import Settings
from lsi.monitoring.scrape import MetricsSnapshot, parse_metrics

__all__ = ["die_with_parent", "scrape_metrics", "settings_env", "start_worker", "stop_worker"]


def die_with_parent(parent_pid: int) -> bool:
    """Have the kernel send this process ``SIGTERM`` when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``, Linux only; elsewhere a no-op). ``False`` when the parent
    ``parent_pid`` is already gone (this process was re-parented before the call)."""
    if sys.platform != "linux":
        return True
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    return os.getppid() == parent_pid


def settings_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment in which ``Settings.from_env()`` yields ``settings``."""
    source = dict(os.environ) if base is None else base
    env = {
        k: v for k, v in source.items()
        if not k.startswith("LSI_") or k.startswith(("LSI_KAFKA_", "LSI_TEST_"))
        or k == "LSI_DATASETS_DIR"
    }  # fmt: skip
    for field in dataclasses.fields(settings):
        env[f"LSI_{field.name.upper()}"] = str(getattr(settings, field.name))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_worker(
    settings: Settings,
    log: Path,
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``lsi worker`` in a new process group, output to ``log``; it stops (``SIGTERM``)
    when this process dies. ``env`` adds variables that are not settings (e.g.
    ``OMP_NUM_THREADS``). Call it from a thread that outlives the worker: the kernel ties
    the child to the thread that started it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "lsi", "worker", "--parent-pid", str(os.getpid()), *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**settings_env(settings), **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )


def stop_worker(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM the worker's process group; SIGKILL it if it has not stopped in time."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)


def scrape_metrics(settings: Settings, timeout_s: float = 5.0) -> MetricsSnapshot | None:
    """One scrape of the worker's ``/metrics``; ``None`` while it does not answer."""
    try:
        with urllib.request.urlopen(f"{settings.web_url}/metrics", timeout=timeout_s) as resp:
            return parse_metrics(resp.read().decode())
    except OSError:
        return None
