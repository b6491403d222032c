"""The floor plan, checked from the code: each folder holds one role and imports only what
that role may (docs/architecture.md, "Where things live"). Static: every module's imports are
read with :mod:`ast`, nothing is imported."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("faust", "mode", "aiokafka", "kafka", "torch", "torch_geometric", "rocksdict")


def modules(folder: str) -> Iterator[Path]:
    yield from sorted((ROOT / folder).rglob("*.py"))


def imports(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import of ``path``, lazy ones inside functions included;
    ``from . import x`` resolved against the module's package."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            yield node.lineno, base
            for alias in node.names:  # ``from lsi import cli`` names a module too
                yield node.lineno, f"{base}.{alias.name}"


def offenders(folder: str, bad: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    """``file:line module`` for every import under ``folder`` of a module in ``bad`` (or a
    submodule of one) that is not in ``allowed``."""

    def under(name: str, prefixes: tuple[str, ...]) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    return [
        f"{path.relative_to(ROOT)}:{line} {name}"
        for path in modules(folder)
        for line, name in imports(path)
        if under(name, bad) and not under(name, allowed)
    ]


@pytest.mark.parametrize("folder", ["lsi/core", "lsi/wire"])
def test_the_pure_core_and_the_wire_formats_load_no_kafka_client_faust_or_torch(
    folder: str,
) -> None:
    assert offenders(folder, HEAVY) == []


def test_the_core_depends_on_the_wire_formats_and_the_errors_only() -> None:
    assert (
        offenders("lsi/core", ("lsi", "models", "streams"), ("lsi.core", "lsi.wire", "lsi.errors"))
        == []
    )


def test_the_wire_formats_depend_on_nothing_of_lsi_but_the_errors() -> None:
    assert offenders("lsi/wire", ("lsi", "models", "streams"), ("lsi.wire", "lsi.errors")) == []


def test_serving_talks_to_no_broker() -> None:
    """The snapshot, the fused scorer and the store are used offline too (evaluation)."""
    assert (
        offenders("lsi/serving", ("faust", "mode", "aiokafka", "kafka", "lsi.kafka", "streams"))
        == []
    )


def test_the_python_client_loads_no_model_no_faust_and_no_command_line() -> None:
    """``lsi.client`` is for applications: events, records and Kafka only."""
    bad = ("faust", "mode", "torch", "torch_geometric", "models", "streams", "lsi.serving",
           "lsi.cli", "lsi.bench", "lsi.evaluation")  # fmt: skip
    assert offenders("lsi/client", bad) == []


def test_the_modules_know_nothing_of_lsi_or_of_their_training() -> None:
    assert offenders("models/nn", ("lsi", "models.training", "models.jobs", "streams")) == []


def test_training_takes_its_configuration_sections_and_does_no_io() -> None:
    """Never the worker's ``Settings``, never Kafka or metrics: the refresh job (models/jobs)
    does the I/O and hands the loops their sections."""
    bad = ("lsi.config", "lsi.kafka", "lsi.monitoring", "models.jobs", "streams", *HEAVY[:4])
    assert offenders("models/training", bad) == []


@pytest.mark.parametrize("folder", ["lsi", "models", "streams"])
def test_nothing_imports_the_command_line(folder: str) -> None:
    found = [
        o
        for o in offenders(folder, ("lsi.cli",))
        if not o.startswith(("lsi/cli/", "lsi/__main__.py"))
    ]
    assert found == []


def test_the_library_leaves_the_faust_app_to_the_tools_that_run_it() -> None:
    """Only the command line and the benchmarks start the Faust app (``lsi worker``, the
    pipeline bench's bare agent); everything else reaches a worker over Kafka or HTTP."""
    found = [
        o for o in offenders("lsi", ("streams",)) if not o.startswith(("lsi/cli/", "lsi/bench/"))
    ]
    assert found == []


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The rules above would pass vacuously if the reader missed an import form."""
    probe = tmp_path / "lsi" / "core" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(
        "def f():\n    import torch\n    from . import engine\n    from lsi import cli\n"
    )
    found = {name: line for line, name in imports(probe, root=tmp_path)}
    assert found["torch"] == 2 and found["lsi.core.engine"] == 3 and found["lsi.cli"] == 4
