"""The model store: immutable, versioned snapshots published atomically.

Layout under the store's root (``LSI_MODELS_DIR``)::

    v000001/manifest.json     version, created_at, data watermark, metrics, shapes
    v000001/ids.json          user and item ids (row order of the arrays)
    v000001/arrays.npz        user_vec, item_vec, base, hist_indptr, hist_items (no pickles)
    v000001/sequence.pt       the fused scorer's weights (a tensor dict, read weights-only)
    v000001/sequence.json     its item catalogue, configuration and training metrics
    LIVE                      {"version": "v000002", "previous": ["v000001"],
                               "experiment": {"name": …, "candidate": "v000003",
                                              "fraction": 0.1, "started_at": …}}

Publishing writes a version into a hidden ``.tmp-*`` directory, fsyncs every file, then
``rename``\\ s the directory into place: a crash at any point leaves either no version or a
whole one, and the live version untouched. ``LIVE`` is replaced the same way (write aside,
``os.replace``). ``previous`` is the stack of earlier live versions that ``rollback`` pops.
Versions beyond the newest ``keep`` are pruned, never the live one or the rollback target.
``experiment`` (optional; a ``LIVE`` without it, as older versions wrote it, has none) is the
running experiment between snapshots (:class:`lsi.core.experiment.Experiment`): a fraction
of users is served by its candidate, a version of this store or ``baseline``. Its candidate
is never the live version (promoting or rolling back to it ends the experiment) and is never
pruned while it runs.
Every change (publish, promote, rollback, prune, experiment start and stop) holds an exclusive ``flock`` on ``.lock``, so
a refresh job and a person running ``lsi models`` at the same time cannot lose each other's
change or remove each other's half-written version.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import re
import shutil
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsi.core.experiment import BASELINE, Experiment, InvalidExperiment
from lsi.errors import LsiError
from lsi.serving.snapshot import Snapshot

__all__ = ["SnapshotArrays", "SnapshotError", "SnapshotStore"]

FORMAT = 1
_VERSION = re.compile(r"^v(\d{6,})$")
ARRAYS = ("user_vec", "item_vec", "base", "hist_indptr", "hist_items")


_ELSEWHERE = "promote another version (`lsi models list`) or run `lsi models rollback`"


class SnapshotError(LsiError):
    """A snapshot or the store is missing, unreadable or inconsistent."""


@dataclass(frozen=True, eq=False)
class SnapshotArrays:
    """What a snapshot holds besides its manifest."""

    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    user_vec: npt.NDArray[np.float32]
    item_vec: npt.NDArray[np.float32]
    base: npt.NDArray[np.float32]
    hist_indptr: npt.NDArray[np.int64]
    hist_items: npt.NDArray[np.int32]
    #: the fused scorer (:class:`lsi.serving.fusion.SequenceModel`) trained with these vectors
    sequence: Any = None

    def model(self, version: str, manifest: dict[str, Any]) -> Snapshot:
        """The serving model over these arrays (no copy)."""
        try:
            return Snapshot(version, self.user_ids, self.item_ids, self.user_vec,
                                 self.item_vec, self.hist_indptr, self.hist_items,
                                 manifest, self.sequence)  # fmt: skip
        except ValueError as exc:
            raise SnapshotError(f"{exc}; {_ELSEWHERE}") from exc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class SnapshotStore:
    """Versions on a (shared) filesystem directory.

    Args:
        root: the store directory (created on first publish).
        keep: how many newest versions to keep (the live one and the rollback target are
            always kept).
    """

    def __init__(self, root: Path | str, keep: int = 5) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.root = Path(root)
        self.keep = keep

    # -- reading -----------------------------------------------------------------------
    def versions(self) -> list[str]:
        """Published versions, oldest first (half-written ``.tmp-*`` directories excluded)."""
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if p.is_dir() and _VERSION.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def _pointer(self) -> dict[str, Any]:
        """``LIVE`` as ``{"version", "previous", "experiment"}``; the experiment as stored
        (unchecked: :meth:`experiment` reads it), so that a damaged one never hides the live
        version."""
        path = self.root / "LIVE"
        if not path.exists():
            return {"version": None, "previous": [], "experiment": None}
        try:
            data = json.loads(path.read_text())
            return {"version": data["version"], "previous": list(data.get("previous", [])),
                    "experiment": data.get("experiment")}  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SnapshotError(f"{path} is unreadable ({exc}); remove it, then run "
                                "`lsi models promote VERSION`") from exc  # fmt: skip

    def live(self) -> str | None:
        """The live version, or ``None`` before the first promotion."""
        v = self._pointer()["version"]
        return str(v) if v is not None else None

    def experiment(self) -> Experiment | None:
        """The running experiment, or ``None``.

        Raises:
            SnapshotError: ``LIVE`` or its experiment is malformed (a worker treats that as
                no experiment, and counts it).
        """
        raw = self._pointer()["experiment"]
        if raw is None:
            return None
        try:
            return Experiment.from_dict(raw)
        except InvalidExperiment as exc:
            raise SnapshotError(f"{self.root / 'LIVE'} holds a malformed experiment ({exc}); "
                                "run `lsi models experiment stop`") from exc  # fmt: skip

    def manifest(self, version: str) -> dict[str, Any]:
        path = self.root / version / "manifest.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SnapshotError(f"no snapshot {version} in {self.root}; `lsi models list` "
                                "shows the versions there") from None  # fmt: skip
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"snapshot {version} has an unreadable manifest: {exc}; "
                                f"{_ELSEWHERE}") from exc  # fmt: skip
        if not isinstance(data, dict):
            raise SnapshotError(f"snapshot {version} has a manifest that is not an object; "
                                f"{_ELSEWHERE}")  # fmt: skip
        return data

    def uri(self, version: str) -> str:
        return str((self.root / version).resolve())

    def load_arrays(self, version: str) -> tuple[dict[str, Any], SnapshotArrays]:
        manifest = self.manifest(version)
        return manifest, load_dir(self.root / version, manifest)

    def load(self, version: str | None = None) -> Snapshot | None:
        """The serving model of ``version`` (default: the live one; ``None`` if none)."""
        version = version or self.live()
        if version is None:
            return None
        manifest, arrays = self.load_arrays(version)
        return arrays.model(version, manifest)

    # -- writing -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive lock on the store (one writer at a time); OS errors → SnapshotError."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / ".lock", "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        except OSError as exc:
            raise SnapshotError(f"cannot write the model store {self.root}: {exc}; check the "
                                "path (LSI_MODELS_DIR) and its permissions") from exc  # fmt: skip

    def next_version(self) -> str:
        vs = self.versions()
        return f"v{(int(vs[-1][1:]) + 1 if vs else 1):06d}"

    def publish(self, arrays: SnapshotArrays, manifest: dict[str, Any]) -> str:
        """Write a new version atomically and return its name (does not promote it)."""
        with self._locked():
            version = self._publish(arrays, manifest)
            self._prune()
        return version

    def _publish(self, arrays: SnapshotArrays, manifest: dict[str, Any]) -> str:
        self._clean_tmp()
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            version = self.next_version()
            man = dict(manifest)
            man.update(
                format=FORMAT,
                version=version,
                created_at=man.get("created_at", time.time()),
                n_users=len(arrays.user_ids),
                n_items=len(arrays.item_ids),
                dim=int(arrays.user_vec.shape[1]),
            )
            _write_file(tmp / "ids.json", json.dumps(
                {"users": list(arrays.user_ids), "items": list(arrays.item_ids)}).encode())  # fmt: skip
            with open(tmp / "arrays.npz", "wb") as f:
                np.savez(f, **{k: getattr(arrays, k) for k in ARRAYS})
                f.flush()
                os.fsync(f.fileno())
            if arrays.sequence is not None:
                weights, desc = arrays.sequence.to_bytes()
                _write_file(tmp / "sequence.pt", weights)
                _write_file(tmp / "sequence.json", desc)
            _write_file(tmp / "manifest.json", (json.dumps(man, indent=2) + "\n").encode())
            _fsync_dir(tmp)
            os.rename(tmp, self.root / version)  # atomic; fails if the name was taken
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return version

    def promote(self, version: str) -> Experiment | None:
        """Make ``version`` live (the old live one becomes the rollback target). Promoting
        the running experiment's candidate ends the experiment; returns it then."""
        with self._locked():
            return self._promote(version)

    def _promote(self, version: str) -> Experiment | None:
        self.load(version)  # exists, readable and servable
        ptr = self._pointer()
        if ptr["version"] == version:
            return None
        previous = ptr["previous"] + ([ptr["version"]] if ptr["version"] else [])
        kept, ended = _experiment_after(ptr["experiment"], version)
        self._write_pointer(version, previous[-self.keep :], kept)
        self._prune()
        return ended

    def rollback(self) -> str:
        """Make the previous live version live again; returns it. Rolling back to the
        running experiment's candidate ends the experiment (see :meth:`promote`)."""
        with self._locked():
            ptr = self._pointer()
            previous = [v for v in ptr["previous"] if (self.root / v).is_dir()]
            if not previous:
                raise SnapshotError("nothing to roll back to: no earlier live version is kept")
            target = str(previous.pop())
            self.load(target)  # still servable
            kept, _ = _experiment_after(ptr["experiment"], target)
            self._write_pointer(target, previous, kept)
            return target

    # -- experiments -------------------------------------------------------------------
    def start_experiment(self, candidate: str, fraction: float, name: str | None = None,
                         now: float | None = None) -> Experiment:  # fmt: skip
        """Serve ``fraction`` of users with ``candidate`` (a version, or ``baseline``).

        ``name`` defaults to ``<candidate>-<UTC time>``. Raises :class:`SnapshotError` if an
        experiment runs already, if the candidate is the live version (or ``baseline`` with
        no live version: both arms would be the same scorer) or cannot be loaded, and
        :class:`~lsi.core.experiment.InvalidExperiment` for a bad name or fraction.
        """
        started = time.time() if now is None else now
        if name is None:
            name = f"{candidate}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(started))}"
        experiment = Experiment(name, candidate, fraction, started)
        with self._locked():
            ptr = self._pointer()
            if ptr["experiment"] is not None:
                running = (
                    ptr["experiment"].get("name") if isinstance(ptr["experiment"], dict) else None
                )
                raise SnapshotError(f"experiment {running or '(malformed)'} is running; stop it "
                                    "first with `lsi models experiment stop`")  # fmt: skip
            live = ptr["version"]
            if candidate == live or (candidate == BASELINE and live is None):
                raise SnapshotError(f"{candidate} is what the workers serve already (the live "
                                    "scorer); pick another version (`lsi models list`) or "
                                    f"{BASELINE}")  # fmt: skip
            if candidate != BASELINE:
                self.load(candidate)  # exists, readable and servable
            self._write_pointer(live, ptr["previous"], experiment)
        return experiment

    def stop_experiment(self) -> Experiment | None:
        """End the running experiment; returns it (``None`` if none ran, or if the one
        stored was malformed: it is removed all the same)."""
        with self._locked():
            ptr = self._pointer()
            if ptr["experiment"] is None:
                return None
            try:
                ended: Experiment | None = Experiment.from_dict(ptr["experiment"])
            except InvalidExperiment:
                ended = None
            self._write_pointer(ptr["version"], ptr["previous"], None)
            return ended

    def prune(self) -> list[str]:
        """Delete versions beyond the newest ``keep`` (never the live one or the rollback
        target); returns the deleted names."""
        with self._locked():
            return self._prune()

    def _prune(self) -> list[str]:
        ptr = self._pointer()
        protect = {ptr["version"], *(ptr["previous"][-1:])}
        if isinstance(ptr["experiment"], dict):  # even a malformed one: keep what it names
            protect.add(ptr["experiment"].get("candidate"))
        vs = self.versions()
        doomed = [v for v in vs[: max(0, len(vs) - self.keep)] if v not in protect]
        for v in doomed:
            shutil.rmtree(self.root / v, ignore_errors=True)
        return doomed

    def _write_pointer(self, version: str | None, previous: list[str],
                       experiment: Experiment | None = None) -> None:  # fmt: skip
        tmp = self.root / f".LIVE.{uuid.uuid4().hex}"
        data: dict[str, Any] = {"version": version, "previous": previous}
        if experiment is not None:
            data["experiment"] = experiment.to_dict()
        try:
            _write_file(tmp, json.dumps(data).encode())
            os.replace(tmp, self.root / "LIVE")
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(self.root)

    def _clean_tmp(self) -> None:
        for p in self.root.glob(".tmp-*"):
            with contextlib.suppress(OSError):
                shutil.rmtree(p)
        for p in self.root.glob(".LIVE.*"):
            with contextlib.suppress(OSError):
                p.unlink()

    def describe(self) -> Iterator[dict[str, Any]]:
        """One row per version for ``lsi models list``."""
        live = self.live()
        for v in self.versions():
            try:
                m = self.manifest(v)
            except SnapshotError as exc:
                yield {"version": v, "live": v == live, "error": str(exc)}
                continue
            yield {"version": v, "live": v == live, **m}


