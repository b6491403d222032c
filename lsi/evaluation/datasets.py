"""Loaders for the interaction logs in ``shared/datasets`` (see its README).

Each loader returns :class:`Interactions`: parallel numpy arrays in file order, ids as the
dataset's own integer ids, time in seconds, and the event type each row stands for
(MovieLens 100K ratings are ``rate`` events weighted by the rating; Taobao behaviours map to
``view``/``cart``/``like``/``purchase``; YooChoose clicks are ``click``; the others ``view``).
:meth:`Interactions.time_order` is the replay order: by time, ties in file order (the
order the published benchmarks used).

The data is read at run time from the datasets folder: ``$LSI_DATASETS_DIR``, else the first
``shared/datasets`` found walking up from the working directory or from this package.
"""

from __future__ import annotations

import csv
import gzip
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsi.errors import DatasetError
from lsi.wire.records import TYPE_CODES

__all__ = ["DATASETS", "Interactions", "datasets_root", "item_titles", "load", "load_csv"]

DATASETS: dict[str, str] = {
    "ml-100k": "MovieLens 100K ratings (rate events, weight = rating)",
    "ml-1m": "MovieLens 1M, 5-core (view events)",
    "amazon-beauty": "Amazon Beauty 5-core (view events)",
    "taobao": "Taobao UserBehavior, first 84k rows (view/cart/like/purchase)",
    "yoochoose-clicks": "YooChoose click sessions, train then test (click events)",
}

_TAOBAO_TYPES = {"pv": "view", "cart": "cart", "fav": "like", "buy": "purchase"}


@dataclass(frozen=True, slots=True)
class Interactions:
    """An interaction log as parallel arrays (file order).

    Attributes:
        name: dataset name.
        users: int64 user (or session) ids, shape ``[n]``.
        items: int64 item ids, shape ``[n]``.
        ts: float64 seconds since the epoch, shape ``[n]``.
        types: int8 codes into :data:`lsi.wire.records.EVENT_TYPES`, shape ``[n]``.
        weights: float32 per-row weight (ratings) or ``None``.
    """

    name: str
    users: npt.NDArray[np.int64]
    items: npt.NDArray[np.int64]
    ts: npt.NDArray[np.float64]
    types: npt.NDArray[np.int8]
    weights: npt.NDArray[np.float32] | None

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def time_order(self) -> npt.NDArray[np.int64]:
        """Row indices sorted by time, ties in file order (stable sort)."""
        return np.argsort(self.ts, kind="stable").astype(np.int64)


def datasets_root() -> Path:
    """Where the datasets live (see the module docstring)."""
    env = os.environ.get("LSI_DATASETS_DIR")
    if env:
        return Path(env)
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            candidate = folder / "shared" / "datasets"
            if candidate.is_dir():
                return candidate
    raise DatasetError(
        "cannot find the datasets folder: set LSI_DATASETS_DIR to the folder that holds "
        "ml-100k/, ml-1m/ … (the project's shared/datasets)"
    )


def _rows(path: Path) -> Iterator[dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"dataset file {path} is missing; check LSI_DATASETS_DIR")
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        yield from csv.DictReader(fh)


def _read(
    path: Path, user_col: str, offset: int = 0
) -> tuple[list[int], list[int], list[float], list[dict[str, str]]]:
    users: list[int] = []
    items: list[int] = []
    ts: list[float] = []
    extra: list[dict[str, str]] = []
    try:
        for row in _rows(path):
            users.append(int(row[user_col]) + offset)
            items.append(int(row["item_id"]))
            ts.append(float(row["timestamp"]))
            extra.append(row)
    except (KeyError, ValueError, TypeError) as exc:  # TypeError: a short row's None cell
        raise DatasetError(f"{path}: unexpected row ({exc!r}); is this the right file?") from None
    return users, items, ts, extra


def load_csv(path: Path) -> Interactions:
    """A generic log: CSV (optionally gzip'd) with a header ``user_id,item_id,timestamp`` and
    optional ``type`` (one of :data:`lsi.wire.records.EVENT_TYPES`) and ``weight`` columns.

    Integer ids are kept; any other id (a string) is numbered in order of first appearance,
    which is stable for a given file. Parquet is not read (no Parquet library is a
    dependency): convert it to CSV first.
    """
    if not path.is_file():
        raise DatasetError(f"{path} does not exist; give a CSV file with user_id,item_id,timestamp")
    opener = gzip.open if path.suffix == ".gz" else open
    users: list[str] = []
    items: list[str] = []
    ts: list[float] = []
    types: list[int] = []
    weights: list[float] = []
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"user_id", "item_id", "timestamp"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        try:
            for row in reader:
                users.append(row["user_id"])
                items.append(row["item_id"])
                ts.append(float(row["timestamp"]))
                types.append(TYPE_CODES[row.get("type") or "view"])
                weights.append(float(row.get("weight") or 1.0))
        except (KeyError, ValueError, TypeError) as exc:
            raise DatasetError(f"{path}: unexpected row ({exc!r})") from None

    def ids(raw: list[str]) -> npt.NDArray[np.int64]:
        if all(r.isdigit() for r in raw):
            return np.array([int(r) for r in raw], dtype=np.int64)
        index: dict[str, int] = {}
        return np.array([index.setdefault(r, len(index)) for r in raw], dtype=np.int64)

    has_weight = any(w != 1.0 for w in weights)
    return Interactions(
        name=path.name.split(".")[0],
        users=ids(users),
        items=ids(items),
        ts=np.array(ts, dtype=np.float64),
        types=np.array(types, dtype=np.int8),
        weights=np.array(weights, dtype=np.float32) if has_weight else None,
    )


def load(name: str, root: Path | None = None) -> Interactions:
    """Load one of :data:`DATASETS` by name, or a generic CSV by path (:func:`load_csv`)."""
    if name.endswith((".csv", ".csv.gz")):
        return load_csv(Path(name))
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    base = (root or datasets_root()) / name
    weights: npt.NDArray[np.float32] | None = None
    if name == "yoochoose-clicks":
        u1, i1, t1, _ = _read(base / "train.csv.gz", "session_id")
        offset = (max(u1) + 1) if u1 else 0  # test sessions are distinct sessions
        u2, i2, t2, _ = _read(base / "test.csv.gz", "session_id", offset)
        users, items, ts = u1 + u2, i1 + i2, t1 + t2
        types = [TYPE_CODES["click"]] * len(users)
    else:
        users, items, ts, rows = _read(base / "interactions.csv.gz", "user_id")
        if name == "taobao":
            try:
                types = [TYPE_CODES[_TAOBAO_TYPES[r["behavior"]]] for r in rows]
            except KeyError as exc:
                raise DatasetError(f"taobao: unknown behaviour {exc}") from None
        elif name == "ml-100k":
            types = [TYPE_CODES["rate"]] * len(users)
            weights = np.array([float(r["rating"]) for r in rows], dtype=np.float32)
        else:
            types = [TYPE_CODES["view"]] * len(users)
    return Interactions(
        name=name,
        users=np.array(users, dtype=np.int64),
        items=np.array(items, dtype=np.int64),
        ts=np.array(ts, dtype=np.float64),
        types=np.array(types, dtype=np.int8),
        weights=weights,
    )


def item_titles(name: str, root: Path | None = None) -> dict[str, str]:
    """Item id → title, for datasets that have titles (MovieLens); empty otherwise."""
    path = (root or datasets_root()) / name / "items.csv.gz"
    if not path.is_file():
        return {}
    return {row["item_id"]: row.get("title", "") for row in _rows(path)}
