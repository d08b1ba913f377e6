"""`TextIndex`: texts, the sources each came from, and their embeddings in a FAISS index.

The one retrieval datastore of the library: the knowledge graph's triplets
(`mmgpt2.apps.medical.kg`) and the caption datastore of retrieval-augmented captioning
(`mmgpt2.apps.captioning.datastore`) are both a `TextIndex` plus their own row format.

Each row is one distinct text, embedded by a CLIP-style encoder's text tower; a query is an image
embedding from the same encoder. The index is FAISS inner product over L2-normalized vectors
(inner product = cosine): exact `IndexFlatIP` up to `IVF_FROM` rows, and above that an
inverted-file index (`IVF<nlist>,Flat`, k-means cells, `nprobe` cells searched per query), whose
query cost grows with sqrt(N) instead of N; ``index="flat"`` or ``"ivf"`` forces one.

Every row keeps the ids of the sources (studies, images) its text came from, so a query can
exclude its own source: a row is dropped only when it came from excluded sources alone (an
identical caption of another image stays retrievable), as KG-LLaVA ("search 15, drop the query's
own study") and SmallCap (the query image's own captions never retrieved in training) ask.

A saved folder (`save_folder` / `load_folder`) holds three files, named by a `Layout`: a meta
JSON (format, version, encoder, dim, count, index kind), the rows as JSON lines (one per index
row, at least ``"source_ids"``) and ``index.faiss``.

Example:
    >>> from mmgpt2.encoders import load_encoder
    >>> enc = load_encoder("embedded:shapes-clip")
    >>> store = TextIndex.embed(["a red circle", "a blue square"], [["img1"], ["img2"]], enc, progress=False)
    >>> hits = store.search(enc.encode_text(["a red circle"]), k=1, exclude_source=["img1"])  # [[(row, cosine)]]
    >>> [[(row, round(score, 2)) for row, score in row_hits] for row_hits in hits]
    [[(1, -0.23)]]
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgpt2.checkpoint import atomic_write, atomic_write_json
from mmgpt2.errors import Mmgpt2Error

#: Above this many rows `index="auto"` builds an IVF index: a flat scan of 1M 128-d vectors
#: takes tens of ms per query on one core, IVF with nprobe=16 well under one.
IVF_FROM = 200_000
IVF_NPROBE = 16
INDEX_NAME = "index.faiss"


class DatastoreError(Mmgpt2Error):
    """A datastore folder or input that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class Layout:
    """How one kind of datastore names its files and itself (`format` goes into the meta file)."""

    format: str
    version: int
    meta_name: str
    rows_name: str
    what: str  # "knowledge graph", "caption datastore": used in error messages
    rebuild: str  # the command that builds one, for error messages
    error: type[Mmgpt2Error] = DatastoreError


