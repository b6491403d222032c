"""Candidate retrieval: the few hundred items worth scoring exactly, without scoring the rest.

Serving a catalogue of :math:`I` items by scoring every item costs :math:`O(I d)` per event.
Above :attr:`RetrievalConfig.exact_below` items the fused scorer (:mod:`lsi.serving.fusion`) instead

1. asks an inner-product index over the encoder's item embeddings :math:`e_i` for the
   ``candidates`` items with the highest :math:`\\langle S_u, e_i \\rangle` (the short-term
   vector), and one over the long-term item vectors :math:`v_i` for the highest
   :math:`\\langle L_u, v_i \\rangle`,
2. takes the union :math:`\\mathcal K_u` of the two lists, minus the user's excluded items,
3. re-ranks only :math:`\\mathcal K_u` with the exact fused score.

The ranking is exact whenever every item of the exact top-``k`` is in :math:`\\mathcal K_u`:
the fused score of an item depends on the item only through its two inner products (see
:func:`models.nn.sequence.fuse`), so an item that is in neither source's top-``candidates`` can
only reach the fused top-``k`` when the gate mixes two lists that disagree deeply.

Index (:class:`IVFIndex`): faiss ``IndexIVFFlat`` with ``METRIC_INNER_PRODUCT``: the items are
assigned to the nearest of ``nlist`` k-means centroids (by inner product) and a query scans the
``nprobe`` lists whose centroids score highest, exactly (maximum inner-product search, no
cosine normalisation, no MIPS→L2 augmentation needed). Chosen by measurement over faiss HNSW
(with inner product, and with the MIPS→L2 augmentation), hnswlib and usearch
(``docs/decisions/0002-candidate-retrieval.md``): at equal query time it had the highest
recall@100, it builds several times faster (one build per snapshot and per source), and
its cost per query, :math:`O(\\text{nlist}\\, d + \\text{nprobe} \\cdot I / \\text{nlist}\\, d)`
with ``nlist`` :math:`\\approx 4\\sqrt I`, stays well under the encoder's for :math:`I \\le 10^7`.
Excluded items never take a candidate's place (dropped from a wider answer, or skipped inside
faiss with an ``IDSelector`` when too many were among the best: :meth:`IVFIndex.search`), so a
user with a long history still gets ``candidates`` items.

Memory per item (:attr:`CandidateIndex.bytes_per_item`): the stored code (``4 d`` bytes for
``flat`` float32, ``d`` for ``sq8``), its 8-byte id in the inverted list, and the centroids'
share ``4 d · nlist / I``: 264 B at :math:`d = 64` (``flat``), about 72 B (``sq8``; the exact
re-ranking still reads the model's own float32 vectors). This comes on top of the model's
vectors themselves (``4 d`` bytes per item and source).

An index is built once per snapshot, never changes, and is safe to query from several threads
(search parameters travel with each call; nothing of the index is mutated).
:class:`ExactIndex` is the in-memory reference with the same interface (a full matrix product),
used below the threshold in tests and as the ground truth of recall.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lsi.core.ranking import top_rows
from lsi.errors import ConfigError

__all__ = [
    "MODES",
    "CandidateIndex",
    "CandidateRetriever",
    "ExactIndex",
    "IVFIndex",
    "RetrievalConfig",
    "build_index",
    "recall_at",
]

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

#: ``auto``: retrieval from ``exact_below`` items on; ``exact``: never; ``ann``: always
MODES = ("auto", "exact", "ann")
STORAGES = ("flat", "sq8")
QUANTIZERS = ("auto", "flat", "hnsw")
#: ``quantizer="auto"`` searches the centroids through HNSW from this many lists on
HNSW_QUANTIZER_FROM = 1024
#: links per centroid of the HNSW quantizer (faiss ``HNSW32``)
HNSW_M = 32
#: the fewest items per inverted list (faiss's minimum of k-means points per centroid)
MIN_PER_LIST = 39


@dataclass(frozen=True, slots=True)
class RetrievalConfig:
    """How the fused scorer finds the items it scores (defaults chosen on ML-1M's validation
    items and the synthetic catalogues of ``lsi bench catalogue``).

    Attributes:
        mode: ``auto`` (retrieval from ``exact_below`` items on), ``exact`` or ``ann``.
        exact_below: catalogues smaller than this are scored exactly (every item).
        candidates: items retrieved per source (short-term and long-term) before the union.
        nlist: inverted lists of the index; 0: :math:`\\lceil 4 \\sqrt I \\rceil`, at most
            ``I / 39`` (the fewest training points per centroid faiss accepts).
        nprobe: lists a query scans.
        storage: ``flat`` (float32 codes) or ``sq8`` (8-bit scalar-quantised codes: a
            quarter of the memory, slightly lower recall).
        quantizer: how a query finds its ``nprobe`` lists: ``flat`` (every centroid
            scored), ``hnsw`` (an HNSW graph over the centroids, ``IVF{nlist}_HNSW32``) or
            ``auto`` (``hnsw`` from 1,024 lists on: at a million items it halves the search
            time and the build at the same recall).
        quantizer_ef: the HNSW quantizer's ``efSearch`` (at least ``nprobe`` is used).
        train_points: most vectors the k-means of the index learns from.
        tail_sample: items drawn once per snapshot (uniformly, seeded) to estimate the
            softmax normalisers' mass outside the candidates; 0: normalise over the candidates
            only (see :mod:`lsi.serving.fusion`).
        seed: seed of the k-means sample and of the tail sample.
    """

    mode: str = "auto"
    exact_below: int = 50_000
    candidates: int = 300
    nlist: int = 0
    nprobe: int = 32
    storage: str = "flat"
    quantizer: str = "auto"
    quantizer_ef: int = 64
    train_points: int = 200_000
    tail_sample: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"retrieval mode must be one of {MODES}, got {self.mode!r}")
        if self.storage not in STORAGES:
            raise ConfigError(f"retrieval storage must be one of {STORAGES}, got {self.storage!r}")
        if self.quantizer not in QUANTIZERS:
            raise ConfigError(f"retrieval quantizer must be one of {QUANTIZERS}, "
                              f"got {self.quantizer!r}")  # fmt: skip
        if min(self.candidates, self.nprobe, self.train_points, self.quantizer_ef) < 1:
            raise ConfigError("retrieval candidates, nprobe and train_points must be positive")
        if min(self.exact_below, self.nlist, self.tail_sample) < 0:
            raise ConfigError("retrieval exact_below, nlist and tail_sample must be >= 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RetrievalConfig:
        """A config from ``values``; an unknown key is an error (a typo never falls back to
        a default)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown retrieval setting(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(values))

    def uses_index(self, n_items: int) -> bool:
        """Whether a catalogue of ``n_items`` is served through retrieval."""
        return self.mode == "ann" or (self.mode == "auto" and n_items >= self.exact_below)

    def lists_for(self, n_items: int) -> int:
        """``nlist`` for a catalogue of ``n_items``."""
        n = self.nlist or math.ceil(4 * math.sqrt(max(1, n_items)))
        return max(1, min(n, n_items // MIN_PER_LIST))


class CandidateIndex(Protocol):
    """Maximum inner-product search over a fixed set of item vectors, each with an id."""

    @property
    def n_items(self) -> int: ...

    @property
    def bytes_per_item(self) -> float: ...

    def search(self, queries: FloatArray, k: int,
               exclude: Sequence[IntArray] | None = None) -> IntArray:  # fmt: skip
        """Ids ``[B, k]`` of the items with the highest :math:`\\langle q_b, x_i \\rangle`
        for each query ``queries[b]`` (``[B, d]``), best first as far as the index knows,
        never an id of ``exclude[b]``; -1 pads a row with fewer than ``k`` items."""
        ...


def _as_matrix(x: npt.ArrayLike) -> FloatArray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _ids(n: int, ids: npt.ArrayLike | None) -> IntArray:
    """The ids of ``n`` vectors: ``ids`` as contiguous int64, or ``0…n-1``."""
    return np.ascontiguousarray(np.arange(n) if ids is None else ids, dtype=np.int64)


class ExactIndex:
    """The exact reference: every item scored, ``[B, d] @ [d, I]``, then a partial sort."""

    def __init__(self, vectors: npt.ArrayLike, ids: npt.ArrayLike | None = None) -> None:
        self.vectors = _as_matrix(vectors)
        n = self.vectors.shape[0]
        self.ids = _ids(n, ids)
        self._pos = {int(j): p for p, j in enumerate(self.ids.tolist())}

    @property
    def n_items(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def bytes_per_item(self) -> float:
        return float(self.vectors.shape[1] * 4 + 8)

    def search(self, queries: FloatArray, k: int,
               exclude: Sequence[IntArray] | None = None) -> IntArray:  # fmt: skip
        q = _as_matrix(queries)
        out = np.full((q.shape[0], k), -1, dtype=np.int64)
        if self.n_items == 0 or k <= 0:
            return out
        scores = q @ self.vectors.T
        for b in range(q.shape[0]):
            s = scores[b]
            if exclude is not None and len(exclude[b]):
                pos = [p for j in exclude[b].tolist() if (p := self._pos.get(j)) is not None]
                s[pos] = -np.inf
            part = top_rows(s, k)
            part = part[np.isfinite(s[part])]
            out[b, : part.shape[0]] = self.ids[part]
        return out


#: the batched search asks faiss for ``k + k / WIDEN`` ids (at most as many more as the longest
#: exclusion); a row that loses more than that to its exclusions is searched again alone
WIDEN = 4


class IVFIndex:
    """faiss ``IVF{nlist},{Flat|SQ8}`` with the inner-product metric (see the module
    docstring). ``vectors`` ``[I, d]`` float32, ``ids`` ``[I]`` int64 (default ``0…I-1``)."""

    def __init__(self, vectors: npt.ArrayLike, cfg: RetrievalConfig,
                 ids: npt.ArrayLike | None = None) -> None:  # fmt: skip
        import faiss

        x = _as_matrix(vectors)
        n, d = x.shape
        self.dim = d
        self.nlist = cfg.lists_for(n)
        self.nprobe = min(cfg.nprobe, self.nlist)
        self.storage = cfg.storage
        codes = "Flat" if cfg.storage == "flat" else "SQ8"
        self.hnsw = cfg.quantizer == "hnsw" or (cfg.quantizer == "auto"
                                                and self.nlist >= HNSW_QUANTIZER_FROM)  # fmt: skip
        self._faiss = faiss
        lists = f"IVF{self.nlist}_HNSW{HNSW_M}" if self.hnsw else f"IVF{self.nlist}"
        self.index = faiss.index_factory(d, f"{lists},{codes}", faiss.METRIC_INNER_PRODUCT)
        self._ef = max(cfg.quantizer_ef, self.nprobe)
        ivf = faiss.extract_index_ivf(self.index)
        ivf.cp.niter = 10  # k-means iterations: the lists only need to be roughly balanced
        ivf.cp.max_points_per_centroid = max(1, cfg.train_points // self.nlist)
        rng = np.random.default_rng(cfg.seed)
        sample = x if n <= cfg.train_points else x[np.sort(rng.choice(n, cfg.train_points,
                                                                      replace=False))]  # fmt: skip
        t0 = time.perf_counter()
        self.index.train(sample)
        self.index.add_with_ids(x, _ids(n, ids))
        self.build_s = time.perf_counter() - t0
        self._code_size = int(ivf.code_size)

    @property
    def n_items(self) -> int:
        return int(self.index.ntotal)

    @property
    def bytes_per_item(self) -> float:
        """Code + 8-byte id + the centroids' share (float32 ``[nlist, d]``, and the HNSW
        quantizer's level-0 links, ``2 M`` int32 per centroid)."""
        per_list = 4 * self.dim + (8 * HNSW_M if self.hnsw else 0)
        return float(self._code_size + 8 + per_list * self.nlist / max(1, self.n_items))

    def _params(self, sel: Any = None) -> Any:
        faiss = self._faiss
        if not self.hnsw:
            return faiss.SearchParametersIVF(sel=sel, nprobe=self.nprobe)
        quant = faiss.SearchParametersHNSW(efSearch=self._ef)
        params = faiss.SearchParametersIVF(sel=sel, nprobe=self.nprobe, quantizer_params=quant)
        params._lsi_keep = quant  # the quantizer's parameters must outlive the search
        return params

    def search(self, queries: FloatArray, k: int,
               exclude: Sequence[IntArray] | None = None) -> IntArray:  # fmt: skip
        """The ``k`` best ids per query, none of them in ``exclude[b]`` (``-1`` pads a row
        whose scanned lists hold fewer).

        All queries go to faiss in one call, each asking for ``k / WIDEN`` more than it needs
        (at most as many more as its longest exclusion), and the excluded ids are dropped from the
        answer: the same ids a search that skipped them would give, since dropping ids from a
        ranked list keeps the order of the rest. Only a row that lost too many (its excluded
        ids were among its best) is searched again alone, with a faiss selector that skips
        them. One call per query, each with its own selector, cost ~25 % more per query at a
        million items."""
        q = _as_matrix(queries)
        if q.shape[0] == 0 or k <= 0:
            return np.full((q.shape[0], max(k, 0)), -1, dtype=np.int64)
        if exclude is None or not any(len(e) for e in exclude):
            _, ids = self.index.search(q, k, params=self._params())
            found: IntArray = ids.astype(np.int64, copy=False)
            return found
        extra = min(max(1, k // WIDEN), max(len(e) for e in exclude))
        _, wide = self.index.search(q, k + extra, params=self._params())
        wide = wide.astype(np.int64, copy=False)
        # one membership test for the whole batch: (row, id) pairs as one integer each
        span = np.int64(max(int(wide.max()), max(int(e.max()) for e in exclude if len(e))) + 2)
        rows = np.arange(q.shape[0], dtype=np.int64)
        pairs = np.concatenate([np.asarray(e, dtype=np.int64) + 1 + b * span
                                for b, e in enumerate(exclude)])  # fmt: skip
        dropped = np.isin(wide + 1 + rows[:, None] * span, pairs) | (wide < 0)
        out = np.full((q.shape[0], k), -1, dtype=np.int64)
        for b in range(q.shape[0]):
            keep = wide[b][~dropped[b]]
            if keep.shape[0] >= k or wide[b, -1] < 0:  # enough, or every scanned item is here
                out[b, : min(k, keep.shape[0])] = keep[:k]
            else:
                out[b] = self._search_without(q[b : b + 1], k, np.asarray(exclude[b]))
        return out

    def _search_without(self, query: FloatArray, k: int, ex: IntArray) -> IntArray:
        """One query whose best ``k`` skip ``ex`` inside faiss (an ``IDSelectorNot``)."""
        faiss = self._faiss
        ex = np.ascontiguousarray(ex, dtype=np.int64)
        inner = faiss.IDSelectorBatch(ex)
        sel = faiss.IDSelectorNot(inner)
        _, ids = self.index.search(query, k, params=self._params(sel))
        del inner, sel  # kept alive until here: SWIG holds no reference during the search
        row: IntArray = ids[0].astype(np.int64, copy=False)
        return row


def build_index(vectors: npt.ArrayLike, cfg: RetrievalConfig,
                ids: npt.ArrayLike | None = None) -> CandidateIndex:  # fmt: skip
    """The index ``cfg`` asks for: :class:`IVFIndex` when the catalogue is served through
    retrieval, else :class:`ExactIndex`."""
    n = np.shape(vectors)[0]
    if cfg.uses_index(n) and n >= 16:
        return IVFIndex(vectors, cfg, ids)
    return ExactIndex(vectors, ids)


@dataclass(frozen=True, eq=False)
class CandidateRetriever:
    """The indexes of one snapshot: encoder item embeddings (ids = encoder rows ``0…I-1``)
    and the long-term item vectors of the items both know (ids = the same encoder rows), plus
    the fixed tail sample of the normaliser.

    Attributes:
        short: index over :math:`e_i` ``[I, d]``.
        long: index over :math:`v_i` ``[I', d_L]``, or ``None`` without a snapshot.
        tail: sorted encoder rows ``[m]`` drawn uniformly once (``cfg.tail_sample``).
        cfg: the configuration.
        build_s: seconds the indexes took to build.
    """

    short: CandidateIndex
    long: CandidateIndex | None
    tail: IntArray
    cfg: RetrievalConfig
    build_s: float

    @classmethod
    def build(cls, short_vectors: npt.ArrayLike, long_vectors: npt.ArrayLike | None,
              long_ids: npt.ArrayLike | None, cfg: RetrievalConfig) -> CandidateRetriever:  # fmt: skip
        t0 = time.perf_counter()
        forced = replace(cfg, mode="ann")
        short = build_index(short_vectors, forced)
        long = build_index(long_vectors, forced, long_ids) if long_vectors is not None else None
        n = short.n_items
        rng = np.random.default_rng(cfg.seed + 1)
        m = min(cfg.tail_sample, n)
        tail = np.sort(rng.choice(n, m, replace=False)).astype(np.int64)
        return cls(short, long, tail, cfg, time.perf_counter() - t0)

    def memory(self) -> dict[str, float]:
        """Bytes per item vector of each index."""
        out = {"short_bytes_per_item": self.short.bytes_per_item}
        if self.long is not None:
            out["long_bytes_per_item"] = self.long.bytes_per_item
        return out

    def candidates(self, short_q: FloatArray, long_q: FloatArray | None,
                   long_known: npt.NDArray[np.bool_], exclude: Sequence[IntArray]
                   ) -> list[IntArray]:  # fmt: skip
        """For each request ``b``: the sorted union of the short-term index's
        ``cfg.candidates`` best for ``short_q[b]`` and, where ``long_known[b]``, the long-term
        index's for ``long_q[b]``, none of them in ``exclude[b]``."""
        k = self.cfg.candidates
        short_ids = self.short.search(short_q, k, exclude)
        long_ids = None
        rows = np.flatnonzero(long_known)
        if self.long is not None and long_q is not None and rows.size:
            long_ids = np.full((short_q.shape[0], k), -1, dtype=np.int64)
            long_ids[rows] = self.long.search(long_q[rows], k,
                                              [exclude[r] for r in rows.tolist()])  # fmt: skip
        both = short_ids if long_ids is None else np.concatenate([short_ids, long_ids], axis=1)
        both = np.sort(both, axis=1)  # one sort for the batch; -1 (none) first
        keep = both >= 0
        keep[:, 1:] &= both[:, 1:] != both[:, :-1]  # an id both indexes found, once
        return [row[ok] for row, ok in zip(both, keep, strict=True)]


def recall_at(found: IntArray, truth: IntArray) -> float:
    """Mean over rows of :math:`|found_b \\cap truth_b| / |truth_b|` (``-1`` ignored)."""
    hits, total = 0, 0
    for f, t in zip(found, truth, strict=True):
        t = t[t >= 0]
        hits += np.intersect1d(f[f >= 0], t).shape[0]
        total += t.shape[0]
    return hits / total if total else 1.0
