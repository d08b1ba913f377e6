"""`KnowledgeGraph`: a privacy-preserving datastore of `(head, relation, tail)` triplets.

Med-XPT / KG-LLaVA retrieve, for a query image, the triplets whose text embedding lies closest to
the image embedding (both from one CLIP-style encoder), and put them into the prompt. The
datastore holds only triplets and their text embeddings: no image pixels, no image embeddings,
no report text.

Each distinct triplet is one row of a FAISS inner-product index over L2-normalized vectors (inner
product = cosine): exact `IndexFlatIP` up to `IVF_FROM` triplets, and above that an inverted-file
index (`IVF<nlist>,Flat`, k-means cells, `nprobe` cells searched per query), whose query cost
grows with sqrt(N) instead of N; `index="flat"` or `"ivf"` forces one (the index, its folder and
the exclusion are `mmgpt2.retrieval.TextIndex`, shared with the caption datastore of
retrieval-augmented captioning). The studies it came from are kept as `source_ids`, so a query can exclude the
query image's own study: a triplet is dropped only when it came from excluded studies alone,
which equals KG-LLaVA's "search 15, drop the query's own study, keep 7" after de-duplication.

Folder layout (`save` / `load`)::

    kg.json           {"format": "mmgpt2-kg", "version": 1, "encoder": spec, "dim": D, "count": N, ...}
    triplets.jsonl    one {"head", "relation", "tail", "source_ids"} per index row
    index.faiss       the FAISS index (N rows of D float32; flat or IVF, see kg.json "index")

Example:
    >>> import tempfile
    >>> from mmgpt2.encoders import load_encoder
    >>> enc = load_encoder("embedded:chest-clip")
    >>> kg = KnowledgeGraph.from_jsonl("triplets.jsonl", enc)  # doctest: +SKIP
    >>> kg = KnowledgeGraph.from_triplets(
    ...     [
    ...         {"head": "effusion", "relation": "suggestive_of", "tail": "heart failure", "source_id": "s1"},
    ...         {"head": "opacity", "relation": "located_at", "tail": "left lung", "source_id": "s123"},
    ...     ],
    ...     enc,
    ...     progress=False,
    ... )
    >>> folder = kg.save(tempfile.mkdtemp())
    >>> query = enc.encode_text(["effusion suggestive of heart failure"])[0]
    >>> hits = KnowledgeGraph.load(folder).query(query, k=7, exclude_source="s123")
    >>> len(hits), hits[0]["head"], round(hits[0]["score"], 2)
    (1, 'effusion', 1.0)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgpt2.apps.medical.extract import Extractor, default_extractor
from mmgpt2.errors import Mmgpt2Error
from mmgpt2.retrieval import (  # noqa: F401 - re-exported (benchmarks/medical.py)
    IVF_FROM,
    IVF_NPROBE,
    Layout,
    TextIndex,
    embed_texts,
    load_folder,
    read_jsonl_rows,
)

FORMAT = "mmgpt2-kg"
VERSION = 1
META_NAME, TRIPLETS_NAME, INDEX_NAME = "kg.json", "triplets.jsonl", "index.faiss"


class KGError(Mmgpt2Error):
    """A knowledge-graph folder or input that cannot be used; the message names it and the fix."""


LAYOUT = Layout(
    format=FORMAT,
    version=VERSION,
    meta_name=META_NAME,
    rows_name=TRIPLETS_NAME,
    what="knowledge graph",
    rebuild="`mmgpt2 kg build`",
    error=KGError,
)


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
    """Triplets + a FAISS inner-product index over their normalized text embeddings (a `TextIndex`)."""

    def __init__(
        self,
        triplets: Sequence[Triplet],
        vectors: np.ndarray | None,
        encoder_spec: str,
        dim: int | None = None,
        index: str | Any = "auto",
    ):
        self.triplets = list(triplets)
        self.store = TextIndex(
            [t.text for t in self.triplets],
            [t.source_ids for t in self.triplets],
            vectors,
            encoder_spec,
            dim=dim,
            index=index,
            error=KGError,
        )

    def __len__(self) -> int:
        return len(self.triplets)

    @property
    def index(self):
        """The FAISS index (one row per triplet)."""
        return self.store.index

    @property
    def dim(self) -> int:
        return self.store.dim

    @property
    def encoder_spec(self) -> str:
        return self.store.encoder_spec

    @property
    def index_kind(self) -> str:
        """ "flat" (exact) or "ivf" (approximate, for large datastores)."""
        return self.store.index_kind

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
            >>> from mmgpt2.encoders import load_encoder
            >>> KnowledgeGraph.from_triplets(
            ...     [{"head": "effusion", "relation": "suggestive_of", "tail": "heart failure", "source_id": "s1"}],
            ...     load_encoder("embedded:chest-clip"),
            ...     progress=False,
            ... )
            KnowledgeGraph(1 triplets, dim=64, index=flat, encoder='embedded:chest-clip')
        """
        triplets = merge_triplets(rows)
        vectors = (
            embed_texts(encoder, [t.text for t in triplets], batch_size, progress, desc="embedding triplets")
            if triplets
            else None
        )
        return cls(triplets, vectors, encoder.spec, dim=int(encoder.embed_dim), index=index)

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
        single = np.ndim(image_embedding) == 1
        rows = 1 if single else len(image_embedding)
        excludes = (
            [exclude_source] * rows
            if exclude_source is None or isinstance(exclude_source, str)
            else list(exclude_source)
        )
        if len(excludes) != rows:
            raise KGError(f"exclude_source has {len(excludes)} entries for {rows} query rows")
        hits = self.store.search(image_embedding, k, excludes, search_k)
        results = [[self._hit(row, score) for row, score in row_hits] for row_hits in hits]
        return results[0] if single else results

    def _hit(self, row: int, score: float) -> dict[str, Any]:
        t = self.triplets[row]
        return {
            "head": t.head,
            "relation": t.relation,
            "tail": t.tail,
            "text": t.text,
            "score": score,
            "source_ids": list(t.source_ids),
        }

    # --- saving -----------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write the three files (index and triplets first, the meta file last), each atomically."""
        rows = [
            {"head": t.head, "relation": t.relation, "tail": t.tail, "source_ids": t.source_ids}
            for t in self.triplets
        ]
        return self.store.save_folder(folder, LAYOUT, rows)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> KnowledgeGraph:
        """Load a folder written by `save`; a missing, corrupt or inconsistent file raises `KGError`."""
        rows, index, meta = load_folder(folder, LAYOUT)
        triplets = _triplets_from_rows(rows, Path(folder) / TRIPLETS_NAME)
        return cls(triplets, None, meta.get("encoder", ""), index=index)


def _triplets_from_rows(rows: list[dict[str, Any]], path: Path) -> list[Triplet]:
    out = []
    for n, row in enumerate(rows, 1):
        try:
            out.append(Triplet(row["head"], row["relation"], row["tail"], list(row.get("source_ids", []))))
        except (KeyError, TypeError) as err:
            raise KGError(f"{path}:{n}: corrupt triplet row {row!r}; rebuild the knowledge graph") from err
    return out


def read_triplets_jsonl(path: str | os.PathLike, merge: bool = True) -> list[Any]:
    """Rows of a triplets JSON-lines file (`merge=False`: one `Triplet` per line, as saved)."""
    path = Path(path)
    if not path.is_file():
        raise KGError(f"{path}: no such triplets file")
    rows = read_jsonl_rows(path, KGError, what="triplet")
    return rows if merge else _triplets_from_rows(rows, path)


def warn_empty(kg: KnowledgeGraph | None) -> bool:
    """True (and a warning) when `kg` is given but holds no triplets: callers fall back to no KG."""
    if kg is not None and len(kg) == 0:
        warnings.warn("the knowledge graph is empty; explaining without retrieved triplets", stacklevel=3)
        return True
    return False
