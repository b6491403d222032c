"""Dataset loaders and the replay order, on small synthetic gzip CSV files (never real data)."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

import lsi.evaluation.datasets
from lsi.errors import DatasetError
from lsi.evaluation.datasets import DATASETS, datasets_root, item_titles, load
from lsi.kafka.producer import events_of
from lsi.wire.records import EVENT_TYPES, TYPE_CODES


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    """A gzip'd UTF-8 CSV with a header row, as in the datasets folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty datasets folder that ``LSI_DATASETS_DIR`` points at."""
    folder = tmp_path / "datasets"
    folder.mkdir()
    monkeypatch.setenv("LSI_DATASETS_DIR", str(folder))
    return folder


ML100K_ROWS: list[list[object]] = [
    # user_id, item_id, rating, timestamp  (sorted by user, then time, as the real files)
    [1, 10, 5, 300],
    [1, 11, 3, 100],
    [2, 10, 4, 200],
    [2, 12, 1, 100],
    [3, 13, 2, 50],
]


def write_ml100k(root: Path, rows: list[list[object]] = ML100K_ROWS) -> Path:
    return write_csv(
        root / "ml-100k" / "interactions.csv.gz",
        ["user_id", "item_id", "rating", "timestamp"],
        rows,
    )


def test_datasets_root_follows_the_environment(root: Path) -> None:
    assert datasets_root() == root


def test_datasets_root_without_anything_to_find_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LSI_DATASETS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    # the search also walks up from the package; move the package somewhere empty
    monkeypatch.setattr(
        lsi.evaluation.datasets, "__file__", str(tmp_path / "pkg" / "lsi" / "datasets.py")
    )
    with pytest.raises(DatasetError, match="LSI_DATASETS_DIR"):
        datasets_root()


def test_datasets_root_finds_shared_datasets_above_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LSI_DATASETS_DIR", raising=False)
    (tmp_path / "shared" / "datasets").mkdir(parents=True)
    (tmp_path / "project" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "project" / "sub")
    assert datasets_root() == tmp_path / "shared" / "datasets"


def test_ml100k_columns_types_and_rating_weights(root: Path) -> None:
    write_ml100k(root)
    data = load("ml-100k")
    assert data.name == "ml-100k" and len(data) == 5
    assert data.users.dtype == np.int64 and data.items.dtype == np.int64
    assert data.ts.dtype == np.float64 and data.types.dtype == np.int8
    assert data.users.tolist() == [1, 1, 2, 2, 3]  # file order, not time order
    assert data.items.tolist() == [10, 11, 10, 12, 13]
    assert data.ts.tolist() == [300.0, 100.0, 200.0, 100.0, 50.0]
    assert set(data.types.tolist()) == {TYPE_CODES["rate"]}
    assert data.weights is not None and data.weights.dtype == np.float32
    assert data.weights.tolist() == [5.0, 3.0, 4.0, 1.0, 2.0]


def test_time_order_is_by_time_with_ties_in_file_order(root: Path) -> None:
    write_ml100k(root)
    order = load("ml-100k").time_order()
    assert order.dtype == np.int64
    # ts: [300, 100, 200, 100, 50]; rows 1 and 3 tie at 100 and keep their file order
    assert order.tolist() == [4, 1, 3, 2, 0]


def test_time_order_keeps_file_order_for_many_ties(root: Path) -> None:
    # a non-stable sort (quicksort) reorders equal keys on arrays this size
    rows: list[list[object]] = [[u, 100 + u, 3, 7 if u % 3 else 5] for u in range(200)]
    write_ml100k(root, rows)
    order = load("ml-100k").time_order().tolist()
    fives = [u for u in range(200) if u % 3 == 0]
    sevens = [u for u in range(200) if u % 3]
    assert order == fives + sevens


def test_taobao_behaviours_map_to_event_types(root: Path) -> None:
    write_csv(
        root / "taobao" / "interactions.csv.gz",
        ["user_id", "item_id", "category_id", "behavior", "timestamp"],
        [[1, 5, 9, "pv", 10], [1, 6, 9, "cart", 11], [2, 5, 9, "fav", 12], [2, 7, 8, "buy", 13]],
    )
    data = load("taobao")
    assert data.types.tolist() == [
        TYPE_CODES["view"],
        TYPE_CODES["cart"],
        TYPE_CODES["like"],
        TYPE_CODES["purchase"],
    ]
    assert data.weights is None
    assert data.items.tolist() == [5, 6, 5, 7]


