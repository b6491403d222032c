"""``lsi settings`` and the flags derived from the setting declarations (lsi/cli/common.py)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from lsi.cli.common import add_setting_flags, settings_from
from lsi.cli.main import main
from lsi.config import DOC_BEGIN, DOC_END, Settings, render_markdown
from lsi.errors import ConfigError


def parser(*names: str, **spelt: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t", exit_on_error=False)
    add_setting_flags(p, *names, **spelt)
    return p


def test_a_flag_is_coerced_as_the_environment_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSI_WEB_PORT", "7001")
    p = parser("web_port", "filter_seen", "batch_within_s", "data_dir")
    assert settings_from(p.parse_args([])).web_port == 7001  # the environment, no flag
    s = settings_from(p.parse_args(["--web-port", "7002", "--filter-seen", "off",
                                    "--batch-within-s", "0.5", "--data-dir", "x/y"]))  # fmt: skip
    assert (s.web_port, s.filter_seen, s.batch_within_s, str(s.data_dir)) == (
        7002,
        False,
        0.5,
        "x/y",
    )
    with pytest.raises(ConfigError, match=r"web_port='seven' is not a valid int"):
        settings_from(p.parse_args(["--web-port", "seven"]))


def test_choices_and_spellings_come_from_the_declaration() -> None:
    p = parser("emit_policy", refresh_device="--device")
    assert settings_from(p.parse_args(["--device", "cpu"])).refresh_device == "cpu"
    with pytest.raises(argparse.ArgumentError, match="invalid choice"):
        p.parse_args(["--emit-policy", "sometimes"])
    text = " ".join(p.format_help().split())
    assert "$LSI_EMIT_POLICY or batch" in text and "$LSI_REFRESH_DEVICE or auto" in text


def test_a_secret_never_becomes_a_flag() -> None:
    with pytest.raises(ValueError, match="environment only"):
        parser("kafka_sasl_password")


def test_every_setting_flag_of_the_cli_names_its_variable_and_default() -> None:
    """Every flag the commands derive from a setting says which variable it overrides."""
    from lsi.cli.main import build_parser

    names = {f.name for f in dataclasses.fields(Settings)}
    seen = 0
    top = build_parser()
    for sub in top._subparsers._group_actions[0].choices.values():  # type: ignore[union-attr]
        for action in sub._actions:
            if action.dest in names:
                seen += 1
                assert f"$LSI_{action.dest.upper()}" in (action.help or ""), action.option_strings
    assert seen >= 10


def test_lsi_settings_shows_each_value_and_its_source(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LSI_TOP_K", "7")
    monkeypatch.setenv("LSI_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("LSI_KAFKA_SASL_USERNAME", "u")
    monkeypatch.setenv("LSI_KAFKA_SASL_PASSWORD", "hunter2")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "LSI_TOP_K=7  # environment" in out and "LSI_BATCH_MAX=500  # default" in out
    assert "LSI_KAFKA_SASL_PASSWORD=(set)" in out and "hunter2" not in out
    assert out.count("=") >= len(dataclasses.fields(Settings))


def test_lsi_settings_refuses_a_bad_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LSI_EMIT_POLICY", "sometimes")
    assert main(["settings"]) == 2
    assert "emit_policy (LSI_EMIT_POLICY) must be one of event, batch" in capsys.readouterr().err


def test_lsi_settings_markdown_is_the_rendered_page(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings", "--markdown"]) == 0
    assert capsys.readouterr().out == render_markdown()


def test_lsi_settings_write_regenerates_the_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "configuration.md"
    page.write_text(f"# Configuration\n\n{DOC_BEGIN}\nstale\n{DOC_END}\n")
    assert main(["settings", "--write", str(page)]) == 0
    assert "rewritten" in capsys.readouterr().out
    assert render_markdown().strip() in page.read_text() and "stale" not in page.read_text()