def _experiment_after(stored: Any, live: str) -> tuple[Experiment | None, Experiment | None]:
    """``(kept, ended)``: the stored experiment once ``live`` is live. It ends when ``live``
    is its candidate; a malformed one is dropped by any change of the live version."""
    try:
        experiment = Experiment.from_dict(stored) if stored is not None else None
    except InvalidExperiment:
        return None, None
    if experiment is not None and experiment.candidate == live:
        return None, experiment
    return experiment, None


def load_dir(path: Path, manifest: dict[str, Any]) -> SnapshotArrays:
    """Read and check one snapshot directory."""
    version = manifest.get("version", path.name)
    if manifest.get("format") != FORMAT:
        raise SnapshotError(f"snapshot {version} has format {manifest.get('format')!r}; this "
                            f"lsi reads format {FORMAT}")  # fmt: skip
    try:
        ids = json.loads((path / "ids.json").read_text())
        # open it ourselves: np.load leaks its handle when the zip is corrupt
        with open(path / "arrays.npz", "rb") as fh, np.load(fh, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ARRAYS}
        sequence = None
        if (manifest.get("sequence") is not None or (path / "sequence.json").exists()
                or (path / "sequence.pt").exists()):  # fmt: skip
            from lsi.serving.fusion import (
                SequenceModel,  # torch: only when a snapshot has an encoder
            )

            sequence = SequenceModel.from_bytes((path / "sequence.pt").read_bytes(),
                                                (path / "sequence.json").read_bytes())  # fmt: skip
        out = SnapshotArrays(tuple(ids["users"]), tuple(ids["items"]), **arrays,
                             sequence=sequence)  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, EOFError, RuntimeError, pickle.UnpicklingError,
            zipfile.BadZipFile) as exc:  # fmt: skip
        raise SnapshotError(f"snapshot {version} is unreadable: {exc}; {_ELSEWHERE}") from exc
    n_u, n_i = len(out.user_ids), len(out.item_ids)
    ptr, hist = out.hist_indptr, out.hist_items
    if (out.user_vec.shape[0] != n_u or out.item_vec.shape[0] != n_i
            or n_u != manifest.get("n_users") or out.base.shape[0] != n_u + n_i
            or ptr.shape != (n_u + 1,) or (ptr.size and (ptr[0] != 0 or ptr[-1] != hist.size))
            or (np.diff(ptr) < 0).any()
            or (hist.size and (hist.min() < 0 or hist.max() >= n_i))):  # fmt: skip
        raise SnapshotError(f"snapshot {version}: arrays do not match its ids/manifest; "
                            f"{_ELSEWHERE}")  # fmt: skip
    if not (np.isfinite(out.user_vec).all() and np.isfinite(out.item_vec).all()):
        raise SnapshotError(f"snapshot {version} has non-finite vectors; {_ELSEWHERE}")
    return out
