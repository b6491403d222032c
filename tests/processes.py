"""Helpers for tests that kill a parent process and watch what happens to its children."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def running(pid: int) -> bool:
    """The process exists and is not a zombie (Linux ``/proc``)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def kill_and_watch(parent: subprocess.Popen[str], child: int, timeout_s: float) -> bool:
    """SIGKILL ``parent`` (no cleanup of its own runs), then wait up to ``timeout_s`` for
    ``child`` to go; ``True`` if it went."""
    parent.kill()
    parent.wait(timeout=30)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and running(child):
        time.sleep(0.1)
    return not running(child)