def faiss_module():
    try:
        import faiss
    except ImportError as err:  # optional dependency
        raise ImportError("retrieval needs FAISS: pip install faiss-cpu (or mmgpt2[kg])") from err
    return faiss


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """float32, contiguous, each row of unit length (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def build_index(unit: np.ndarray, kind: str = "auto", error: type[Mmgpt2Error] = DatastoreError):
    """A FAISS inner-product index over the rows of `unit` (see the module docstring for `kind`)."""
    faiss = faiss_module()
    if kind not in ("auto", "flat", "ivf"):
        raise error(f"index={kind!r}: choose 'auto', 'flat' or 'ivf'")
    n, dim = unit.shape
    if kind == "flat" or (kind == "auto" and n < IVF_FROM):
        index = faiss.IndexFlatIP(dim)
    else:
        # ~4 sqrt(N) cells, each trained on >= 39 points as FAISS's k-means asks.
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))
        index = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        sample = (
            unit if n <= nlist * 64 else unit[np.random.default_rng(0).choice(n, nlist * 64, replace=False)]
        )
        index.train(sample)
        index.nprobe = min(IVF_NPROBE, nlist)
    if n:
        index.add(unit)
    return index


def embed_texts(
    encoder, texts: Sequence[str], batch_size: int = 256, progress: bool = True, desc: str = "embedding texts"
) -> np.ndarray:
    """(N, D) float32 text embeddings from `encoder.encode_text`, in batches with a progress bar."""
    from tqdm.auto import tqdm

    chunks = [
        encoder.encode_text(list(texts[i : i + batch_size])).float().cpu().numpy()
        for i in tqdm(
            range(0, len(texts), batch_size), desc=desc, disable=not progress or len(texts) <= batch_size
        )
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, int(encoder.embed_dim)), np.float32)


class TextIndex:
    """Distinct texts, their source ids, and a FAISS inner-product index over their embeddings.

    Example:
        >>> import numpy as np
        >>> vectors = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
        >>> store = TextIndex(["a red circle", "a blue square"], [["img1"], ["img2"]], vectors, "embedded:shapes-clip")
        >>> hits = store.search(np.array([[1.0, 0.0]], dtype=np.float32), k=4)  # per query row, best first
        >>> [[(row, round(score, 2)) for row, score in row_hits] for row_hits in hits]
        [[(0, 1.0), (1, 0.6)]]
    """

    def __init__(
        self,
        texts: Sequence[str],
        source_ids: Sequence[Sequence[str]],
        vectors: np.ndarray | None,
        encoder_spec: str,
        dim: int | None = None,
        index: str | Any = "auto",
        error: type[Mmgpt2Error] = DatastoreError,
    ):
        self.texts = list(texts)
        self.source_ids = [list(s) for s in source_ids]
        self.encoder_spec = encoder_spec
        self.error = error
        if len(self.source_ids) != len(self.texts):
            raise error(
                f"{len(self.source_ids)} source-id lists for {len(self.texts)} texts; give one per text"
            )
        if not isinstance(index, str):  # an already-built FAISS index (loading)
            self.index, self.dim = index, int(index.d)
            return
        if vectors is None or len(self.texts) == 0:
            if dim is None:
                raise error("an empty datastore still needs its embedding width (dim)")
            vectors = np.zeros((0, dim), np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(self.texts):
            raise error(f"{vectors.shape[0]} vectors for {len(self.texts)} texts; they must match one to one")
        self.dim = int(vectors.shape[1])
        self.index = build_index(normalize_rows(vectors), index, error)

    @classmethod
    def embed(
        cls,
        texts: Sequence[str],
        source_ids: Sequence[Sequence[str]],
        encoder,
        batch_size: int = 256,
        progress: bool = True,
        index: str = "auto",
        error: type[Mmgpt2Error] = DatastoreError,
    ) -> TextIndex:
        """Embed `texts` with `encoder.encode_text` and index them."""
        vectors = embed_texts(encoder, texts, batch_size, progress) if texts else None
        return cls(
            texts, source_ids, vectors, encoder.spec, dim=int(encoder.embed_dim), index=index, error=error
        )

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def index_kind(self) -> str:
        """ "flat" (exact) or "ivf" (approximate, for large datastores)."""
        return "ivf" if "IVF" in type(self.index).__name__ else "flat"

    def search(
        self,
        queries: torch.Tensor | np.ndarray,
        k: int,
        exclude_source: Sequence[str | Sequence[str] | None] | None = None,
        search_k: int = 15,
    ) -> list[list[tuple[int, float]]]:
        """Per query row of (B, D): up to `k` ``(row, cosine)`` pairs, best first.

        `exclude_source` gives one entry per query row (an id, a list of ids, or None): rows whose
        every source is excluded are skipped, and the search widens until `k` remain or the
        datastore is exhausted.
        """
        x = (
            queries.detach().float().cpu().numpy()
            if isinstance(queries, torch.Tensor)
            else np.asarray(queries)
        )
        x = normalize_rows(x.reshape(1, -1) if x.ndim == 1 else x)
        if x.shape[1] != self.dim:
            raise self.error(
                f"query embedding is {x.shape[1]}-d but this datastore holds {self.dim}-d vectors "
                f"from encoder {self.encoder_spec!r}; query with the same encoder"
            )
        excludes = [None] * len(x) if exclude_source is None else list(exclude_source)
        if len(excludes) != len(x):
            raise self.error(f"exclude_source has {len(excludes)} entries for {len(x)} query rows")
        excluded = [{e} if isinstance(e, str) else set(e or ()) for e in excludes]
        results: list[list[tuple[int, float]]] = [[] for _ in range(len(x))]
        if not len(self) or k <= 0:
            return results
        want = min(len(self), max(search_k, k))
        while True:
            scores, rows = self.index.search(x, want)
            results = [self._keep(s, r, ex, k) for s, r, ex in zip(scores, rows, excluded)]
            # Excluded rows can leave fewer than k hits: widen the search while there is more to see.
            if want >= len(self) or all(len(h) >= k for h in results):
                return results
            want = min(len(self), want * 4)

    def _keep(
        self, scores: np.ndarray, rows: np.ndarray, exclude: set[str], k: int
    ) -> list[tuple[int, float]]:
        hits = []
        for score, row in zip(scores.tolist(), rows.tolist()):
            if row < 0:
                continue
            sources = self.source_ids[row]
            if exclude and sources and all(s in exclude for s in sources):
                continue
            hits.append((row, float(score)))
            if len(hits) == k:
                break
        return hits

    # --- folders ----------------------------------------------------------------------------------
    def save_folder(
        self,
        folder: str | os.PathLike,
        layout: Layout,
        rows: Sequence[dict[str, Any]],
        meta: dict[str, Any] | None = None,
    ) -> Path:
        """Write index and rows first and the meta file last, each atomically (one row per text)."""
        faiss = faiss_module()
        if len(rows) != len(self):
            raise self.error(f"{len(rows)} rows to save for {len(self)} indexed texts")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / INDEX_NAME, lambda p: faiss.write_index(self.index, str(p)))
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        atomic_write(folder / layout.rows_name, lambda p: p.write_text(lines, encoding="utf-8"))
        info = {
            "format": layout.format,
            "version": layout.version,
            "encoder": self.encoder_spec,
            "dim": self.dim,
            "count": len(self),
            "metric": "inner_product",
            "normalized": True,
            "index": self.index_kind,
            **(meta or {}),
        }
        if self.index_kind == "ivf":
            info["nprobe"] = int(self.index.nprobe)
        atomic_write_json(folder / layout.meta_name, info)
        return folder


def read_jsonl_rows(path: Path, error: type[Mmgpt2Error], what: str = "row") -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, blank lines skipped; a bad line names its number."""
    if not path.is_file():
        raise error(f"{path}: no such file")
    rows, n = [], 0
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise error(
                        f"{path}:{n}: not valid JSON ({err.msg}); each line must be one {what} object"
                    ) from err
    except UnicodeDecodeError as err:  # an image, an archive, a Latin-1 file: JSON lines are UTF-8
        raise error(
            f"{path}:{n + 1}: not UTF-8 text ({err.reason}); expected JSON lines, one {what} object per line"
        ) from None
    return rows


