"""docs/configuration.md against the code: every setting a worker reads from the environment
has exactly one row, and the default that row shows is the one the code uses."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from lsi.config import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def rows() -> dict[str, list[str]]:
    """``LSI_*`` variable → the default cells of its table rows."""
    found: dict[str, list[str]] = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\|\s*`(LSI_[A-Z0-9_]+)`\s*\|\s*([^|]*)\|", line)
        if m:
            found.setdefault(m.group(1), []).append(m.group(2).strip())
    return found


def shown(value: object) -> str:
    """A default as the page writes it (booleans as ``true``/``false``, whole floats bare)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_every_setting_has_one_row_with_the_default_the_code_uses() -> None:
    documented, defaults = rows(), Settings()
    problems = []
    for f in dataclasses.fields(Settings):
        env = f"LSI_{f.name.upper()}"
        cells = documented.get(env, [])
        value = getattr(defaults, f.name)
        if len(cells) != 1:
            problems.append(f"{env}: {len(cells)} rows")
            continue
        code = re.match(r"`([^`]*)`", cells[0])
        if code is not None and code.group(1) != shown(value):
            problems.append(f"{env}: page says {code.group(1)!r}, code {shown(value)!r}")
        elif code is None and value not in ("", None):  # "(empty)", "(system CAs)"
            problems.append(f"{env}: page shows no value, code {shown(value)!r}")
    assert problems == []


def test_the_page_documents_no_setting_the_code_lacks() -> None:
    """Rows for variables that are not settings are the local broker's (``LSI_KAFKA_*`` that
    :class:`lsi.kafka.broker.BrokerSettings` reads), the tests' and the datasets folder."""
    names = {f"LSI_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    broker = (Path(__file__).resolve().parents[2] / "lsi/kafka/broker/settings.py").read_text()
    others = [v for v in rows() if v not in names]
    unknown = [v for v in others
               if not (v.startswith("LSI_KAFKA_") and f"``{v}``" in broker)
               and v not in ("LSI_DATASETS_DIR", "LSI_TEST_BROKERS")]  # fmt: skip
    assert unknown == []


def test_the_parser_reads_the_rows() -> None:
    """The checks above would pass vacuously on a page the parser cannot read."""
    assert len(rows()) >= len(dataclasses.fields(Settings))
    assert rows()["LSI_TOP_K"] == [f"`{Settings().top_k}`"]