def test_taobao_unknown_behaviour_is_a_dataset_error(root: Path) -> None:
    write_csv(
        root / "taobao" / "interactions.csv.gz",
        ["user_id", "item_id", "category_id", "behavior", "timestamp"],
        [[1, 5, 9, "pv", 10], [1, 6, 9, "share", 11]],
    )
    with pytest.raises(DatasetError, match="taobao: unknown behaviour 'share'"):
        load("taobao")


@pytest.mark.parametrize("name", ["ml-1m", "amazon-beauty"])
def test_plain_logs_are_view_events_without_weights(root: Path, name: str) -> None:
    write_csv(
        root / name / "interactions.csv.gz",
        ["user_id", "item_id", "timestamp"],
        [[4, 40, 1000], [4, 41, 1001]],
    )
    data = load(name)
    assert data.users.tolist() == [4, 4] and data.items.tolist() == [40, 41]
    assert data.types.tolist() == [TYPE_CODES["view"]] * 2
    assert data.weights is None


def test_yoochoose_test_sessions_are_offset_past_the_train_sessions(root: Path) -> None:
    header = ["session_id", "item_id", "timestamp"]
    write_csv(
        root / "yoochoose-clicks" / "train.csv.gz",
        header,
        [[1, 100, 10.5], [1, 101, 11.25], [5, 100, 12.0]],
    )
    write_csv(root / "yoochoose-clicks" / "test.csv.gz", header, [[1, 102, 20.0], [2, 100, 21.0]])
    data = load("yoochoose-clicks")
    # train sessions as they are; test sessions shifted by max(train) + 1 = 6
    assert data.users.tolist() == [1, 1, 5, 7, 8]
    assert data.items.tolist() == [100, 101, 100, 102, 100]
    assert data.ts.tolist() == [10.5, 11.25, 12.0, 20.0, 21.0]
    assert data.types.tolist() == [TYPE_CODES["click"]] * 5
    assert data.weights is None


def test_yoochoose_with_an_empty_train_file_keeps_test_ids(root: Path) -> None:
    header = ["session_id", "item_id", "timestamp"]
    write_csv(root / "yoochoose-clicks" / "train.csv.gz", header, [])
    write_csv(root / "yoochoose-clicks" / "test.csv.gz", header, [[3, 100, 1.0]])
    assert load("yoochoose-clicks").users.tolist() == [3]


def test_missing_dataset_folder_names_the_file_and_the_variable(root: Path) -> None:
    with pytest.raises(DatasetError) as info:
        load("ml-1m")
    message = str(info.value)
    assert str(root / "ml-1m" / "interactions.csv.gz") in message
    assert "LSI_DATASETS_DIR" in message


def test_yoochoose_missing_test_file_is_a_dataset_error(root: Path) -> None:
    header = ["session_id", "item_id", "timestamp"]
    write_csv(root / "yoochoose-clicks" / "train.csv.gz", header, [[1, 100, 1.0]])
    with pytest.raises(DatasetError, match=r"test\.csv\.gz is missing"):
        load("yoochoose-clicks")


def test_unknown_dataset_name_lists_the_choices(root: Path) -> None:
    with pytest.raises(DatasetError) as info:
        load("ml-10m")
    message = str(info.value)
    assert "unknown dataset 'ml-10m'" in message
    assert all(name in message for name in DATASETS)


def test_a_file_with_the_wrong_columns_is_a_dataset_error(root: Path) -> None:
    write_csv(root / "ml-1m" / "interactions.csv.gz", ["uid", "iid", "when"], [[1, 2, 3]])
    with pytest.raises(DatasetError, match="unexpected row"):
        load("ml-1m")


def test_a_non_numeric_cell_is_a_dataset_error(root: Path) -> None:
    write_csv(
        root / "ml-1m" / "interactions.csv.gz",
        ["user_id", "item_id", "timestamp"],
        [[1, 2, "yesterday"]],
    )
    with pytest.raises(DatasetError, match="is this the right file"):
        load("ml-1m")