def load_folder(
    folder: str | os.PathLike, layout: Layout
) -> tuple[list[dict[str, Any]], Any, dict[str, Any]]:
    """(rows, FAISS index, meta) of a folder written by `TextIndex.save_folder`.

    A missing, corrupt or inconsistent file raises ``layout.error`` naming the file and the fix.
    """
    faiss = faiss_module()
    folder, error = Path(folder), layout.error
    if not folder.is_dir():
        raise error(f"{folder}: no such {layout.what} folder; build one with {layout.rebuild}")
    missing = [n for n in (layout.meta_name, layout.rows_name, INDEX_NAME) if not (folder / n).is_file()]
    if missing:
        raise error(
            f"{folder}: not a {layout.what} folder, missing {', '.join(missing)}; rebuild it with {layout.rebuild}"
        )
    meta_path = folder / layout.meta_name
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{meta_path}: corrupt ({err}); rebuild the {layout.what}") from err
    if not isinstance(meta, dict) or meta.get("format") != layout.format:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise error(f"{meta_path}: not an mmgpt2 {layout.what} (format {found!r})")
    if meta.get("version", 0) > layout.version:
        raise error(
            f"{folder}: {layout.what} format v{meta['version']} is newer than this mmgpt2 (v{layout.version}); upgrade mmgpt2"
        )
    rows = read_jsonl_rows(folder / layout.rows_name, error)
    try:
        index = faiss.read_index(str(folder / INDEX_NAME))
    except RuntimeError as err:
        raise error(
            f"{folder / INDEX_NAME}: corrupt FAISS index ({str(err).splitlines()[0][:200]}); rebuild the {layout.what}"
        ) from err
    problems = []
    if index.ntotal != len(rows):
        problems.append(f"the index holds {index.ntotal} vectors but {layout.rows_name} {len(rows)} rows")
    if index.d != meta.get("dim"):
        problems.append(f"the index is {index.d}-d but {layout.meta_name} says {meta.get('dim')}")
    if meta.get("count") != len(rows):
        problems.append(
            f"{layout.meta_name} says {meta.get('count')} rows but {layout.rows_name} has {len(rows)}"
        )
    if problems:
        raise error(f"{folder}: corrupt {layout.what}: " + "; ".join(problems) + "; rebuild it")
    if "nprobe" in meta and hasattr(index, "nprobe"):
        index.nprobe = int(meta["nprobe"])
    return rows, index, meta
