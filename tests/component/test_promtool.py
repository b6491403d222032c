"""promtool on the shipped Prometheus files: the config, the rules and the alert unit tests
(``monitoring/prometheus/tests``). Needs Debian's ``prometheus`` package (``.ci/run``
installs it). Slow: each test runs promtool in a process of its own."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

pytestmark = pytest.mark.slow

PROMETHEUS = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus"


def promtool(*args: str) -> str:
    exe = shutil.which("promtool")
    assert exe, "promtool not found: install Debian's prometheus package (.ci/run does)"
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_config_and_its_rule_files_check(tmp_path: Path) -> None:
    # the compose file mounts rules/ at /etc/prometheus/rules; point the same config at the
    # repository's copy so promtool checks the rules through the config as well
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    config["rule_files"] = [str(PROMETHEUS / "rules" / "*.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    out = promtool("check", "config", str(path))
    assert "SUCCESS" in out and "rules found" in out


def test_rules_check() -> None:
    rules = sorted((PROMETHEUS / "rules").glob("*.yml"))
    assert rules
    out = promtool("check", "rules", *map(str, rules))
    assert "SUCCESS" in out


def test_alert_unit_tests_pass() -> None:
    tests = sorted((PROMETHEUS / "tests").glob("*.yml"))
    assert tests
    out = promtool("test", "rules", *map(str, tests))
    assert "SUCCESS" in out and "FAILED" not in out
