"""`KnowledgeGraph`: a privacy-preserving datastore of `(head, relation, tail)` triplets.

Med-XPT / KG-LLaVA retrieve, for a query image, the triplets whose text embedding lies closest to
the image embedding (both from one CLIP-style encoder), and put them into the prompt. The
datastore holds only triplets and their text embeddings: no image pixels, no image embeddings,
no report text.

Each distinct triplet is one row of a FAISS inner-product index over L2-normalized vectors (inner
product = cosine): exact `IndexFlatIP` up to `IVF_FROM` triplets, and above that an inverted-file
index (`IVF<nlist>,Flat`, k-means cells, `nprobe` cells searched per query), whose query cost
grows with sqrt(N) instead of N; `index="flat"` or `"ivf"` forces one. The studies it came from are kept as `source_ids`, so a query can exclude the
query image's own study: a triplet is dropped only when it came from excluded studies alone,
which equals KG-LLaVA's "search 15, drop the query's own study, keep 7" after de-duplication.

Folder layout (`save` / `load`)::

    kg.json           {"format": "mmgpt2-kg", "version": 1, "encoder": spec, "dim": D, "count": N, ...}
    triplets.jsonl    one {"head", "relation", "tail", "source_ids"} per index row
    index.faiss       the FAISS index (N rows of D float32; flat or IVF, see kg.json "index")

Example:
    >>> enc = load_encoder("embedded:chest-clip")
    >>> kg = KnowledgeGraph.from_jsonl("triplets.jsonl", enc)
    >>> kg.save("kg/")
    >>> hits = KnowledgeGraph.load("kg/").query(enc.encode_image(pixels)[0], k=7, exclude_source="s123")
    >>> hits[0]["head"], hits[0]["score"]
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgpt2.apps.medical.extract import Extractor, default_extractor
from mmgpt2.checkpoint import atomic_write, atomic_write_json
from mmgpt2.errors import Mmgpt2Error

FORMAT = "mmgpt2-kg"
VERSION = 1
META_NAME, TRIPLETS_NAME, INDEX_NAME = "kg.json", "triplets.jsonl", "index.faiss"


#: Above this many triplets `index="auto"` builds an IVF index: a flat scan of 1M 128-d vectors
#: takes tens of ms per query on one core, IVF with nprobe=16 well under one.
IVF_FROM = 200_000
IVF_NPROBE = 16


class KGError(Mmgpt2Error):
    """A knowledge-graph folder or input that cannot be used; the message names it and the fix."""


@dataclass
class Triplet:
    head: str
    relation: str
    tail: str
    source_ids: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.head, self.relation, self.tail)

    @property
    def text(self) -> str:
        """What is embedded and what the prompt shows: "effusion suggestive of heart failure"."""
        return triplet_text(self.head, self.relation, self.tail)


def triplet_text(head: str, relation: str, tail: str) -> str:
    return f"{head} {relation.replace('_', ' ')} {tail}"


def _faiss():
    try:
        import faiss
    except ImportError as err:  # optional dependency
        raise ImportError("the knowledge graph needs FAISS: pip install faiss-cpu (or mmgpt2[kg])") from err
    return faiss


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def merge_triplets(rows: Iterable[dict[str, Any]]) -> list[Triplet]:
    """Group `{"head", "relation", "tail", "source_id"}` rows into distinct triplets with their sources."""
    merged: dict[tuple[str, str, str], Triplet] = {}
    for n, row in enumerate(rows):
        try:
            key = (str(row["head"]).strip(), str(row["relation"]).strip(), str(row["tail"]).strip())
        except (KeyError, TypeError) as err:
            raise KGError(f"triplet {n}: needs 'head', 'relation' and 'tail' keys, got {row!r}") from err
        if not all(key):
            raise KGError(f"triplet {n}: empty head, relation or tail in {row!r}")
        trip = merged.setdefault(key, Triplet(*key))
        sources = row.get("source_ids") or ([row["source_id"]] if row.get("source_id") is not None else [])
        for s in sources:
            if str(s) not in trip.source_ids:
                trip.source_ids.append(str(s))
    return list(merged.values())


class KnowledgeGraph:
    """Triplets + a FAISS inner-product index over their normalized text embeddings."""

    def __init__(
        self,
        triplets: Sequence[Triplet],
        vectors: np.ndarray | None,
        encoder_spec: str,
        dim: int | None = None,
        index: str = "auto",
    ):
        self.triplets = list(triplets)
        self.encoder_spec = encoder_spec
        if vectors is None or len(self.triplets) == 0:
            if dim is None:
                raise KGError("an empty knowledge graph still needs its embedding width (dim)")
            vectors = np.zeros((0, dim), np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(self.triplets):
            raise KGError(
                f"{vectors.shape[0]} vectors for {len(self.triplets)} triplets; they must match one to one"
            )
        self.dim = int(vectors.shape[1])
        self.index = _build_index(_normalize(vectors), index)

    def __len__(self) -> int:
        return len(self.triplets)

    @property
    def index_kind(self) -> str:
        """ "flat" (exact) or "ivf" (approximate, for large datastores)."""
        return "ivf" if "IVF" in type(self.index).__name__ else "flat"

    def __repr__(self) -> str:
        return f"KnowledgeGraph({len(self)} triplets, dim={self.dim}, index={self.index_kind}, encoder={self.encoder_spec!r})"

    # --- building ---------------------------------------------------------------------------------
    @classmethod
    def from_triplets(
        cls,
        rows: Iterable[dict[str, Any]],
        encoder,
        batch_size: int = 256,
        progress: bool = True,
        index: str = "auto",
    ) -> KnowledgeGraph:
        """Embed each distinct triplet's text with `encoder.encode_text` and index it (`index`: see the class).

        Example:
            >>> KnowledgeGraph.from_triplets([{"head": "effusion", "relation": "suggestive_of",
            ...     "tail": "heart failure", "source_id": "s1"}], load_encoder("embedded:chest-clip"))
        """
        from tqdm.auto import tqdm

        triplets = merge_triplets(rows)
        chunks = []
        for i in tqdm(
            range(0, len(triplets), batch_size),
            desc="embedding triplets",
            disable=not progress or len(triplets) <= batch_size,
        ):
            texts = [t.text for t in triplets[i : i + batch_size]]
            chunks.append(encoder.encode_text(texts).float().cpu().numpy())
        vectors = np.concatenate(chunks) if chunks else None
        dim = None if chunks else int(encoder.embed_dim)
        return cls(triplets, vectors, encoder.spec, dim=dim, index=index)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike, encoder, **kwargs: Any) -> KnowledgeGraph:
        """Build from a JSON-lines file of `{"head", "relation", "tail", "source_id"}` rows."""
        return cls.from_triplets(read_triplets_jsonl(path), encoder, **kwargs)

    @classmethod
    def from_reports(
        cls,
        reports: Iterable[tuple[str, str]] | dict[str, str],
        encoder,
        extractor: Extractor | None = None,
        **kwargs: Any,
    ) -> KnowledgeGraph:
        """Extract triplets from `(source_id, report_text)` pairs and build; the report text is not kept.

        `extractor` defaults to RadGraph when installed, else `PatternExtractor`.
        """
        extractor = extractor or default_extractor()
        items = reports.items() if isinstance(reports, dict) else reports
        rows = [
            {"head": h, "relation": r, "tail": t, "source_id": sid}
            for sid, text in items
            for h, r, t in extractor(text)
        ]
        return cls.from_triplets(rows, encoder, **kwargs)

    # --- querying ---------------------------------------------------------------------------------
    def query(
        self,
        image_embedding: torch.Tensor | np.ndarray,
        k: int = 7,
        exclude_source: str | Sequence[str | None] | None = None,
        search_k: int = 15,
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Top-`k` triplets for an image embedding (D,) or a batch (B, D), best first.

        Each hit: ``{"head", "relation", "tail", "text", "score", "source_ids"}`` (score = cosine).
        `exclude_source` (one id, or one per batch row) drops triplets found only in that study.
        An empty graph returns no hits.
        """
        x = (
            image_embedding.detach().float().cpu().numpy()
            if isinstance(image_embedding, torch.Tensor)
            else np.asarray(image_embedding)
        )
        single = x.ndim == 1
        x = _normalize(x.reshape(1, -1) if single else x)
        if x.shape[1] != self.dim:
            raise KGError(
                f"query embedding is {x.shape[1]}-d but this knowledge graph holds {self.dim}-d vectors "
                f"from encoder {self.encoder_spec!r}; query with the same encoder"
            )
        excludes = (
            [exclude_source] * len(x)
            if exclude_source is None or isinstance(exclude_source, str)
            else list(exclude_source)
        )
        if len(excludes) != len(x):
            raise KGError(f"exclude_source has {len(excludes)} entries for {len(x)} query rows")
        results: list[list[dict[str, Any]]] = [[] for _ in range(len(x))]
        if len(self) and k > 0:
            want = min(len(self), max(search_k, k))
            while True:
                scores, rows = self.index.search(x, want)
                results = [self._keep(s, r, ex, k) for s, r, ex in zip(scores, rows, excludes)]
                # Excluded rows can leave fewer than k hits: widen the search while there is more to see.
                if want >= len(self) or all(len(h) >= k for h in results):
                    break
                want = min(len(self), want * 4)
        return results[0] if single else results

    def _keep(
        self, scores: np.ndarray, rows: np.ndarray, exclude: str | None, k: int
    ) -> list[dict[str, Any]]:
        hits = []
        for score, row in zip(scores.tolist(), rows.tolist()):
            if row < 0:
                continue
            t = self.triplets[row]
            if exclude is not None and t.source_ids and all(s == exclude for s in t.source_ids):
                continue
            hits.append(
                {
                    "head": t.head,
                    "relation": t.relation,
                    "tail": t.tail,
                    "text": t.text,
                    "score": float(score),
                    "source_ids": list(t.source_ids),
                }
            )
            if len(hits) == k:
                break
        return hits

    # --- saving -----------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write the three files (index and triplets first, the meta file last), each atomically."""
        faiss = _faiss()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / INDEX_NAME, lambda p: faiss.write_index(self.index, str(p)))
        lines = "".join(
            json.dumps({"head": t.head, "relation": t.relation, "tail": t.tail, "source_ids": t.source_ids})
            + "\n"
            for t in self.triplets
        )
        atomic_write(folder / TRIPLETS_NAME, lambda p: p.write_text(lines, encoding="utf-8"))
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "encoder": self.encoder_spec,
            "dim": self.dim,
            "count": len(self),
            "metric": "inner_product",
            "normalized": True,
            "index": self.index_kind,
        }
        if self.index_kind == "ivf":
            meta["nprobe"] = int(self.index.nprobe)
        atomic_write_json(folder / META_NAME, meta)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> KnowledgeGraph:
        """Load a folder written by `save`; a missing, corrupt or inconsistent file raises `KGError`."""
        faiss = _faiss()
        folder = Path(folder)
        if not folder.is_dir():
            raise KGError(f"{folder}: no such knowledge-graph folder; build one with `mmgpt2 kg build`")
        missing = [n for n in (META_NAME, TRIPLETS_NAME, INDEX_NAME) if not (folder / n).is_file()]
        if missing:
            raise KGError(
                f"{folder}: not a knowledge-graph folder, missing {', '.join(missing)}; rebuild it with `mmgpt2 kg build`"
            )
        try:
            meta = json.loads((folder / META_NAME).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise KGError(f"{folder / META_NAME}: corrupt ({err}); rebuild the knowledge graph") from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise KGError(
                f"{folder / META_NAME}: not an mmgpt2 knowledge graph (format {meta.get('format') if isinstance(meta, dict) else None!r})"
            )
        if meta.get("version", 0) > VERSION:
            raise KGError(
                f"{folder}: knowledge-graph format v{meta['version']} is newer than this mmgpt2 (v{VERSION}); upgrade mmgpt2"
            )
        triplets = read_triplets_jsonl(folder / TRIPLETS_NAME, merge=False)
        try:
            index = faiss.read_index(str(folder / INDEX_NAME))
        except RuntimeError as err:
            raise KGError(
                f"{folder / INDEX_NAME}: corrupt FAISS index ({str(err).splitlines()[0][:200]}); rebuild the knowledge graph"
            ) from err
        problems = []
        if index.ntotal != len(triplets):
            problems.append(
                f"the index holds {index.ntotal} vectors but triplets.jsonl {len(triplets)} triplets"
            )
        if index.d != meta.get("dim"):
            problems.append(f"the index is {index.d}-d but kg.json says {meta.get('dim')}")
        if meta.get("count") != len(triplets):
            problems.append(
                f"kg.json says {meta.get('count')} triplets but triplets.jsonl has {len(triplets)}"
            )
        if problems:
            raise KGError(f"{folder}: corrupt knowledge graph: " + "; ".join(problems) + "; rebuild it")
        if "nprobe" in meta and hasattr(index, "nprobe"):
            index.nprobe = int(meta["nprobe"])
        kg = cls.__new__(cls)
        kg.triplets, kg.encoder_spec, kg.dim, kg.index = (
            triplets,
            meta.get("encoder", ""),
            int(index.d),
            index,
        )
        return kg


def _build_index(unit: np.ndarray, kind: str):
    """A FAISS inner-product index over the rows of `unit` (see the module docstring for `kind`)."""
    faiss = _faiss()
    if kind not in ("auto", "flat", "ivf"):
        raise KGError(f"index={kind!r}: choose 'auto', 'flat' or 'ivf'")
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


def read_triplets_jsonl(path: str | os.PathLike, merge: bool = True) -> list[Any]:
    """Rows of a triplets JSON-lines file (`merge=False`: one `Triplet` per line, as saved)."""
    path = Path(path)
    if not path.is_file():
        raise KGError(f"{path}: no such triplets file")
    rows = []
    n = 0
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise KGError(
                        f"{path}:{n}: not valid JSON ({err.msg}); each line must be one triplet object"
                    ) from err
    except UnicodeDecodeError as err:  # an image, an archive, a Latin-1 file: JSON lines are UTF-8
        raise KGError(
            f"{path}:{n + 1}: not UTF-8 text ({err.reason}); expected JSON lines, one triplet object per line"
        ) from None
    if merge:
        return rows
    out = []
    for n, row in enumerate(rows, 1):
        try:
            out.append(Triplet(row["head"], row["relation"], row["tail"], list(row.get("source_ids", []))))
        except (KeyError, TypeError) as err:
            raise KGError(f"{path}:{n}: corrupt triplet row {row!r}; rebuild the knowledge graph") from err
    return out


def warn_empty(kg: KnowledgeGraph | None) -> bool:
    """True (and a warning) when `kg` is given but holds no triplets: callers fall back to no KG."""
    if kg is not None and len(kg) == 0:
        warnings.warn("the knowledge graph is empty; explaining without retrieved triplets", stacklevel=3)
        return True
    return False
