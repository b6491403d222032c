"""Debian's Prometheus server on loopback, scraping local lsi processes (demo and tests).

The compose stack runs Prometheus in a container with ``monitoring/prometheus/prometheus.yml``
(targets found through Docker's DNS). Here the same rules and the same job names
(``lsi-worker``, ``lsi-refresh``) scrape processes on 127.0.0.1, with a short scrape interval
so a few minutes of replay already fill the dashboards' windows.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsi.errors import ConfigError, LsiError
from lsi.monitoring.dashboards import RULES_DIR
from lsi.monitoring.prometheus_api import PrometheusClient

__all__ = ["LocalPrometheus", "find_prometheus"]


def find_prometheus() -> str | None:
    """The ``prometheus`` executable on PATH (Debian's package installs /usr/bin/prometheus)."""
    return shutil.which("prometheus")


@dataclass
class LocalPrometheus:
    """One Prometheus server process.

    Attributes:
        data_dir: its TSDB and its generated ``prometheus.yml``.
        port: HTTP port on 127.0.0.1.
        targets: job name → ``host:port`` targets to scrape at ``/metrics``.
        scrape_interval_s: also the rule evaluation interval of groups that set none.
    """

    data_dir: Path
    port: int
    targets: dict[str, list[str]]
    scrape_interval_s: float = 1.0
    rules_dir: Path = RULES_DIR
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        interval = f"{self.scrape_interval_s:g}s"
        return {
            "global": {"scrape_interval": interval, "scrape_timeout": interval,
                       "evaluation_interval": interval},
            "rule_files": [str(self.rules_dir / "*.yml")],
            "scrape_configs": [
                {"job_name": job, "metrics_path": "/metrics",
                 "static_configs": [{"targets": list(targets)}]}
                for job, targets in self.targets.items()
            ],
        }  # fmt: skip

    def start(self, timeout_s: float = 30.0) -> LocalPrometheus:
        exe = find_prometheus()
        if exe is None:
            raise ConfigError("prometheus is not installed; on Debian: apt-get install prometheus")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.data_dir / "prometheus.yml"
        cfg.write_text(json.dumps(self.config(), indent=2))  # YAML is a superset of JSON
        log = (self.data_dir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [exe, f"--config.file={cfg}", f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise LsiError(f"prometheus exited with {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise LsiError(f"prometheus was not ready on {self.url} in {timeout_s:g} s: {self.tail()}")

    def api(self, path: str) -> Any:
        """GET ``/api/v1/<path>``'s ``data``."""
        return PrometheusClient(self.url).api(f"/api/v1/{path}")

    def tail(self, n: int = 20) -> str:
        path = self.data_dir / "prometheus.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
