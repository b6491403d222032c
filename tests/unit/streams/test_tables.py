"""The worker's tables are exactly the ones whose changelogs `lsi worker` creates up front."""

from __future__ import annotations

from pathlib import Path

from lsi.config import Settings
from lsi.kafka.clients import TABLES, changelog_names
from streams.app import build_app


def test_changelogs_created_up_front_match_the_declared_tables(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path, app_id="lsi-x")
    pipeline = build_app(settings)
    tables = [pipeline.tables.user_state, pipeline.tables.item_stats,
              pipeline.tables.trending, pipeline.tables.catalogue]  # fmt: skip
    assert sorted(t.name for t in tables) == sorted(TABLES)
    assert sorted(t.changelog_topic.get_topic_name() for t in tables) == sorted(
        changelog_names(settings)
    )
