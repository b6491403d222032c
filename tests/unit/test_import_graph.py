"""What importing a part of lsi loads: the pure core no Kafka client and no torch, the
worker's scorer no graph library. Each check runs in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CORE = (
    *(
        f"lsi.{p.parent.name}.{p.stem}"
        for folder in ("core", "wire")
        for p in sorted((Path(__file__).resolve().parents[2] / "lsi" / folder).glob("[a-z]*.py"))
    ),
    "lsi.evaluation.measures",
    "lsi.config",
)


def loaded_by(*modules: str) -> set[str]:
    code = (
        f"import sys, {', '.join(modules)};"
        "print(' '.join(m for m in ('aiokafka', 'kafka', 'faust', 'torch', 'torch_geometric')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True,
                         capture_output=True, text=True, timeout=180)  # fmt: skip
    return set(out.stdout.split())


def test_the_core_loads_neither_a_kafka_client_nor_torch() -> None:
    assert loaded_by(*CORE) == set()


def test_the_fused_scorer_loads_torch_but_not_the_graph_library() -> None:
    """The worker scores with :mod:`lsi.serving.fusion`; only the refresh job trains LightGCN."""
    assert loaded_by("lsi.serving.fusion") == {"torch"}


def test_listing_snapshots_loads_no_torch(tmp_path: Path) -> None:
    """``lsi models list`` reads manifests only (it took 11-22 s when it loaded the trainer)."""
    code = (
        "import sys; from lsi.cli.main import main; rc = main(['models', 'list']);"
        "assert rc == 0 and 'torch' not in sys.modules"
    )
    env = {**os.environ, "LSI_MODELS_DIR": str(tmp_path / "models")}
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env, check=True,
                         capture_output=True, text=True, timeout=180)  # fmt: skip
    assert "no snapshots in" in out.stdout


def test_the_command_line_help_loads_no_benchmark_kafka_client_or_torch() -> None:
    """``lsi --help`` and ``lsi bench --help`` build every group's flags; a benchmark's help
    names its options dataclass's report folder, read only when that benchmark's own help is
    printed (:class:`lsi.cli.common.LateHelp`)."""
    code = (
        "import contextlib, io, sys; from lsi.cli.main import main\n"
        "for argv in (['--help'], ['bench', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        "print(' '.join(m for m in ('lsi.bench', 'aiokafka', 'kafka', 'faust', 'torch')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True,
                         capture_output=True, text=True, timeout=180)  # fmt: skip
    assert out.stdout.split() == []
