"""Settings: defaults, environment overrides, unknown keys fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsi.cli.main import main
from lsi.config import Settings
from lsi.errors import ConfigError


def test_defaults_are_safe() -> None:
    s = Settings.from_env({})
    assert s.web_host == "127.0.0.1" and s.emit_policy == "batch" and s.max_event_bytes == 16384
    assert s.broker_url == "kafka://127.0.0.1:9092"


def test_environment_overrides_are_typed() -> None:
    s = Settings.from_env(
        {
            "LSI_BROKERS": "a:1,b:2",
            "LSI_PARTITIONS": "4",
            "LSI_FILTER_SEEN": "no",
            "LSI_DATA_DIR": "/tmp/x",
            "LSI_BATCH_WITHIN_S": "0.5",
            "LSI_KAFKA_PORT": "1",
        }
    )
    assert s.partitions == 4 and s.filter_seen is False and s.data_dir == Path("/tmp/x")
    assert s.batch_within_s == 0.5 and s.broker_url == "kafka://a:1;kafka://b:2"


def test_unknown_variable_names_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean LSI_BROKERS"):
        Settings.from_env({"LSI_BROKER": "x:1"})


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("LSI_PARTITIONS", "many"),
        ("LSI_FILTER_SEEN", "maybe"),
        ("LSI_EMIT_POLICY", "sometimes"),
        ("LSI_TOP_K", "0"),
        ("LSI_SEQUENCE_WINDOWS", "every"),
        ("LSI_SEQUENCE_LR_SCHEDULE", "linear"),
        ("LSI_SEQUENCE_EMA_DECAY", "1"),
        ("LSI_SEQUENCE_BALANCED_INIT", "sometimes"),
        ("LSI_SEQUENCE_HEADS", "3"),
        ("LSI_SEQUENCE_LAYERS", "0"),
    ],
)
def test_bad_values_say_what_is_wrong(var: str, value: str) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env({var: value})


def test_settings_are_frozen_and_feed_the_engine() -> None:
    s = Settings.from_env({}, top_k=7, emit_policy="event")
    with pytest.raises(AttributeError):
        s.top_k = 3  # type: ignore[misc]
    engine = s.engine()
    assert engine.scoring.top_k == 7 and engine.emit_policy == "event"


def test_a_child_worker_gets_exactly_the_parents_settings() -> None:
    from lsi.serving.worker_process import settings_env

    s = Settings.from_env({}, brokers="h:1", partitions=3, filter_seen=False, web_bind="0.0.0.0")
    env = settings_env(s, base={"LSI_TOP_K": "3", "LSI_KAFKA_PORT": "1", "PATH": "/bin"})
    assert Settings.from_env(env) == s
    assert env["LSI_KAFKA_PORT"] == "1" and env["PATH"] == "/bin"


def test_variables_other_tools_read_are_not_unknown_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``LSI_PROMETHEUS_URL`` (``lsi report``, ``lsi monitoring``) and ``LSI_DATASETS_DIR``
    are documented; exporting them must not make every other command fail."""
    env = {"LSI_PROMETHEUS_URL": "http://127.0.0.1:9/", "LSI_DATASETS_DIR": str(tmp_path)}
    assert Settings.from_env(env) == Settings()
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert main(["models", "list", "--models-dir", str(tmp_path / "models")]) == 0
    assert "unknown setting" not in capsys.readouterr().err
