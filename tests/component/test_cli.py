"""The ``lsi`` command line in a process of its own (slow: each test starts one)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.unit.cli.test_cli import one_line_error

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``LSI_*`` variable of the caller's shell leaks into a test."""
    for var in list(os.environ):
        if var.startswith("LSI_"):
            monkeypatch.delenv(var)


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_whose_parent_is_gone_says_so() -> None:
    # in a child process: the check arms PR_SET_PDEATHSIG on the process that runs it. Its
    # parent (this test) is not the pid named: the tool that started it "is gone".
    done = subprocess.run([sys.executable, "-m", "lsi", "worker", "--parent-pid",
                           str(os.getpid() + 1_000_000)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    line = one_line_error(done.stderr, "worker")
    assert "already exited" in line and "start the worker again" in line
