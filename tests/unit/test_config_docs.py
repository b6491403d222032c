"""docs/configuration.md against the code: its settings tables are the ones
:func:`lsi.config.render_markdown` makes from the declarations (``lsi settings --write``
regenerates them), and every other variable it lists is one some other part of lsi reads."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from lsi.config import DOC_BEGIN, DOC_END, SECTIONS, Settings, render_markdown, write_markdown

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"


def test_the_page_shows_the_tables_the_declarations_render() -> None:
    text = DOC.read_text()
    generated = text.split(DOC_BEGIN, 1)[1].split(DOC_END, 1)[0]
    assert generated.strip() == render_markdown().strip(), (
        "docs/configuration.md is stale: run `lsi settings --write docs/configuration.md`"
    )


def test_every_setting_is_declared_with_a_section_and_help() -> None:
    for f in dataclasses.fields(Settings):
        assert f.metadata["section"] in SECTIONS, f.name
        assert len(f.metadata["help"]) > 10, f.name


def test_the_rendered_rows_carry_the_code_defaults() -> None:
    """One row per setting, its default cell the code's default (or the declared wording)."""
    rows = dict(re.findall(r"^\| `(LSI_[A-Z0-9_]+)` \| ([^|]*) \|", render_markdown(), re.M))
    assert len(rows) == len(dataclasses.fields(Settings))
    defaults = Settings()
    assert rows["LSI_TOP_K"] == f"`{defaults.top_k}`"
    assert rows["LSI_KAFKA_SSL_CHECK_HOSTNAME"] == "`true`"
    assert rows["LSI_BATCH_WITHIN_S"] == "`0.03`" and rows["LSI_SESSION_TIMEOUT_S"] == "`30`"
    assert rows["LSI_KAFKA_SSL_CAFILE"] == "(system CAs)"


def test_writing_replaces_only_the_generated_block(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    page.write_text(f"intro\n\n{DOC_BEGIN}\nold table\n{DOC_END}\n\noutro\n")
    assert write_markdown(page) is True
    text = page.read_text()
    assert text.startswith("intro\n\n") and text.endswith(f"{DOC_END}\n\noutro\n")
    assert "old table" not in text and "| `LSI_BROKERS` |" in text
    assert write_markdown(page) is False  # already up to date


def test_the_page_documents_no_variable_nothing_reads() -> None:
    """Rows outside the generated block are the local broker's (``LSI_KAFKA_*`` that
    :class:`lsi.kafka.broker.BrokerSettings` reads), the tests' and the datasets folder."""
    text = DOC.read_text()
    outside = text.split(DOC_BEGIN, 1)[0] + text.split(DOC_END, 1)[1]
    broker = (ROOT / "lsi/kafka/broker/settings.py").read_text()
    names = {f"LSI_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    others = re.findall(r"^\| `(LSI_[A-Z0-9_]+)` \|", outside, re.M)
    assert others, "the broker's table is missing"
    unknown = [v for v in others if v not in names
               and not (v.startswith("LSI_KAFKA_") and f"``{v}``" in broker)
               and v not in ("LSI_DATASETS_DIR", "LSI_TEST_BROKERS")]  # fmt: skip
    assert unknown == []


@pytest.mark.parametrize("section", list(SECTIONS))
def test_each_section_has_settings(section: str) -> None:
    assert any(f.metadata["section"] == section for f in dataclasses.fields(Settings))
