"""``lsi items publish``: a CSV or a dataset's catalogue through the workers' checks."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

import lsi.kafka.clients
from lsi.cli.main import main
from tests.unit.kafka.test_catalogue_load import FakeProducer


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> FakeProducer:
    prod = FakeProducer(4)
    seen: dict[str, Any] = {}

    def make(settings: Any, **kw: Any) -> FakeProducer:
        seen["brokers"] = settings.brokers
        return prod

    prod.close = lambda: None  # type: ignore[attr-defined]
    monkeypatch.setattr(lsi.kafka.clients, "producer", make)
    monkeypatch.setattr(lsi.kafka.clients, "ensure_topics", lambda s: [])
    prod.seen = seen  # type: ignore[attr-defined]
    return prod


def test_items_publish_csv_limit_and_brokers(
    tmp_path: Path, sent: FakeProducer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.csv"
    path.write_text("item_id,title\ni1,A\ni2,B\ni3,C\n")
    argv = ["items", "publish", "--csv", str(path), "--limit", "2", "--brokers", "h:1"]
    assert main(argv) == 0
    assert [key for _, key, _, _ in sent.sent] == [b"i1", b"i2"]
    assert sent.seen["brokers"] == "h:1"  # type: ignore[attr-defined]
    assert "published 2 catalogue records to lsi.items" in capsys.readouterr().out


def test_items_publish_dataset(
    tmp_path: Path, sent: FakeProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ml").mkdir()
    with gzip.open(tmp_path / "ml" / "items.csv.gz", "wt") as fh:
        fh.write("item_id,title,genres\n1,Toy Story (1995),Animation\n")
    monkeypatch.setenv("LSI_DATASETS_DIR", str(tmp_path))
    assert main(["items", "publish", "--dataset", "ml"]) == 0
    assert [key for _, key, _, _ in sent.sent] == [b"1"]


def test_items_publish_says_what_to_fix(
    tmp_path: Path, sent: FakeProducer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.csv"
    path.write_text("item_id,created_at\ni1,1700000000000\n")
    assert main(["items", "publish", "--csv", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "row 1 (i1): not published: invalid_value: created_at" in out
    assert err.count("\n") == 1 and "no record was published" in err
    assert main(["items", "publish", "--csv", str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