def test_a_truncated_row_is_a_dataset_error(root: Path) -> None:
    path = root / "ml-1m" / "interactions.csv.gz"
    path.parent.mkdir(parents=True)
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        fh.write("user_id,item_id,timestamp\n1,2,3\n4\n")
    with pytest.raises(DatasetError, match="unexpected row"):
        load("ml-1m")


def test_a_root_argument_overrides_the_environment(tmp_path: Path, root: Path) -> None:
    other = tmp_path / "elsewhere"
    write_ml100k(other)
    assert len(load("ml-100k", root=other)) == 5


def test_item_titles_for_movielens_and_none_elsewhere(root: Path) -> None:
    write_csv(
        root / "ml-100k" / "items.csv.gz",
        ["item_id", "title", "genres"],
        [[10, "A Film (1995)", "Drama"], [11, "Another, with a comma (1996)", "Comedy"]],
    )
    assert item_titles("ml-100k") == {
        "10": "A Film (1995)",
        "11": "Another, with a comma (1996)",
    }
    assert item_titles("taobao") == {}


def test_events_of_yields_time_order_with_deterministic_ids(root: Path) -> None:
    write_ml100k(root)
    data = load("ml-100k")
    pairs = list(events_of(data, "run7"))
    events = [event for event, _ in pairs]
    assert [e.event_id for e in events] == [
        "ml-100k:run7:4",
        "ml-100k:run7:1",
        "ml-100k:run7:3",
        "ml-100k:run7:2",
        "ml-100k:run7:0",
    ]
    assert [orig for _, orig in pairs] == [50.0, 100.0, 100.0, 200.0, 300.0]
    first = events[0]
    assert (first.user_id, first.item_id, first.type, first.ts) == ("3", "13", "rate", 50.0)
    assert first.weight == 2.0
    assert first.context == {"orig_ts": 50.0, "dataset": "ml-100k"}
    assert all(isinstance(e.weight, float) for e in events)
    # the same run id gives the same ids (a replay twice is a stream of duplicates)
    assert [e.event_id for e, _ in events_of(data, "run7")] == [e.event_id for e in events]


def test_events_of_start_and_limit_slice_the_time_order(root: Path) -> None:
    write_ml100k(root)
    data = load("ml-100k")
    ids = [e.event_id for e, _ in events_of(data, "r", limit=2, start=1)]
    assert ids == ["ml-100k:r:1", "ml-100k:r:3"]
    assert list(events_of(data, "r", start=5)) == []


def test_events_of_without_weights_sends_none(root: Path) -> None:
    write_csv(
        root / "taobao" / "interactions.csv.gz",
        ["user_id", "item_id", "category_id", "behavior", "timestamp"],
        [[1, 5, 9, "buy", 10]],
    )
    (event, _), *_ = events_of(load("taobao"), "r")
    assert event.weight is None and event.type == "purchase"
    assert event.to_dict()["context"] == {"orig_ts": 10.0, "dataset": "taobao"}


def test_a_generic_csv_keeps_integer_ids_and_numbers_string_ids(tmp_path: Path) -> None:
    from lsi.evaluation.datasets import load, load_csv

    ints = tmp_path / "log.csv"
    ints.write_text("user_id,item_id,timestamp\n7,3,10\n7,4,5\n")
    data = load(str(ints))
    assert data.users.tolist() == [7, 7] and data.items.tolist() == [3, 4]
    assert data.time_order().tolist() == [1, 0] and data.weights is None

    strs = tmp_path / "log2.csv.gz"
    with gzip.open(strs, "wt") as fh:
        fh.write(
            "user_id,item_id,timestamp,type,weight\nann,x,1,cart,2\nbob,y,2,view,\nann,y,3,,\n"
        )
    data = load_csv(strs)
    assert data.users.tolist() == [0, 1, 0] and data.items.tolist() == [0, 1, 1]
    assert [EVENT_TYPES[t] for t in data.types] == ["cart", "view", "view"]
    assert data.weights is not None and data.weights.tolist() == [2.0, 1.0, 1.0]


def test_a_generic_csv_without_the_columns_says_which(tmp_path: Path) -> None:
    from lsi.evaluation.datasets import load_csv

    bad = tmp_path / "bad.csv"
    bad.write_text("user,item\n1,2\n")
    with pytest.raises(DatasetError, match="item_id, timestamp, user_id"):
        load_csv(bad)
